"""Package a finished SynthFace training run as the suite's committed checkpoint, with its record.

    retina train --preset mobilenet0.25 --recipe synth-cpu --out runs/mobilenet0.25_synthface
    python benchmarks/embedded_checkpoint.py --run runs/mobilenet0.25_synthface

Writes into ``retina/weights/``, each file atomically:

- ``mobilenet0.25_synthface.pth``: weights, config, provenance and the run's history (commands run, commit at
  each save); the optimiser state is dropped;
- ``mobilenet0.25_synthface.metrics.jsonl``: the run's ``metrics.jsonl``, byte for byte (checked to end at
  the checkpoint's iteration);
- ``mobilenet0.25_synthface.json``: the training record (command, configs, data fingerprint, wall time,
  machine), the metrics file's sha256, and the AP of the checkpoint on the SynthFace val split (synthetic
  data) measured here, which the CI regression test (tests/test_regression_synthface.py) reproduces.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.publishing import add_allow_dirty, require_clean
from retina.api import Detector
from retina.build import build_detector
from retina.checkpoint import load_weights, read_checkpoint, save_checkpoint
from retina.errors import RetinaError
from retina.evaluate import EvalSplit, evaluate_detector
from retina.results import REPO_ROOT, file_id, file_sha256, history_commits, provenance, write_bytes, write_json
from retina.synth.splits import default_split

WEIGHTS_DIR = REPO_ROOT / "retina" / "weights"
NAME = "mobilenet0.25_synthface"
PROTOCOL = "original"
SHIPPED_EXTRA = ("iteration", "data_fingerprint", "history")  # from final.pth's extra; not the optimiser state


@dataclass(frozen=True)
class Packaged:
    """The files :func:`package_run` wrote, and the run's train record."""

    checkpoint: Path
    metrics: Path
    train_record: dict[str, Any]


def synth_identity(split_dir: Path) -> dict:
    """What identifies a SynthFace split: its cache folder name (version, preset, config hash) and seed."""
    info = json.loads((split_dir / "synth.json").read_text())
    return {"folder": f"{split_dir.parent.name}/{split_dir.name}", **{k: info.get(k) for k in ("version", "seed")}}


def finished_record(run: Path) -> dict[str, Any]:
    """The run's ``train_record.json``; a RetinaError unless the run finished and wrote ``final.pth``."""
    path = run / "train_record.json"
    if not path.is_file() or not (run / "final.pth").is_file():
        raise RetinaError(f"{run}: not a finished training run (no train_record.json or final.pth)")
    record = json.loads(path.read_text())
    if not record.get("finished"):
        raise RetinaError(f"{path}: the run did not finish ({record.get('completed_iterations')} iterations)")
    return record


def run_metrics(run: Path, iteration: int) -> bytes:
    """The bytes of ``run/metrics.jsonl``, checked: JSON lines, increasing iterations, the last = ``iteration``."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise RetinaError(f"{path}: not found (the training run's metrics)")
    data = path.read_bytes()
    steps = []
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        try:
            steps.append(int(json.loads(line)["iteration"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise RetinaError(f"{path}:{lineno}: not a metrics record (a JSON object with an iteration)") from None
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise RetinaError(f"{path}: iterations do not increase line by line")
    if not steps or steps[-1] != iteration:
        last = steps[-1] if steps else "none"
        raise RetinaError(
            f"{path}: the last record is iteration {last}, but the checkpoint is at iteration {iteration}"
        )
    return data


def package_run(run: Path, dest: Path = WEIGHTS_DIR, name: str = NAME) -> Packaged:
    """Write ``dest/name.pth`` (no optimiser state) and ``dest/name.metrics.jsonl`` from a finished run.

    Everything is read and checked before anything is written; each file is written atomically.
    """
    record = finished_record(run)
    cfg, state, payload = read_checkpoint(run / "final.pth")
    iteration = int(payload["extra"]["iteration"])
    recorded = record.get("completed_iterations")
    if iteration != recorded:
        raise RetinaError(f"{run}: final.pth is at iteration {iteration}, train_record.json at {recorded}")
    metrics = run_metrics(run, iteration)
    model = build_detector(cfg)
    load_weights(model, state, str(run / "final.pth"))
    extra = {k: payload["extra"][k] for k in SHIPPED_EXTRA if k in payload["extra"]}
    checkpoint = save_checkpoint(dest / f"{name}.pth", model, cfg, provenance=payload["provenance"], extra=extra)
    return Packaged(checkpoint, write_bytes(dest / f"{name}.metrics.jsonl", metrics), record)


def evaluate_record(packaged: Packaged, command: str, made_at: dict[str, Any]) -> dict[str, Any]:
    """The committed record: training record, metrics file, and the checkpoint's AP on SynthFace val.

    ``made_at``: the provenance of the tree before packaging (:func:`require_clean_run`).
    """
    val = default_split("val")
    split = EvalSplit.from_root(val, label="SynthFace val (synthetic data, not WIDER FACE)")
    detector = Detector.from_checkpoint(packaged.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        result, _ = evaluate_detector(detector, split, tmp, PROTOCOL, progress=False)
    return {
        "checkpoint": packaged.checkpoint.name,
        "sha256": file_sha256(packaged.checkpoint),
        "command": command,
        "metrics": file_id(packaged.metrics),
        "train": packaged.train_record,
        "eval": {
            "data": split.label,
            "split": synth_identity(val),
            "test_protocol": PROTOCOL,
            "score_threshold": detector.post.score_threshold,
            "nms_iou": detector.post.nms_iou,
            "arithmetic": result.arithmetic,
            **result.ap,
            "hard_map_50_95": result.hard_map_50_95,
            "counts": dict(result.counts),
        },
        "provenance": made_at,
    }


def require_clean_run(parser: argparse.ArgumentParser, what: str, allow_dirty: bool, run: Path) -> dict[str, Any]:
    """The rule of a committed checkpoint: packaged from a clean tree, trained at one clean commit.

    Returns the provenance of the tree as checked, for the record: once the packager has written the new weights
    the tree is dirty by its own doing.
    """
    try:
        made_by = {str(run): history_commits(finished_record(run))}
    except RetinaError as exc:
        parser.error(str(exc))
    require_clean(parser, what, allow_dirty, made_by)
    return provenance()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `retina train` run folder")
    parser.add_argument("--command", default="nox -s train  (= retina train --preset mobilenet0.25 --recipe "
                        "synth-cpu --out runs/mobilenet0.25_synthface)")  # fmt: skip
    add_allow_dirty(parser)
    args = parser.parse_args(argv)
    made_at = require_clean_run(
        parser, "benchmarks/embedded_checkpoint.py (writes retina/weights/)", args.allow_dirty, args.run
    )
    try:
        packaged = package_run(args.run)
    except RetinaError as exc:
        print(f"embedded_checkpoint: error: {exc}", file=sys.stderr)
        return 2
    record = evaluate_record(packaged, args.command, made_at)
    write_json(WEIGHTS_DIR / f"{NAME}.json", record)
    print(json.dumps(record["eval"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
