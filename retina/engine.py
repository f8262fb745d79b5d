"""The training engine: one process or many (``torchrun``), resumable, with JSON-lines records.

Distributed runs are launched by ``torchrun`` (never by this code): when ``WORLD_SIZE`` > 1 the engine joins
the process group (NCCL on GPUs, gloo on CPUs), wraps the model in DDP, gives each process its part of every
global batch and logs from rank 0 only. On GPUs BatchNorm becomes SyncBatchNorm (statistics over the global
batch); torch has no CPU SyncBatchNorm, so on CPUs each process normalises over its own part of the batch.
Everything that decides the numbers (model, schedule, seed) is in the configs; ``RunSpec`` holds the rest
(paths, device, workers, checkpoint cadence).

Files in ``out_dir``: ``last.pth`` (written atomically every ``checkpoint_every`` iterations: weights,
optimiser state, iteration; ``--resume`` continues from it exactly), ``final.pth`` (weights, config and
provenance), ``metrics.jsonl`` (one JSON object per logged iteration) and ``train_record.json``.

Records: every checkpoint and the train record carry the data's fingerprint (:func:`data_fingerprint`) and a
``history``: ``invocations`` (one per process start that saved something: ``argv``, git commit at its start,
start iteration) and ``saves`` (iteration, file, git commit at that save, index of the invocation that saved).
A resumed run appends to both. Resuming refuses other configs or other data; resuming a finished run says so
and writes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from retina.build import build_detector
from retina.checkpoint import load_pretrained_backbone, load_weights, read_checkpoint, save_checkpoint
from retina.config import DetectorCfg, TrainCfg, config_hash, from_dict, to_dict
from retina.data.dataset import FaceDataset, ResumableSampler, SplitPaths, collate, data_fingerprint, iterations_for
from retina.dense.pixel import pixel_loss, select_faces
from retina.errors import RetinaError
from retina.losses import assign, losses, weighted_total
from retina.mesh.pretrain import DEFAULT_DECODER, load_mesh_decoder
from retina.preprocess import normalize
from retina.priors import make_priors
from retina.render import backend
from retina.results import file_id, git_commit, provenance, utc_now, write_json, write_text
from retina.stages import NO_STAGES, StageTimer

LossFn = Callable[..., dict[str, torch.Tensor]]
History = dict[str, list[dict[str, Any]]]  # {"invocations": [...], "saves": [...]}


class TrainingDiverged(RetinaError):
    """A NaN or infinite loss; the last good checkpoint is left untouched."""


@dataclass(frozen=True)
class RunSpec:
    """Where and how to run (not part of any config hash: it does not change the numbers)."""

    out_dir: Path
    data: SplitPaths
    device: str = "cpu"
    workers: int = 2
    checkpoint_every: int = 500
    log_every: int = 10
    amp: bool = True  # bf16 autocast, on CUDA only
    # bf16 autocast on a CPU with bf16 instructions (avx512_bf16 or AMX): faster, but it changes the numbers (off
    # by default; the records say when it was on). Its speed and AP: benchmarks/train_speed.py and the report.
    cpu_bf16: bool = False
    channels_last: bool = True  # on CUDA only (slower on CPU in our measurements)
    resume: bool = False
    pretrained_backbone: Path | None = None
    stop_after: int | None = None  # leave after this iteration, resumable (tests of interruption)
    progress: bool = True
    data_label: str = "unspecified"  # what the data is, for the records (e.g. "SynthFace train (synthetic)")
    # the dense branch (a model with a mesh head): its pre-trained decoder, loaded when a run starts, and the
    # renderer of the pixel loss ("torch", or "nvdiffrast" on CUDA with the extra `render`)
    mesh_decoder: Path | None = DEFAULT_DECODER
    renderer: str = "torch"


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class _Context:
    """What a run is, fixed before anything is built: configs, where it runs, its data and its length."""

    model_cfg: DetectorCfg
    train_cfg: TrainCfg
    run: RunSpec
    dist: _Dist
    device: torch.device
    dataset: FaceDataset
    total: int  # iterations of the whole run
    fingerprint: dict[str, str]  # data_fingerprint(run.data)

    @property
    def out(self) -> Path:
        return Path(self.run.out_dir)

    @property
    def last(self) -> Path:
        return self.out / "last.pth"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def epochs(self, iterations: int) -> float:
        """Iterations as epochs (full global batches per pass over the data, as in the metrics)."""
        return iterations / max(1, len(self.dataset) // self.train_cfg.batch_size)


@dataclass(frozen=True)
class _Saved:
    """What ``last.pth`` holds of a run to resume."""

    iteration: int
    state: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    history: History


@dataclass(frozen=True)
class _Session:
    """A run being trained: its context, the built objects, and its records (``history`` grows at each save)."""

    ctx: _Context
    model: nn.Module
    net: nn.Module  # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    priors: torch.Tensor  # (P, 4) cx cy w h, pixels of the training input
    autocast: contextlib.AbstractContextManager[Any]
    start: int
    meta: dict[str, Any]
    history: History
    stages: Any = NO_STAGES  # a StageTimer when the loop is profiled (``train(stages=...)``)


class _Throughput:
    """Images per second since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.t0, self.seen = time.perf_counter(), 0

    def rate(self) -> float:
        return self.seen / (time.perf_counter() - self.t0)


