"""``retina compare RESULTS_A RESULTS_B``: two evaluations of the same images side by side.

Each argument is an evaluation's folder (or its ``results.json``) as ``retina evaluate`` or ``retina
widerface-eval --out`` writes it. Printed per setting: both APs and B - A; with ``--bootstrap N``, the
paired image-bootstrap interval of B - A (:mod:`retina.eval.bootstrap`), computed from the two prediction
folders the results name, after checking that they still give the recorded APs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from retina.commands.args import non_negative_int, output_file, positive_int
from retina.errors import RetinaError

SETTINGS = ("easy", "medium", "hard")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_a", type=Path, metavar="RESULTS_A", help="an evaluation folder or its results.json")
    p.add_argument("results_b", type=Path, metavar="RESULTS_B", help="another evaluation of the same images")
    p.add_argument(
        "--bootstrap",
        type=positive_int,
        metavar="N",
        help="paired image bootstrap of B - A with N draws (e.g. 1000): a 95%% interval per setting",
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the bootstrap draws")
    p.add_argument("--out", type=output_file, help="also write the comparison as JSON to this file")


def read_results(path: Path) -> tuple[Path, dict[str, Any]]:
    """(results.json path, its record) of an evaluation folder or file."""
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise RetinaError(f"{path}: no results.json (give an evaluation folder or its results.json)")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RetinaError(f"{file}: not an evaluation's results.json ({exc})") from None
    missing = [k for k in (*SETTINGS, "iou", "arithmetic", "counts", "predictions", "ground_truth") if k not in record]
    if not isinstance(record, dict) or missing:
        raise RetinaError(f"{file}: not an evaluation's results.json (no {', '.join(missing)})")
    return file, record


def check_comparable(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Same IoU, arithmetic and images (by the image list's hash when both record it), else an error."""
    for field in ("iou", "arithmetic"):
        if a[field] != b[field]:
            raise RetinaError(f"the evaluations differ in {field} ({a[field]} vs {b[field]}): not comparable")
    same = (
        a["images_sha256"] == b["images_sha256"]
        if "images_sha256" in a and "images_sha256" in b
        else a["counts"]["images"] == b["counts"]["images"] and a["ground_truth"] == b["ground_truth"]
    )
    if not same:
        raise RetinaError(
            f"the evaluations are of other images ({a['counts']['images']} and {b['counts']['images']} images"
            f"{'' if 'images_sha256' in a else ', or another ground truth'}): compare evaluations of the same images"
        )


def name(record: dict[str, Any]) -> str:
    weights = record.get("provenance", {}).get("weights")
    return f"weights {Path(weights).name}" if weights else f"predictions {record['predictions']}"


def paired(a: dict[str, Any], b: dict[str, Any], n: int, seed: int) -> dict[str, Any]:
    """The paired bootstrap of B - A from the prediction folders the records name (checked against their APs)."""
    from retina.data.widerface import load_ground_truth, read_predictions
    from retina.eval import bootstrap
    from retina.eval.subset import from_keys

    full = load_ground_truth(a["ground_truth"])
    gt = full
    if "subset" in a:
        keys = [tuple(name.split("/", 1)) for name in a["subset"]["list"]]
        gt = from_keys(keys, full, a["subset"]["source"]).restrict(full)
    preds = [read_predictions(r["predictions"], gt, missing_as_empty=True, outside=full.index) for r in (a, b)]
    out = bootstrap.paired_bootstrap(*preds, gt, n, seed, iou=a["iou"], arithmetic=a["arithmetic"])
    for label, record in (("a", a), ("b", b)):
        for s in SETTINGS:
            if out[s][label].estimate != record[s]:
                raise RetinaError(
                    f"{record['predictions']} now gives {s} AP {out[s][label].estimate:.6f}, not the recorded "
                    f"{record[s]:.6f}: the predictions changed since the evaluation; evaluate them again"
                )
    return out


def run(args: argparse.Namespace) -> int:
    from retina.eval import bootstrap
    from retina.results import provenance, write_json

    (file_a, a), (file_b, b) = read_results(args.results_a), read_results(args.results_b)
    check_comparable(a, b)
    intervals = paired(a, b, args.bootstrap, args.seed) if args.bootstrap else None
    print(f"A: {file_a} ({name(a)})")
    print(f"B: {file_b} ({name(b)})")
    subset = a.get("subset")
    print(f"{a['counts']['images']} images, IoU {a['iou']:g}, {a['arithmetic']} arithmetic" +
          (f"; SUBSET of {subset['of']} images ({subset['source']}); {subset['note']}" if subset else ""))  # fmt: skip
    print(f"{'setting':<8} {'A':>8} {'B':>8} {'B - A':>8}" + ("  95% interval of B - A" if intervals else ""))
    rows = {}
    for s in SETTINGS:
        row = {"a": a[s], "b": b[s], "difference": b[s] - a[s]}
        line = f"{s:<8} {a[s]:>8.4f} {b[s]:>8.4f} {b[s] - a[s]:>+8.4f}"
        if intervals:
            diff = intervals[s]["difference"]
            row["bootstrap"] = {k: v.to_dict() for k, v in intervals[s].items()}
            line += f"  [{diff.low:+.4f}, {diff.high:+.4f}]"
        rows[s] = row
        print(line)
    if intervals:
        print(f"paired bootstrap: {args.bootstrap} draws of the images (seed {args.seed}), the same draws for A and B")
    if args.out:
        record = {"a": str(file_a), "b": str(file_b), "iou": a["iou"], "arithmetic": a["arithmetic"],
                  "images": a["counts"]["images"], "subset": subset, "settings": rows,
                  "bootstrap": bootstrap.record(args.bootstrap, args.seed, 0.95) if intervals else None,
                  "provenance": provenance()}  # fmt: skip
        print(f"wrote {write_json(args.out, record)}")
    return 0
