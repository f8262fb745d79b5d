"""``retina widerface-eval``: evaluate a submission folder with the official WIDER FACE protocol."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from retina.commands.args import add_arithmetic, iou_threshold, non_negative_int, positive_int
from retina.errors import RetinaError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="DIR", help="predictions, <DIR>/<event>/<image>.txt")
    parser.add_argument(
        "--gt",
        required=True,
        metavar="DIR",
        help="folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat, or a WIDER FACE root or "
        "eval_tools folder holding it (ground_truth/, eval_tools/ground_truth/ or wider_face_split/)",
    )
    parser.add_argument(
        "--iou", type=iou_threshold, default=0.5, help="IoU threshold of the per-setting APs (default 0.5)"
    )
    parser.add_argument("--out", metavar="DIR", help="write results.json, pr_curves.csv and pr_curves.png here")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of another evaluation in --out")
    parser.add_argument(
        "--missing-as-empty",
        action="store_true",
        help="count images without a prediction file as images without detections (else: error)",
    )
    parser.add_argument(
        "--subset",
        metavar="FILE|pred",
        help="evaluate only the images listed in FILE (one <event>/<name> per line), or 'pred': those with a "
        "prediction file; labelled a subset (not comparable with whole-set numbers)",
    )
    parser.add_argument(
        "--bootstrap",
        type=positive_int,
        metavar="N",
        help="also an image-bootstrap 95%% interval of each AP from N draws (e.g. 1000)",
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the bootstrap draws")
    add_arithmetic(parser)


def run(args: argparse.Namespace) -> int:
    from retina.data.widerface import load_ground_truth, prediction_files, read_predictions
    from retina.eval import bootstrap
    from retina.eval.report import claim_out, format_table, iou_note, summarise_warnings, write_results
    from retina.eval.subset import from_keys, names_sha256, read_subset_file
    from retina.eval.widerface import evaluate
    from retina.evaluate import find_ground_truth

    if note := iou_note(args.arithmetic, args.iou):
        print(note, file=sys.stderr)
    start = time.perf_counter()
    gt_dir = find_ground_truth(args.gt)
    gt = full = load_ground_truth(gt_dir)
    subset = None
    if args.subset == "pred":
        subset = from_keys(prediction_files(args.pred) & set(full.index), full, "the images with a prediction file")
    elif args.subset is not None:
        subset = read_subset_file(args.subset, full)
    if subset is not None:
        gt = subset.restrict(full)
    key = {"predictions": str(Path(args.pred).resolve()), "ground_truth": str(gt_dir.resolve()), "iou": args.iou,
           "arithmetic": args.arithmetic, "missing_as_empty": args.missing_as_empty,
           "subset": subset.sha256 if subset else None}  # fmt: skip
    if args.out and (note := claim_out(args.out, key, args.overwrite)):
        print(note, file=sys.stderr)
    predictions = read_predictions(args.pred, gt, missing_as_empty=args.missing_as_empty, outside=full.index)
    read_s = time.perf_counter() - start
    try:
        result = evaluate(predictions, gt, iou=args.iou, arithmetic=args.arithmetic)
        intervals = None
        if args.bootstrap:
            intervals = bootstrap.bootstrap(predictions, gt, args.bootstrap, args.seed, iou=args.iou,
                                            arithmetic=args.arithmetic)  # fmt: skip
    except ValueError as exc:  # bad values in the predictions or ground truth
        raise RetinaError(str(exc)) from exc
    eval_s = time.perf_counter() - start - read_s
    if predictions.missing:
        print(f"note: {len(predictions.missing)} images had no prediction file (counted as empty)", file=sys.stderr)
    for line in summarise_warnings(result.warnings):
        print(line, file=sys.stderr)
    print(format_table(result, subset.describe() if subset else None, intervals))
    if intervals:
        print(f"bootstrap: {args.bootstrap} draws of the images (seed {args.seed}), 95% percentile intervals")
    if args.out:
        sections = {"images_sha256": names_sha256(gt.images), "evaluation_key": key,
                    **({"subset": subset.record()} if subset else {})}  # fmt: skip
        if intervals:
            ap = {s: i.to_dict() for s, i in intervals.items()}
            sections["bootstrap"] = {**bootstrap.record(args.bootstrap, args.seed, 0.95), "ap": ap}
        timings = {"read": round(read_s, 3), "evaluate": round(eval_s, 3)}
        paths = write_results(args.out, result, args.pred, gt_dir, sections=sections, timings_s=timings)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0
