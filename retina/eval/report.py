"""An evaluation's outputs: the printed table, ``results.json``, PR curves as CSV and PNG (atomic writes)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retina.errors import RetinaError
from retina.eval.bootstrap import Interval
from retina.eval.plots import pr_figure_png
from retina.eval.widerface import CHALLENGE_IOUS, THRESHOLDS, EvalResult
from retina.results import provenance, write_bytes, write_json, write_text


def results_record(result: EvalResult, predictions: str | os.PathLike[str], ground_truth: str | os.PathLike[str],
                   *, sections: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    """The ``results.json`` content: APs at the top level, then counts, protocol, ``sections`` (e.g. ``subset``,
    ``bootstrap``, ``evaluation_key``, ``images_sha256``) and provenance."""
    return {
        **result.ap,
        "hard_map_50_95": result.hard_map_50_95,
        "iou": result.iou,
        "arithmetic": result.arithmetic,
        "ap_float64": {s: c.ap for s, c in result.float64_curves.items()},
        "hard_ap_by_iou_float64": {f"{t:.2f}": result.challenge_hard_ap[t] for t in result.challenge_hard_ap},
        "counts": dict(result.counts),
        "warnings": list(result.warnings),
        "protocol": result.protocol,
        "predictions": str(Path(predictions).resolve()),
        "ground_truth": str(Path(ground_truth).resolve()),
        **(sections or {}),
        "provenance": provenance(**extra),
    }


def curves_csv(result: EvalResult) -> str:
    """One row per (arithmetic, setting, threshold): counts, precision (empty when NaN) and recall."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["arithmetic", "setting", "iou", "threshold", "proposals", "true_positives", "precision", "recall"])
    groups = [result.curves]
    if result.arithmetic != "float64":
        groups.append(result.float64_curves)
    for curves in groups:
        for setting, curve in curves.items():
            precision, recall = curve.precision, curve.recall
            for k, threshold in enumerate(THRESHOLDS):
                p = "" if precision[k] != precision[k] else repr(float(precision[k]))
                writer.writerow([curve.arithmetic, setting, curve.iou, repr(float(threshold)),
                                 int(curve.proposals[k]), int(curve.true_positives[k]), p,
                                 repr(float(recall[k]))])  # fmt: skip
    return out.getvalue()


def write_results(out_dir: str | os.PathLike[str], result: EvalResult, predictions: str | os.PathLike[str],
                  ground_truth: str | os.PathLike[str], *, sections: Mapping[str, Any] | None = None,
                  **extra: Any) -> dict[str, Path]:  # fmt: skip
    """Write ``results.json``, ``pr_curves.csv`` and ``pr_curves.png`` under ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    record = results_record(result, predictions, ground_truth, sections=sections, **extra)
    paths = {
        "json": write_json(out_dir / "results.json", record),
        "csv": write_text(out_dir / "pr_curves.csv", curves_csv(result)),
        "png": write_bytes(out_dir / "pr_curves.png", pr_figure_png(result.curves)),
    }
    return paths


def iou_note(arithmetic: str, iou: float) -> str | None:
    """The note to print when ``--iou`` cannot act as given (None when it does)."""
    if arithmetic == "matlab" and iou != 0.5:
        return (
            "note: in matlab arithmetic the overlap is an integer (an int32 division), so any --iou acts as 0.5; "
            "use --arithmetic float64 for a real IoU threshold"
        )
    return None


def summarise_warnings(warnings: Sequence[str], limit: int = 5) -> list[str]:
    """The lines to print for ``warnings``: the first ``limit`` as ``warning: ...``, then how many more."""
    lines = [f"warning: {w}" for w in warnings[:limit]]
    if len(warnings) > limit:
        lines.append(
            f"warning: ... and {len(warnings) - limit} more ({len(warnings)} in all, every one in results.json)"
        )
    return lines


def format_table(result: EvalResult, subset: str | None = None, intervals: Mapping[str, Interval] | None = None) -> str:
    """The table the CLI prints; ``subset``: the subset's description (``Subset.describe``, a line); ``intervals``:
    each AP's bootstrap interval (a column)."""
    counts = result.counts
    lines = [
        f"WIDER FACE evaluation: IoU {result.iou:g}, {result.arithmetic} arithmetic; "
        f"{counts['images']} images, {counts['predictions']} predictions",
        *([subset] if subset else []),
        f"{'setting':<8} {'faces':>7} {'AP':>8} {'AP float64':>11}" + ("  bootstrap interval" if intervals else ""),
    ]
    for setting, curve in result.curves.items():
        row = f"{setting:<8} {curve.n_faces:>7} {curve.ap:>8.4f} {result.float64_curves[setting].ap:>11.4f}"
        if intervals:
            row += f"  [{intervals[setting].low:.4f}, {intervals[setting].high:.4f}]"
        lines.append(row)
    if result.hard_map_50_95 is not None:
        ious = f"{CHALLENGE_IOUS[0]:.2f}:0.05:{CHALLENGE_IOUS[-1]:.2f}"
        lines.append(f"hard mAP IoU {ious} (WIDER Challenge 2018, float64): {result.hard_map_50_95:.4f}")
    return "\n".join(lines)


def claim_out(out: str | os.PathLike[str], key: Mapping[str, Any], overwrite: bool = False) -> str | None:
    """Check that ``out`` may take the results of the evaluation ``key`` (``results.json``'s
    ``evaluation_key``): a folder without results, or with those of the same evaluation (rerun), or any with
    ``overwrite``. Else a :class:`RetinaError` names what differs. Returns the note to print when replacing."""
    path = Path(out) / "results.json"
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("evaluation_key")
    except (ValueError, AttributeError):  # not JSON, or not an object: not our results
        old = None
    if old == dict(key):
        return f"note: replacing the earlier results of this same evaluation in {out}"
    if overwrite:
        return f"note: --overwrite: replacing the results of another evaluation in {out}"
    differs = sorted(k for k in key if not isinstance(old, dict) or old.get(k) != key[k])
    what = f"other {', '.join(differs)}" if isinstance(old, dict) else "no record of what they evaluated"
    raise RetinaError(
        f"{out} holds the results of another evaluation ({what}); pass --overwrite to replace them, or another --out"
    )
