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


# --- the RetinaFace row aligns with the detector's landmarks, in their order -------------------------------

TEMPLATE = np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]])


def _tiny_set(folder) -> tuple[ex.VerifySet, dict[bytes, tuple[np.ndarray, np.ndarray]]]:
    """Six textured images, each with one face's true box and landmarks (at other places and scales), 20 pairs
    in 10 folds; and what a perfect detector finds in each image: a decoy face in a corner, scoring higher, then
    the true face (nearest the centre)."""
    import cv2

    from retina.images import read_image

    rng = np.random.default_rng(0)
    faces, found = [], {}
    for k in range(6):
        image = cv2.GaussianBlur(rng.integers(0, 256, (150, 190, 3), dtype=np.uint8), (5, 5), 1.5)
        scale, shift = 0.6 + 0.1 * k, np.array([30.0 + 4 * k, 20.0 + 3 * k])
        marks = np.round((TEMPLATE * scale + shift) * 4) / 4  # exact in float32, as detections are
        box = np.array([*(shift + 20 * scale), *(shift + 100 * scale)])
        path = folder / f"{k}.png"
        cv2.imwrite(str(path), image)
        faces.append(ex.Face(path, box, marks))
        decoy = (np.array([0.0, 0, 20, 20]), TEMPLATE * 0.15)
        found[read_image(path).tobytes()] = (np.stack([decoy[0], box]), np.stack([decoy[1], marks]))
    left, right = np.arange(20) % 6, (np.arange(20) * 5 + 1) % 6
    vset = ex.VerifySet("tiny", "tiny test set", True, tuple(faces), left, right, np.arange(20) % 2 == 0,
                        np.arange(20) // 2)  # fmt: skip
    return vset, found


class _PerfectDetector:
    """Stands in for ``Detector.from_checkpoint``: returns the true faces of each image (see ``_tiny_set``)."""

    def __init__(self, found):
        self.found = found

    def __call__(self, image, protocol, score_threshold):
        from retina.api import Detections

        boxes, marks = self.found[image.tobytes()]
        return Detections(boxes.astype(np.float32), np.array([0.99, 0.9], np.float32), marks.astype(np.float32))


def test_retinaface_row_with_true_landmarks_equals_the_ground_truth_row(tmp_path, monkeypatch):
    import argparse

    from retina.api import Detector

    vset, found = _tiny_set(tmp_path)
    monkeypatch.setattr(Detector, "from_checkpoint", classmethod(lambda cls, path: _PerfectDetector(found)))
    rows, info = ex.sources(argparse.Namespace(mtcnn_weights=None, weights=None))
    assert list(rows) == ["none", "RetinaFace"] and info["RetinaFace"]["score_threshold"] == 0.5
    detected, fallbacks = ex.aligned_crops(vset, rows["RetinaFace"], False, "RetinaFace")
    rows["ground truth"] = lambda image, face: (ex.align_face(image, face.landmarks, ex.CROP), False)
    truth, _ = ex.aligned_crops(vset, rows["ground truth"], False, "ground truth")
    assert fallbacks == 0 and np.array_equal(detected, truth)
    # the crops put each face's landmarks on the ArcFace template: a reordering would not
    none, _ = ex.aligned_crops(vset, rows["none"], False, "none")
    assert not np.array_equal(none, truth)

    # ... and so the whole experiment gives the two rows the same scores
    monkeypatch.setattr(ex, "dataset", lambda args: vset)
    embed = lambda crops: crops.reshape(len(crops), 8, 14, 8, 14, 3).mean(axis=(2, 4)).reshape(len(crops), -1)  # noqa: E731
    monkeypatch.setattr(ex, "own_embedder", lambda path: (embed, {"kind": "test"}))
    args = argparse.Namespace(mtcnn_weights=None, weights=None, onnx=None, embedder=None, no_progress=True,
                              lfw_pairs=None, lfw_images=None)  # fmt: skip
    record = ex.run(args)
    rf, gt = record["rows"]["RetinaFace"], record["rows"]["ground truth"]
    assert rf["fold_accuracies"] == gt["fold_accuracies"] and rf["roc"] == gt["roc"] and rf["fallbacks"] == 0
    assert gt["vs_retinaface"]["mean"] == 0.0
