"""benchmarks/anchor_coverage.py: size bins, anchor coverage, the training matcher's view, tracked augmentation
and the detection statistics, on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.anchor_coverage import (
    anchor_coverage,
    anchor_scores,
    augment_tracked,
    augmented_faces,
    batch_stats,
    bin_index,
    bin_labels,
    face_scores,
    face_sizes,
    main,
    per_bin,
    resized_boxes,
    spread,
    top_detection,
    train_assignment,
)
from retina.config import AugmentCfg, LossCfg, TrainCfg
from retina.data.transforms import Sample, augment
from retina.protocols import Resize

# Three square anchors (cx, cy, w, h): 16 and 32 px centred at (8, 8), 16 px centred at (100, 100).
PRIORS = torch.tensor([[8.0, 8.0, 16.0, 16.0], [8.0, 8.0, 32.0, 32.0], [100.0, 100.0, 16.0, 16.0]])


def test_bin_labels_and_index_lower_edge_included() -> None:
    assert bin_labels() == ["<16", "16-32", "32-64", "64-128", "128-256", "256-512", ">=512"]
    sizes = np.array([0.0, 15.9, 16.0, 31.99, 32.0, 511.0, 512.0, 1000.0])
    assert bin_index(sizes).tolist() == [0, 0, 1, 1, 2, 5, 6, 6]


def test_face_sizes() -> None:
    boxes = np.array([[0.0, 0.0, 4.0, 9.0], [10.0, 10.0, 20.0, 20.0]])
    np.testing.assert_allclose(face_sizes(boxes), [6.0, 10.0])  # sqrt(4 * 9), sqrt(10 * 10)
    np.testing.assert_allclose(face_sizes(boxes, "height"), [9.0, 10.0])
    with pytest.raises(ValueError, match="measure"):
        face_sizes(boxes, "width")


def test_anchor_coverage_hand_values() -> None:
    # Face 0 = the 16 px anchor (IoU 1; with the 32 px one 256 / 1024); face 1, 8 x 8 at (8, 8): 64 / 256 with
    # the 16 px anchor, 64 / 1024 with the 32 px one; face 2 = the 32 px anchor (IoU 1, 0.25 with the 16 px one).
    boxes = np.array([[0.0, 0.0, 16.0, 16.0], [4.0, 4.0, 12.0, 12.0], [-8.0, -8.0, 24.0, 24.0]])
    cov = anchor_coverage(boxes, PRIORS, pos_iou=0.5)
    np.testing.assert_allclose(cov["best_iou"], [1.0, 0.25, 1.0])
    assert cov["n_above"].tolist() == [1, 0, 1]
    assert cov["best_anchor"].tolist() == [16.0, 16.0, 32.0]
    assert anchor_coverage(boxes, PRIORS, pos_iou=0.25)["n_above"].tolist() == [2, 1, 2]


def test_train_assignment_threshold_forced_and_unmatched() -> None:
    # Face A is the 16 px anchor at (8, 8): positive by threshold; the 32 px anchor (IoU 0.25 < 0.3) is negative.
    # Face B, 8 x 8 at (100, 100): best IoU 64 / 256 = 0.25 with the third anchor, positive only as its best anchor.
    boxes = np.array([[0.0, 0.0, 16.0, 16.0], [96.0, 96.0, 104.0, 104.0]])
    cols, sides = train_assignment(boxes, PRIORS, LossCfg(pos_iou=0.5, neg_iou=0.3))
    assert cols["positives"].tolist() == [1, 1]
    assert cols["by_threshold"].tolist() == [True, False]
    assert cols["forced_only"].tolist() == [False, True]
    assert cols["unmatched"].tolist() == [False, False]
    assert sides.tolist() == [16.0, 16.0]
    for cfg in (LossCfg(force_best_anchor=False), LossCfg(min_best_iou=0.3)):  # B is dropped either way
        cols, _ = train_assignment(boxes, PRIORS, cfg)
        assert cols["unmatched"].tolist() == [False, True]
    cols, sides = train_assignment(np.zeros((0, 4)), PRIORS, LossCfg())
    assert len(cols["positives"]) == 0 and len(sides) == 0


def _sample(h: int, w: int, boxes: list[list[float]]) -> Sample:
    b = np.array(boxes, np.float32)
    return Sample(np.zeros((h, w, 3), np.uint8), b, np.zeros((len(b), 5, 2), np.float32), np.ones(len(b), bool))


def test_augment_tracked_whole_image_halved() -> None:
    # Crop scale 1 of a square image is the whole image; 100 -> 50 px halves every box; nothing is cut.
    cfg = AugmentCfg(image_size=50, crop_scales=(1.0, 1.0), flip=False, photometric=False)
    s = _sample(100, 100, [[10, 20, 30, 60], [50, 50, 90, 70]])
    out, ids, unclipped = augment_tracked(s, cfg, np.random.default_rng(0))
    assert ids.tolist() == [0, 1]
    np.testing.assert_allclose(out.boxes, [[5, 10, 15, 30], [25, 25, 45, 35]])
    np.testing.assert_allclose(unclipped, out.boxes)


def test_augmented_faces_cut_by_the_image_edge() -> None:
    # Whole 100 x 100 image -> 50 px. Face 1 (80..110 wide, centre 95 inside) is clipped to 80..100: after
    # halving its box is 40..50 of an unclipped 40..55, so 2/3 of its area is kept. Face 2's centre (100) is
    # not inside the crop: dropped.
    cfg = AugmentCfg(image_size=50, crop_scales=(1.0, 1.0), flip=False, photometric=False)
    s = _sample(100, 100, [[10, 20, 30, 60], [80, 10, 110, 30], [90, 50, 110, 70]])
    cols, _, src = augmented_faces(s, TrainCfg(augment=cfg), PRIORS, np.random.default_rng(0), "sqrt_area")
    np.testing.assert_allclose(cols["scale"], [0.5, 0.5])
    np.testing.assert_allclose(cols["kept_area"], [1.0, 2 / 3])
    np.testing.assert_allclose(cols["size"], [np.sqrt(10 * 20), 10.0])
    assert cols["cut"].tolist() == [False, True]
    assert src["kept"].tolist() == [True, True, False]
    assert src["cut"].tolist() == [False, True, False]


def test_augment_tracked_matches_augment() -> None:
    """Same seed: the same image and boxes as ``augment``; clipped boxes inside the unclipped ones; one scale per
    sample; faces cut by the crop are seen as such."""
    cfg = AugmentCfg(image_size=64, crop_scales=(0.3, 1.0))
    s = _sample(120, 200, [[5, 5, 60, 70], [100, 40, 115, 55], [150, 80, 199, 119], [30, 90, 40, 100]])
    cut_seen = 0
    for seed in range(40):
        out, ids, unclipped = augment_tracked(s, cfg, np.random.default_rng(seed))
        ref = augment(s, cfg, np.random.default_rng(seed))
        np.testing.assert_array_equal(out.image, ref.image)
        np.testing.assert_array_equal(out.boxes, ref.boxes)
        assert len(set(ids.tolist())) == len(ids) and set(ids.tolist()) <= {0, 1, 2, 3}
        assert np.all(out.boxes[:, :2] >= unclipped[:, :2] - 1e-4) and np.all(
            out.boxes[:, 2:] <= unclipped[:, 2:] + 1e-4
        )
        scale = (unclipped[:, 2] - unclipped[:, 0]) / (s.boxes[ids, 2] - s.boxes[ids, 0])
        np.testing.assert_allclose(scale, scale[0] if len(scale) else scale, rtol=1e-5)
        cut_seen += int(np.any(np.abs(out.boxes - unclipped) > 1e-4))
    assert cut_seen > 0


def test_per_bin_means_quantiles_and_empty_bins() -> None:
    bins = np.array([0, 0, 1, 3])
    rows = per_bin(bins, 4, x=("mean", np.array([1.0, 3.0, 5.0, 7.0])), q=("quantiles", np.array([0.0, 10, 5, 7])))
    assert [r["faces"] for r in rows] == [2, 1, 0, 1]
    assert [r["share"] for r in rows] == [0.5, 0.25, 0.0, 0.25]
    assert [r["x"] for r in rows] == [2.0, 5.0, None, 7.0]
    assert rows[0]["q"] == pytest.approx([1.0, 5.0, 9.0])  # linear quantiles of (0, 10)


def test_batch_stats() -> None:
    # Four samples, batches of two: 10 + 20 + 40 + 50 px faces -> bins 0, 1, 2, 2; the 40 px face is cut.
    no = np.array([False])
    per_sample = [
        (np.array([10.0]), no),
        (np.array([20.0]), no),
        (np.array([40.0]), np.array([True])),
        (np.array([50.0]), no),
    ]
    rows = batch_stats(per_sample, (16.0, 32.0), batch=2, seed=0)
    assert [r["faces_per_batch"] for r in rows] == [0.5, 0.5, 1.0]  # 1, 1 and 2 faces over 2 batches
    assert [r["whole_per_batch"] for r in rows] == [0.5, 0.5, 0.5]
    assert rows[2]["batches_with_face"] in (0.5, 1.0)  # depends on the grouping
    assert np.isnan(batch_stats(per_sample[:1], (16.0,), batch=2, seed=0)[0]["faces_per_batch"])


def test_face_scores_and_top_detection() -> None:
    faces = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [50.0, 50.0, 60.0, 60.0]])
    # det 0: face 0's upper 40 % (IoU 0.4) at 0.95; det 1: face 0 exactly at 0.9; det 2: face 1 shifted by 1 px
    # (IoU 90 / 110) at 0.3. Face 2 has no detection.
    dets = np.array([[0.0, 0.0, 10.0, 4.0], [0.0, 0.0, 10.0, 10.0], [21.0, 20.0, 31.0, 30.0]])
    scores = np.array([0.95, 0.9, 0.3])
    np.testing.assert_allclose(face_scores(faces, dets, scores, 0.5), [0.9, 0.3, 0.0])
    top = top_detection(faces, dets, scores)
    np.testing.assert_allclose(top["top_iou"][:2], [0.4, 90 / 110])
    np.testing.assert_allclose(top["top_size_ratio"][:2], [np.sqrt(0.4), 1.0])
    assert np.isnan(top["top_iou"][2]) and np.isnan(top["top_size_ratio"][2])
    assert face_scores(faces, np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == [0.0, 0.0, 0.0]


def test_anchor_scores_by_side() -> None:
    face = np.array([[0.0, 0.0, 16.0, 16.0]])  # IoU 1 with the 16 px anchor, 0.25 with the 32 px one
    raw = np.array([0.2, 0.7, 0.9])
    np.testing.assert_allclose(anchor_scores(face, PRIORS, raw, 0.2), [[0.2, 0.7]])
    out = anchor_scores(face, PRIORS, raw, 0.3)
    assert out[0, 0] == pytest.approx(0.2) and np.isnan(out[0, 1])


def test_resized_boxes_and_spread() -> None:
    boxes, hw = resized_boxes(np.array([[0.0, 0.0, 40.0, 20.0]]), Resize(long=50), (100, 200))
    assert hw == (25, 50)
    np.testing.assert_allclose(boxes, [[0.0, 0.0, 10.0, 5.0]])
    _, hw = resized_boxes(np.zeros((0, 4)), Resize(), (7, 9))
    assert hw == (7, 9)
    assert spread(10, 3) == [0, 3, 6]
    assert spread(3, 5) == [0, 1, 2]


def test_cli_rejects_bad_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--epochs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --epochs must be >= 1, got 0"
