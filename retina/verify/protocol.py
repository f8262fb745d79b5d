"""Face verification metrics on pair scores: cosine similarity, the LFW 10-fold accuracy, TAR at FAR and ROC.

    scores = cosine_scores(emb_left, emb_right)              # (N,) float64, one per pair
    result = fold_accuracy(scores, same, consecutive_folds(len(scores)))
    result.mean, result.std_sample, result.std_population    # the LFW "mean +- std" figure
    tar_at_far(scores, same, fars=(1e-3, 1e-4))              # one TarAtFar per FAR
    far, tar, thresholds = roc_curve(scores, same)

``same`` is (N,) bool: True for a genuine pair (one identity), False for an impostor pair. Higher scores mean
more alike. Decision rules (each stated where it is used): the 10-fold accuracy and TAR@FAR accept a pair as
"same" when its score is strictly above the threshold; the ROC curve, as scikit-learn's ``roc_curve``, accepts
scores at or above each threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from retina.errors import RetinaError

LFW_FOLDS = 10  # the "View 2" protocol of LFW (pairs.txt) and insightface's verification .bin files


def _scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """(N,) finite float64, N >= 1; anything else is a RetinaError naming ``name``."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1 or not len(arr):
        raise RetinaError(f"{name}: expected a non-empty (N,) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise RetinaError(f"{name}: has NaN or infinite values")
    return arr


def _labels(same: np.ndarray, n: int) -> np.ndarray:
    """(n,) bool genuine/impostor labels; a RetinaError for another length or non-boolean values."""
    arr = np.asarray(same)
    if arr.shape != (n,):
        raise RetinaError(f"same: expected shape ({n},) to match the scores, got {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise RetinaError("same: expected booleans (True for a genuine pair)")
        arr = arr.astype(bool)
    return arr


def cosine_scores(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
    """Cosine similarity of paired embeddings: (N, D) and (N, D) -> (N,) float64 in [-1, 1].

    Each row is L2-normalised (in float64) before the dot product. A zero row has no direction: a RetinaError.
    """
    a = np.asarray(emb_a, dtype=np.float64)
    b = np.asarray(emb_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or not a.shape[1]:
        raise RetinaError(f"embeddings: expected two (N, D) arrays of one shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise RetinaError("embeddings: have NaN or infinite values")
    norm_a, norm_b = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if (norm_a == 0).any() or (norm_b == 0).any():
        raise RetinaError("embeddings: a row is all zeros, so its cosine similarity is undefined")
    dots = np.einsum("nd,nd->n", a / norm_a[:, None], b / norm_b[:, None])
    return np.clip(dots, -1.0, 1.0)


def consecutive_folds(n: int, k: int = LFW_FOLDS) -> np.ndarray:
    """Fold ids (n,) int64 for ``n`` pairs in ``k`` consecutive blocks, as pairs.txt and the .bin files order them.

    Block sizes as ``sklearn.model_selection.KFold(k, shuffle=False)`` (insightface's split): the first
    ``n % k`` folds hold ``n // k + 1`` pairs, the rest ``n // k``.
    """
    if k < 2 or n < k:
        raise RetinaError(f"cannot split {n} pairs into {k} folds (need k >= 2 and at least k pairs)")
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    return np.repeat(np.arange(k), sizes)


def _correct_per_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All distinct decisions on (N,) scores: candidate thresholds (M + 1,) ascending and correct counts (M + 1,).

    With the M sorted unique scores u: -inf (all "same"), the midpoints (u[i] + u[i + 1]) / 2, +inf (all
    "different"). A pair is "same" when its score > threshold.
    """
    unique, index = np.unique(scores, return_inverse=True)
    genuine = np.bincount(index, weights=same, minlength=len(unique))
    impostor = np.bincount(index, weights=~same, minlength=len(unique))
    # Threshold k (0..M) accepts the scores unique[k:]: genuines there plus impostors in unique[:k] are right.
    genuine_above = genuine.sum() - np.concatenate([[0.0], np.cumsum(genuine)])
    impostor_below = np.concatenate([[0.0], np.cumsum(impostor)])
    mids = unique[:-1] + (unique[1:] - unique[:-1]) / 2
    # Between two adjacent floats the midpoint rounds onto one of them; the lower one keeps "score > t" exact.
    mids = np.where(mids >= unique[1:], unique[:-1], mids)
    thresholds = np.concatenate([[-np.inf], mids, [np.inf]])
    return thresholds, genuine_above + impostor_below


@dataclass(frozen=True)
class FoldAccuracy:
    """The k-fold verification accuracy. Per fold (in fold-id order): its id, the accuracy on that fold and the
    threshold chosen on the other folds. ``std_sample`` divides by k - 1 (ddof=1); ``std_population`` by k
    (ddof=0, ``np.std``: the "+-" that insightface's verification prints)."""

    folds: tuple[int, ...]
    accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]
    mean: float
    std_sample: float
    std_population: float


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold that maximises the accuracy of "same iff score > threshold" on (N,) scores and labels.

    Candidates: -inf, the midpoints between consecutive sorted unique scores, +inf. Ties go to the smallest
    candidate. (insightface searches a fixed grid of distances instead, step 0.01; the exact search here can
    differ from it by less than a grid step.)
    """
    scores = _scores(scores)
    thresholds, correct = _correct_per_threshold(scores, _labels(same, len(scores)))
    return float(thresholds[int(np.argmax(correct))])  # argmax: the first, i.e. smallest, of the best


def accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of (N,) pairs decided right by "same iff score > threshold"."""
    scores = _scores(scores)
    return float(np.mean((scores > threshold) == _labels(same, len(scores))))


def fold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> FoldAccuracy:
    """The LFW-standard k-fold accuracy of (N,) pair scores with (N,) bool labels and (N,) int fold ids.

    For each fold: the threshold is :func:`best_threshold` on the pairs of all the other folds, and the
    accuracy is measured on the held-out fold with it. Needs at least two distinct fold ids.
    """
    scores = _scores(scores)
    same = _labels(same, len(scores))
    folds = np.asarray(folds)
    if folds.shape != scores.shape or not np.issubdtype(folds.dtype, np.integer):
        raise RetinaError(f"folds: expected ({len(scores)},) integer fold ids, got {folds.dtype} {folds.shape}")
    ids = np.unique(folds)
    if len(ids) < 2:
        raise RetinaError(f"folds: need at least 2 distinct folds, got {len(ids)}")
    accuracies, thresholds = [], []
    for fold in ids:
        test = folds == fold
        threshold = best_threshold(scores[~test], same[~test])
        thresholds.append(threshold)
        accuracies.append(accuracy(scores[test], same[test], threshold))
    acc = np.array(accuracies)
    return FoldAccuracy(
        folds=tuple(int(f) for f in ids),
        accuracies=tuple(accuracies),
        thresholds=tuple(thresholds),
        mean=float(acc.mean()),
        std_sample=float(acc.std(ddof=1)),
        std_population=float(acc.std(ddof=0)),
    )


@dataclass(frozen=True)
class TarAtFar:
    """TAR at one FAR. ``far``: the FAR asked for; ``achieved_far``: the impostor fraction above ``threshold``
    (<= ``far``); ``tar``: the genuine fraction above it. ``tar``, ``threshold`` and ``achieved_far`` are NaN
    when the FAR cannot be measured with this many impostor pairs; ``note`` then says why (else it is empty)."""

    far: float
    tar: float
    threshold: float
    achieved_far: float
    genuine: int
    impostor: int
    note: str


def _split(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores; a RetinaError when either set is empty."""
    scores = _scores(scores)
    same = _labels(same, len(scores))
    if same.all() or not same.any():
        raise RetinaError("need both genuine and impostor pairs (the labels are all one value)")
    return scores[same], scores[~same]


def tar_at_far(scores: np.ndarray, same: np.ndarray, fars: tuple[float, ...] = (1e-3, 1e-4)) -> tuple[TarAtFar, ...]:
    """TAR at each FAR in ``fars`` for (N,) scores and bool labels; a pair is accepted when score > threshold.

    Order-statistic rule: with M impostor scores sorted descending i_1 >= ... >= i_M, at most
    k = floor(FAR * M) of them may be accepted, and the threshold is i_(k+1): the smallest threshold with at
    most k impostors strictly above it (fewer when scores tie at it). Measurable only when k >= 1, i.e.
    M >= 1 / FAR: with fewer impostors no false accept is allowed at all, so the FAR is below the resolution of
    the data, and the result is NaN with a note (no extrapolation). No interpolation between ROC points.
    """
    genuine, impostor = _split(scores, same)
    ranked = np.sort(impostor)[::-1]
    out = []
    for far in fars:
        if not 0.0 < far < 1.0:
            raise RetinaError(f"FAR must lie in (0, 1), got {far}")
        k = math.floor(far * len(impostor) * (1 + 1e-12))  # the factor absorbs rounding in far * M
        if k < 1:
            note = f"FAR {far:g} needs at least {math.ceil(1 / far)} impostor pairs, only {len(impostor)} here"
            out.append(TarAtFar(far, math.nan, math.nan, math.nan, len(genuine), len(impostor), note))
            continue
        threshold = float(ranked[k]) if k < len(ranked) else -math.inf
        out.append(
            TarAtFar(
                far=far,
                tar=float(np.mean(genuine > threshold)),
                threshold=threshold,
                achieved_far=float(np.mean(impostor > threshold)),
                genuine=len(genuine),
                impostor=len(impostor),
                note="",
            )
        )
    return tuple(out)


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve of (N,) scores and bool labels: (far, tar, thresholds), each (M + 1,) for M unique scores.

    Semantics of ``sklearn.metrics.roc_curve(same, scores, drop_intermediate=False)``: thresholds descending,
    the first +inf (nothing accepted: the point (0, 0)), then every unique score; a pair is accepted when its
    score >= threshold. FAR and TAR are non-decreasing and end at (1, 1).
    """
    genuine, impostor = _split(scores, same)
    values = np.concatenate([genuine, impostor])
    is_genuine = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    unique, index = np.unique(values, return_inverse=True)
    # Counts per unique score, from the highest: accepted at threshold u = all scores >= u.
    tp = np.cumsum(np.bincount(index, weights=is_genuine, minlength=len(unique))[::-1])
    fp = np.cumsum(np.bincount(index, weights=~is_genuine, minlength=len(unique))[::-1])
    far = np.concatenate([[0.0], fp / len(impostor)])
    tar = np.concatenate([[0.0], tp / len(genuine)])
    return far, tar, np.concatenate([[np.inf], unique[::-1]])
