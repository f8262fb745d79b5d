import json

import pytest

from retina.build import build_detector
from retina.checkpoint import save_checkpoint
from retina.cli import main
from retina.config import preset
from tests.toy_faces import make_toy_split


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_split(tmp_path_factory.mktemp("toy"), n=6)


def test_evaluate_writes_submission_and_results(toy, tmp_path):
    cfg = preset("mobilenet0.25")
    weights = save_checkpoint(tmp_path / "w.pth", build_detector(cfg), cfg)
    out = tmp_path / "eval"
    args = ["evaluate", "--weights", str(weights), "--data-root", str(toy), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    record = json.loads((out / "results.json").read_text())
    assert {"easy", "medium", "hard", "hard_map_50_95"} <= set(record)
    assert 0.0 <= record["hard"] <= 1.0
    assert record["provenance"]["test_protocol"] == "original"
    assert len(list((out / "predictions" / "0--Toy").glob("*.txt"))) == 6
    assert (out / "pr_curves.png").stat().st_size > 0


def test_evaluate_reports_missing_inputs(tmp_path, capsys):
    assert main(["evaluate", "--weights", str(tmp_path / "nope.pth"), "--data-root", str(tmp_path)]) == 2
    assert "weights file not found" in capsys.readouterr().err
