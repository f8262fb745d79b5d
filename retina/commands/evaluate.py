"""``retina evaluate``: run a detector over a WIDER-layout split and evaluate it with the official protocol.

With no arguments: the suite's committed SynthFace checkpoint on the SynthFace val split (synthetic data),
results under ``results/widerface_eval/synthface_val_original/``. With ``--data-root``: real WIDER FACE val
(``WIDER_val/images`` and the official ground-truth .mat files) or any split in that layout.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from retina.commands.args import add_arithmetic, device, fraction, iou_threshold, positive_int
from retina.protocols import PROTOCOLS
from retina.weights import DEFAULT_WEIGHTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="checkpoint (default: the committed one)")
    p.add_argument("--preset", help="architecture the weights must match (checked)")
    p.add_argument(
        "--data-root", type=Path, help="WIDER FACE root (WIDER_val/images + ground truth); default: SynthFace"
    )
    p.add_argument("--gt", type=Path, help="folder of the official ground-truth .mat files")
    p.add_argument("--protocol", default="original", choices=sorted(PROTOCOLS), help="test-time protocol")
    p.add_argument("--score-threshold", type=fraction, default=0.02, help="keep faces scoring above this, in [0, 1]")
    p.add_argument("--nms-iou", type=iou_threshold, default=0.4, help="NMS IoU threshold, in (0, 1]")
    p.add_argument("--iou", type=iou_threshold, default=0.5, help="evaluation (matching) IoU threshold, in (0, 1]")
    add_arithmetic(p)
    p.add_argument("--device", type=device, default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="most images per network forward pass (images whose inputs have the same size are batched)",
    )
    p.add_argument("--out", type=Path, help="output folder (default under results/widerface_eval/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from retina.api import Detector
    from retina.errors import RetinaError
    from retina.eval.report import format_table, iou_note, summarise_warnings
    from retina.evaluate import EvalSplit, evaluate_detector

    if not args.weights.is_file():
        raise RetinaError(f"weights file not found: {args.weights}")
    if note := iou_note(args.arithmetic, args.iou):
        print(note, file=sys.stderr)
    if args.data_root is None:
        from retina.synth.splits import default_split

        root = default_split("val")
        split = EvalSplit.from_root(root, args.gt, label="SynthFace val (synthetic data, not WIDER FACE)")
        name = "synthface_val"
    else:
        split = EvalSplit.from_root(args.data_root, args.gt)
        name = "widerface_val"
    out = args.out or Path("results") / "widerface_eval" / f"{name}_{args.protocol}"
    detector = Detector.from_checkpoint(
        args.weights, preset=args.preset, device=args.device, batch_size=args.batch_size
    )
    post = dataclasses.replace(detector.post, score_threshold=args.score_threshold, nms_iou=args.nms_iou)
    result, paths = evaluate_detector(
        detector, split, out, args.protocol, post, args.iou,
        progress=not args.no_progress, arithmetic=args.arithmetic, weights=str(args.weights),
    )  # fmt: skip
    for line in summarise_warnings(result.warnings):
        print(line, file=sys.stderr)
    print(f"data: {split.label}")
    print(format_table(result))
    print(f"results: {paths['json']}")
    return 0
