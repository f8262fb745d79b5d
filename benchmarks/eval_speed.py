"""Speed of the WIDER FACE evaluator on the full val set, against a per-image loop baseline.

Builds SYNTHETIC degraded predictions (``retina.eval.synthetic``) from the real val ground truth in
``../shared/data/widerface/ground_truth`` (or, when absent, from a SYNTHETIC ground truth made here, and
labelled so), writes them in the submission layout, then times each stage. The baseline is a per-image,
per-prediction, per-threshold loop with the structure of the popular Python port (numpy IoU row per
prediction, a 1000-threshold loop per image), written here, in float64 arithmetic, for one IoU threshold.

    python benchmarks/eval_speed.py [--repeats 3] [--baseline-stride 1] [--no-baseline]

Writes ``results/benchmarks/eval_speed.json`` and ``.csv`` (machine, settings, seconds per stage).
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

import numpy as np

from benchmarks.publishing import add_allow_dirty, require_clean
from retina.data.widerface import SETTINGS, GroundTruth, load_ground_truth, read_predictions, write_predictions
from retina.eval.synthetic import DegradeConfig, degraded_predictions
from retina.eval.widerface import evaluate, match_predictions, voc_ap
from retina.results import REPO_ROOT, provenance, write_json, write_text

SHARED_GT = REPO_ROOT.parent / "shared" / "data" / "widerface" / "ground_truth"


def synthetic_ground_truth(seed: int = 0, n_events: int = 61, n_images: int = 3226) -> GroundTruth:
    """A SYNTHETIC stand-in with WIDER-like statistics (face count and size spread), integral boxes."""
    rng = np.random.default_rng(seed)
    events = tuple(f"{e}--Synthetic" for e in range(n_events))
    owner = np.sort(rng.integers(0, n_events, n_images))
    images, boxes, keep = [], [], {s: [] for s in SETTINGS}
    for k, e in enumerate(owner):
        n = max(1, int(rng.lognormal(1.8, 1.1)))
        size = np.exp(rng.uniform(np.log(3), np.log(400), n))
        xy = rng.uniform(0, 1024 - size[:, None], (n, 2))
        b = np.round(np.column_stack([xy, size, size * rng.uniform(0.9, 1.4, n)]))
        images.append((events[e], f"synthetic_{k}"))
        boxes.append(b)
        for setting, min_size in zip(SETTINGS, (50, 25, 8), strict=True):
            keep[setting].append(np.flatnonzero(b[:, 2] >= min_size))
    return GroundTruth(events, tuple(images), tuple(boxes), {s: tuple(v) for s, v in keep.items()})


def baseline_one_iou(detections: list[np.ndarray], gt: GroundTruth, iou: float, stride: int) -> dict[str, float]:
    """The loop structure of the popular Python port, for every ``stride``-th image; returns its APs."""
    flat = np.concatenate([d[:, 4] for d in detections if len(d)])
    lo, hi = flat.min(), flat.max()
    chosen = range(0, len(gt.images), stride)
    aps = {}
    for setting in SETTINGS:
        totals = np.zeros((1000, 2))
        for k in chosen:
            dets, faces = detections[k], gt.boxes[k]
            if len(dets) == 0 or len(faces) == 0:
                continue
            dets = dets[np.argsort(-dets[:, 4], kind="stable")].copy()
            dets[:, 4] = (dets[:, 4] - lo) / (hi - lo)
            p = np.column_stack([dets[:, :2], dets[:, :2] + dets[:, 2:4]])
            f = np.column_stack([faces[:, :2], faces[:, :2] + faces[:, 2:4]])
            counts = np.zeros(len(faces), bool)
            counts[gt.keep[setting][k]] = True
            found = np.zeros(len(faces), bool)
            proposal, recall = np.ones(len(p), bool), np.zeros(len(p))
            for h in range(len(p)):
                w = np.minimum(f[:, 2], p[h, 2]) - np.maximum(f[:, 0], p[h, 0]) + 1
                hh = np.minimum(f[:, 3], p[h, 3]) - np.maximum(f[:, 1], p[h, 1]) + 1
                inter = w * hh
                o = inter / ((f[:, 2] - f[:, 0] + 1) * (f[:, 3] - f[:, 1] + 1) + (p[h, 2] - p[h, 0] + 1) * (
                    p[h, 3] - p[h, 1] + 1) - inter)  # fmt: skip
                o[(w <= 0) | (hh <= 0)] = 0
                j = int(np.argmax(o))
                if o[j] >= iou:
                    if not counts[j]:
                        proposal[h] = False
                    else:
                        found[j] = True
                recall[h] = found.sum()
            for t in range(1000):
                r = np.flatnonzero(dets[:, 4] >= 1 - (t + 1) / 1000)
                if len(r):
                    totals[t] += (proposal[: r[-1] + 1].sum(), recall[r[-1]])
        n_faces = sum(len(gt.keep[setting][k]) for k in chosen)
        with np.errstate(invalid="ignore", divide="ignore"):
            aps[setting] = voc_ap(totals[:, 1] / n_faces, totals[:, 1] / totals[:, 0])
    return aps


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-stride", type=int, default=1, help="time the baseline on every N-th image")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "benchmarks" / "eval_speed")
    parser.add_argument("--publish", action="store_true",
                        help="write reports/records/eval_speed/eval_speed.{json,csv} (committed); uses the "
                             "synthetic ground truth, so that any clone can rerun it")  # fmt: skip
    add_allow_dirty(parser)
    args = parser.parse_args(argv)
    if args.publish:
        require_clean(parser, "benchmarks/eval_speed.py --publish", args.allow_dirty)
        args.out = REPO_ROOT / "reports" / "records" / "eval_speed" / "eval_speed"

    stages: dict[str, list[float]] = {}
    start = time.perf_counter()
    if (SHARED_GT / "wider_face_val.mat").is_file() and not args.publish:
        gt, data = load_ground_truth(SHARED_GT), "WIDER FACE val ground truth (../shared), SYNTHETIC predictions"
        stages["load_ground_truth"], _ = timed(lambda: load_ground_truth(SHARED_GT), args.repeats)
    else:
        gt, data = synthetic_ground_truth(args.seed), "SYNTHETIC ground truth and SYNTHETIC predictions"
    cfg = DegradeConfig()
    detections = degraded_predictions(gt, seed=args.seed, cfg=cfg)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = list(zip(gt.images, detections, strict=True))
        stages["write_predictions"], _ = timed(
            lambda: [write_predictions(tmp, e, s, d[:, :4], d[:, 4]) for (e, s), d in pairs], 1
        )
        stages["read_predictions"], preds = timed(lambda: read_predictions(tmp, gt), args.repeats)
    for arithmetic in ("matlab", "float64"):
        stages[f"match_{arithmetic}"], _ = timed(
            lambda a=arithmetic: match_predictions(detections, gt, a), args.repeats
        )
    stages["evaluate_one_iou_float64"], _ = timed(
        lambda: evaluate(detections, gt, arithmetic="float64", challenge=False), args.repeats
    )
    stages["evaluate_all"], result = timed(lambda: evaluate(preds, gt), args.repeats)
    if not args.no_baseline:
        stride = args.baseline_stride
        t, baseline_ap = timed(lambda: baseline_one_iou(detections, gt, 0.5, stride), 1)
        stages["baseline_loop_one_iou" + ("" if stride == 1 else f"_x{stride}_extrapolated")] = [t[0] * stride]

    best = {name: min(times) for name, times in stages.items()}
    record = {
        "benchmark": "WIDER FACE evaluation speed",
        "data": data,
        "images": len(gt.images),
        "faces": gt.n_faces,
        "predictions": int(sum(len(d) for d in detections)),
        "degrade_config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "seed": args.seed,
        "repeats": args.repeats,
        "evaluate_all_covers": "matlab APs (3 settings) + float64 APs (3 settings) + hard AP at 10 IoUs",
        "seconds_best": best,
        "seconds_median": {name: statistics.median(times) for name, times in stages.items()},
        "ap_synthetic": {**result.ap, "hard_map_50_95": result.hard_map_50_95},
        "provenance": provenance(total_wall_s=round(time.perf_counter() - start, 3)),
    }
    baseline = next((v for k, v in best.items() if k.startswith("baseline")), None)
    if baseline is not None:
        if args.baseline_stride == 1:  # same arithmetic as ours in float64: the APs must agree
            record["baseline_ap_float64"] = baseline_ap
            record["ours_ap_float64"] = {s: c.ap for s, c in result.float64_curves.items()}
        record["speedup_vs_baseline_one_iou"] = {
            "evaluate_one_iou_float64": baseline / best["evaluate_one_iou_float64"],
            "evaluate_all": baseline / best["evaluate_all"],
        }
    write_json(args.out.with_suffix(".json"), record)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["stage", "seconds_best", "seconds_median", "repeats", "data", "predictions", "cpu"])
    for name, times in stages.items():
        writer.writerow([name, f"{min(times):.4f}", f"{statistics.median(times):.4f}", len(times), data,
                         record["predictions"], record["provenance"]["machine"]["processor"]])  # fmt: skip
    write_text(args.out.with_suffix(".csv"), table.getvalue())

    print(f"{data}: {len(gt.images)} images, {gt.n_faces} faces, {record['predictions']} predictions")
    print(f"{'stage':<40} {'best s':>9} {'median s':>9}")
    for name, times in stages.items():
        print(f"{name:<40} {min(times):>9.3f} {statistics.median(times):>9.3f}")
    for name, ratio in record.get("speedup_vs_baseline_one_iou", {}).items():
        print(f"speed-up of {name} over the loop baseline (one IoU, 3 settings): {ratio:.0f}x")
    print(f"wrote {args.out.with_suffix('.json')} and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
