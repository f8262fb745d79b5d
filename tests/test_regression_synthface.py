"""AP regression in CI: the committed SynthFace checkpoint reproduces its recorded AP on SynthFace val.

The record (``retina/weights/mobilenet0.25_synthface.json``) was written by
``benchmarks/embedded_checkpoint.py`` from the checkpoint itself; the SynthFace val split is regenerated
from its seed (deterministic), so the same code must give the same AP up to float noise across CPUs.
"""

import json
from pathlib import Path

import pytest

from retina.api import Detector
from retina.evaluate import EvalSplit, evaluate_detector
from retina.synth.splits import default_split

WEIGHTS = Path(__file__).resolve().parent.parent / "retina" / "weights"
TOLERANCE = 0.002


@pytest.mark.slow
def test_committed_checkpoint_reproduces_its_recorded_ap(tmp_path):
    record_path = WEIGHTS / "mobilenet0.25_synthface.json"
    assert record_path.is_file(), "the committed SynthFace checkpoint record is missing"
    record = json.loads(record_path.read_text())["eval"]
    val = default_split("val")
    assert f"{val.parent.name}/{val.name}" == record["split"]["folder"], "SynthFace val changed: re-record"
    detector = Detector.from_checkpoint(WEIGHTS / "mobilenet0.25_synthface.pth")
    split = EvalSplit.from_root(val, label=record["data"])
    result, _ = evaluate_detector(detector, split, tmp_path, record["test_protocol"], progress=False)
    for setting in ("easy", "medium", "hard"):
        assert result.ap[setting] == pytest.approx(record[setting], abs=TOLERANCE), setting
    assert result.hard_map_50_95 == pytest.approx(record["hard_map_50_95"], abs=TOLERANCE)
