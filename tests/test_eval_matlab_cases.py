"""Hand-worked cases of the official ``boxoverlap.m`` / ``image_evaluation`` in MATLAB arithmetic.

Each case works out by hand what MATLAB (and GNU Octave, same rules) computes in
``boxoverlap(gt_bbx, pred_info(h, 1:4))`` after ``evaluation.m`` turned x y w h into corners (x2 = x + w):

    x1 = max(a(:,1), b(1));  y1 = max(a(:,2), b(2));  x2 = min(a(:,3), b(3));  y2 = min(a(:,4), b(4));
    w = x2 - x1 + 1;  h = y2 - y1 + 1;  inter = w .* h;
    aarea = (a(:,3) - a(:,1) + 1) .* (a(:,4) - a(:,2) + 1);  barea = (b(3) - b(1) + 1) * (b(4) - b(2) + 1);
    o = inter ./ (aarea + barea - inter);  o(w <= 0) = 0;  o(h <= 0) = 0;

with ``a`` the int32 faces of the .mat and ``b`` a double prediction. Rules used below ("r" = conversion of
a double to int32: round half away from zero, saturate, NaN -> 0): max/min(int32, double) = r(double) where
it wins, so x1..y2 are int32; w, h, inter, aarea are int32; barea is a double from the UNROUNDED
prediction corners; ``aarea + barea`` = r(aarea + barea); ``- inter`` is int32; ``./`` between int32 is
the exact quotient rounded half away from zero, x/0 = INT32_MAX (x > 0), INT32_MIN (x < 0), 0 (x = 0).
Then ``[max_overlap, idx] = max(overlap_list)``: the largest value, the first face on ties.

The float64 values are the same formulas in float64 (``arithmetic="float64"``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retina.cli import main
from retina.data.widerface import SETTINGS, GroundTruth, write_ground_truth
from retina.eval.overlap import INT32_MAX, INT32_MIN, best_faces, int32_divide, to_int32
from retina.eval.report import summarise_warnings
from retina.eval.widerface import evaluate, match_predictions


def _overlap(face: list[float], pred: list[float], arithmetic: str) -> float:
    """boxoverlap of one face and one prediction (x y w h each); 0 where boxoverlap sets 0."""
    best = best_faces(np.array([pred], float), np.array([0]), np.array([1]), np.array([face], float), (arithmetic,))
    return float(best[arithmetic][0][0])


def _gt(faces: list[list[float]], counted: list[int] | None = None) -> GroundTruth:
    """One image holding ``faces``; ``counted`` faces count in every setting (default all)."""
    keep = np.arange(len(faces)) if counted is None else np.array(counted)
    return GroundTruth(("0--E",), (("0--E", "i0"),), (np.array(faces, float),), {s: (keep,) for s in SETTINGS})


# ------------------------------------------------------------------------------------ primitives


def test_conversion_to_int32_rounds_half_away_and_saturates() -> None:
    x = np.array([-0.5, 0.5, 1.5, 2.5, -2.5, 2.4999999999999996, np.nan, 3e9, -3e9, np.inf, -np.inf])
    expected = [-1, 1, 2, 3, -3, 2, 0, INT32_MAX, INT32_MIN, INT32_MAX, INT32_MIN]
    np.testing.assert_array_equal(to_int32(x), expected)  # numpy's rint would give -0, 0, 2, 2, -2


def test_int32_division_rounds_the_exact_quotient_and_gives_limits_on_zero() -> None:
    a = np.array([1, -1, 0, 7, -7, 7, 5, -5, 2, INT32_MIN, -2990])
    b = np.array([0, 0, 0, 2, 2, -2, 10, 10, 3, -1, -3189])
    # 7/2 = 3.5 -> 4; -7/2 -> -4; 7/-2 -> -4; 5/10 = 0.5 -> 1; -0.5 -> -1; 2/3 -> 1; INT32_MIN/-1 = 2^31 saturates
    expected = [INT32_MAX, INT32_MIN, 0, 4, -4, -4, 1, -1, 1, INT32_MAX, 1]
    np.testing.assert_array_equal(int32_divide(a.astype(float), b.astype(float)), expected)


# ------------------------------------------------------------------------------------ single pairs


def test_sub_pixel_prediction_overlap_above_one_from_the_unrounded_area() -> None:
    # The example. Face x y w h = 10 10 1 1: corners 10..11, aarea = 2 * 2 = 4.
    # Prediction 10.4 10.4 0.2 0.2: corners 10.4..10.6, rounded 10..11, so x1 = 10, x2 = 11, w = 2, h = 2,
    # inter = 4. barea from the unrounded corners: (10.6 - 10.4 + 1)^2 = 1.2^2 ~ 1.44 (1.4399999999999984).
    # union = r(4 + 1.44) - 4 = 5 - 4 = 1; o = 4 / 1 = 4. (With the rounded corners' area, 2 * 2 = 4, the
    # union would be 8 - 4 = 4 and o = 1.)
    assert _overlap([10, 10, 1, 1], [10.4, 10.4, 0.2, 0.2], "matlab") == 4.0
    # float64: w = h = min(11, 10.6) - max(10, 10.4) + 1 = 1.2, inter 1.44, union 4 + 1.44 - 1.44 = 4
    assert _overlap([10, 10, 1, 1], [10.4, 10.4, 0.2, 0.2], "float64") == pytest.approx(0.36)


def test_unrounded_prediction_area_turns_a_half_into_no_match() -> None:
    # Face 0 0 9 9: corners 0..9, aarea 100. Prediction 0 0 9 4.4: y2 = 4.4 -> 4, so w = 10, h = 5, inter 50.
    # barea = (9 - 0 + 1) * (4.4 - 0 + 1) = 10 * 5.4 = 54; union = r(154) - 50 = 104; 50 / 104 = 0.48 -> 0.
    # (The rounded box's area 10 * 5 = 50 would give union 100 and 50 / 100 = 0.5 -> 1.)
    assert _overlap([0, 0, 9, 9], [0, 0, 9, 4.4], "matlab") == 0.0
    # float64: h = 5.4, inter 54, union 100 + 54 - 54 = 100: IoU 0.54, a match
    assert _overlap([0, 0, 9, 9], [0, 0, 9, 4.4], "float64") == pytest.approx(0.54)


def test_exact_half_quotient_rounds_up() -> None:
    # Face 0 0 9 9 (aarea 100), prediction 0 0 9 4 (corners 0..9 x 0..4): inter 10 * 5 = 50, barea 50,
    # union r(150) - 50 = 100, 50 / 100 = 0.5 exactly -> 1 (half away from zero; round-half-even gives 0).
    assert _overlap([0, 0, 9, 9], [0, 0, 9, 4], "matlab") == 1.0
    assert _overlap([0, 0, 9, 9], [0, 0, 9, 4], "float64") == 0.5


def test_exact_half_corner_rounds_away_from_zero() -> None:
    # Face 0 0 1 1: corners 0..1, aarea 4. Prediction 0.5 0 1 1: x 0.5..1.5 -> 1..2 (0.5 -> 1, not 0).
    # x1 = max(0, 1) = 1, x2 = min(1, 2) = 1: w = 1; h = 2; inter 2. barea = (1.5 - 0.5 + 1) * 2 = 4.
    # union = r(8) - 2 = 6; 2 / 6 -> 0. (Rounding 0.5 to even, 0, would give w 2, inter 4, 4 / 4 = 1.)
    assert _overlap([0, 0, 1, 1], [0.5, 0, 1, 1], "matlab") == 0.0
    # float64: w = 1 - 0.5 + 1 = 1.5, inter 3, union 4 + 4 - 3 = 5: 0.6
    assert _overlap([0, 0, 1, 1], [0.5, 0, 1, 1], "float64") == pytest.approx(0.6)


def test_exact_half_in_the_union_and_zero_height() -> None:
    # Face 0 0 1 1 (aarea 4). Prediction 0 0 1.5 0 (zero height): x 0..1.5 -> 0..2, y 0..0.
    # w = min(1, 2) - 0 + 1 = 2, h = min(1, 0) - 0 + 1 = 1, inter 2; barea = (1.5 + 1) * (0 + 1) = 2.5.
    # union = r(4 + 2.5) - 2 = r(6.5) - 2 = 7 - 2 = 5; 2 / 5 = 0.4 -> 0. (Half to even: 6 - 2 = 4, 2 / 4 -> 1.)
    assert _overlap([0, 0, 1, 1], [0, 0, 1.5, 0], "matlab") == 0.0
    assert _overlap([0, 0, 1, 1], [0, 0, 1.5, 0], "float64") == pytest.approx(2 / 4.5)


def test_union_of_zero_gives_int32_max() -> None:
    # Face 10 10 0 0: one pixel, corners 10..10, aarea 1. Prediction 10.4 10.4 -0.8 -0.8 (negative width and
    # height): corners 10.4..9.6, both rounded to 10: w = min(10, 10) - max(10, 10) + 1 = 1, h = 1, inter 1.
    # barea = (9.6 - 10.4 + 1)^2 = 0.2^2 ~ 0.04; union = r(1 + 0.04) - 1 = 0; 1 / 0 -> INT32_MAX.
    assert _overlap([10, 10, 0, 0], [10.4, 10.4, -0.8, -0.8], "matlab") == INT32_MAX
    # float64: w = h = 9.6 - 10.4 + 1 = 0.2, inter 0.04, union 1 + 0.04 - 0.04 = 1: 0.04
    assert _overlap([10, 10, 0, 0], [10.4, 10.4, -0.8, -0.8], "float64") == pytest.approx(0.04)


def test_saturated_areas_give_a_union_of_zero() -> None:
    # Face 0 0 50000 50000: aarea = 50001^2 = 2500100001 > INT32_MAX, saturates to 2147483647; the same
    # prediction: inter saturates to INT32_MAX too, barea = 2500100001 (double): union = r(INT32_MAX +
    # 2500100001) - INT32_MAX = INT32_MAX - INT32_MAX = 0, so the overlap is INT32_MAX.
    assert _overlap([0, 0, 50000, 50000], [0, 0, 50000, 50000], "matlab") == INT32_MAX
    assert _overlap([0, 0, 50000, 50000], [0, 0, 50000, 50000], "float64") == 1.0


def test_negative_union_only_on_pairs_that_boxoverlap_zeroes() -> None:
    # A union < 0 needs inter > aarea + barea. On a pair with w > 0 and h > 0 that cannot happen: each of
    # w, h is at most the face's side + 1 (so inter <= aarea), and the prediction's rounded corners keep
    # x2 - x1 > -1 (else r(x2) < r(x1) and w <= 0), so barea >= 0 and r(aarea + barea) >= aarea >= inter.
    # It happens where w <= 0: face 0 0 9 9, prediction 5 0 -300 20: x 5..-295, y 0..20.
    # x1 = 5, x2 = -295: w = -299; y1 = 0, y2 = 9: h = 10; inter = -2990. barea = (-295 - 5 + 1) * 21 = -6279.
    # union = r(100 - 6279) + 2990 = -3189; -2990 / -3189 = 0.94 -> 1, but o(w <= 0) = 0.
    assert int32_divide(np.array([-2990.0]), np.array([-3189.0]))[0] == 1
    for arithmetic in ("matlab", "float64"):
        assert _overlap([0, 0, 9, 9], [5, 0, -300, 20], arithmetic) == 0.0


def test_negative_width_and_height_can_match_in_matlab_arithmetic() -> None:
    # Face 10 10 1 1 (corners 10..11, aarea 4). Prediction 10.4 10 -0.3 1: x 10.4..10.1, both rounded to 10:
    # w = min(11, 10) - max(10, 10) + 1 = 1; y 10..11: h = 2; inter 2. barea = (10.1 - 10.4 + 1) * 2 = 1.4.
    # union = r(4 + 1.4) - 2 = 3; 2 / 3 = 0.67 -> 1. The same with the roles of x and y swapped.
    assert _overlap([10, 10, 1, 1], [10.4, 10, -0.3, 1], "matlab") == 1.0
    assert _overlap([10, 10, 1, 1], [10, 10.4, 1, -0.3], "matlab") == 1.0
    # float64: w = 10.1 - 10.4 + 1 = 0.7, inter 1.4, union 4 + 1.4 - 1.4 = 4: 0.35
    assert _overlap([10, 10, 1, 1], [10.4, 10, -0.3, 1], "float64") == pytest.approx(0.35)
    assert _overlap([10, 10, 1, 1], [10, 10.4, 1, -0.3], "float64") == pytest.approx(0.35)


def test_zero_size_boxes() -> None:
    # A one-pixel face 10 10 0 0 and the same zero-size prediction: inter 1, aarea 1, barea 1, union 2 - 1.
    for arithmetic in ("matlab", "float64"):
        assert _overlap([10, 10, 0, 0], [10, 10, 0, 0], arithmetic) == 1.0
    # Zero width on face 0 0 9 9: prediction 3 0 0 9 is the column x = 3: inter 1 * 10, barea 10,
    # union r(110) - 10 = 100: 10 / 100 = 0.1 -> 0 (float64 0.1).
    assert _overlap([0, 0, 9, 9], [3, 0, 0, 9], "matlab") == 0.0
    assert _overlap([0, 0, 9, 9], [3, 0, 0, 9], "float64") == pytest.approx(0.1)


def test_predictions_beyond_int32_are_saturated_not_refused() -> None:
    # Corners -1e12..1e12 saturate to INT32_MIN..INT32_MAX: the face 0..9 is inside, inter 100; barea
    # (2e12 + 1)^2 saturates the union: 100 / (INT32_MAX - 100) -> 0. float64: 100 / 4e24.
    assert _overlap([0, 0, 9, 9], [-1e12, -1e12, 2e12, 2e12], "matlab") == 0.0
    assert _overlap([0, 0, 9, 9], [-1e12, -1e12, 2e12, 2e12], "float64") == pytest.approx(100 / (2e12 + 1) ** 2)
    # An area that overflows to inf: r(100 + inf) = INT32_MAX in matlab; 100 / inf = 0 in float64.
    for arithmetic in ("matlab", "float64"):
        assert _overlap([0, 0, 9, 9], [0, 0, 1e200, 1e200], arithmetic) == 0.0


# ------------------------------------------------------------------------------ which face MATLAB takes


def test_first_face_on_ties_rather_than_best_face() -> None:
    # Faces A 0 0 9 9 (0..9) and B 1 0 9 9 (1..10); prediction exactly on B.
    # A: x1 = 1, x2 = 9: w 9, h 10, inter 90, union r(100 + 100) - 90 = 110, 90 / 110 = 0.82 -> 1.
    # B: inter 100, union 100: 1. max([1; 1]) -> the first: A. float64: A 0.82, B 1 -> B.
    gt = _gt([[0, 0, 9, 9], [1, 0, 9, 9]], counted=[1])
    pred = [np.array([[1, 0, 9, 9, 0.9], [60, 60, 5, 5, 0.1]])]
    matlab, float64 = match_predictions(pred, gt, "matlab"), match_predictions(pred, gt, "float64")
    assert (matlab.overlap[0], matlab.face[0]) == (1.0, 0)
    assert (float64.overlap[0], float64.face[0]) == (1.0, 1)
    # A does not count: MATLAB drops the prediction (matched a face outside the setting), B is never found
    assert evaluate(pred, gt, arithmetic="matlab", challenge=False).ap["easy"] == 0.0
    assert evaluate(pred, gt, arithmetic="float64", challenge=False).ap["easy"] == 1.0


def test_largest_overlap_wins_over_an_earlier_face_at_one() -> None:
    # Prediction 10.4 10.4 0.2 0.2 (rounded 10..11, barea 1.44, inter 2 x 2 = 4 with each face below):
    # A 10 10 2 2 (10..12, aarea 9): union r(9 + 1.44) - 4 = 6, 4 / 6 -> 1;
    # B 10 10 1 1 (aarea 4): union 1, o = 4; C = B: o = 4. max([1; 4; 4]) -> B (the first 4), not A.
    gt = _gt([[10, 10, 2, 2], [10, 10, 1, 1], [10, 10, 1, 1]])
    pred = [np.array([[10.4, 10.4, 0.2, 0.2, 0.9], [60, 60, 5, 5, 0.1]])]
    matlab = match_predictions(pred, gt, "matlab")
    assert (matlab.overlap[0], matlab.face[0]) == (4.0, 1)
    # float64: A 1.44 / 9 = 0.16, B and C 0.36: B, below 0.5
    float64 = match_predictions(pred, gt, "float64")
    assert float64.face[0] == 1 and float64.overlap[0] == pytest.approx(0.36)


def test_no_overlap_takes_the_first_face() -> None:
    gt = _gt([[0, 0, 9, 9], [20, 0, 9, 9]])
    match = match_predictions([np.array([[50, 50, 3, -2, 0.5], [20, 0, 9, 9, 0.4]])], gt, "matlab")
    assert match.overlap.tolist() == [0.0, 1.0] and match.face.tolist() == [0, 1]


def test_a_later_prediction_takes_its_largest_overlap() -> None:
    # Faces A 0 0 9 9 and B 5 0 9 9 (IoU 50 / 150); prediction 0 exactly on B, prediction 1 exactly on A:
    # each has two overlapping faces and must take its own best, A for the second.
    faces = np.array([[0, 0, 9, 9], [5, 0, 9, 9]], float)
    preds = np.array([[5, 0, 9, 9], [0, 0, 9, 9]], float)
    best = best_faces(preds, np.array([0, 0]), np.array([2, 2]), faces, ("float64", "matlab"))
    for arithmetic in ("float64", "matlab"):
        overlap, face = best[arithmetic]
        assert overlap.tolist() == [1.0, 1.0] and face.tolist() == [1, 0], arithmetic


def test_overlap_rounded_to_zero_takes_the_first_face_not_the_touched_one() -> None:
    # Faces A 0 0 9 9 and B 30 0 9 9; the prediction 30 0 2 2 touches only B: inter 9, union 100 + 9 - 9,
    # 9 / 100 rounds to 0 in int32, so MATLAB's max over [0; 0] gives A, the image's first face.
    best = best_faces(np.array([[30, 0, 2, 2]], float), np.array([0]), np.array([2]),
                      np.array([[0, 0, 9, 9], [30, 0, 9, 9]], float), ("matlab", "float64"))  # fmt: skip
    assert best["matlab"][0].tolist() == [0.0] and best["matlab"][1].tolist() == [0]
    assert best["float64"][0].tolist() == [pytest.approx(0.09)] and best["float64"][1].tolist() == [1]


def test_float64_arithmetic_does_not_saturate() -> None:
    face = [-2e9, 0, 2147483647, 9]  # 2,147,483,648 pixels wide (+1), more than INT32_MAX
    assert _overlap(face, face, "float64") == 1.0
    assert _overlap(face, face, "matlab") == INT32_MAX  # int32: inter saturates, the union is 0


def test_chunks_of_pairs_give_the_same_answer() -> None:
    rng = np.random.default_rng(0)
    faces = np.round(np.concatenate([rng.uniform(0, 200, (30, 2)), rng.uniform(5, 60, (30, 2))], 1))
    starts, counts = np.array([0, 0, 4, 4, 4, 10, 10, 25]), np.array([4, 4, 6, 6, 6, 15, 15, 5])
    preds = np.concatenate([rng.uniform(0, 200, (8, 2)), rng.uniform(5, 80, (8, 2))], 1)
    whole = best_faces(preds, starts, counts, faces, ("float64", "matlab"))
    assert (whole["float64"][0] > 0).sum() >= 3  # some predictions overlap faces
    for chunk in (1, 5, 13):
        parts = best_faces(preds, starts, counts, faces, ("float64", "matlab"), chunk_pairs=chunk)
        for arithmetic in ("float64", "matlab"):
            np.testing.assert_array_equal(parts[arithmetic][0], whole[arithmetic][0])
            np.testing.assert_array_equal(parts[arithmetic][1], whole[arithmetic][1])


def test_absurd_predictions_are_evaluated_quietly() -> None:
    # Overflowing corners and areas (inf), inf - inf (NaN), division by zero: as in MATLAB, no error and no
    # numpy warning, even with numpy set to raise on every floating-point event.
    preds = np.array([[1e308, 0, 1e308, 5], [-1e308, 0, -1e308, 5], [0, 0, 1e308, 1e308], [0, 0, 1e300, 1e300],
                      [3, 3, -1e308, 1e308], [1e308, 0, 1e308, -1], [2, 2, 4, 4]])  # fmt: skip
    faces = np.array([[0, 0, 9, 9], [2, 2, 4, 4]], float)
    with np.errstate(all="raise"):  # e.g. the sixth: area (inf - 1e308 + 1) * (-1 - 0 + 1) = inf * 0
        best = best_faces(preds, np.zeros(7, int), np.full(7, 2), faces, ("float64", "matlab"))
        assert to_int32(np.array([np.inf, -np.inf, np.nan])).tolist() == [INT32_MAX, INT32_MIN, 0.0]
        assert int32_divide(np.array([1.0, 0.0, -1.0]), np.zeros(3)).tolist() == [INT32_MAX, 0.0, INT32_MIN]
    assert best["float64"][0][-1] == 1.0 and best["float64"][1][-1] == 1


def test_array_input_warns_per_image() -> None:
    gt = _gt([[10, 10, 1, 1]])
    result = evaluate([np.array([[10.4, 10, -0.3, 1, 0.9], [10, 10, 0, 5, 0.5], [1, 1, 2, 2, 0.1]])], gt)
    assert result.warnings[0] == (
        "detections of 0--E/i0: 1 box(es) of negative width or height, 1 box(es) of zero width or height; "
        "evaluated as the official tool does"
    )
    with pytest.raises(ValueError, match="0--E/i0: NaN or infinite"):
        evaluate([np.array([[10, 10, np.inf, 1, 0.9]])], gt)


def test_summarised_warnings() -> None:
    assert summarise_warnings(["a", "b"]) == ["warning: a", "warning: b"]
    lines = summarise_warnings([f"w{k}" for k in range(8)], limit=3)
    assert lines == [
        "warning: w0",
        "warning: w1",
        "warning: w2",
        "warning: ... and 5 more (8 in all, every one in results.json)",
    ]


# ------------------------------------------------------------------------------------ end to end

# Four images, one face each, every face counts in every setting.
E2E_FACES = {"a": [10, 10, 1, 1], "b": [0, 0, 9, 9], "c": [10, 10, 1, 1], "d": [20, 20, 9, 9]}
E2E_FILES = {
    "a": ["10.4 10.4 0.2 0.2 0.9"],  # sub-pixel: overlap 4 (matlab, TP), 0.36 (float64, FP)
    "b": ["0 0 9 4 0.8", "5 0 -300 20 0.3"],  # exact half: TP in both; negative width <= -1: FP in both
    "c": ["10.4 10 -0.3 1 0.7", "10 10.4 1 -0.3 0.6"],  # matlab: TP then duplicate FP; float64 (0.35): FP, FP
    "d": ["20 20 0 0 0.5", "20 20 9 9 0.4"],  # zero size: 1 / 100 -> FP in both; exact box: TP in both
}
# In score order (scores normalise to distinct values, one threshold step each):
#   matlab:  TP TP TP FP FP TP FP: P/R 1/.25 1/.5 1/.75 .75 .6 4/6@1 4/7 -> AP = .75 * 1 + .25 * 4/6 = 11/12
#   float64: FP TP FP FP FP TP FP: precision 0, 1/2@.25, 1/3, 1/4, 1/5, 2/6@.5, 2/7
#            envelope 1/2 up to recall .25, 1/3 up to .5 -> AP = .25 / 2 + .25 / 3 = 5/24
E2E_AP = {"matlab": 11 / 12, "float64": 5 / 24}
E2E_WARNINGS = [
    ("b.txt:4", "negative width or height (-300 x 20)"),
    ("c.txt:3", "negative width or height (-0.3 x 1)"),
    ("c.txt:4", "negative width or height (1 x -0.3)"),
    ("d.txt:3", "zero width or height (0 x 0)"),
]


@pytest.fixture
def strange_submission(tmp_path: Path) -> tuple[Path, Path]:
    names = sorted(E2E_FACES)
    gt = GroundTruth(
        ("0--E",),
        tuple(("0--E", n) for n in names),
        tuple(np.array([E2E_FACES[n]], float) for n in names),
        {s: tuple(np.array([0]) for _ in names) for s in SETTINGS},
    )
    write_ground_truth(tmp_path / "gt", gt)
    for name, lines in E2E_FILES.items():
        path = tmp_path / "pred" / "0--E" / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([f"{name}.jpg", str(len(lines)), *lines]) + "\n")
    return tmp_path / "gt", tmp_path / "pred"


@pytest.mark.parametrize("arithmetic", ["matlab", "float64"])
def test_strange_boxes_end_to_end(
    strange_submission: tuple[Path, Path], tmp_path: Path, arithmetic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, pred = strange_submission
    out = tmp_path / f"out_{arithmetic}"
    argv = ["widerface-eval", "--pred", str(pred), "--gt", str(gt), "--arithmetic", arithmetic, "--out", str(out)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    record = json.loads((out / "results.json").read_text())
    for setting in SETTINGS:
        assert record[setting] == pytest.approx(E2E_AP[arithmetic], abs=1e-12)
        assert record["ap_float64"][setting] == pytest.approx(E2E_AP["float64"], abs=1e-12)
    assert len(record["warnings"]) == len(E2E_WARNINGS)
    for warning, (where, what) in zip(record["warnings"], E2E_WARNINGS, strict=True):
        assert warning == f"{pred / '0--E' / where}: {what}; evaluated as the official tool does"
        assert f"warning: {warning}" in err


# ------------------------------------------------------------- benchmarks/octave_eval.py (no Octave needed)


def test_octave_script_parses_the_driver_output() -> None:
    from benchmarks.octave_eval import UsageError, parse_octave_aps

    output = (
        "Read prediction: current event 1\nRETINA_AP easy_val 0.5\nRETINA_AP medium_val 0.25\nRETINA_AP hard_val 1\n"
    )
    assert parse_octave_aps(output) == {"easy": 0.5, "medium": 0.25, "hard": 1.0}
    with pytest.raises(UsageError, match="no AP for medium, hard"):
        parse_octave_aps("RETINA_AP easy_val 0.5\n")


def test_octave_script_driver_quotes_paths(tmp_path: Path) -> None:
    from benchmarks.octave_eval import driver_source

    text = driver_source(tmp_path / "it's", tmp_path / "pred", tmp_path / "shim")
    assert f"addpath('{(tmp_path / 'it').resolve()}''s');" in text  # Octave doubles a quote inside '...'
    assert "evaluation(norm_pred_list, fullfile(gt_dir, ['wider_' settings{i} '.mat'])" in text


def test_octave_script_input_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.octave_eval import main

    def error(argv: list[str]) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        return err

    tools, pred = tmp_path / "eval_tools", tmp_path / "pred"
    base = ["--eval-tools", str(tools), "--pred", str(pred), "--out", str(tmp_path / "o.json")]
    assert "'no-such-octave' not found on PATH" in error([*base, "--octave", "no-such-octave"])
    fake = tmp_path / "octave"  # any executable passes the PATH check; the inputs are checked next
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    assert f"--eval-tools {tools}: not a folder" in error([*base, "--octave", str(fake)])
    (tools / "plot").mkdir(parents=True)
    (tools / "read_pred.m").write_text("")
    err = error([*base, "--octave", str(fake)])
    assert "lacks norm_score.m, evaluation.m, boxoverlap.m, plot/VOCap.m, ground_truth/wider_face_val.mat" in err
    for name in ("norm_score.m", "evaluation.m", "boxoverlap.m", "plot/VOCap.m"):
        (tools / name).write_text("")
    (tools / "ground_truth").mkdir()
    for name in ("face", "easy", "medium", "hard"):
        (tools / "ground_truth" / f"wider_{name}_val.mat").write_bytes(b"")
    assert f"--pred {pred}: not a folder" in error([*base, "--octave", str(fake)])
    pred.mkdir()
    assert "Octave failed (exit 1)" in error([*base, "--octave", str(fake)])
    assert not (tmp_path / "o.json").exists()
    with pytest.raises(SystemExit):
        main([*base, "--timeout", "-1"])
