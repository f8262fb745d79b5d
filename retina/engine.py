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
from retina.config import DetectorCfg, TrainCfg, config_diff, config_hash, from_dict, to_dict
from retina.data.dataset import (
    FaceDataset,
    ResumableSampler,
    SplitPaths,
    collate,
    content_id,
    data_fingerprint,
    iterations_for,
)
from retina.dense.pixel import pixel_loss, select_faces
from retina.errors import RetinaError
from retina.losses import assign, losses, weighted_total
from retina.models.dcn import OffsetMonitor, offset_parameters
from retina.models.mesh_decoder import load_mesh_decoder
from retina.preprocess import normalize
from retina.priors import make_priors
from retina.render import backend
from retina.results import file_id, git_commit, provenance, utc_now, write_json, write_text
from retina.schedule import learning_rate
from retina.stages import NO_STAGES, StageTimer
from retina.weights import DEFAULT_DECODER

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
    workers: int | None = None  # data-loader worker processes per training process; None: ``loader_workers``
    checkpoint_every: int = 500
    log_every: int = 10
    amp: bool = True  # bf16 autocast, on CUDA only
    # bf16 autocast on a CPU with bf16 instructions (avx512_bf16 or AMX): faster, but it changes the numbers (off
    # by default; the records say when it was on). Its speed and AP: benchmarks/train_speed.py and the report.
    cpu_bf16: bool = False
    channels_last: bool = True  # on CUDA only (slower on CPU in our measurements)
    resume: bool = False
    pretrained_backbone: Path | None = None
    init_weights: Path | None = None  # a checkpoint of the same architecture: a new run starts from all its weights
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

    @property
    def workers(self) -> int:
        """This process's data-loader workers: ``run.workers``, else the default for its device and share of cores."""
        if self.run.workers is not None:
            return self.run.workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return loader_workers(self.device.type, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))

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
    starting_weights: dict[str, Any] | None  # what the run started from (None: a run from before this record)


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
    offsets: OffsetMonitor | None = None  # a DCN model's offset statistics, logged with the losses
    stages: Any = NO_STAGES  # a StageTimer when the loop is profiled (``train(stages=...)``)


class _Throughput:
    """Images per second since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.t0, self.seen = time.perf_counter(), 0

    def rate(self) -> float:
        return self.seen / (time.perf_counter() - self.t0)


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
    if ctx.model_cfg.neck.dcn and "dcn_offset_lr" not in payload.get("provenance", {}):
        raise RetinaError(
            f"{ctx.last}: a DCN run from before the offsets had their own learning rate (they trained at 1x, with "
            "weight decay); it cannot continue under this code: use another --out"
        )
    if bool(extra.get("cpu_bf16", False)) != _bf16_on_cpu(ctx):
        was, now = ("bf16", "float32") if extra.get("cpu_bf16") else ("float32", "bf16")
        raise RetinaError(f"{ctx.last} was trained in {was} on the CPU; cannot resume it in {now} (cpu_bf16)")
    history = extra.get("history") or {"invocations": [], "saves": []}  # none in runs from before the records
    starting = payload.get("provenance", {}).get("starting_weights")
    _check_same_start(ctx, starting)
    return _Saved(int(extra["iteration"]), state, extra["optimizer"], history, starting)


def _check_same(last: Path, what: str, saved: Any, now: Any) -> None:
    """Refuse to resume with other settings, naming each field that differs (the run's value, then now)."""
    fields = config_diff(saved, now) if type(saved) is type(now) else [("config", saved, now)]
    if fields:
        named = "; ".join(f"{name} {a!r} in the run, {b!r} now" for name, a, b in fields)
        raise RetinaError(
            f"{last} was written with other settings ({what} {config_hash(saved)}, now {config_hash(now)}): "
            f"{named}; cannot resume it with these"
        )


def _starting_weights(run: RunSpec) -> dict[str, Any]:
    """The files a new run starts from, by name and sha256 (None: not used), for its records."""
    return {"pretrained_backbone": file_id(run.pretrained_backbone), "init_weights": file_id(run.init_weights)}


def _check_same_start(ctx: _Context, saved: dict[str, Any] | None) -> None:
    """A starting-weights flag given on resume must name the file the run started from."""
    now = _starting_weights(ctx.run)
    for flag, name in (("--pretrained-backbone", "pretrained_backbone"), ("--init-weights", "init_weights")):
        if now[name] is not None and (saved is None or saved.get(name) != now[name]):
            started = (saved or {}).get(name)
            raise RetinaError(
                f"{ctx.last}: the run started from {started['file'] if started else 'no such file'}, not "
                f"{flag} {now[name]['file']}; resume without {flag}"
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
    model = initial_model(ctx.model_cfg, cfg.seed, ctx.run.pretrained_backbone)
    _prepare_decoder(ctx, model)
    if ctx.run.init_weights is not None and saved is None:
        _load_init_weights(model, ctx.model_cfg, ctx.run.init_weights)
    optimizer = torch.optim.SGD(
        param_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    if saved is not None:
        load_weights(model, saved.state, str(ctx.last))
        optimizer.load_state_dict(saved.optimizer)
        if ctx.dist.main:
            it, end = saved.iteration, ctx.total
            print(f"resuming {ctx.out} at iteration {it}/{end} (epoch {ctx.epochs(it):.4g}/{ctx.epochs(end):.4g})")
    elif ctx.run.resume and ctx.dist.main:
        print(f"no checkpoint in {ctx.out}: starting from scratch")
    start = saved.iteration if saved is not None else 0
    net = _place(ctx, model, optimizer)
    size = cfg.augment.image_size
    priors = make_priors((size, size), ctx.model_cfg.priors.strides, ctx.model_cfg.priors.sizes, device=ctx.device)
    autocast = _autocast(ctx)
    _trim_metrics(ctx, start)
    history = _open_history(ctx, saved, start)
    meta = _meta(ctx, saved.starting_weights if saved is not None else _starting_weights(ctx.run))
    offsets = OffsetMonitor(model) if offset_parameters(model) else None
    return _Session(ctx, model, net, optimizer, _loader(ctx, start), priors, autocast, start, meta, history, offsets)


def param_groups(model: nn.Module, cfg: TrainCfg) -> list[dict[str, Any]]:
    """The SGD parameter groups: every trained parameter at the schedule's rate, except a DCN model's offset/mask
    convs, which get ``lr_scale = cfg.dcn_offset_lr`` (applied by ``_step``) and no weight decay, or are frozen
    (``requires_grad`` off: at zero in a new run, at their loaded values from ``--init-weights``) when it is 0.
    Without DCN: one group, as before."""
    offsets = offset_parameters(model)
    if cfg.dcn_offset_lr == 0:
        for p in offsets:
            p.requires_grad_(False)
    own = {id(p) for p in offsets}
    groups: list[dict[str, Any]] = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in own]}]
    if offsets and cfg.dcn_offset_lr > 0:
        groups.append({"params": offsets, "lr_scale": cfg.dcn_offset_lr, "weight_decay": 0.0})
    return groups


