"""``retina train-arcface``: train the verification experiment's face embedder with the ArcFace loss on a
SynthFace-ID split (``retina.recognition.train``)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from retina.commands.args import device, int_in_range, non_negative_int, output_dir, positive_float, positive_int
from retina.errors import RetinaError

RECIPES = (
    "mobilefacenet",
    "synth-cpu",
)  # retina.recognition.train.TRAIN_ID_PRESETS, restated so that parsing stays light


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help="a SynthFace-ID split folder (default: the SynthFace-ID train split)")
    p.add_argument("--out", type=output_dir, required=True, help="run folder (checkpoints, metrics, record)")
    p.add_argument("--recipe", default="synth-cpu", choices=RECIPES, help="training recipe")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    p.add_argument("--workers", type=non_negative_int, default=0, help="data loader worker processes")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--checkpoint-every", type=positive_int, default=100, help="iterations between checkpoints")
    p.add_argument("--log-every", type=positive_int, default=10, help="iterations between metric records")
    p.add_argument("--stop-after", type=positive_int, help="leave after this iteration (resumable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("recipe overrides (they change the training config and its hash)")
    g.add_argument("--epochs", type=positive_float)
    g.add_argument("--max-iterations", type=positive_int)
    g.add_argument("--batch-size", type=int_in_range(2, 1 << 16))
    g.add_argument("--lr", type=positive_float)
    g.add_argument("--seed", type=int_in_range(0, 2**32 - 1))


def run(args: argparse.Namespace) -> int:
    import torch

    from retina.recognition.train import IdRunSpec, read_synthface_id, train_id, train_id_preset

    overrides = {
        k: getattr(args, k)
        for k in ("epochs", "max_iterations", "batch_size", "lr", "seed")
        if getattr(args, k) is not None
    }
    try:
        cfg = dataclasses.replace(train_id_preset(args.recipe), **overrides)
    except ValueError as exc:  # a combination of overrides the config refuses
        raise RetinaError(str(exc)) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data is None:
        from retina.synth.identities import synth_id_split

        args.data = synth_id_split("train", progress=not args.no_progress)
    data = read_synthface_id(args.data)
    spec = IdRunSpec(
        args.out,
        args.device,
        args.workers,
        args.checkpoint_every,
        args.log_every,
        args.resume,
        args.stop_after,
        not args.no_progress,
        f"SynthFace-ID split {args.data}",
    )
    record = train_id(cfg, data, spec)
    if record["finished"] and not record.get("nothing_to_do"):
        print(f"done: {record['completed_iterations']} iterations; embedding network in {args.out / 'final.pth'}")
    return 0
