"""``retina widerface-eval``: evaluate a submission folder with the official WIDER FACE protocol."""

from __future__ import annotations

import argparse
import sys
import time

from retina.commands.args import add_arithmetic, iou_threshold
from retina.errors import RetinaError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="DIR", help="predictions, <DIR>/<event>/<image>.txt")
    parser.add_argument(
        "--gt", required=True, metavar="DIR", help="folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat"
    )
    parser.add_argument(
        "--iou", type=iou_threshold, default=0.5, help="IoU threshold of the per-setting APs (default 0.5)"
    )
    parser.add_argument("--out", metavar="DIR", help="write results.json, pr_curves.csv and pr_curves.png here")
    parser.add_argument(
        "--missing-as-empty",
        action="store_true",
        help="count images without a prediction file as images without detections (else: error)",
    )
    add_arithmetic(parser)


def run(args: argparse.Namespace) -> int:
    from retina.data.widerface import load_ground_truth, read_predictions
    from retina.eval.report import format_table, iou_note, summarise_warnings, write_results
    from retina.eval.widerface import evaluate

    if note := iou_note(args.arithmetic, args.iou):
        print(note, file=sys.stderr)
    start = time.perf_counter()
    gt = load_ground_truth(args.gt)
    predictions = read_predictions(args.pred, gt, missing_as_empty=args.missing_as_empty)
    read_s = time.perf_counter() - start
    try:
        result = evaluate(predictions, gt, iou=args.iou, arithmetic=args.arithmetic)
    except ValueError as exc:  # bad values in the predictions or ground truth
        raise RetinaError(str(exc)) from exc
    eval_s = time.perf_counter() - start - read_s
    if predictions.missing:
        print(f"note: {len(predictions.missing)} images had no prediction file (counted as empty)", file=sys.stderr)
    for line in summarise_warnings(result.warnings):
        print(line, file=sys.stderr)
    print(format_table(result))
    if args.out:
        paths = write_results(
            args.out, result, args.pred, args.gt, timings_s={"read": round(read_s, 3), "evaluate": round(eval_s, 3)}
        )
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