def learning_rate(iteration: int, total: int, cfg: TrainCfg) -> float:
    """The paper's schedule scaled to ``total`` iterations: linear warm-up, then steps of 1/10."""
    warmup = int(cfg.warmup_fraction * total)
    if iteration < warmup:
        return cfg.warmup_lr + (cfg.lr - cfg.warmup_lr) * iteration / warmup
    return cfg.lr * 0.1 ** sum(iteration >= int(f * total) for f in cfg.step_fractions)


def train(
    model_cfg: DetectorCfg,
    train_cfg: TrainCfg,
    run: RunSpec,
    loss_fn: LossFn = losses,
    stages: StageTimer | None = None,
) -> dict[str, Any]:
    """Train (or resume) a detector; returns the run record (also written to ``train_record.json``).

    Resuming a finished run prints one line, writes nothing and returns the stored record with
    ``"nothing_to_do": True``. ``stages``: a :class:`retina.stages.StageTimer` that the loop reports its stages'
    times to (``benchmarks/train_speed.py``); it changes nothing else.
    """
    ctx = _context(model_cfg, train_cfg, run)
    saved = _resume_point(ctx)
    if saved is not None and _complete(ctx, saved.iteration):
        return _already_finished(ctx, saved.iteration)
    session = _session(ctx, saved)
    if stages is not None:
        session = dataclasses.replace(session, stages=stages)
    wall0 = time.perf_counter()
    done, parts = _loop(session, loss_fn)
    return _finish(session, done, parts, time.perf_counter() - wall0)


# --- set-up ------------------------------------------------------------------------------------------


