"""``retina evaluate``: run a detector over a WIDER-layout split and evaluate it with the official protocol.

With no arguments: the suite's committed SynthFace checkpoint on the SynthFace val split (synthetic data),
results under ``results/widerface_eval/synthface_val_original/``. With ``--data-root``: real WIDER FACE val
(``WIDER_val/images`` and the official ground-truth .mat files) or any split in that layout. The default
output folder is named after the data, protocol, weights (name and sha256) and non-default settings; a folder
holding the results of another evaluation is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

from retina.commands.args import (
    add_arithmetic,
    add_limits,
    default_file,
    device,
    fraction,
    iou_threshold,
    limits,
    positive_int,
)
from retina.protocols import PROTOCOLS
from retina.weights import DEFAULT_WEIGHTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        type=Path,
        help="retina checkpoint, biubug6 state dict or .onnx export (default: the committed checkpoint, trained on "
        "synthetic faces)",
    )
    p.add_argument("--preset", help="architecture the weights must match (checked)")
    p.add_argument(
        "--data-root", type=Path, help="WIDER FACE root (WIDER_val/images + ground truth); default: SynthFace val"
    )
    p.add_argument("--gt", type=Path, help="folder of the official ground-truth .mat files (or a folder above it)")
    p.add_argument(
        "--subset",
        metavar="FILE|images",
        help="evaluate only the images listed in FILE (one <event>/<name> per line), or 'images': those present "
        "under the images folder; labelled a subset (not comparable with whole-set numbers)",
    )
    p.add_argument("--protocol", default="original", choices=sorted(PROTOCOLS), help="test-time protocol")
    p.add_argument("--score-threshold", type=fraction, default=0.02, help="keep faces scoring above this, in [0, 1]")
    p.add_argument("--nms-iou", type=iou_threshold, default=0.4, help="NMS IoU threshold, in (0, 1]")
    add_limits(p)
    p.add_argument("--iou", type=iou_threshold, default=0.5, help="evaluation (matching) IoU threshold, in (0, 1]")
    add_arithmetic(p)
    p.add_argument("--device", type=device, default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        help="most images per network forward pass (images whose inputs have the same size are batched)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output folder (default: results/widerface_eval/<data>_<protocol>[_<weights>][_<settings>])",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the results of another evaluation in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from retina.api import Detector
    from retina.data.widerface import load_ground_truth
    from retina.errors import RetinaError
    from retina.eval.report import claim_out, format_table, iou_note, summarise_warnings
    from retina.eval.subset import read_subset_file
    from retina.evaluate import EvalSplit, default_out, evaluate_detector, evaluation_key, present_images

    weights = default_file(args.weights, DEFAULT_WEIGHTS)
    if not weights.is_file():
        raise RetinaError(f"weights file not found: {weights}")
    if note := iou_note(args.arithmetic, args.iou):
        print(note, file=sys.stderr)
    if args.data_root is None:
        from retina.synth.splits import default_split

        root = default_split("val")
        split = EvalSplit.from_root(root, args.gt, label="SynthFace val (synthetic data, not WIDER FACE)")
        name = "synthface_val"
    else:
        split = EvalSplit.from_root(args.data_root, args.gt)
        name = re.sub(r"\W+", "_", args.data_root.resolve().name) or "root"
    gt = load_ground_truth(split.gt)
    subset = None
    if args.subset is not None:
        subset = present_images(split.images, gt) if args.subset == "images" else read_subset_file(args.subset, gt)
    detector = Detector.from_file(weights, preset=args.preset, device=args.device, batch_size=args.batch_size)
    post = limits(args, dataclasses.replace(detector.post, score_threshold=args.score_threshold, nms_iou=args.nms_iou))
    # the data as paths, except SynthFace's (its cache may move; its label names it)
    data = split.label if args.data_root is None else f"{split.images.resolve()} ({split.gt.resolve()})"
    key = evaluation_key(weights, data, args.protocol, post, args.iou, args.arithmetic, subset)
    own = None if args.weights is None else weights
    out = args.out or default_out(name, args.protocol, own, post, args.iou, args.arithmetic, subset)
    if note := claim_out(out, key, args.overwrite):
        print(note, file=sys.stderr)
    print(f"writing to {out}")
    result, paths = evaluate_detector(
        detector, split, out, args.protocol, post, args.iou, progress=not args.no_progress,
        arithmetic=args.arithmetic, gt=gt, subset=subset, key=key, weights=str(weights),
    )  # fmt: skip
    for line in summarise_warnings(result.warnings):
        print(line, file=sys.stderr)
    print(f"data: {split.label}")
    print(format_table(result, subset.describe() if subset else None))
    print(f"results: {paths['json']}")
    return 0
