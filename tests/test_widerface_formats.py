"""WIDER FACE file formats: round trips, the official files' structures, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat

from retina.data.widerface import (
    SETTINGS,
    BbxGtImage,
    GroundTruth,
    LabeledImage,
    ground_truth_from_boxes,
    load_ground_truth,
    read_prediction_file,
    read_predictions,
    read_retinaface_labels,
    read_wider_bbx_gt,
    write_ground_truth,
    write_predictions,
    write_retinaface_labels,
    write_wider_bbx_gt,
)
from retina.errors import DataFormatError, RetinaError
from tests.conftest import shared_file

TRAIN_LABELS = """\
# 0--Parade/0_Parade_marchingband_1_849.jpg
449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 515.031 412.83 0.0 485.174 425.893 0.0 538.357 431.491 0.0 0.82
# 0--Parade/0_Parade_Parade_0_904.jpg
361 98 263 339 424.143 251.656 0.0 547.134 232.571 0.0 494.121 325.875 0.0 453.83 368.286 1.0 561.978 342.839 0.0 0.89
78 221 7 8 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
# 1--Handshaking/empty.jpg
"""


def _small_gt() -> GroundTruth:
    return GroundTruth(
        events=("0--A", "1--B"),
        images=(("0--A", "a1"), ("0--A", "a2"), ("1--B", "b1")),
        boxes=(np.array([[10.0, 10, 20, 20], [50, 50, 4, 4]]), np.zeros((1, 4)), np.array([[0.0, 0, 300, 300]])),
        keep={"easy": (np.array([0]), np.array([], dtype=np.int64), np.array([0])),
              "medium": (np.array([0, 1]), np.array([], dtype=np.int64), np.array([0])),
              "hard": (np.array([0, 1]), np.array([], dtype=np.int64), np.array([0]))},
    )  # fmt: skip


def test_train_labels_parse_landmarks_flags_and_quality(tmp_path: Path) -> None:
    path = tmp_path / "label.txt"
    path.write_text(TRAIN_LABELS)
    images = read_retinaface_labels(path)
    assert [im.path for im in images] == [
        "0--Parade/0_Parade_marchingband_1_849.jpg",
        "0--Parade/0_Parade_Parade_0_904.jpg",
        "1--Handshaking/empty.jpg",
    ]
    first, second, empty = images
    np.testing.assert_array_equal(first.boxes, [[449, 330, 122, 149]])
    np.testing.assert_array_equal(first.landmarks[0, 1], [542.089, 376.442])
    assert second.landmark_flags[0, 3] == 1.0 and second.quality[0] == 0.89
    # a face without landmarks: -1 everywhere, and 19 numbers means no quality value
    assert np.all(second.landmarks[1] == -1) and np.all(second.landmark_flags[1] == -1)
    assert np.isnan(second.quality[1])
    assert empty.boxes.shape == (0, 4) and empty.landmarks.shape == (0, 5, 2)


def test_labels_round_trip_both_layouts(tmp_path: Path) -> None:
    src = tmp_path / "label.txt"
    src.write_text(TRAIN_LABELS)
    images = read_retinaface_labels(src)
    write_retinaface_labels(tmp_path / "train.txt", images)
    again = read_retinaface_labels(tmp_path / "train.txt")
    for a, b in zip(images, again, strict=True):
        assert a.path == b.path
        for name in ("boxes", "landmarks", "landmark_flags", "quality"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    write_retinaface_labels(tmp_path / "val.txt", images, with_landmarks=False)
    assert (tmp_path / "val.txt").read_text().splitlines()[1] == "449 330 122 149"
    val = read_retinaface_labels(tmp_path / "val.txt")
    np.testing.assert_array_equal(val[1].boxes, images[1].boxes)
    assert np.all(val[1].landmarks == -1) and np.all(np.isnan(val[1].quality))


def test_labeled_image_checks_shapes() -> None:
    with pytest.raises(ValueError, match="landmarks"):
        LabeledImage("a/b.jpg", np.zeros((2, 4)), np.zeros((1, 5, 2)), np.zeros((2, 5)), np.zeros(2))
    assert LabeledImage.from_boxes("a/b.jpg", np.ones((3, 4))).landmark_flags.shape == (3, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12 3 4 5\n", r"label.txt:1: face line before"),
        ("# a/b.jpg\n1 2 3\n", r"label.txt:2: expected 4"),
        ("# a/b.jpg\n1 2 x 4\n", r"label.txt:2: not a list of numbers"),
    ],
)
def test_bad_labels_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "label.txt").write_text(text)
    with pytest.raises(DataFormatError, match=message):
        read_retinaface_labels(tmp_path / "label.txt")


def test_val_label_file_matches_official_mat() -> None:
    images = read_retinaface_labels(shared_file("widerface/val/label.txt"))
    gt = load_ground_truth(shared_file("widerface/ground_truth"))
    assert len(images) == 3226
    by_key = {(im.path.split("/")[0], Path(im.path).stem): im.boxes for im in images}
    assert set(by_key) == set(gt.images)
    assert all(np.array_equal(by_key[key], boxes) for key, boxes in zip(gt.images, gt.boxes, strict=True))


def test_official_ground_truth_counts() -> None:
    gt = load_ground_truth(shared_file("widerface/ground_truth"))
    assert len(gt.events) == 61 and len(gt.images) == 3226 and gt.n_faces == 39708
    assert {s: gt.count(s) for s in SETTINGS} == {"easy": 7211, "medium": 13319, "hard": 31958}
    assert gt.images[0] == ("0--Parade", "0_Parade_marchingband_1_465")
    np.testing.assert_array_equal(gt.boxes[0][0], [345, 211, 4, 4])
    assert gt.keep["hard"][0][:3].tolist() == [30, 31, 124]  # 1-based 31 32 125 in the .mat
    assert gt.attributes["blur"][0].shape == (126,)


@pytest.mark.slow  # writes four compressed .mat files of the full val set (3-7 s)
def test_write_ground_truth_mirrors_official_structure(tmp_path: Path) -> None:
    official = shared_file("widerface/ground_truth")
    gt = load_ground_truth(official)
    write_ground_truth(tmp_path, gt)
    for name in ("face", "hard"):
        ours, theirs = loadmat(tmp_path / f"wider_{name}_val.mat"), loadmat(official / f"wider_{name}_val.mat")
        assert {k for k in ours if not k.startswith("__")} == {k for k in theirs if not k.startswith("__")}
        for key in (k for k in theirs if not k.startswith("__")):
            assert (ours[key].shape, ours[key].dtype) == (theirs[key].shape, theirs[key].dtype) == ((61, 1), object)
            for o_cell, t_cell in zip(ours[key].ravel(), theirs[key].ravel(), strict=True):
                assert (o_cell.shape, o_cell.dtype) == (t_cell.shape, t_cell.dtype), key
                for o, t in zip(o_cell.ravel(), t_cell.ravel(), strict=True):
                    assert o.dtype == t.dtype, key
                    if t.size:  # empty gt_list entries are (0, 0) or (0, 1) in the official file, as it happens
                        assert o.shape == t.shape and np.array_equal(o, t), key
    again = load_ground_truth(tmp_path)
    assert again.images == gt.images
    for setting in SETTINGS:
        assert all(np.array_equal(a, b) for a, b in zip(again.keep[setting], gt.keep[setting], strict=True))


def test_ground_truth_round_trip_small(tmp_path: Path) -> None:
    gt = _small_gt()
    write_ground_truth(tmp_path, gt)
    again = load_ground_truth(tmp_path)
    assert again.events == gt.events and again.images == gt.images
    assert all(np.array_equal(a, b) for a, b in zip(again.boxes, gt.boxes, strict=True))
    assert loadmat(tmp_path / "wider_face_val.mat")["face_bbx_list"][0, 0][0, 0].dtype == np.int32
    assert loadmat(tmp_path / "wider_hard_val.mat")["gt_list"][0, 0][0, 0].ravel().tolist() == [1, 2]


def test_ground_truth_rejects_inconsistency(tmp_path: Path) -> None:
    gt = _small_gt()
    with pytest.raises(ValueError, match="grouped"):
        GroundTruth(gt.events, (gt.images[2], gt.images[0], gt.images[1]), gt.boxes, gt.keep)
    with pytest.raises(ValueError, match="indexes past"):
        GroundTruth(gt.events, gt.images, gt.boxes, {"hard": (np.array([2]), np.array([0]), np.array([0]))})
    fractional = GroundTruth(gt.events, gt.images, (gt.boxes[0] + 0.5, *gt.boxes[1:]), gt.keep)
    with pytest.raises(DataFormatError, match="not integral"):
        write_ground_truth(tmp_path, fractional)
    with pytest.raises(RetinaError, match="not found"):
        load_ground_truth(tmp_path / "nowhere")


def test_bbx_gt_text_round_trip_and_from_boxes(tmp_path: Path) -> None:
    images = [
        BbxGtImage("0--A/a1.jpg", np.array([[10.0, 10, 20, 20], [50, 50, 4, 4]]), np.arange(12).reshape(2, 6)),
        BbxGtImage("0--A/a2.jpg", np.zeros((1, 4)), np.zeros((1, 6), dtype=np.int64)),  # face-less image
    ]
    write_wider_bbx_gt(tmp_path / "bbx_gt.txt", images)
    assert (tmp_path / "bbx_gt.txt").read_text().splitlines()[5:7] == ["0", "0 0 0 0 0 0 0 0 0 0"]
    again = read_wider_bbx_gt(tmp_path / "bbx_gt.txt")
    assert [im.path for im in again] == [im.path for im in images]
    np.testing.assert_array_equal(again[0].attributes, images[0].attributes)
    np.testing.assert_array_equal(again[1].boxes, np.zeros((1, 4)))
    gt = ground_truth_from_boxes([(im.path, im.boxes) for im in again], {"hard": [np.array([0, 1]), np.array([])]})
    assert gt.images == (("0--A", "a1"), ("0--A", "a2")) and gt.count("hard") == 2
    (tmp_path / "bad.txt").write_text("0--A/a1.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n")
    with pytest.raises(DataFormatError, match=r"bad.txt:4: file ends"):
        read_wider_bbx_gt(tmp_path / "bad.txt")


def test_predictions_round_trip_exact(tmp_path: Path) -> None:
    gt = _small_gt()
    rng = np.random.default_rng(0)
    written = {}
    for event, stem in gt.images:
        n = int(rng.integers(0, 5))
        boxes, scores = rng.uniform(0, 100, (n, 4)), rng.uniform(-3, 3, n)
        write_predictions(tmp_path, event, stem, boxes, scores)
        written[(event, stem)] = np.concatenate([boxes, scores[:, None]], axis=1)
    preds = read_predictions(tmp_path, gt)
    for key, det in zip(gt.images, preds.detections, strict=True):
        np.testing.assert_array_equal(det, written[key])  # exact: shortest repr round-trips float64
    assert preds.missing == ()
    assert (tmp_path / "0--A" / "a1.txt").read_text().splitlines()[0] == "a1"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a1\n2\n1 2 3 4 0.9\n", r"a1.txt:2: declares 2 boxes but 1"),
        ("a1\ntwo\n", r"a1.txt:2: expected a box count"),
        ("a1\n1\n1 2 3 4\n", r"a1.txt:3: expected 5 numbers"),
        ("a1\n2\n1 2 3 4 0.9\n1 2 nan 4 0.8\n", r"a1.txt:4: NaN"),
        ("a1\n2\n1 2 3 4 0.9\n1 2 3 inf 0.8\n", r"a1.txt:4: NaN or infinite value"),
        ("a1\n1\n1 2 3 4 x\n", r"a1.txt:3: not a list of numbers"),
        ("a1\n", r"a1.txt:2: expected the image name, then the box count"),
    ],
)
def test_bad_prediction_file_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path / "0--A" / "a1.txt", text)
    with pytest.raises(DataFormatError, match=message):
        read_prediction_file(path)


def test_prediction_file_keeps_negative_and_zero_sizes_with_warnings(tmp_path: Path) -> None:
    text = "a1\n4\n1 2 3 -4 0.8\n1 2 -3 4 0.7\n5 5 0 2.5 0.6\n1 1 0.2 0.3 0.5\n"
    path = _write(tmp_path / "0--A" / "a1.txt", text)
    warnings: list[str] = []
    det = read_prediction_file(path, warnings)
    np.testing.assert_array_equal(det[:, 2:4], [[3, -4], [-3, 4], [0, 2.5], [0.2, 0.3]])  # all kept, as written
    note = "evaluated as the official tool does"
    assert warnings == [
        f"{path}:3: negative width or height (3 x -4); {note}",
        f"{path}:4: negative width or height (-3 x 4); {note}",
        f"{path}:5: zero width or height (0 x 2.5); {note}",
    ]
    np.testing.assert_array_equal(read_prediction_file(path), det)  # warnings are optional
    gt = GroundTruth(("0--A",), (("0--A", "a1"),), (np.zeros((1, 4)),), {})
    submission = read_predictions(tmp_path, gt)
    assert submission.warnings == tuple(warnings) and submission.n_detections == 4


def test_label_lines_of_negative_size_are_counted(tmp_path: Path) -> None:
    lines = ["# 0--A/a1.jpg", "1 2 3 4", "1 2 -2 4", "# 0--A/a2.jpg", *(f"{k} 0 5 -{k}" for k in range(1, 5))]
    path = _write(tmp_path / "label.txt", "\n".join(lines) + "\n")
    warnings: list[str] = []
    images = read_retinaface_labels(path, warnings)
    assert [len(im.boxes) for im in images] == [2, 4]  # kept as written
    assert warnings == [
        f"{path}: 5 face line(s) of zero or negative width or height, kept as written: "
        "line 3 (-2 x 4), line 5 (5 x -1), line 6 (5 x -2) and 2 more"
    ]
    np.testing.assert_array_equal(read_retinaface_labels(path)[1].boxes[:, 3], [-1, -2, -3, -4])  # list optional


def test_prediction_file_accepts_zero_and_trailing_blank_lines(tmp_path: Path) -> None:
    assert read_prediction_file(_write(tmp_path / "x.txt", "x\n0\n")).shape == (0, 5)
    det = read_prediction_file(_write(tmp_path / "y.txt", "y.jpg\n1\n 1 2 3 4 1e-3 \n\n\n"))
    np.testing.assert_array_equal(det, [[1, 2, 3, 4, 0.001]])


def test_missing_and_unknown_prediction_files(tmp_path: Path) -> None:
    gt = _small_gt()
    write_predictions(tmp_path, "0--A", "a1", np.ones((1, 4)), np.ones(1))
    with pytest.raises(DataFormatError, match=r"missing for 2 of 3 images, e\.g\. 0--A/a2\.txt, 1--B/b1\.txt"):
        read_predictions(tmp_path, gt)
    preds = read_predictions(tmp_path, gt, missing_as_empty=True)
    assert preds.missing == (("0--A", "a2"), ("1--B", "b1")) and preds.n_detections == 1
    write_predictions(tmp_path, "9--Z", "zz", np.ones((1, 4)), np.ones(1))
    with pytest.raises(DataFormatError, match=r"1 prediction file\(s\) for images not in the ground truth.*9--Z/zz"):
        read_predictions(tmp_path, gt, missing_as_empty=True)
    with pytest.raises(RetinaError, match="prediction folder not found"):
        read_predictions(tmp_path / "nope", gt)