def _setup_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _context(model_cfg: DetectorCfg, train_cfg: TrainCfg, run: RunSpec) -> _Context:
    """Join the process group, pick this process's device, read the data's labels and fingerprint."""
    d = _setup_distributed(run.device)
    device = torch.device(f"cuda:{d.local_rank}" if run.device == "cuda" and d.world > 1 else run.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dataset = FaceDataset(run.data, train_cfg.augment, train_cfg.seed)
    for warning in dataset.warnings if d.main else []:
        print(f"warning: {warning}", file=sys.stderr)
    total = train_cfg.max_iterations or iterations_for(train_cfg.epochs, len(dataset), train_cfg.batch_size)
    return _Context(model_cfg, train_cfg, run, d, device, dataset, total, data_fingerprint(run.data))


def _resume_point(ctx: _Context) -> _Saved | None:
    """``last.pth`` of the run in ``out_dir`` (None: none), after checking it is this run: configs and data."""
    if not ctx.last.exists():
        return None
    if not ctx.run.resume and (ctx.out / "final.pth").is_file():
        raise RetinaError(f"{ctx.out} already holds a finished run (final.pth): use another --out to train again")
    if not ctx.run.resume:
        raise RetinaError(f"{ctx.out} already holds a run (last.pth): pass --resume to continue it, or another --out")
    cfg, state, payload = read_checkpoint(ctx.last)
    extra = payload["extra"]
    _check_same(ctx.last, "model config", cfg, ctx.model_cfg)
    _check_same(ctx.last, "training recipe", from_dict(TrainCfg, extra["train_cfg"]), ctx.train_cfg)
    _check_same_data(ctx, extra.get("data_fingerprint"))
    if bool(extra.get("cpu_bf16", False)) != _bf16_on_cpu(ctx):
        was, now = ("bf16", "float32") if extra.get("cpu_bf16") else ("float32", "bf16")
        raise RetinaError(f"{ctx.last} was trained in {was} on the CPU; cannot resume it in {now} (cpu_bf16)")
    history = extra.get("history") or {"invocations": [], "saves": []}  # none in runs from before the records
    return _Saved(int(extra["iteration"]), state, extra["optimizer"], history)


def _check_same(last: Path, what: str, saved: Any, now: Any) -> None:
    if saved != now:
        raise RetinaError(
            f"{last} was written with other settings ({what} {config_hash(saved)}, now {config_hash(now)}); "
            "cannot resume it with these"
        )


def _check_same_data(ctx: _Context, saved: dict[str, str] | None) -> None:
    new = ctx.fingerprint
    if saved is None:
        if ctx.dist.main:
            print(f"{ctx.last} records no data fingerprint (an older run): the data cannot be checked")
        return
    if saved["sha256"] != new["sha256"]:
        raise RetinaError(
            f"{ctx.last} was trained on other data: {saved['kind']} sha256 {saved['sha256'][:16]} "
            f"({saved['source']}), now {new['kind']} sha256 {new['sha256'][:16]} ({new['source']}); "
            "resume it with its own data, or use another --out"
        )


def _complete(ctx: _Context, iteration: int) -> bool:
    """The run reached its last iteration and wrote its final files."""
    return iteration >= ctx.total and (ctx.out / "final.pth").is_file() and (ctx.out / "train_record.json").is_file()


def _already_finished(ctx: _Context, iteration: int) -> dict[str, Any]:
    if ctx.dist.main:
        print(
            f"{ctx.out}: already finished at iteration {iteration}/{ctx.total} "
            f"(epoch {ctx.epochs(iteration):.4g}/{ctx.epochs(ctx.total):.4g}); nothing to do"
        )
    record = json.loads((ctx.out / "train_record.json").read_text())
    return {**record, "nothing_to_do": True}


def _session(ctx: _Context, saved: _Saved | None) -> _Session:
    """Build the model and optimiser (from ``saved`` when resuming), place them, and open the records."""
    cfg = ctx.train_cfg
    torch.manual_seed(cfg.seed)
    model = build_detector(ctx.model_cfg)
    if ctx.run.pretrained_backbone is not None:
        load_pretrained_backbone(model, ctx.run.pretrained_backbone)
    _prepare_decoder(ctx, model)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trained, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if saved is not None:
        load_weights(model, saved.state, str(ctx.last))
        optimizer.load_state_dict(saved.optimizer)
    elif ctx.run.resume and ctx.dist.main:
        print(f"no checkpoint in {ctx.out}: starting from scratch")
    start = saved.iteration if saved is not None else 0
    net = _place(ctx, model, optimizer)
    size = cfg.augment.image_size
    priors = make_priors((size, size), ctx.model_cfg.priors.strides, ctx.model_cfg.priors.sizes, device=ctx.device)
    autocast = _autocast(ctx)
    _trim_metrics(ctx, start)
    history = _open_history(ctx, saved, start)
    return _Session(ctx, model, net, optimizer, _loader(ctx, start), priors, autocast, start, _meta(ctx), history)


def _autocast(ctx: _Context) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast of the forward pass: on CUDA with ``amp``, on a CPU with ``cpu_bf16``; else none."""
    if ctx.cuda:
        return torch.autocast("cuda", dtype=torch.bfloat16) if ctx.run.amp else contextlib.nullcontext()
    if not ctx.run.cpu_bf16:
        return contextlib.nullcontext()
    if not cpu_has_bf16():
        raise RetinaError("cpu_bf16: this CPU has no bf16 instructions (avx512_bf16 or AMX); train in float32")
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _bf16_on_cpu(ctx: _Context) -> bool:
    return ctx.run.cpu_bf16 and not ctx.cuda


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU (else they are emulated, and slower)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _prepare_decoder(ctx: _Context, model: nn.Module) -> None:
    """A mesh-head model's decoder: the pre-trained weights (``RunSpec.mesh_decoder``; a resumed run then loads
    its own), trained with the detector or frozen as ``PixelCfg.finetune_decoder`` says."""
    decoder = getattr(model, "mesh_decoder", None)
    if decoder is None:
        return
    finetune = ctx.train_cfg.pixel.finetune_decoder
    if finetune and ctx.dist.world > 1:
        raise RetinaError("fine-tuning the mesh decoder is supported in one process only; set finetune_decoder off")
    if _pixel_on(ctx):
        backend(ctx.run.renderer)  # an unknown or unavailable renderer fails here, before any training
    if ctx.run.mesh_decoder is not None:
        decoder.load_state_dict(load_mesh_decoder(ctx.run.mesh_decoder)[0].state_dict())
    decoder.requires_grad_(finetune)


def _pixel_on(ctx: _Context) -> bool:
    return ctx.model_cfg.head.mesh and ctx.train_cfg.loss.w_pixel > 0


def _place(ctx: _Context, model: nn.Module, optimizer: torch.optim.Optimizer) -> nn.Module:
    """Move the model and optimiser state to the device; returns the network to call (DDP when distributed)."""
    model.to(ctx.device)
    if ctx.cuda and ctx.run.channels_last:
        model.to(memory_format=torch.channels_last)
    for group_state in optimizer.state.values():  # momentum buffers follow the model's device
        for k, v in group_state.items():
            if torch.is_tensor(v):
                group_state[k] = v.to(ctx.device)
    if ctx.dist.world == 1:
        return model
    net: nn.Module = model
    if ctx.cuda and not ctx.train_cfg.freeze_bn:  # batch statistics over the global batch (CUDA only in torch)
        net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # The mesh decoder's sparse graph matrices are buffers derived from the mesh, the same in every process, and
    # DDP cannot broadcast sparse tensors: it is told to leave them alone.
    sparse = [name for name, buffer in net.named_buffers() if buffer.is_sparse]
    if sparse:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(net, sparse)
    # a mesh head without the pixel loss gets no gradient: DDP must be told to expect unused parameters
    unused = ctx.model_cfg.head.mesh and not _pixel_on(ctx)
    return nn.parallel.DistributedDataParallel(
        net, device_ids=[ctx.device.index] if ctx.cuda else None, find_unused_parameters=unused
    )


def _loader(ctx: _Context, start: int) -> DataLoader:
    """This process's part of every global batch from iteration ``start`` to the end."""
    cfg, d = ctx.train_cfg, ctx.dist
    sampler = ResumableSampler(len(ctx.dataset), cfg.batch_size, cfg.seed, start, ctx.total, d.rank, d.world)
    return DataLoader(
        ctx.dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=ctx.run.workers,
        pin_memory=ctx.cuda,
        worker_init_fn=_one_thread_worker,
    )


