"""Does this machine reproduce a published record? Rerun ``retina verification`` and compare, number by number.

    python benchmarks/cross_machine.py --mtcnn-weights DIR [--publish]

The published verification record (``reports/records/verification/synthface_id.json``) regenerates its data
(SynthFace-ID, from a seed) and measures every alignment row. Rerun here with the same committed weights, the
record's fold accuracies, mean accuracies and ROC points are compared with the rerun's: exact equality, or the
largest difference. The comparison names both machines and commits; ``--publish`` writes it into
``reports/records/reproducibility/`` (one file per machine). It is meaningful only while the committed
detector and ArcFace are those the record names (their sha256 are compared too).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.publishing import add_allow_dirty, require_clean
from benchmarks.timing import machine_tag
from retina.results import REPO_ROOT, provenance, write_json

PUBLISHED = REPO_ROOT / "reports" / "records" / "verification" / "synthface_id.json"


def compare(published: dict[str, Any], rerun: dict[str, Any]) -> dict[str, Any]:
    """Per row: whether fold accuracies, mean and ROC are bit-equal, and the largest absolute difference of each."""
    rows = {}
    for name, old in published["rows"].items():
        new = rerun["rows"].get(name)
        if new is None:
            rows[name] = {"rerun": "missing"}
            continue
        folds = np.abs(np.subtract(old["fold_accuracies"], new["fold_accuracies"]))
        roc = [np.abs(np.subtract(old["roc"][k], new["roc"][k])) for k in ("far", "tar")]
        rows[name] = {
            "accuracy_mean": [old["accuracy_mean"], new["accuracy_mean"]],
            "folds_equal": bool(folds.max() == 0),
            "folds_max_diff": float(folds.max()),
            "roc_points_differing": int(sum((d > 0).sum() for d in roc)),
            "roc_max_diff": float(max(d.max() for d in roc)),
        }
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mtcnn-weights", type=Path, help="MTCNN's pnet.pt, rnet.pt, onet.pt (the published row)")
    p.add_argument("--publish", action="store_true", help="write into reports/records/reproducibility/")
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.publish:
        require_clean(p, "benchmarks/cross_machine.py --publish", args.allow_dirty)
    published = json.loads(PUBLISHED.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        command = ["retina", "verification", "--no-progress", "--out", tmp]
        command += ["--mtcnn-weights", str(args.mtcnn_weights)] if args.mtcnn_weights else []
        prov = provenance(command=" ".join(command))  # before the run: the code that ran
        if subprocess.run(command, check=False).returncode != 0:
            print("cross_machine: the verification rerun failed", file=sys.stderr)
            return 2
        rerun = json.loads((Path(tmp) / "synthface_id" / "verification.json").read_text())
    same_weights = {
        k: published["detectors"]["RetinaFace"].get("sha256") == rerun["detectors"]["RetinaFace"].get("sha256")
        if k == "detector" else published["embedding"].get("sha256") == rerun["embedding"].get("sha256")
        for k in ("detector", "embedder")
    }  # fmt: skip
    pprov = published["provenance"]
    record = {
        "benchmark": "cross-machine reproduction of the published verification record",
        "published": {
            "record": str(PUBLISHED.relative_to(REPO_ROOT)),
            "machine": pprov["machine"]["processor"],
            "git": pprov["git"],
        },
        "same_weights": same_weights,
        "rerun_data_content": rerun.get("data_content"),
        "rows": compare(published, rerun),
        "provenance": prov,
    }
    folder = REPO_ROOT / ("reports/records" if args.publish else "results") / "reproducibility"
    path = write_json(folder / f"verification_{machine_tag()}.json", record)
    for name, row in record["rows"].items():
        print(f"{name}: {row}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
