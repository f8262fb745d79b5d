import json

import pytest

from retina.api import Detector
from retina.build import build_detector
from retina.checkpoint import save_checkpoint
from retina.cli import main
from retina.config import preset
from tests.toy_faces import make_toy_split


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_split(tmp_path_factory.mktemp("toy"), n=6)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    cfg = preset("mobilenet0.25")
    return save_checkpoint(tmp_path_factory.mktemp("w") / "w.pth", build_detector(cfg), cfg)


def test_evaluate_writes_submission_and_results(toy, weights, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["evaluate", "--weights", str(weights), "--data-root", str(toy), "--out", str(out), "--no-progress"]
    assert main([*args, "--arithmetic", "float64"]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["arithmetic"] == "float64" and record["provenance"]["test_protocol"] == "original"
    assert len(list((out / "predictions" / "0--Toy").glob("*.txt"))) == 6
    assert (out / "pr_curves.png").stat().st_size > 0
    # the written submission, evaluated on its own, gives the same numbers: the APs are those of the files
    again = tmp_path / "again"
    gt, pred = str(toy / "ground_truth"), str(out / "predictions")
    assert main(["widerface-eval", "--gt", gt, "--pred", pred, "--arithmetic", "float64", "--out", str(again)]) == 0
    alone = json.loads((again / "results.json").read_text())
    for key in ("easy", "medium", "hard", "hard_map_50_95", "counts"):
        assert record[key] == alone[key], key
    capsys.readouterr()


def test_batch_size_sets_the_network_batch(weights, tmp_path, monkeypatch):
    toy = make_toy_split(tmp_path / "toy", n=10)  # ten images of one size: more than the default batch of 8
    seen = []
    forward = Detector.forward

    def counting(self, x):
        seen.append(x.shape[0])
        return forward(self, x)

    monkeypatch.setattr(Detector, "forward", counting)
    out = tmp_path / "eval"
    args = ["evaluate", "--weights", str(weights), "--data-root", str(toy), "--out", str(out), "--no-progress"]
    assert main([*args, "--batch-size", "10"]) == 0
    assert seen == [10]
    assert json.loads((out / "results.json").read_text())["provenance"]["batch_size"] == 10
    seen.clear()
    assert main([*args, "--batch-size", "3"]) == 0
    assert seen == [3, 3, 3, 1]


def test_evaluate_reports_missing_inputs(tmp_path, capsys):
    assert main(["evaluate", "--weights", str(tmp_path / "nope.pth"), "--data-root", str(tmp_path)]) == 2
    assert "weights file not found" in capsys.readouterr().err


def test_arithmetic_names_match_the_evaluator():
    from retina.commands.args import ARITHMETICS
    from retina.eval.widerface import ARITHMETICS as EVALUATOR

    assert ARITHMETICS == EVALUATOR