def _one_thread_worker(_: int) -> None:
    """A loader worker runs OpenCV on one thread, as torch already does there: the workers and the training
    process's threads share the cores, and OpenCV's pool per worker oversubscribed them (the data do not change)."""
    cv2.setNumThreads(1)


def _read_metrics(path: Path, upto: int) -> list[str]:
    """Metric lines with iteration <= upto (a killed run may have logged past its last checkpoint)."""
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line and json.loads(line)["iteration"] <= upto]


def _trim_metrics(ctx: _Context, start: int) -> None:
    """Create ``out_dir`` and keep the metric lines up to the starting iteration (rank 0)."""
    if ctx.dist.main:
        lines = _read_metrics(ctx.metrics_path, start)
        ctx.out.mkdir(parents=True, exist_ok=True)
        write_text(ctx.metrics_path, "".join(line + "\n" for line in lines))


def _meta(ctx: _Context) -> dict[str, Any]:
    """What the run is, for every checkpoint's provenance and the train record."""
    run = ctx.run
    data = {"label": run.data_label, "images": str(run.data.images), "labels": str(run.data.labels)}
    return {
        "model_cfg": to_dict(ctx.model_cfg),
        "model_cfg_hash": config_hash(ctx.model_cfg),
        "train_cfg": to_dict(ctx.train_cfg),
        "train_cfg_hash": config_hash(ctx.train_cfg),
        "data": {**data, "fingerprint": ctx.fingerprint, "warnings": ctx.dataset.warnings},
        "world_size": ctx.dist.world,
        "device": str(ctx.device),
        **({"mesh_decoder_init": file_id(run.mesh_decoder)} if ctx.model_cfg.head.mesh else {}),
        **({"cpu_bf16": True} if _bf16_on_cpu(ctx) else {}),  # absent in float32: the records stay as they were
    }


def _open_history(ctx: _Context, saved: _Saved | None, start: int) -> History:
    """The run's history so far plus this invocation (the command run and the commit at its start)."""
    prior = saved.history if saved is not None else {"invocations": [], "saves": []}
    invocation = {
        "argv": list(sys.argv),
        "git": git_commit(),
        "started_utc": utc_now(),
        "start_iteration": start,
        "world_size": ctx.dist.world,
        "device": str(ctx.device),
    }
    return {"invocations": [*prior["invocations"], invocation], "saves": list(prior["saves"])}


