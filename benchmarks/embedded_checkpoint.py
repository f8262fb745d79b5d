"""Package a finished SynthFace training run as the suite's committed checkpoint, with its record.

    retina train --preset mobilenet0.25 --recipe synth-cpu --out runs/mobilenet0.25_synthface
    python benchmarks/embedded_checkpoint.py --run runs/mobilenet0.25_synthface

Writes ``retina/weights/mobilenet0.25_synthface.pth`` (weights, config and provenance; the optimiser state is
dropped) and ``retina/weights/mobilenet0.25_synthface.json``: the training record (command, configs, wall time,
machine), and the AP of the checkpoint on the SynthFace val split (synthetic data) measured here, which the CI
regression test (tests/test_regression_synthface.py) reproduces.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from retina.api import Detector
from retina.build import build_detector
from retina.checkpoint import load_weights, read_checkpoint, save_checkpoint
from retina.data.synth import default_split
from retina.evaluate import EvalSplit, evaluate_detector
from retina.results import REPO_ROOT, provenance, write_json

WEIGHTS_DIR = REPO_ROOT / "retina" / "weights"
NAME = "mobilenet0.25_synthface"
PROTOCOL = "original"


def synth_identity(split_dir: Path) -> dict:
    """What identifies a SynthFace split: its cache folder name (version, preset, config hash) and seed."""
    info = json.loads((split_dir / "synth.json").read_text())
    return {"folder": f"{split_dir.parent.name}/{split_dir.name}", **{k: info.get(k) for k in ("version", "seed")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `retina train` run folder")
    parser.add_argument("--command", default="nox -s train  (= retina train --preset mobilenet0.25 --recipe "
                        "synth-cpu --out runs/mobilenet0.25_synthface)")  # fmt: skip
    args = parser.parse_args()
    train_record = json.loads((args.run / "train_record.json").read_text())
    cfg, state, payload = read_checkpoint(args.run / "final.pth")
    model = build_detector(cfg)
    load_weights(model, state, str(args.run / "final.pth"))
    out = WEIGHTS_DIR / f"{NAME}.pth"
    extra = {"iteration": payload["extra"]["iteration"]}  # the optimiser state is not shipped
    save_checkpoint(out, model, cfg, provenance=payload["provenance"], extra=extra)
    val = default_split("val")
    split = EvalSplit.from_root(val, label="SynthFace val (synthetic data, not WIDER FACE)")
    with tempfile.TemporaryDirectory() as tmp:
        result, _ = evaluate_detector(Detector.from_checkpoint(out), split, tmp, PROTOCOL, progress=False)
    record = {
        "checkpoint": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "command": args.command,
        "train": train_record,
        "eval": {
            "data": split.label,
            "split": synth_identity(val),
            "test_protocol": PROTOCOL,
            "score_threshold": Detector.from_checkpoint(out).post.score_threshold,
            "nms_iou": Detector.from_checkpoint(out).post.nms_iou,
            "arithmetic": result.arithmetic,
            **result.ap,
            "hard_map_50_95": result.hard_map_50_95,
            "counts": dict(result.counts),
        },
        "provenance": provenance(),
    }
    write_json(WEIGHTS_DIR / f"{NAME}.json", record)
    print(json.dumps(record["eval"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
