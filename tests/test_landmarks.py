"""Landmark accuracy: NME, CED, failure rate, AUC and face matching against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from retina.eval.landmarks import (
    Summary,
    auc,
    binned_means,
    ced,
    failure_rate,
    inter_ocular,
    layout_in_boxes,
    match,
    nme,
    normalised_layout,
)
from retina.verify import landmark_job as job


def test_nme_divides_the_mean_point_distance_by_sqrt_of_the_box_area():
    true = np.arange(10, dtype=float).reshape(1, 5, 2)
    pred = true + np.array([3.0, 4.0])  # every point 5 px away
    box = np.array([[0.0, 0.0, 4.0, 9.0]])  # sqrt(4 * 9) = 6
    assert nme(pred, true, box) == pytest.approx([5.0 / 6.0], abs=1e-15)
    pred[0, 0] += [6.0, 8.0]  # first point now 15 px away (3 + 6, 4 + 8): mean (15 + 4 * 5) / 5 = 7
    assert nme(pred, true, box) == pytest.approx([7.0 / 6.0], abs=1e-15)
    with pytest.raises(ValueError, match="positive width"):
        nme(pred, true, np.array([[0.0, 0.0, 0.0, 9.0]]))


def test_ced_failure_rate_and_auc_golden():
    nmes = np.array([0.01, 0.05, 0.2])
    assert ced(nmes, np.array([0.0, 0.05, 0.1, 0.2])).tolist() == [0.0, 2 / 3, 2 / 3, 1.0]  # NME <= x
    assert failure_rate(np.array([0.05, 0.1, 0.15])) == pytest.approx(1 / 3)  # strictly above 10%
    assert auc(np.zeros(4)) == pytest.approx(1.0)
    assert auc(np.full(4, 0.5)) == 0.0
    # one face at NME 0.05 of a limit 0.1: the CED is 0 on [0, 0.05) and 1 after: area 0.5
    assert auc(np.array([0.05]), steps=100_000) == pytest.approx(0.5, abs=1e-4)
    assert np.isnan(failure_rate(np.zeros(0))) and np.isnan(ced(np.zeros(0))).all()


def test_match_is_one_to_one_and_maximises_total_iou():
    true = np.array([[0.0, 0.0, 10.0, 10.0], [6.0, 0.0, 16.0, 10.0]])
    # detection 0 overlaps true 0 (IoU 50/150) and true 1 (IoU 90/110); detection 1 mostly true 0 (IoU 100/105)
    dets = np.array([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.5, 10.0]])
    assert match(true, dets, 0.3).tolist() == [1, 0]
    assert match(true, dets[:1], 0.3).tolist() == [-1, 0]  # one detection serves one face
    assert match(true, dets[:1], 0.9).tolist() == [-1, -1]
    assert match(true, np.zeros((0, 4)), 0.3).tolist() == [-1, -1]


def test_eligible_faces_have_five_labelled_points_and_the_minimum_height():
    boxes = np.array([[0, 0, 30, 30], [0, 0, 30, 19], [0, 0, 30, 40]], float)
    flags = np.array([[0, 1, 0, 0, 0], [0] * 5, [0, 0, -1, 0, 0]], float)  # occluded counts, absent does not
    assert job.eligible(boxes, flags, 20.0).tolist() == [True, False, False]


def test_summary_compares_methods_on_the_faces_all_of_them_found():
    measured = {
        "images": 2,
        "face_px": np.array([30.0, 40.0, 50.0]),
        "abs_yaw": np.array([10.0, 20.0, 70.0]),
        "nme": {"A": np.array([0.02, np.nan, 0.2]), "B": np.array([0.04, 0.01, np.nan])},
        "iod": {
            "A": np.array([0.4, np.nan, 0.3]),
            "B": np.array([0.5, 0.4, np.nan]),
            "true": np.array([0.45, 0.4, 0.1]),
        },
        "seconds": {"A": 1.0, "B": 3.0},
    }
    s = job.summarise(measured)
    assert s["faces_common"] == 1 and s["methods"]["A"]["found"] == 2
    assert s["methods"]["A"]["common"]["mean_nme"] == pytest.approx(0.02)
    assert s["methods"]["B"]["common"]["mean_nme"] == pytest.approx(0.04)
    assert s["methods"]["A"]["own"]["failure_rate"] == pytest.approx(0.5)
    assert s["methods"]["B"]["seconds_per_image"] == pytest.approx(1.5)
    assert vars(Summary.of(np.zeros(0)))["faces"] == 0
    assert "| A | 2 / 3 | 2.00 |" in job.table(s, "toy")

    by_yaw = s["breakdown"]["nme_by_abs_yaw"]["A"]  # the common face: yaw 10, NME 0.02
    assert by_yaw[0] == {"bin": "0-15", "faces": 1, "mean": pytest.approx(0.02)} and by_yaw[1]["faces"] == 0
    assert s["breakdown"]["iod_by_abs_yaw"]["true"][0]["mean"] == pytest.approx(0.45)


def test_layout_round_trip_inter_ocular_and_bins_by_hand():
    boxes = np.array([[10.0, 20.0, 40.0, 50.0], [0.0, 0.0, 10.0, 10.0]])
    layout = np.array([[0.25, 0.4], [0.75, 0.4], [0.5, 0.6], [0.3, 0.8], [0.7, 0.8]])
    placed = layout_in_boxes(layout, boxes)
    assert placed[0, 0].tolist() == [20.0, 40.0] and placed[1, 1].tolist() == [7.5, 4.0]
    np.testing.assert_allclose(normalised_layout(placed, boxes), np.stack([layout, layout]), atol=1e-12)
    # eyes 0.5 box widths apart: 20 px in a 40 x 50 box (sqrt 2000), 5 px in a 10 x 10 box
    np.testing.assert_allclose(inter_ocular(placed, boxes), [20 / np.sqrt(2000), 0.5])
    bins = binned_means(np.array([1.0, 3.0, np.nan, 10.0]), np.array([5.0, 7.0, 8.0, 50.0]), (0.0, 10.0, np.inf))
    assert bins == [{"bin": "0-10", "faces": 2, "mean": 2.0}, {"bin": ">=10", "faces": 1, "mean": 10.0}]