# --- the loop ----------------------------------------------------------------------------------------


def _loop(s: _Session, loss_fn: LossFn) -> tuple[int, dict[str, torch.Tensor]]:
    """Train from ``s.start`` to the end (or ``stop_after``); returns (iterations done, last loss parts)."""
    ctx, run = s.ctx, s.ctx.run
    shown = run.progress and ctx.dist.main
    bar = tqdm(total=ctx.total, initial=s.start, disable=not shown, unit="it", dynamic_ncols=True)
    meter = _Throughput()
    done, saved = s.start, (s.start if s.start else None)
    parts: dict[str, torch.Tensor] = {}
    for iteration, batch in enumerate(_timed(s.loader, s.stages), start=s.start):
        lr = learning_rate(iteration, ctx.total, ctx.train_cfg)
        parts, counts = _step(s, batch, lr, loss_fn, iteration, saved)
        meter.seen += ctx.train_cfg.batch_size
        done = iteration + 1
        with s.stages("log"):
            if done % run.log_every == 0 or done == ctx.total:
                _log(s, done, lr, parts, counts, meter, bar)
                meter.reset()
            bar.update(1)
        with s.stages("checkpoint"):
            if done % run.checkpoint_every == 0 or done == ctx.total:
                if ctx.dist.main:
                    _save(s, "last.pth", done)
                saved = done
        s.stages.iteration_done()
        if run.stop_after is not None and done >= run.stop_after:
            break
    bar.close()
    return done, parts


def _timed(loader: DataLoader, stages: Any) -> Any:
    """The loader's batches, the wait for each timed as the ``data`` stage."""
    batches = iter(loader)
    while True:
        with stages("data"):
            batch = next(batches, None)
        if batch is None:
            return
        yield batch


