"""``retina train``: train a detector on SynthFace (default) or a RetinaFace-layout split; torchrun-ready.

    retina train --preset mobilenet0.25 --recipe synth-cpu --out runs/m025          # SynthFace, CPU
    torchrun --nproc_per_node 4 -m retina.cli train --preset resnet50-paper --recipe paper \\
        --data-root /data/widerface/train --device cuda --out runs/r50                # 4 GPUs
    retina train --out runs/m025 --resume                                           # the run's own settings

``--resume`` reads the run's architecture, recipe and data back from its ``last.pth``; flags given with it
change those settings, and the engine refuses them field by field when they differ from the run's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

from retina.commands.args import (
    device,
    int_in_range,
    non_negative_float,
    non_negative_int,
    output_dir,
    positive_float,
    positive_int,
)
from retina.config import (
    PRESETS,
    TRAIN_PRESETS,
    AugmentCfg,
    DetectorCfg,
    LossCfg,
    TrainCfg,
    from_dict,
    preset,
    train_preset,
)
from retina.render.pipeline import BACKENDS

MAX_SEED = 2**32 - 1
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 4096  # AugmentCfg needs >= 32; beyond 4096 a batch does not fit anywhere
DEFAULT_PRESET, DEFAULT_RECIPE = "mobilenet0.25", "synth-cpu"
SYNTH_LABEL = "SynthFace default train split (synthetic)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help=f"model architecture (default: {DEFAULT_PRESET}; the run's with --resume)",
    )
    p.add_argument(
        "--recipe",
        choices=sorted(TRAIN_PRESETS),
        help=f"training recipe (default: {DEFAULT_RECIPE}; the run's with --resume)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data", choices=["synth"], help="the embedded SynthFace train split (default; the run's with --resume)"
    )
    src.add_argument("--data-root", type=Path, help="a split folder holding images/ and label.txt")
    p.add_argument("--out", type=output_dir, required=True, help="run folder (checkpoints, metrics, record)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint, with the architecture, recipe and data it records",
    )
    p.add_argument(
        "--device", type=device, default="cpu", help="cpu or cuda (with torchrun: each process takes its LOCAL_RANK)"
    )
    p.add_argument(
        "--workers",
        type=non_negative_int,
        help="data loader worker processes per training process (default: 0 on a CPU with 2 cores or fewer, 1 on a "
        "larger one, 2 on CUDA; see retina.engine.loader_workers)",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument("--pretrained-backbone", type=Path, help="local ImageNet backbone weights file")
    start.add_argument(
        "--init-weights",
        type=Path,
        help="start a new run from all weights of this checkpoint (ours or biubug6's; same architecture): fine-tuning",
    )
    p.add_argument(
        "--renderer",
        choices=BACKENDS,
        default="torch",
        help="rasteriser of the pixel loss (a -mesh preset): torch (any device) or nvdiffrast (CUDA, extra render)",
    )
    p.add_argument(
        "--cpu-bf16",
        action="store_true",
        help="bf16 autocast on a CPU with bf16 instructions (avx512_bf16 or AMX): faster, but it changes the numbers "
        "(recorded in the run's records; speed and AP effect: benchmarks/train_speed.py)",
    )
    p.add_argument("--checkpoint-every", type=positive_int, default=200, help="iterations between checkpoints")
    p.add_argument("--log-every", type=positive_int, default=10, help="iterations between metric records")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("recipe overrides (they change the training config and its hash)")
    g.add_argument("--epochs", type=positive_float)
    g.add_argument("--max-iterations", type=positive_int)
    g.add_argument("--batch-size", type=positive_int, help="global batch size (split over torchrun processes)")
    g.add_argument("--lr", type=positive_float)
    g.add_argument("--image-size", type=int_in_range(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE))
    g.add_argument("--seed", type=int_in_range(0, MAX_SEED))
    g.add_argument("--landmark-weight", type=non_negative_float, help="weight of the landmark loss (0 disables it)")
    g.add_argument(
        "--pixel-weight",
        type=non_negative_float,
        help="weight of the dense branch's pixel loss (a -mesh preset; default 0.01, 0 disables it)",
    )
    g.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm statistics fixed")


def train_config(args: argparse.Namespace, base: TrainCfg | None = None) -> TrainCfg:
    """The recipe (``--recipe``, else ``base``, else the default recipe) with the command-line overrides applied."""
    cfg = train_preset(args.recipe or DEFAULT_RECIPE) if args.recipe or base is None else base
    loss: LossCfg = cfg.loss
    augment: AugmentCfg = cfg.augment
    if args.landmark_weight is not None:
        loss = dataclasses.replace(loss, w_landmarks=args.landmark_weight)
    if args.pixel_weight is not None:
        loss = dataclasses.replace(loss, w_pixel=args.pixel_weight)
    if args.image_size is not None:
        augment = dataclasses.replace(augment, image_size=args.image_size)
    overrides = {
        k: getattr(args, k)
        for k in ("epochs", "max_iterations", "batch_size", "lr", "seed")
        if getattr(args, k) is not None
    }
    if args.freeze_bn:
        overrides["freeze_bn"] = True
    return dataclasses.replace(cfg, loss=loss, augment=augment, **overrides)


def saved_run(out: Path) -> tuple[DetectorCfg, TrainCfg, dict[str, Any]] | None:
    """(architecture, recipe, data record) of the run in ``out`` from its ``last.pth`` (None: no run there)."""
    from retina.checkpoint import read_checkpoint

    last = out / "last.pth"
    if not last.is_file():
        return None
    model_cfg, _, payload = read_checkpoint(last)
    return model_cfg, from_dict(TrainCfg, payload["extra"]["train_cfg"]), payload["provenance"].get("data", {})


def data_source(args: argparse.Namespace, saved: dict[str, Any] | None) -> tuple[Any, str]:
    """(split paths, label) of ``--data-root``; else of the resumed run (``saved``); else SynthFace train."""
    from retina.data.dataset import SplitPaths

    if args.data_root is not None:
        return SplitPaths.from_root(args.data_root), f"RetinaFace-layout split {args.data_root}"
    if saved and args.data is None and saved.get("label") != SYNTH_LABEL:
        return SplitPaths(Path(saved["images"]), Path(saved["labels"])), saved["label"]
    from retina.synth.splits import default_split

    return SplitPaths.from_root(default_split("train")), SYNTH_LABEL


def run(args: argparse.Namespace) -> int:
    from retina.engine import RunSpec, check_renderer, train

    saved = saved_run(args.out) if args.resume else None
    model_cfg = preset(args.preset or DEFAULT_PRESET) if args.preset or saved is None else saved[0]
    train_cfg = train_config(args, saved[1] if saved else None)
    check_renderer(model_cfg, train_cfg, args.renderer)  # before SynthFace is generated
    paths, label = data_source(args, saved[2] if saved else None)
    run_spec = RunSpec(
        out_dir=args.out,
        data=paths,
        device=args.device,
        workers=args.workers,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        resume=args.resume,
        pretrained_backbone=args.pretrained_backbone,
        init_weights=args.init_weights,
        progress=not args.no_progress,
        data_label=label,
        renderer=args.renderer,
        cpu_bf16=args.cpu_bf16,
    )
    record = train(model_cfg, train_cfg, run_spec)
    first = int(os.environ.get("RANK", "0")) == 0  # under torchrun, one summary (the engine logs from rank 0 too)
    if first and record["finished"] and not record.get("nothing_to_do"):  # the engine said "already finished"
        print(f"done: {record['completed_iterations']} iterations; weights in {args.out / 'final.pth'}")
    return 0
