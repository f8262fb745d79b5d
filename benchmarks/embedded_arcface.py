"""Package a finished SynthFace-ID ArcFace run as the suite's committed face-embedding checkpoint.

    nox -s train_arcface   (= python -m retina.recognition.train --out runs/arcface_synthface_id)
    python benchmarks/embedded_arcface.py --run runs/arcface_synthface_id

Writes into ``retina/weights/``, each file atomically: ``arcface_synthface_id.pth`` (the run's ``final.pth``:
the embedding network alone, its config and provenance), ``arcface_synthface_id.metrics.jsonl`` (the run's
metrics, byte for byte, checked to end at the last iteration) and ``arcface_synthface_id.json`` (the command,
the training record, the files' sha256). Its verification accuracy is measured by ``nox -s verification``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.embedded_checkpoint import WEIGHTS_DIR, finished_record, require_clean_run, run_metrics
from benchmarks.publishing import add_allow_dirty
from retina.errors import RetinaError
from retina.recognition.train import load_embedder
from retina.results import file_id, file_sha256, write_bytes, write_json

NAME = "arcface_synthface_id"
COMMAND = "nox -s train_arcface  (= python -m retina.recognition.train --out runs/arcface_synthface_id)"


def package(run: Path, made_at: dict) -> dict:
    """Check the finished run, write the checkpoint and metrics, return the record (``made_at``: its provenance)."""
    record = finished_record(run)
    load_embedder(run / "final.pth")  # a loadable embedding network, or a clear error
    metrics = run_metrics(run, int(record["completed_iterations"]))
    checkpoint = write_bytes(WEIGHTS_DIR / f"{NAME}.pth", (run / "final.pth").read_bytes())
    metrics_path = write_bytes(WEIGHTS_DIR / f"{NAME}.metrics.jsonl", metrics)
    return {
        "kind": "face embedding",
        "checkpoint": checkpoint.name,
        "sha256": file_sha256(checkpoint),
        "command": COMMAND,
        "metrics": file_id(metrics_path),
        "train": record,
        "provenance": made_at,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished train_id run folder")
    add_allow_dirty(parser)
    args = parser.parse_args(argv)
    made_at = require_clean_run(
        parser, "benchmarks/embedded_arcface.py (writes retina/weights/)", args.allow_dirty, args.run
    )
    try:
        record = package(args.run, made_at)
    except RetinaError as exc:
        print(f"embedded_arcface: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {write_json(WEIGHTS_DIR / f'{NAME}.json', record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