def _step(
    s: _Session, batch: tuple[torch.Tensor, Any], lr: float, loss_fn: LossFn, iteration: int, saved: int | None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimiser step; returns the loss parts and the global (positives, landmark faces, rendered faces) counts."""
    ctx, cfg, stage = s.ctx, s.ctx.train_cfg, s.stages
    images, targets = batch
    with stage("input"):
        s.net.train()
        if cfg.freeze_bn:
            _freeze_bn(s.net)
        for group in s.optimizer.param_groups:
            group["lr"] = lr
        images = images.to(ctx.device, non_blocking=True)
        x = normalize(images, ctx.model_cfg.input)
    with stage("forward"), s.autocast:
        pred = s.net(x)
    with stage("assign"), _bookkeeping(ctx):
        assigned = assign(targets, s.priors, ctx.model_cfg.priors.variances, cfg.loss)
        faces = select_faces(targets, s.priors, assigned, cfg.pixel) if _pixel_on(ctx) else None
        rendered = torch.tensor(len(faces) if faces is not None else 0, device=ctx.device)
        counts = _all_reduce(torch.stack([assigned.num_positive, assigned.num_landmarks, rendered]).float(), ctx.dist)
    with stage("loss"):
        with _bookkeeping(ctx):
            parts = loss_fn(pred, assigned, cfg.loss, counts[0], counts[1])
        if faces is not None:
            summed = pixel_loss(pred, images, faces, s.model.mesh_decoder, cfg.pixel, ctx.run.renderer)
            parts["pixel"] = summed / counts[2].clamp(min=1)
        loss = weighted_total(parts, cfg.loss)
        _check_finite(s, loss, parts, iteration, saved)
    with stage("backward"):
        s.optimizer.zero_grad(set_to_none=True)
        (loss * ctx.dist.world).backward()  # DDP averages gradients over processes; the loss is a share of the mean
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(s.model.parameters(), cfg.grad_clip)
    with stage("optimizer"), _bookkeeping(ctx):
        s.optimizer.step()
    return parts, counts


@contextlib.contextmanager
def _bookkeeping(ctx: _Context) -> Iterator[None]:
    """On a CPU, the step's many small tensor operations (matching, the detection losses, the optimiser's update of
    each parameter) run on one thread. Split over several threads they gain little, and each one waits at a barrier
    for every thread: when other processes hold a core (the loader's workers, other jobs), the wait is a scheduler
    time slice per operation. Measured on 2 shared cores: matching a batch took 1.5 s on 2 threads, 37 ms on one.
    Matching and the update are element-wise or exact, so their results do not depend on the thread count (the
    losses' sums at most to float rounding, and only over more elements than torch gives one thread)."""
    threads = torch.get_num_threads()
    if ctx.cuda or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _all_reduce(x: torch.Tensor, d: _Dist, op: Any = dist.ReduceOp.SUM) -> torch.Tensor:
    """``x`` reduced over processes in place (unchanged in one process)."""
    if d.world > 1:
        dist.all_reduce(x, op=op)
    return x


def _check_finite(
    s: _Session, loss: torch.Tensor, parts: dict[str, torch.Tensor], iteration: int, saved: int | None
) -> None:
    """Raise :class:`TrainingDiverged` on every process when any process's loss is NaN or infinite."""
    finite = _all_reduce(torch.isfinite(loss.detach()).float(), s.ctx.dist, dist.ReduceOp.MIN)
    if finite.item() == 0:
        values = {k: float(v.detach()) for k, v in parts.items()}
        kept = f"{s.ctx.last} (iteration {saved})" if saved is not None else "none was written yet"
        raise TrainingDiverged(
            f"non-finite loss at iteration {iteration + 1}: {values}; training stopped, "
            f"the last good checkpoint is kept: {kept}"
        )


def _log(
    s: _Session,
    done: int,
    lr: float,
    parts: dict[str, torch.Tensor],
    counts: torch.Tensor,
    meter: _Throughput,
    bar: tqdm,
) -> None:
    """Append one metrics line (losses averaged over processes) on rank 0 and show it on the bar."""
    ctx = s.ctx
    logged = _all_reduce(torch.stack([v.detach().float() for v in parts.values()]), ctx.dist)
    averaged = dict(zip(parts, logged, strict=True))
    record = {"iteration": done, "epoch": ctx.epochs(done), "lr": lr}
    record |= {k: float(v) for k, v in averaged.items()}
    record |= {"loss": float(weighted_total(averaged, ctx.train_cfg.loss))}
    record |= {"images_per_s": meter.rate(), "positives": float(counts[0])}
    if "pixel" in parts:
        record["rendered_faces"] = float(counts[2])
    if ctx.dist.main:
        with ctx.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{record['images_per_s']:.1f}")


# --- records -----------------------------------------------------------------------------------------


def _save(s: _Session, name: str, iteration: int) -> None:
    """Write checkpoint ``out_dir/name`` (rank 0), recording the save (commit now) in the run's history."""
    ctx = s.ctx
    made = _jsonable(provenance(**s.meta))
    s.history["saves"].append(
        {
            "iteration": iteration,
            "file": name,
            "saved_utc": made["created_utc"],
            "git": made["git"],
            "invocation": len(s.history["invocations"]) - 1,  # index: whose argv did the saving
        }
    )
    extra = {
        "iteration": iteration,
        "optimizer": s.optimizer.state_dict(),
        "train_cfg": to_dict(ctx.train_cfg),
        "data_fingerprint": ctx.fingerprint,
        **({"cpu_bf16": True} if _bf16_on_cpu(ctx) else {}),
        "history": _jsonable(s.history),
    }
    save_checkpoint(ctx.out / name, s.model, ctx.model_cfg, provenance=made, extra=extra)


def _finish(s: _Session, done: int, parts: dict[str, torch.Tensor], wall_s: float) -> dict[str, Any]:
    """Write ``final.pth`` and ``train_record.json`` when the run is complete; returns the record."""
    ctx = s.ctx
    complete = done >= ctx.total
    if ctx.dist.main and complete:
        _save(s, "final.pth", done)
    record = {
        **s.meta,
        "iterations": ctx.total,
        "completed_iterations": done,
        "finished": complete,
        "resumed_from": s.start,
        "wall_time_s_this_process": wall_s,
        "final_losses": {k: float(v.detach()) for k, v in parts.items()},
        "history": _jsonable(s.history),
        "provenance": provenance(),
    }
    if ctx.dist.main and complete:
        write_json(ctx.out / "train_record.json", _jsonable(record))
    if ctx.dist.world > 1:
        dist.barrier()
    return record


def _jsonable(obj: Any) -> Any:
    """Plain JSON data (paths and other objects as strings): loadable with ``weights_only=True``."""
    return json.loads(json.dumps(obj, default=str))
