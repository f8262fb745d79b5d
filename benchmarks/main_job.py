"""Time the main job as a fresh clone runs it: SynthFace val generation, detection and evaluation.

    python benchmarks/main_job.py              # -> results/main_job/main_job.json (+ the job's own outputs)
    python benchmarks/main_job.py --publish    # -> reports/records/main_job/ and reports/records/widerface_eval/

Runs ``retina evaluate`` (what ``nox -s widerface_eval`` runs) in a subprocess with an empty SynthFace cache
(``RETINA_CACHE`` pointed at a new temporary folder), so the time covers generating the val split as on a
fresh machine. The record holds the wall time, the command, the APs and provenance; ``--publish`` also copies
the evaluation's ``results.json`` and ``pr_curves.csv`` into ``reports/records/widerface_eval/`` for the report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.publishing import add_allow_dirty, require_clean
from retina.results import REPO_ROOT, provenance, write_bytes, write_json

COMMAND = ["retina", "evaluate", "--no-progress"]
EVAL_NAME = "synthface_val_original"


def timed_main_job(out: Path) -> tuple[float, dict]:
    """(wall seconds, results.json) of ``retina evaluate`` with a cold cache, writing under ``out``."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "RETINA_CACHE": cache}
        start = time.perf_counter()
        done = subprocess.run([*COMMAND, "--out", str(out)], env=env, check=False)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"main_job: {' '.join(COMMAND)} failed with exit status {done.returncode}")
    return seconds, json.loads((out / "results.json").read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--publish", action="store_true", help="write into reports/records/ (committed) instead")
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.publish:
        require_clean(p, "benchmarks/main_job.py --publish", args.allow_dirty)
    prov = provenance(cache="cold: an empty RETINA_CACHE", load_avg_before=list(os.getloadavg()))
    records = REPO_ROOT / ("reports/records" if args.publish else "results")
    evaluation = REPO_ROOT / "results" / "widerface_eval" / EVAL_NAME
    seconds, results = timed_main_job(evaluation)
    record = {
        "benchmark": "main job from a cold cache",
        "command": "nox -s widerface_eval (= retina evaluate)",
        "seconds": round(seconds, 2),
        "covers": "SynthFace val generation (200 images), detection with the committed checkpoint, evaluation",
        "ap": {k: results[k] for k in ("easy", "medium", "hard", "hard_map_50_95")},
        "provenance": {**prov, "load_avg_after": list(os.getloadavg())},
    }
    path = write_json(records / "main_job" / "main_job.json", record)
    if args.publish:
        for name in ("results.json", "pr_curves.csv"):
            write_bytes(records / "widerface_eval" / EVAL_NAME / name, (evaluation / name).read_bytes())
    print(f"main job: {seconds:.1f} s from a cold cache -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
