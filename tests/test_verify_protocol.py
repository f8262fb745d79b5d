"""Verification metrics: golden values worked out by hand on tiny score sets, and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retina.errors import RetinaError
from retina.verify.protocol import (
    accuracy,
    best_threshold,
    consecutive_folds,
    cosine_scores,
    fold_accuracy,
    roc_curve,
    tar_at_far,
)


def _two_per_fold(genuine: list[float], impostor: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold f holds the pair genuine[f] (same) and impostor[f] (different)."""
    scores = np.array([s for pair in zip(genuine, impostor, strict=True) for s in pair])
    same = np.tile([True, False], len(genuine))
    return scores, same, np.repeat(np.arange(len(genuine)), 2)


def test_cosine_scores_golden() -> None:
    a = np.array([[1.0, 0.0], [3.0, 4.0], [1.0, 2.0], [2.0, 0.0]])
    b = np.array([[1.0, 1.0], [6.0, 8.0], [-1.0, -2.0], [0.0, 5.0]])
    got = cosine_scores(a, b)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [1 / math.sqrt(2), 1.0, -1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(cosine_scores(a * 7.5, b * 0.01), got, atol=1e-15)  # scale does not matter


def test_cosine_scores_bad_input() -> None:
    with pytest.raises(RetinaError, match="all zeros"):
        cosine_scores(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]))
    with pytest.raises(RetinaError, match="one shape"):
        cosine_scores(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(RetinaError, match="NaN"):
        cosine_scores(np.array([[np.nan, 1.0]]), np.ones((1, 2)))


def test_consecutive_folds() -> None:
    np.testing.assert_array_equal(np.bincount(consecutive_folds(6000)), [600] * 10)
    folds = consecutive_folds(23, 10)  # KFold sizes: the first 23 % 10 = 3 folds get one more
    np.testing.assert_array_equal(np.bincount(folds), [3, 3, 3, 2, 2, 2, 2, 2, 2, 2])
    assert (np.diff(folds) >= 0).all()
    with pytest.raises(RetinaError):
        consecutive_folds(5, 10)


def test_best_threshold_ties_go_to_the_smallest() -> None:
    # Sorted: 0.1 imp, 0.2 gen, 0.3 imp, 0.4 gen. Correct per candidate: -inf 2, 0.15 3, 0.25 2, 0.35 3, inf 2.
    scores = np.array([0.3, 0.1, 0.4, 0.2])
    same = np.array([False, False, True, True])
    assert best_threshold(scores, same) == pytest.approx(0.15)
    assert accuracy(scores, same, 0.15) == 0.75
    assert best_threshold(np.array([0.5, 0.7]), np.array([True, True])) == -np.inf  # accept everything
    assert best_threshold(np.array([0.5, 0.7]), np.array([False, False])) == np.inf  # reject everything


def test_fold_accuracy_separated_golden() -> None:
    # Genuine 0.60 + 0.03 f, impostor 0.10 + 0.03 f. Threshold = midpoint of the other folds' highest impostor
    # and lowest genuine: fold 0 out (0.37 + 0.63) / 2, fold 9 out (0.34 + 0.60) / 2, else (0.37 + 0.60) / 2.
    f = np.arange(10)
    scores, same, folds = _two_per_fold(list(0.6 + 0.03 * f), list(0.1 + 0.03 * f))
    result = fold_accuracy(scores, same, folds)
    assert result.folds == tuple(range(10))
    assert result.accuracies == (1.0,) * 10
    np.testing.assert_allclose(result.thresholds, [0.5] + [0.485] * 8 + [0.47], atol=1e-12)
    assert (result.mean, result.std_sample, result.std_population) == (1.0, 0.0, 0.0)


def test_fold_accuracy_training_threshold_differs_from_held_out_optimum() -> None:
    # Folds 1-9: genuine 0.60 + 0.01 f, impostor 0.30 + 0.01 f. Fold 0: genuine 0.25, impostor 0.20.
    # Fold 0 out: the other folds put the threshold at (0.39 + 0.61) / 2 = 0.5, so fold 0's genuine pair (0.25)
    # is rejected: accuracy 0.5, although 0.225 would separate fold 0 alone. Other folds out: the best threshold
    # rejects fold 0's genuine pair (one error; accepting it would cost 8 impostor errors) and separates the
    # held-out fold: accuracy 1. Mean 0.95; std: sqrt(0.225 / 9) (ddof=1) and sqrt(0.225 / 10) = 0.15 (ddof=0).
    f = np.arange(1, 10)
    scores, same, folds = _two_per_fold([0.25, *(0.6 + 0.01 * f)], [0.20, *(0.3 + 0.01 * f)])
    result = fold_accuracy(scores, same, folds)
    assert result.accuracies == (0.5,) + (1.0,) * 9
    np.testing.assert_allclose(result.thresholds, [0.5, 0.505] + [0.5] * 7 + [0.495], atol=1e-12)
    assert best_threshold(scores[:2], same[:2]) == pytest.approx(0.225)  # fold 0's own optimum
    assert result.mean == pytest.approx(0.95, abs=1e-15)
    assert result.std_sample == pytest.approx(math.sqrt(0.025), abs=1e-15)
    assert result.std_population == pytest.approx(0.15, abs=1e-15)


def test_fold_accuracy_invariants() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    same = rng.random(n) < 0.5
    folds = consecutive_folds(n)
    random = fold_accuracy(rng.random(n), same, folds)
    assert abs(random.mean - 0.5) < 0.05  # chance level for scores unrelated to the labels
    separated = fold_accuracy(np.where(same, 1.0, 0.0) + rng.random(n) * 0.9, same, folds)
    assert separated.accuracies == (1.0,) * 10
    # Only the order of the scores matters: a strictly increasing map gives the same accuracies.
    noisy = same + rng.normal(0, 0.7, n)
    a, b = fold_accuracy(noisy, same, folds), fold_accuracy(np.exp(noisy) * 3 - 1, same, folds)
    assert a.accuracies == b.accuracies and 0.7 < a.mean < 0.85
    assert a.std_population == pytest.approx(np.std(a.accuracies))
    assert a.std_sample == pytest.approx(np.std(a.accuracies, ddof=1))


def test_fold_accuracy_bad_input() -> None:
    with pytest.raises(RetinaError, match="2 distinct folds"):
        fold_accuracy(np.ones(4), np.array([1, 0, 1, 0]), np.zeros(4, dtype=int))
    with pytest.raises(RetinaError, match="integer fold ids"):
        fold_accuracy(np.ones(4), np.ones(4, bool), np.zeros(3, dtype=int))
    with pytest.raises(RetinaError, match="booleans"):
        fold_accuracy(np.ones(2), np.array([0.5, 1.0]), np.array([0, 1]))
    with pytest.raises(RetinaError, match="NaN"):
        fold_accuracy(np.array([np.nan, 1.0]), np.array([True, False]), np.array([0, 1]))


def test_tar_at_far_golden() -> None:
    impostor = np.arange(1000) / 1000  # 0.000 .. 0.999, descending: 0.999, 0.998, ...
    genuine = np.array([0.9985, 0.9975, 0.5, 0.999])
    scores = np.concatenate([genuine, impostor])
    same = np.arange(len(scores)) < len(genuine)
    r3, r2, r4 = tar_at_far(scores, same, fars=(1e-3, 1e-2, 1e-4))
    # FAR 1e-3: k = 1 impostor may pass; threshold = the 2nd highest impostor, 0.998 -> 0.999 passes (1/1000);
    # genuines above 0.998: 0.9985 and 0.999 -> TAR 2/4.
    assert (r3.threshold, r3.achieved_far, r3.tar, r3.note) == (0.998, 0.001, 0.5, "")
    assert (r3.genuine, r3.impostor) == (4, 1000)
    # FAR 1e-2: k = 10; threshold = 11th highest, 0.989; genuines above: 0.9985, 0.9975, 0.999.
    assert (r2.threshold, r2.achieved_far, r2.tar) == (0.989, 0.01, 0.75)
    # FAR 1e-4 needs 10000 impostors: not measurable, NaN with the reason.
    assert math.isnan(r4.tar) and math.isnan(r4.threshold) and math.isnan(r4.achieved_far)
    assert "10000 impostor pairs" in r4.note and "1000 here" in r4.note


def test_tar_at_far_ties_keep_far_below_target() -> None:
    # The three highest impostors tie at 0.9: FAR 2e-3 allows k = 2, threshold = 3rd highest = 0.9, and no
    # impostor is strictly above it (accepting the tie would give 3/1000 > 2e-3).
    impostor = np.concatenate([[0.9, 0.9, 0.9], np.linspace(0.0, 0.5, 997)])
    genuine = np.array([0.95, 0.9, 0.7])
    scores = np.concatenate([genuine, impostor])
    same = np.arange(len(scores)) < 3
    (r,) = tar_at_far(scores, same, fars=(2e-3,))
    assert (r.threshold, r.achieved_far, r.tar) == (0.9, 0.0, pytest.approx(1 / 3))


def test_tar_at_far_needs_both_classes() -> None:
    with pytest.raises(RetinaError, match="both genuine and impostor"):
        tar_at_far(np.ones(5), np.ones(5, bool))
    with pytest.raises(RetinaError, match="FAR"):
        tar_at_far(np.array([0.1, 0.2]), np.array([True, False]), fars=(0.0,))


def test_roc_curve_golden() -> None:
    # scikit-learn's roc_curve docstring example (drop_intermediate=False).
    far, tar, thresholds = roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    np.testing.assert_array_equal(far, [0.0, 0.0, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(tar, [0.0, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])
    # Tied scores are one threshold: both pairs are accepted together.
    far, tar, thresholds = roc_curve(np.array([0.5, 0.5]), np.array([True, False]))
    np.testing.assert_array_equal(np.stack([far, tar, thresholds]), [[0, 1], [0, 1], [np.inf, 0.5]])


def test_roc_curve_invariants() -> None:
    rng = np.random.default_rng(1)
    same = rng.random(500) < 0.3
    scores = np.round(same * 0.5 + rng.random(500), 2)  # rounding makes ties
    far, tar, thresholds = roc_curve(scores, same)
    assert len(far) == len(tar) == len(thresholds) == len(np.unique(scores)) + 1
    assert (far[0], tar[0], far[-1], tar[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (np.diff(far) >= 0).all() and (np.diff(tar) >= 0).all() and (np.diff(thresholds) < 0).all()
    for i in (1, 10, len(thresholds) // 2, len(thresholds) - 1):  # each point: counts at score >= threshold
        accepted = scores >= thresholds[i]
        assert far[i] == np.mean(accepted[~same]) and tar[i] == np.mean(accepted[same])
