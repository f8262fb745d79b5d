"""Evaluating part of a ground truth (issue 22 item 4): the protocol on the chosen images, labelled a subset."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from retina.cli import main
from retina.data.widerface import SETTINGS, GroundTruth, load_ground_truth, read_predictions, write_predictions
from retina.errors import DataFormatError, RetinaError
from retina.eval.subset import SUBSET_NOTE, from_keys, read_subset_file
from retina.eval.widerface import evaluate
from tests.toy_faces import make_toy_split

BOXES = (np.array([[0.0, 0, 10, 10]]), np.array([[20.0, 20, 10, 10], [40, 40, 8, 8]]), np.zeros((0, 4)),
         np.array([[5.0, 5, 30, 30]]))  # fmt: skip
KEEP = {s: (np.array([0]), np.array([0, 1]) if s == "hard" else np.array([0]), np.zeros(0, np.int64), np.array([0]))
        for s in SETTINGS}  # fmt: skip
GT = GroundTruth(
    ("0--A", "1--B", "2--C"), (("0--A", "a1"), ("0--A", "a2"), ("1--B", "b1"), ("2--C", "c1")), BOXES, KEEP
)


def test_restrict_keeps_the_chosen_images_with_their_faces_and_settings():
    sub = from_keys([("2--C", "c1"), ("0--A", "a2")], GT, "test")
    gt = sub.restrict(GT)
    assert gt.events == ("0--A", "2--C") and gt.images == (("0--A", "a2"), ("2--C", "c1"))
    np.testing.assert_array_equal(gt.boxes[0], GT.boxes[1])
    assert [k.tolist() for k in gt.keep["hard"]] == [[0, 1], [0]] and gt.count("easy") == 2
    assert sub.record()["images"] == 2 and sub.record()["of"] == 4 and sub.record()["note"] == SUBSET_NOTE
    assert sub.names == ["0--A/a2", "2--C/c1"]


def test_a_subset_evaluates_as_the_protocol_on_those_images_alone():
    dets = [np.array([[0.0, 0, 10, 10, 0.9]]), np.array([[20.0, 20, 10, 10, 0.7], [0, 0, 3, 3, 0.2]]),
            np.array([[1.0, 1, 5, 5, 0.5]]), np.array([[5.0, 5, 30, 30, 0.4], [60, 60, 9, 9, 0.95]])]  # fmt: skip
    sub = from_keys([("0--A", "a2"), ("2--C", "c1")], GT, "test")
    alone = GroundTruth(("0--A", "2--C"), (("0--A", "a2"), ("2--C", "c1")), (GT.boxes[1], GT.boxes[3]),
                        {s: (GT.keep[s][1], GT.keep[s][3]) for s in SETTINGS})  # fmt: skip
    for arithmetic in ("matlab", "float64"):
        got = evaluate([dets[1], dets[3]], sub.restrict(GT), arithmetic=arithmetic)
        assert got.ap == evaluate([dets[1], dets[3]], alone, arithmetic=arithmetic).ap
    assert evaluate([dets[1], dets[3]], sub.restrict(GT)).ap != evaluate(dets, GT).ap


def test_subset_file_names_file_and_line(tmp_path):
    good = tmp_path / "s.txt"
    good.write_text("# my images\n0--A/a2.jpg\n\n2--C/c1\n")
    assert read_subset_file(good, GT).images == (("0--A", "a2"), ("2--C", "c1"))
    for text, message in [("0--A/a2\n0--A/zz\n", "s.txt:2: '0--A/zz' is not an image"),
                          ("0--A/a2\n0--A/a2.PNG\n", "s.txt:2: '0--A/a2.PNG' is listed twice (first on line 1)"),
                          ("\n# none\n", "s.txt: no images listed")]:  # fmt: skip
        good.write_text(text)
        with pytest.raises(DataFormatError, match=re.escape(message)):
            read_subset_file(good, GT)
    with pytest.raises(RetinaError, match="subset file not found"):
        read_subset_file(tmp_path / "none.txt", GT)


def test_prediction_files_of_other_images_of_the_ground_truth_are_skipped(tmp_path):
    for event, stem in GT.images:
        write_predictions(tmp_path, event, stem, np.array([[0.0, 0, 5, 5]]), np.array([0.5]))
    sub = from_keys([("0--A", "a1")], GT, "test").restrict(GT)
    with pytest.raises(DataFormatError, match="3 prediction file"):
        read_predictions(tmp_path, sub)
    assert len(read_predictions(tmp_path, sub, outside=GT.index).detections) == 1


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_split(tmp_path_factory.mktemp("subset_toy"), n=5)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import torch

    from retina.build import build_detector
    from retina.checkpoint import save_checkpoint
    from retina.config import preset

    torch.manual_seed(0)
    cfg = preset("mobilenet0.25")
    return save_checkpoint(tmp_path_factory.mktemp("w") / "w.pth", build_detector(cfg), cfg)


def test_widerface_eval_subset_from_a_file_or_the_prediction_files(toy, tmp_path, capsys):
    gt = load_ground_truth(toy / "ground_truth")
    pred = tmp_path / "pred"
    rng = np.random.default_rng(0)
    for event, stem in gt.images[:3]:  # predictions for three of the five images
        write_predictions(pred, event, stem, rng.uniform(0, 40, (6, 4)), rng.uniform(0, 1, 6))
    base = ["widerface-eval", "--pred", str(pred), "--gt", str(toy)]  # the root: its ground_truth/ is found
    assert main(base) == 2 and "missing for 2 of 5 images" in capsys.readouterr().err
    assert main([*base, "--subset", "pred", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "SUBSET: 3 of 5 images (the images with a prediction file)" in out and "3 images" in out
    listed = tmp_path / "three.txt"
    listed.write_text("".join(f"{e}/{s}.jpg\n" for e, s in reversed(gt.images[:3])))
    assert main([*base, "--subset", str(listed), "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / x / "results.json").read_text()) for x in "ab")
    assert [a[s] for s in SETTINGS] == [b[s] for s in SETTINGS]
    assert a["subset"]["images"] == 3 and a["subset"]["of"] == 5 and a["subset"]["note"] == SUBSET_NOTE
    assert a["subset"]["sha256"] == b["subset"]["sha256"] == a["images_sha256"]
    # with --missing-as-empty on all five the numbers differ: the subset is not that
    assert main([*base, "--missing-as-empty", "--out", str(tmp_path / "c")]) == 0
    c = json.loads((tmp_path / "c" / "results.json").read_text())
    assert "subset" not in c and c["counts"]["images"] == 5 and c["images_sha256"] != a["images_sha256"]


def test_evaluate_the_images_present(toy, weights, tmp_path, capsys, monkeypatch):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(toy, root)
    (root / "images" / "0--Toy" / "toy_3.jpg").unlink()
    args = ["evaluate", "--weights", str(weights), "--data-root", str(root), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    assert "(--subset images evaluates the images present, as a subset)" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "present"), "--subset", "images"]) == 0
    assert "SUBSET: 4 of 5 images (the images present under" in capsys.readouterr().out
    record = json.loads((tmp_path / "present" / "results.json").read_text())
    assert record["counts"]["images"] == 4 and "0--Toy/toy_3" not in record["subset"]["list"]
    assert sorted(p.stem for p in (tmp_path / "present" / "predictions" / "0--Toy").iterdir()) == [
        "toy_0", "toy_1", "toy_2", "toy_4"]  # fmt: skip
    # the default folder names the subset, so it never lands on the whole set's folder
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--subset", "images"]) == 0
    (folder,) = (tmp_path / "results" / "widerface_eval").iterdir()
    assert folder.name.startswith("root_original_w-") and "_subset4-" in folder.name


def test_the_report_labels_a_subset_evaluation(tmp_path):
    from retina.report import report
    from tests.test_report import _evaluation, _target

    folder = _evaluation(tmp_path, "part", 0.6)
    record = json.loads((folder / "results.json").read_text())
    record["subset"] = {"images": 20, "of": 3226, "note": SUBSET_NOTE}
    (folder / "results.json").write_text(json.dumps(record))
    text, _, _ = report.build(_target(tmp_path))
    assert "| toy (synthetic) (SUBSET: 20 of 3226 images) |" in text
