"""WIDER FACE metric: hand-computed golden values, MATLAB arithmetic quirks, and the real ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from retina.data.widerface import SETTINGS, GroundTruth, load_ground_truth
from retina.eval.widerface import (
    THRESHOLDS,
    evaluate,
    match_predictions,
    normalise_scores,
    pr_curve,
    voc_ap,
)
from tests.conftest import shared_file


def _gt(boxes: list[list[list[float]]], keep: dict[str, list[list[int]]]) -> GroundTruth:
    """One event, images i0, i1, ... with the given faces (x y w h) and 0-based keep lists."""
    n = len(boxes)
    return GroundTruth(
        ("0--E",),
        tuple(("0--E", f"i{k}") for k in range(n)),
        tuple(np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes),
        {s: tuple(np.asarray(k, dtype=np.int64) for k in lists) for s, lists in keep.items()},
    )


# Image 0: three 10x10 faces (x2 = x + 9, area 100 with the +1 convention); face 1 counts in hard only.
# Image 1: one face that counts everywhere and gets no prediction: it stays in the recall denominator.
GOLDEN_GT = _gt(
    [[[0, 0, 9, 9], [100, 0, 9, 9], [200, 0, 9, 9]], [[0, 0, 19, 19]]],
    {"easy": [[0, 2], [0]], "medium": [[0, 2], [0]], "hard": [[0, 1, 2], [0]]},
)
# Written out of score order on purpose; scores exact in binary, so normalisation leaves them as they are.
GOLDEN_PRED = [
    np.array(
        [
            [300, 300, 9, 9, 0.25],  # hits nothing: false positive
            [0, 0, 9, 9, 1.0],  # face 0: true positive
            [200, 0, 9, 9, 0.0],  # face 2: true positive
            [100, 0, 9, 9, 0.5],  # face 1: dropped in easy/medium (does not count), true positive in hard
            [0, 0, 9, 9, 0.75],  # face 0 again: duplicate, false positive
        ]
    ),
    np.zeros((0, 5)),
]
# By hand, in score order (easy): TP P=1 R=1/3 | FP P=1/2 | dropped | FP P=1/3 | TP P=2/4 R=2/3.
# Envelope: 1 up to R=1/3, then 1/2 up to R=2/3: AP = 1/3 + 1/3 * 1/2 = 1/2.
# Hard (4 faces): TP 1/1 R=1/4 | FP 1/2 | TP 2/3 R=2/4 | FP 2/4 | TP 3/5 R=3/4: AP = 1/4 (1 + 2/3 + 3/5) = 17/30.
GOLDEN_AP = {"easy": 0.5, "medium": 0.5, "hard": 17 / 30}


@pytest.mark.parametrize("arithmetic", ["matlab", "float64"])
def test_golden_ap_by_hand(arithmetic: str) -> None:
    result = evaluate(GOLDEN_PRED, GOLDEN_GT, arithmetic=arithmetic, challenge=False)
    for setting, ap in GOLDEN_AP.items():
        assert result.ap[setting] == pytest.approx(ap, abs=1e-12), setting
    easy = result.curves["easy"]
    # the face-not-counting hit is neither a proposal nor a true positive; duplicates are proposals
    assert easy.proposals[-1] == 4 and easy.true_positives[-1] == 2 and easy.n_faces == 3
    hard = result.curves["hard"]
    assert hard.proposals[-1] == 5 and hard.true_positives[-1] == 3 and hard.n_faces == 4


def test_curve_counts_follow_thresholds() -> None:
    # normalised scores 1, 0.75, 0.5, 0.25, 0: the k-th threshold 1 - k/1000 admits those >= it
    curve = evaluate(GOLDEN_PRED, GOLDEN_GT, arithmetic="float64", challenge=False).curves["easy"]
    k = np.array([1, 250, 251, 500, 750, 999, 1000]) - 1  # thresholds .999 .75 .749 .5 .25 .001 0
    assert curve.proposals[k].tolist() == [1, 2, 2, 2, 3, 3, 4]
    assert curve.true_positives[k].tolist() == [1, 1, 1, 1, 1, 1, 2]
    assert THRESHOLDS[0] == 0.999 and THRESHOLDS[-1] == 0.0


def test_unsorted_input_gives_same_ap_as_sorted() -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        shuffled = [p[rng.permutation(len(p))] for p in GOLDEN_PRED]
        ordered = [p[np.argsort(-p[:, 4])] for p in GOLDEN_PRED]
        for arithmetic in ("matlab", "float64"):
            a = evaluate(shuffled, GOLDEN_GT, arithmetic=arithmetic, challenge=False).ap
            b = evaluate(ordered, GOLDEN_GT, arithmetic=arithmetic, challenge=False).ap
            assert a == b == pytest.approx(GOLDEN_AP, abs=1e-12)


@pytest.mark.parametrize("transform", [lambda s: 10 * s - 3, lambda s: 100 * s - 200, lambda s: s / 50])
def test_scores_outside_unit_interval(transform) -> None:
    preds = [np.column_stack([p[:, :4], transform(p[:, 4])]) for p in GOLDEN_PRED]
    for arithmetic in ("matlab", "float64"):
        assert evaluate(preds, GOLDEN_GT, arithmetic=arithmetic, challenge=False).ap == pytest.approx(
            GOLDEN_AP, abs=1e-12
        )


def test_normalisation_is_matlab_single_precision() -> None:
    s = np.array([0.5, 0.9, 0.8])
    np.testing.assert_array_equal(normalise_scores(s, "float64"), (s - 0.5) / (0.9 - 0.5))
    s32 = s.astype(np.float32)
    expected = ((s32 - np.float32(0.5)) / (np.float32(0.9) - np.float32(0.5))).astype(np.float64)
    np.testing.assert_array_equal(normalise_scores(s, "matlab"), expected)
    assert normalise_scores(s, "matlab")[2] != normalise_scores(s, "float64")[2]  # single rounding shows
    # norm_score.m starts max at realmin('single'): all-negative scores normalise against ~1.2e-38, not -1
    neg = np.array([-4.0, -1.0, -3.0])
    np.testing.assert_allclose(normalise_scores(neg, "matlab"), [0, 0.75, 0.25], atol=1e-7)
    np.testing.assert_allclose(normalise_scores(neg, "float64"), [0, 1, 1 / 3])
    assert np.isnan(normalise_scores(np.array([0.7, 0.7]), "float64")).all()


def test_all_equal_scores_give_zero_ap_with_a_warning() -> None:
    preds = [np.column_stack([p[:, :4], np.full(len(p), 0.7)]) for p in GOLDEN_PRED]
    result = evaluate(preds, GOLDEN_GT, challenge=False)
    assert result.ap == {"easy": 0.0, "medium": 0.0, "hard": 0.0}
    assert "all 5 prediction scores are equal" in result.warnings[0]


def test_matlab_arithmetic_takes_first_face_over_half_not_best() -> None:
    # faces 0 and 1 overlap with IoU 80/120; a prediction exactly on face 1 has rounded overlap 1 with both
    gt = _gt([[[0, 0, 9, 9], [2, 0, 9, 9]]], {s: [[1]] for s in SETTINGS})
    pred = [np.array([[2, 0, 9, 9, 0.9], [50, 50, 5, 5, 0.1]])]
    # float64: the best face (1, counts) -> true positive; matlab: face 0 (does not count) -> dropped
    assert evaluate(pred, gt, arithmetic="float64", challenge=False).ap["hard"] == 1.0
    assert evaluate(pred, gt, arithmetic="matlab", challenge=False).ap["hard"] == 0.0


def test_matlab_arithmetic_rounds_prediction_corners() -> None:
    # face 10..13 (area 16); prediction 10.5..13.5: float IoU 12.25/19.75 = 0.62, but MATLAB rounds the
    # prediction to 11..14 (half away from zero): inter 9, union round(16 + 16) - 9 = 23, 9/23 -> 0
    gt = _gt([[[10, 10, 3, 3]]], {s: [[0]] for s in SETTINGS})
    pred = [np.array([[10.5, 10.5, 3, 3, 0.9], [40, 40, 3, 3, 0.2]])]
    float_match = match_predictions(pred, gt, "float64")
    assert float_match.overlap[0] == pytest.approx(12.25 / 19.75)
    assert match_predictions(pred, gt, "matlab").overlap[0] == 0.0
    assert evaluate(pred, gt, arithmetic="float64", challenge=False).ap["easy"] == 1.0
    assert evaluate(pred, gt, arithmetic="matlab", challenge=False).ap["easy"] == 0.0


def test_matlab_overlap_is_integer_so_any_iou_acts_as_half() -> None:
    gt = _gt([[[0, 0, 9, 9]]], {s: [[0]] for s in SETTINGS})
    pred = [np.array([[0, 0, 9, 6, 0.9], [50, 50, 5, 5, 0.1]])]  # IoU 70/100 (h + 1 = 7), 1 after int32 division
    match = match_predictions(pred, gt, "matlab")
    assert match.overlap.tolist() == [1.0, 0.0]
    assert pr_curve(match, gt, "hard", 0.95).ap == 1.0
    float_match = match_predictions(pred, gt, "float64")
    assert float_match.overlap[0] == 0.7
    assert pr_curve(float_match, gt, "hard", 0.7).ap == 1.0 and pr_curve(float_match, gt, "hard", 0.75).ap == 0


def test_voc_ap_skips_nan_precision_like_matlab_max() -> None:
    recall = np.array([0.0, 0.0, 0.5, 0.5, 1.0])
    precision = np.array([np.nan, np.nan, 1.0, 0.5, 0.5])
    assert voc_ap(recall, precision) == pytest.approx(0.75)


def test_images_without_faces_are_skipped_and_counts_reported() -> None:
    gt = _gt([[[0, 0, 9, 9]], []], {s: [[0], []] for s in SETTINGS})
    pred = [np.array([[0, 0, 9, 9, 0.9]]), np.array([[5, 5, 9, 9, 0.95], [1, 1, 2, 2, 0.1]])]
    result = evaluate(pred, gt, challenge=False)
    assert result.ap["easy"] == 1.0  # the false positives on the face-less image count nowhere
    assert "2 predictions on images without faces are ignored" in result.warnings[0]
    assert result.counts["predictions"] == 3 and result.counts["images_without_predictions"] == 0


def test_bad_inputs_raise() -> None:
    # a negative width is evaluated (as the official code does), with a warning; NaN is refused
    accepted = evaluate([np.array([[0, 0, -1, 9, 0.9]]), np.zeros((0, 5))], GOLDEN_GT)
    assert "0--E/i0: 1 box(es) of negative width or height" in accepted.warnings[0]
    with pytest.raises(ValueError, match="NaN"):
        evaluate([np.array([[0, 0, 1, 9, np.nan]]), np.zeros((0, 5))], GOLDEN_GT)
    with pytest.raises(ValueError, match="2 ground-truth images"):
        evaluate([np.zeros((0, 5))], GOLDEN_GT)
    with pytest.raises(ValueError, match=r"IoU threshold must be in \(0, 1\]"):
        evaluate(GOLDEN_PRED, GOLDEN_GT, iou=0.0)
    fractional = _gt([[[0.5, 0, 9, 9]]], {s: [[0]] for s in SETTINGS})
    with pytest.raises(ValueError, match="not int32 pixels"):
        evaluate([np.array([[0, 0, 9, 9, 1.0]])], fractional, arithmetic="matlab")
    two = [np.array([[0.5, 0, 9, 9, 1.0], [40, 40, 9, 9, 0.5]])]
    assert evaluate(two, fractional, arithmetic="float64").ap["easy"] == 1.0


# ------------------------------------------------------------------------------- contract details by hand


def test_defaults_are_the_official_protocol() -> None:
    # arithmetic 'matlab', IoU 0.5, the challenge metric on, degenerate boxes reported
    default = evaluate(GOLDEN_PRED, GOLDEN_GT)
    assert default.arithmetic == "matlab" and default.iou == 0.5 and default.hard_map_50_95 is not None
    assert default.ap == evaluate(GOLDEN_PRED, GOLDEN_GT, 0.5, arithmetic="matlab").ap
    assert evaluate(GOLDEN_PRED, GOLDEN_GT, challenge=False).challenge_hard_ap == {}
    scores = np.array([0.2, 0.9, 0.3])
    np.testing.assert_array_equal(normalise_scores(scores), normalise_scores(scores, "matlab"))
    match = match_predictions(GOLDEN_PRED, GOLDEN_GT)
    assert match.arithmetic == "matlab" and match.n_faces == 4
    curve = pr_curve(match, GOLDEN_GT, "hard")
    assert (curve.setting, curve.iou, curve.arithmetic, curve.n_faces) == ("hard", 0.5, "matlab", 4)
    assert curve.ap == pytest.approx(GOLDEN_AP["hard"], abs=1e-12)
    degenerate = [np.array([[0, 0, -1, 9, 0.9], [0, 0, 9, 9, 0.0]]), np.zeros((0, 5))]  # a score of 0 is fine
    warnings = match_predictions(degenerate, GOLDEN_GT).warnings
    assert warnings == ("detections of 0--E/i0: 1 box(es) of negative width or height; evaluated as the official "
                        "tool does",)  # fmt: skip


def test_the_challenge_metric_without_the_hard_setting_asked_for() -> None:
    result = evaluate(GOLDEN_PRED, GOLDEN_GT, settings=("easy",))
    assert set(result.ap) == {"easy"} and result.hard_map_50_95 is not None
    assert result.challenge_hard_ap[0.5] == pytest.approx(GOLDEN_AP["hard"], abs=1e-12)


def test_float64_curves_are_the_curves_in_float64_arithmetic() -> None:
    result = evaluate(GOLDEN_PRED, GOLDEN_GT, arithmetic="float64", challenge=False)
    assert all(result.float64_curves[s] is result.curves[s] for s in SETTINGS)  # computed once
    # float64 matches normalise in float64: 1/3 stays 1/3, not a single-precision neighbour
    scores = np.array([0.0, 1 / 3, 1.0])
    gt = _gt([[[0, 0, 9, 9], [20, 0, 9, 9], [40, 0, 9, 9]]], {s: [[0, 1, 2]] for s in SETTINGS})
    pred = [np.column_stack([[[0, 0, 9, 9], [20, 0, 9, 9], [40, 0, 9, 9]], scores])]
    assert sorted(match_predictions(pred, gt, "float64").score.tolist()) == [0.0, 1 / 3, 1.0]
    assert evaluate(pred, gt, arithmetic="matlab", challenge=False).float64_curves["easy"].ap == 1.0


def test_normalisation_edge_cases() -> None:
    assert np.isnan(normalise_scores(np.array([0.7]), "float64")).all()  # one score: 0 / 0
    assert np.isnan(normalise_scores(np.array([0.7]), "matlab")).all()
    float32 = np.array([0.1, 0.2, 0.7], np.float32)  # computed in float64 whatever the input type
    s64 = float32.astype(np.float64)
    exact = (s64 - s64.min()) / (s64.max() - s64.min())
    np.testing.assert_array_equal(normalise_scores(float32, "float64"), exact)
    with np.errstate(all="raise"):  # 0 / 0 gives NaN quietly, as in MATLAB
        assert np.isnan(normalise_scores(np.array([2.0, 2.0]), "matlab")).all()
        assert np.isnan(normalise_scores(np.array([2.0, 2.0]), "float64")).all()


def test_single_precision_score_range() -> None:
    gt = _gt([[[0, 0, 9, 9]]], {s: [[0]] for s in SETTINGS})
    top = float(np.finfo(np.float32).max)
    pred = [np.array([[0, 0, 9, 9, top], [50, 50, 9, 9, 0.0]])]
    assert evaluate(pred, gt, challenge=False).ap["easy"] == 1.0  # the largest single is still fine
    pred[0][0, 4] = 1e39
    with pytest.raises(ValueError, match=r"^a score exceeds single precision range: MATLAB's normalisation would "
                                         r"give inf$"):  # fmt: skip
        evaluate(pred, gt, challenge=False)
    assert evaluate(pred, gt, arithmetic="float64", challenge=False).ap["easy"] == 1.0  # no limit in float64


def test_messages_name_the_problem() -> None:
    preds = [np.column_stack([p[:, :4], np.full(len(p), 0.7)]) for p in GOLDEN_PRED]
    assert evaluate(preds, GOLDEN_GT, challenge=False).warnings == (
        "all 5 prediction scores are equal (np.float64(0.7)): min-max normalisation divides 0 by 0 and no "
        "prediction passes any threshold (AP 0, as in the official code)",
    )
    fractional = _gt([[[0.5, 0, 9, 9]]], {s: [[0]] for s in SETTINGS})
    with pytest.raises(ValueError, match=r"^the ground-truth boxes are not int32 pixels \(as in the official "
                                         r"\.mat\): use arithmetic='float64'$"):  # fmt: skip
        evaluate([np.array([[0, 0, 9, 9, 1.0]])], fractional)
    with pytest.raises(ValueError, match=r"^arithmetic must be one of \('matlab', 'float64'\), got 'int'$"):
        evaluate(GOLDEN_PRED, GOLDEN_GT, arithmetic="int")
    with pytest.raises(ValueError, match=r"^no face counts in setting 'easy': recall is undefined$"):
        pr_curve(match_predictions(GOLDEN_PRED, GOLDEN_GT), _gt([[[0, 0, 9, 9]], []], {"easy": [[], []]}), "easy")
    with pytest.raises(ValueError, match=r"^detections of image 1: expected shape \(N, 5\) x y w h score, got "
                                         r"\(2, 4\)$"):  # fmt: skip
        evaluate([np.zeros((0, 5)), np.ones((2, 4))], GOLDEN_GT)
    with pytest.raises(ValueError, match=r"^detections of 0--E/i1: NaN or infinite values$"):
        evaluate([GOLDEN_PRED[0], np.array([[0, 0, 1, 1, 0.5], [0, 0, 1, np.inf, 0.2]])], GOLDEN_GT)


def test_iou_limits() -> None:
    match = match_predictions(GOLDEN_PRED, GOLDEN_GT, "float64")
    assert pr_curve(match, GOLDEN_GT, "easy", 1.0).ap == pytest.approx(GOLDEN_AP["easy"], abs=1e-12)  # exact hits
    with pytest.raises(ValueError, match="IoU threshold"):
        pr_curve(match, GOLDEN_GT, "easy", 1.5)


def test_empty_detection_arrays_of_any_shape() -> None:
    for empty in (np.zeros(0), [], np.zeros((0, 4)), np.zeros((0, 7))):
        result = evaluate([GOLDEN_PRED[0], empty], GOLDEN_GT, challenge=False)
        assert result.ap == pytest.approx(GOLDEN_AP, abs=1e-12)
        assert result.counts["images_without_predictions"] == 1 and result.counts["faces"] == 4


def test_ground_truth_at_the_int32_limits() -> None:
    extreme = _gt([[[-(2**31), 0, 2**31 - 1, 9]]], {s: [[0]] for s in SETTINGS})  # x = INT32_MIN, w = INT32_MAX
    pred = [np.array([[-(2**31), 0, 2**31 - 1, 9, 1.0], [5, 50, 3, 3, 0.0]])]
    assert evaluate(pred, extreme, challenge=False).ap["easy"] == 1.0
    beyond = _gt([[[2**31, 0, 9, 9]]], {s: [[0]] for s in SETTINGS})
    with pytest.raises(ValueError, match="not int32 pixels"):
        evaluate([np.array([[0, 0, 9, 9, 1.0]])], beyond)


def test_empty_ground_truth_is_a_clear_error() -> None:
    empty = GroundTruth((), (), (), {s: () for s in SETTINGS})
    for arithmetic in ("matlab", "float64"):
        with pytest.raises(ValueError, match=r"^no face counts in setting 'easy': recall is undefined$"):
            evaluate([], empty, arithmetic=arithmetic)


def test_submission_counts_the_images_without_a_prediction_file(tmp_path) -> None:
    from retina.data.widerface import read_predictions

    (tmp_path / "0--E").mkdir()
    (tmp_path / "0--E" / "i0.txt").write_text("i0.jpg\n1\n0 0 9 9 0.9\n")
    result = evaluate(read_predictions(tmp_path, GOLDEN_GT, missing_as_empty=True), GOLDEN_GT, challenge=False)
    assert result.counts["images_missing_prediction_file"] == 1 and result.counts["predictions"] == 1


# ------------------------------------------------------------------------------------ real ground truth


@pytest.fixture(scope="module")
def val_gt() -> GroundTruth:
    return load_ground_truth(shared_file("widerface/ground_truth"))


def test_counts_per_setting(val_gt: GroundTruth) -> None:
    assert val_gt.n_faces == 39708
    assert {s: val_gt.count(s) for s in SETTINGS} == {"easy": 7211, "medium": 13319, "hard": 31958}


def test_ground_truth_as_predictions(val_gt: GroundTruth) -> None:
    """Each distinct face box submitted once, distinct scores: easy and medium AP 1. Hard tops out at
    31956/31958: face 8 of 39_Ice_Skating_iceskiing_39_583 has width -2 (no box can overlap it), and faces
    65 and 104 of 21_Festival_Festival_21_604 are the same box (a prediction takes the first face)."""
    rng = np.random.default_rng(0)
    preds = []
    for boxes in val_gt.boxes:
        distinct = np.unique(boxes[(boxes[:, 2] >= 0) & (boxes[:, 3] >= 0)], axis=0)
        preds.append(np.column_stack([distinct, rng.permutation(len(distinct)) + rng.uniform(0, 0.5)]))
    result = evaluate(preds, val_gt, arithmetic="float64")
    assert result.ap["easy"] == pytest.approx(1.0, abs=1e-12)
    assert result.ap["medium"] == pytest.approx(1.0, abs=1e-12)
    assert result.ap["hard"] == pytest.approx(31956 / 31958, abs=1e-12)
    assert result.challenge_hard_ap[0.95] == pytest.approx(31956 / 31958, abs=1e-12)
    assert result.hard_map_50_95 == pytest.approx(31956 / 31958, abs=1e-12)
    # MATLAB arithmetic: overlapping faces (rounded IoU >= 0.5) swallow each other's exact predictions
    matlab = evaluate(preds, val_gt, challenge=False).ap
    assert all(0.99 < matlab[s] < result.ap[s] for s in SETTINGS)
