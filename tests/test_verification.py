"""The verification experiment end to end on the tiny SynthFace-ID preset, and its pieces by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retina.cli import main as cli_main
from retina.verify import experiment as ex


def test_nearest_centre_and_central_box():
    image = np.zeros((100, 200, 3), np.uint8)
    boxes = np.array([[0, 0, 20, 20], [90, 40, 110, 60], [150, 40, 170, 60]], float)
    assert ex.nearest_centre(boxes, image) == 1
    assert ex.central_box(image).tolist() == [77.5, 27.5, 122.5, 72.5]  # side 0.45 * 100 around (100, 50)


def test_detector_crop_falls_back_to_the_none_crop_when_nothing_is_found():
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    face = ex.Face(path=None, box=np.array([40.0, 20.0, 100.0, 90.0]))  # type: ignore[arg-type]
    crop, fell = ex.detector_crop(lambda img: (np.zeros((0, 4)), np.zeros((0, 5, 2))))(image, face)
    assert fell and np.array_equal(crop, ex.crop_none(image, face))


def test_compare_is_paired_per_fold():
    row = {"fold_accuracies": [0.9, 0.8, 0.7], "accuracy_std": 0.1}
    ref = {"fold_accuracies": [0.8, 0.7, 0.7], "accuracy_std": 0.05}
    c = ex.compare(row, ref)
    # differences 0.1, 0.1, 0: mean 1/15, sample std sqrt(1/300); |mean| 0.067 < fold std 0.1
    assert c["mean"] == pytest.approx(1 / 15) and c["std"] == pytest.approx((1 / 300) ** 0.5)
    assert not c["exceeds_fold_std"]


def test_compare_without_spread_gives_no_p_value_and_the_record_is_written(tmp_path):
    # equal per-fold differences (e.g. two rows that align every pair alike): the t-test is undefined; the job
    # once wrote p = nan and write_json(allow_nan=False) raised after all the work was done
    for row, ref in (([0.9, 0.8, 0.7], [0.8, 0.7, 0.6]), ([0.7, 0.6], [0.7, 0.6]), ([0.9], [0.8])):
        c = ex.compare({"fold_accuracies": row, "accuracy_std": 0.1}, {"fold_accuracies": ref, "accuracy_std": 0.1})
        assert c["p_paired"] is None and "do not vary" in c["note"] and c["std"] == pytest.approx(0.0, abs=1e-12)
        ex.write_json(tmp_path / "record.json", {"vs_retinaface": c})
    varied = ex.compare({"fold_accuracies": [0.9, 0.8, 0.7], "accuracy_std": 0.1},
                        {"fold_accuracies": [0.8, 0.7, 0.7], "accuracy_std": 0.1})  # fmt: skip
    # differences 0.1, 0.1, 0: t = (1/15) / (sqrt(1/300) / sqrt(3)) = 2, two-sided with 2 dof: p = 1 - 2 / sqrt(6)
    assert varied["p_paired"] == pytest.approx(1 - 2 / 6**0.5, rel=1e-9) and varied["note"] == ""


@pytest.mark.slow
def test_experiment_on_tiny_synthface_id(tmp_path, monkeypatch):
    from retina.models.face_embed import build_embedder
    from retina.recognition.train import save_embedder

    monkeypatch.setenv("RETINA_CACHE", str(tmp_path / "cache"))
    embedder = save_embedder(tmp_path / "emb.pth", build_embedder("mobilefacenet-s", seed=0))
    args = ["--synth-preset", "tiny", "--embedder", str(embedder), "--out", str(tmp_path / "out"), "--no-progress"]
    assert cli_main(["verification", *args]) == 0
    record = json.loads((tmp_path / "out" / "synthface_id" / "verification.json").read_text())
    assert list(record["rows"]) == ["none", "RetinaFace", "ground truth"]
    assert record["synthetic"] and record["pairs"] == 40 and record["mtcnn"].startswith("not run")
    for name, row in record["rows"].items():
        assert len(row["fold_accuracies"]) == 10 and 0.0 <= row["accuracy_mean"] <= 1.0, name
        assert row["roc"]["far"][-1] == 1.0 and row["roc"]["tar"][-1] == 1.0
    assert record["rows"]["ground truth"]["fallbacks"] == 0 and "vs_retinaface" in record["rows"]["none"]
    assert (tmp_path / "out" / "synthface_id" / "roc.png").is_file()
    assert [r["alignment"] for r in record["table"]][:3] == ["none", "RetinaFace", "ground truth"]
