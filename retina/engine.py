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
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from retina.build import build_detector
from retina.checkpoint import load_pretrained_backbone, load_weights, read_checkpoint, save_checkpoint
from retina.config import DetectorCfg, TrainCfg, config_hash, from_dict, to_dict
from retina.data.dataset import FaceDataset, ResumableSampler, SplitPaths, collate, iterations_for
from retina.errors import RetinaError
from retina.losses import assign, losses, weighted_total
from retina.preprocess import normalize
from retina.priors import make_priors
from retina.results import provenance, write_json, write_text


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
    channels_last: bool = True  # on CUDA only (slower on CPU in our measurements)
    resume: bool = False
    pretrained_backbone: Path | None = None
    stop_after: int | None = None  # leave after this iteration, resumable (tests of interruption)
    progress: bool = True
    data_label: str = "unspecified"  # what the data is, for the records (e.g. "SynthFace train (synthetic)")


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def learning_rate(iteration: int, total: int, cfg: TrainCfg) -> float:
    """The paper's schedule scaled to ``total`` iterations: linear warm-up, then steps of 1/10."""
    warmup = int(cfg.warmup_fraction * total)
    if iteration < warmup:
        return cfg.warmup_lr + (cfg.lr - cfg.warmup_lr) * iteration / warmup
    return cfg.lr * 0.1 ** sum(iteration >= int(f * total) for f in cfg.step_fractions)


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _read_metrics(path: Path, upto: int) -> list[str]:
    """Metric lines with iteration <= upto (a killed run may have logged past its last checkpoint)."""
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line and json.loads(line)["iteration"] <= upto]