def initial_model(model_cfg: DetectorCfg, seed: int, pretrained_backbone: Path | None = None) -> nn.Module:
    """The model a new run starts from (before its mesh decoder and ``--init-weights``, which are files): built
    right after ``torch.manual_seed(seed)``, then the pre-trained backbone loaded when one is given."""
    torch.manual_seed(seed)
    model = build_detector(model_cfg)
    if pretrained_backbone is not None:
        load_pretrained_backbone(model, pretrained_backbone)
    return model


def _load_init_weights(model: nn.Module, model_cfg: DetectorCfg, path: Path) -> None:
    """All weights of a checkpoint of the same architecture (ours or biubug6's): a fine-tuning run's start."""
    cfg, state, _ = read_checkpoint(path)
    fields = config_diff(cfg, model_cfg)
    if fields:
        named = "; ".join(f"{name} {a!r} in the file, {b!r} here" for name, a, b in fields if name != "name")
        raise RetinaError(f"--init-weights {path}: another architecture ({cfg.name}, not {model_cfg.name}): {named}")
    load_weights(model, state, str(path))


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
    check_renderer(ctx.model_cfg, ctx.train_cfg, ctx.run.renderer)
    if ctx.run.mesh_decoder is not None:
        decoder.load_state_dict(load_mesh_decoder(ctx.run.mesh_decoder)[0].state_dict())
    decoder.requires_grad_(finetune)


def pixel_loss_on(model_cfg: DetectorCfg, train_cfg: TrainCfg) -> bool:
    """Whether training renders faces: a mesh head and a pixel-loss weight above 0."""
    return model_cfg.head.mesh and train_cfg.loss.w_pixel > 0


def _pixel_on(ctx: _Context) -> bool:
    return pixel_loss_on(ctx.model_cfg, ctx.train_cfg)


def check_renderer(model_cfg: DetectorCfg, train_cfg: TrainCfg, renderer: str) -> None:
    """RetinaError when training renders and ``renderer`` is unknown or unavailable here (cheap: before any data)."""
    if pixel_loss_on(model_cfg, train_cfg):
        backend(renderer)


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
    _match_grad_layout(model)
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


def _match_grad_layout(model: nn.Module) -> None:
    """Give each 4-d parameter whose two layouts coincide (contiguous and channels-last differ only in the stride
    of a size-1 dimension: 1x1 and depthwise conv weights) the channels-last strides, as conv backward returns
    their gradients for the channels-last activations of training (``retina.preprocess.normalize``). DDP compares
    strides literally and else warns "Grad strides do not match bucket view strides". The memory is the same."""
    for p in model.parameters():
        if p.dim() == 4 and p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last):
            p.data = torch.empty_like(p.data, memory_format=torch.channels_last).copy_(p.data)


