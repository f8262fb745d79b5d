"""``retina widerface-eval`` end to end on a tiny ground truth: outputs, and clean errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retina.cli import main
from retina.data.widerface import SETTINGS, GroundTruth, write_ground_truth, write_predictions


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    gt = GroundTruth(
        ("0--A", "1--B"),
        (("0--A", "a1"), ("0--A", "a2"), ("1--B", "b1")),
        (np.array([[0.0, 0, 9, 9], [100, 0, 9, 9]]), np.array([[10.0, 10, 30, 30]]), np.array([[0.0, 0, 49, 49]])),
        {s: (np.array([0, 1]), np.array([0]), np.array([0])) for s in SETTINGS},
    )
    write_ground_truth(tmp_path / "gt", gt)
    pred = tmp_path / "pred"
    write_predictions(pred, "0--A", "a1", np.array([[0, 0, 9, 9], [300, 300, 9, 9]]), np.array([0.9, 0.6]))
    write_predictions(pred, "0--A", "a2", np.array([[10, 10, 30, 30]]), np.array([0.8]))
    write_predictions(pred, "1--B", "b1", np.zeros((0, 4)), np.zeros(0))
    return tmp_path / "gt", pred


def test_cli_writes_results(tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = tiny
    assert main(["widerface-eval", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "easy" in printed and "hard mAP" in printed
    record = json.loads((tmp_path / "out" / "results.json").read_text())
    # by hand: TP (0.9), FP (0.6), TP (0.8) over 4 faces; precision envelope 1 up to recall 2/4
    assert record["easy"] == record["medium"] == record["hard"] == pytest.approx(0.5)
    assert set(record) >= {"easy", "medium", "hard", "hard_map_50_95", "counts", "protocol", "provenance"}
    assert record["counts"]["faces_hard"] == 4 and record["counts"]["predictions"] == 3
    assert record["predictions"] == str(pred.resolve()) and record["ground_truth"] == str(gt.resolve())
    csv_lines = (tmp_path / "out" / "pr_curves.csv").read_text().splitlines()
    assert csv_lines[0].startswith("arithmetic,setting,iou,threshold") and len(csv_lines) == 1 + 6 * 1000
    assert (tmp_path / "out" / "pr_curves.png").read_bytes()[:4] == b"\x89PNG"


def _run_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_cli_missing_files(tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = tiny
    (pred / "1--B" / "b1.txt").unlink()
    err = _run_error(["widerface-eval", "--pred", str(pred), "--gt", str(gt)], capsys)
    assert "missing for 1 of 3 images, e.g. 1--B/b1.txt" in err and "--missing-as-empty" in err
    assert main(["widerface-eval", "--pred", str(pred), "--gt", str(gt), "--missing-as-empty"]) == 0
    assert "1 images had no prediction file" in capsys.readouterr().err


def test_cli_malformed_line(tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = tiny
    (pred / "0--A" / "a2.txt").write_text("a2\n1\n10 10 30 nan 0.8\n")
    err = _run_error(["widerface-eval", "--pred", str(pred), "--gt", str(gt)], capsys)
    assert "a2.txt:3: NaN or infinite value" in err


def test_cli_unknown_image_and_bad_iou(tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = tiny
    write_predictions(pred, "0--A", "zz", np.ones((1, 4)), np.ones(1))
    assert "not in the ground truth" in _run_error(["widerface-eval", "--pred", str(pred), "--gt", str(gt)], capsys)
    err = _run_error(["widerface-eval", "--pred", str(pred), "--gt", str(gt), "--iou", "1.5"], capsys)
    assert "argument --iou: expected an IoU threshold in (0, 1], got '1.5'" in err
    err = _run_error(["widerface-eval", "--pred", str(pred), "--gt", str(pred)], capsys)
    assert "ground truth file not found" in err