def train(
    model_cfg: DetectorCfg,
    train_cfg: TrainCfg,
    run: RunSpec,
    loss_fn: Callable[..., dict[str, torch.Tensor]] = losses,
) -> dict[str, Any]:
    """Train (or resume) a detector; returns the run record (also written to ``train_record.json``)."""
    d = _setup_distributed(run.device)
    device = torch.device(f"cuda:{d.local_rank}" if run.device == "cuda" and d.world > 1 else run.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(run.out_dir)
    last = out / "last.pth"
    torch.manual_seed(train_cfg.seed)
    model = build_detector(model_cfg)
    if run.pretrained_backbone is not None:
        load_pretrained_backbone(model, run.pretrained_backbone)
    dataset = FaceDataset(run.data, train_cfg.augment, train_cfg.seed)
    total = train_cfg.max_iterations or iterations_for(train_cfg.epochs, len(dataset), train_cfg.batch_size)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=train_cfg.lr, momentum=train_cfg.momentum, weight_decay=train_cfg.weight_decay
    )
    start = 0
    if last.exists():
        if not run.resume:
            raise RetinaError(f"{out} already holds a run (last.pth): pass --resume to continue it, or another --out")
        cfg, state, payload = read_checkpoint(last)
        saved_train = from_dict(TrainCfg, payload["extra"]["train_cfg"])
        if cfg != model_cfg or saved_train != train_cfg:
            raise RetinaError(f"{last} was written with other settings; cannot resume it with these")
        load_weights(model, state, str(last))
        optimizer.load_state_dict(payload["extra"]["optimizer"])
        start = int(payload["extra"]["iteration"])
    elif run.resume and d.main:
        print(f"no checkpoint in {out}: starting from scratch")
    model.to(device)
    cuda = device.type == "cuda"
    if cuda and run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    for group_state in optimizer.state.values():  # momentum buffers follow the model's device
        for k, v in group_state.items():
            if torch.is_tensor(v):
                group_state[k] = v.to(device)
    net: nn.Module = model
    if d.world > 1:
        if cuda and not train_cfg.freeze_bn:  # batch statistics over the global batch (CUDA only in torch)
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if cuda else None)
    sampler = ResumableSampler(len(dataset), train_cfg.batch_size, train_cfg.seed, start, total, d.rank, d.world)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=run.workers, pin_memory=cuda)
    size = train_cfg.augment.image_size
    priors = make_priors((size, size), model_cfg.priors.strides, model_cfg.priors.sizes, device=device)
    metrics_path = out / "metrics.jsonl"
    lines = _read_metrics(metrics_path, start) if d.main else []
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        write_text(metrics_path, "".join(line + "\n" for line in lines))
    meta = {
        "model_cfg": to_dict(model_cfg),
        "model_cfg_hash": config_hash(model_cfg),
        "train_cfg": to_dict(train_cfg),
        "train_cfg_hash": config_hash(train_cfg),
        "data": {"label": run.data_label, "images": str(run.data.images), "labels": str(run.data.labels)},
        "world_size": d.world,
        "device": str(device),
    }

    def checkpoint(path: Path, iteration: int) -> None:
        extra = {"iteration": iteration, "optimizer": optimizer.state_dict(), "train_cfg": to_dict(train_cfg)}
        save_checkpoint(path, model, model_cfg, provenance=_jsonable(provenance(**meta)), extra=extra)

    bar = tqdm(total=total, initial=start, disable=not (run.progress and d.main), unit="it", dynamic_ncols=True)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and run.amp) else contextlib.nullcontext()
    t0, seen, wall0 = time.perf_counter(), 0, time.perf_counter()
    done, saved = start, (start if start else None)
    parts: dict[str, torch.Tensor] = {}
    for iteration, (images, targets) in enumerate(loader, start=start):
        net.train()
        if train_cfg.freeze_bn:
            _freeze_bn(net)
        lr = learning_rate(iteration, total, train_cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = normalize(images.to(device, non_blocking=True), model_cfg.input)
        with autocast:
            pred = net(x)
        assigned = assign(targets, priors, model_cfg.priors.variances, train_cfg.loss)
        counts = torch.stack([assigned.num_positive, assigned.num_landmarks]).float()
        if d.world > 1:
            dist.all_reduce(counts)
        parts = loss_fn(pred, assigned, train_cfg.loss, counts[0], counts[1])
        loss = weighted_total(parts, train_cfg.loss)
        finite = torch.isfinite(loss.detach()).float()
        if d.world > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() == 0:
            values = {k: float(v.detach()) for k, v in parts.items()}
            kept = f"{last} (iteration {saved})" if saved is not None else "none was written yet"
            raise TrainingDiverged(
                f"non-finite loss at iteration {iteration + 1}: {values}; training stopped, "
                f"the last good checkpoint is kept: {kept}"
            )
        optimizer.zero_grad(set_to_none=True)
        (loss * d.world).backward()  # DDP averages gradients over processes; the loss is a share of the global mean
        if train_cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()
        seen += train_cfg.batch_size
        done = iteration + 1
        if done % run.log_every == 0 or done == total:
            logged = torch.stack([v.detach().float() for v in parts.values()])
            if d.world > 1:
                dist.all_reduce(logged)
            elapsed = time.perf_counter() - t0
            record = {"iteration": done, "epoch": done / max(1, len(dataset) // train_cfg.batch_size), "lr": lr}
            record |= {k: float(v) for k, v in zip(parts, logged, strict=True)}
            record |= {"loss": float(weighted_total(dict(zip(parts, logged, strict=True)), train_cfg.loss))}
            record |= {"images_per_s": seen / elapsed, "positives": float(counts[0])}
            if d.main:
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{record['images_per_s']:.1f}")
            t0, seen = time.perf_counter(), 0
        bar.update(1)
        if done % run.checkpoint_every == 0 or done == total:
            if d.main:
                checkpoint(last, done)
            saved = done
        if run.stop_after is not None and done >= run.stop_after:
            break
    bar.close()
    record = {
        **meta,
        "iterations": total,
        "completed_iterations": done,
        "finished": done >= total,
        "resumed_from": start,
        "wall_time_s_this_process": time.perf_counter() - wall0,
        "final_losses": {k: float(v.detach()) for k, v in parts.items()},
        "provenance": provenance(),
    }
    if d.main and done >= total:
        checkpoint(out / "final.pth", done)
        write_json(out / "train_record.json", _jsonable(record))
    if d.world > 1:
        dist.barrier()
    return record


def _jsonable(obj: Any) -> Any:
    """Plain JSON data (paths and other objects as strings): loadable with ``weights_only=True``."""
    return json.loads(json.dumps(obj, default=str))