def _loader(ctx: _Context, start: int) -> DataLoader:
    """This process's part of every global batch from iteration ``start`` to the end."""
    cfg, d = ctx.train_cfg, ctx.dist
    sampler = ResumableSampler(len(ctx.dataset), cfg.batch_size, cfg.seed, start, ctx.total, d.rank, d.world)
    return DataLoader(
        ctx.dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=ctx.workers,
        pin_memory=ctx.cuda,
        worker_init_fn=_one_thread_worker,
    )


def loader_workers(device: str, cores: int) -> int:
    """The default number of data-loader workers per training process on ``cores`` usable cores.

    CPU: none on 2 cores or fewer, where a worker only takes cycles from the step's own threads (2-core record of
    ``benchmarks/train_speed.py``, section e2e: 0, 1, 2 workers 34.3, 31.6, 27.1 images/s; the data are 7% of an
    iteration); one beyond that, enough to prepare a batch while the step runs (not measured). CUDA: 2, as before
    (the GPU waits for data; tune ``--workers`` to the machine)."""
    if device.startswith("cuda"):
        return 2
    return 0 if cores <= 2 else 1


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


def _meta(ctx: _Context, starting_weights: dict[str, Any] | None) -> dict[str, Any]:
    """What the run is, for every checkpoint's provenance and the train record."""
    run = ctx.run
    data = {"label": run.data_label, "images": str(run.data.images), "labels": str(run.data.labels)}
    return {
        "model_cfg": to_dict(ctx.model_cfg),
        "model_cfg_hash": config_hash(ctx.model_cfg),
        "train_cfg": to_dict(ctx.train_cfg),
        "train_cfg_hash": config_hash(ctx.train_cfg),
        "data": {
            **data,
            "fingerprint": ctx.fingerprint,
            "content": content_id(run.data),
            "warnings": ctx.dataset.warnings,
        },
        "world_size": ctx.dist.world,
        "device": str(ctx.device),
        "loader_workers": ctx.workers,
        "starting_weights": starting_weights,
        **({"mesh_decoder_init": file_id(run.mesh_decoder)} if ctx.model_cfg.head.mesh else {}),
        # named even at its default (to_dict leaves that out): runs from before it trained the offsets at 1x
        **({"dcn_offset_lr": ctx.train_cfg.dcn_offset_lr} if ctx.model_cfg.neck.dcn else {}),
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
    logged = "no metrics logged yet"
    for iteration, batch in enumerate(_timed(s.loader, s.stages), start=s.start):
        cfg = ctx.train_cfg
        lr = learning_rate(
            iteration, ctx.total, cfg.lr, warmup_fraction=cfg.warmup_fraction, warmup_lr=cfg.warmup_lr,
            step_fractions=cfg.step_fractions,
        )  # fmt: skip
        parts, counts = _step(s, batch, lr, loss_fn, iteration, saved)
        meter.seen += ctx.train_cfg.batch_size
        done = iteration + 1
        with s.stages("log"):
            if done % run.log_every == 0 or done == ctx.total:
                logged = _log(s, done, lr, parts, counts, meter, bar)
                meter.reset()
            bar.update(1)
        with s.stages("checkpoint"):
            if done % run.checkpoint_every == 0 or done == ctx.total:
                if ctx.dist.main:
                    _save(s, "last.pth", done)
                    if not shown:  # without a bar, one line per checkpoint says how far the run is
                        where = f"iteration {done}/{ctx.total} (epoch {ctx.epochs(done):.4g})"
                        print(f"{where}: checkpoint {ctx.last}; {logged}", flush=True)
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
            group["lr"] = lr * group.get("lr_scale", 1.0)  # DCN offsets: their own multiple (param_groups)
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
) -> str:
    """Append one metrics line (losses averaged over processes) on rank 0 and show it on the bar; returns it
    in words (loss, images per second)."""
    ctx = s.ctx
    logged = _all_reduce(torch.stack([v.detach().float() for v in parts.values()]), ctx.dist)
    averaged = dict(zip(parts, logged, strict=True))
    record = {"iteration": done, "epoch": ctx.epochs(done), "lr": lr}
    record |= {k: float(v) for k, v in averaged.items()}
    record |= {"loss": float(weighted_total(averaged, ctx.train_cfg.loss))}
    record |= {"images_per_s": meter.rate(), "positives": float(counts[0])}
    if "pixel" in parts:
        record["rendered_faces"] = float(counts[2])
    if s.offsets is not None:  # rank 0's forwards since the last line
        record |= s.offsets.read()
    if ctx.dist.main:
        with ctx.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{record['images_per_s']:.1f}")
    return f"loss {record['loss']:.4f} at iteration {done}, {record['images_per_s']:.1f} images/s"


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
