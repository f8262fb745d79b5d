"""Image bootstrap of WIDER FACE APs: an interval for each AP, and a paired interval for a difference of APs.

Images are drawn with replacement (``numpy.random.default_rng(seed)``, in blocks of ``BLOCK`` draws); a draw's
AP is the official protocol's on the drawn images, each counted as often as it was drawn. The matching is per
image, so one pass of the evaluator (:mod:`retina.eval.widerface`) gives, per image, how many proposals and
true positives first pass each of the 1000 thresholds; a draw's PR curve is those counts summed with the
draw's multiplicities, and its AP is computed by the evaluator's own code (``PRCurve.ap``). Scores are
normalised once, over the evaluated images, as in the evaluation the draws resample. A paired bootstrap
draws the same images for two prediction sets of the same images, so their AP difference varies only with
the images, not with two independent draws. Intervals are percentile intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from retina.data.widerface import SETTINGS, GroundTruth, Submission
from retina.eval.widerface import THRESHOLD_COUNT, PRCurve, _counted_faces, _match_all, curve_members

BLOCK = 250  # draws generated and summed at a time (bounds memory: BLOCK x images integers)
METHOD = (
    "image bootstrap: images drawn with replacement (numpy default_rng(seed), blocks of 250 draws), each draw "
    "evaluated by the official protocol on the drawn images with scores normalised over the evaluated set; "
    "percentile interval; paired: the same draws for both prediction sets"
)


@dataclass(frozen=True)
class Interval:
    """An AP (or AP difference) on the evaluated images and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    std: float
    draws: int  # draws used: those with at least one face of the setting

    def to_dict(self) -> dict[str, float | int]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "std": self.std, "draws": self.draws}


@dataclass(frozen=True, eq=False)
class ImageCounts:
    """One setting's counts per image: ``proposals``, ``true_positives`` (I, 1000) sparse, entry (i, k) = how many
    of image i's predictions first pass threshold k; ``faces (I,)`` the image's faces that count."""

    setting: str
    iou: float
    arithmetic: str
    proposals: sparse.csr_matrix
    true_positives: sparse.csr_matrix
    faces: np.ndarray

    def curves(self, weights: np.ndarray) -> list[PRCurve | None]:
        """The PR curve of each row of ``weights (B, I)`` (image multiplicities); None for a row without faces."""
        proposals = np.cumsum((self.proposals.T @ weights.T).T, axis=1)
        true_positives = np.cumsum((self.true_positives.T @ weights.T).T, axis=1)
        faces = weights @ self.faces
        return [
            PRCurve(self.setting, self.iou, self.arithmetic, proposals[b], true_positives[b], int(faces[b]))
            if faces[b] > 0
            else None
            for b in range(len(weights))
        ]

    def ap(self, weights: np.ndarray) -> np.ndarray:
        """(B,) AP of each row of ``weights (B, I)``; NaN for a row without a face of the setting."""
        return np.array([np.nan if c is None else c.ap for c in self.curves(weights)])


def image_counts(
    predictions: Submission | Sequence[np.ndarray],
    gt: GroundTruth,
    iou: float = 0.5,
    arithmetic: str = "matlab",
    settings: Sequence[str] = SETTINGS,
) -> dict[str, ImageCounts]:
    """Per-image counts of every setting from one matching pass (see the module docstring)."""
    detections = predictions.detections if isinstance(predictions, Submission) else tuple(predictions)
    matches = _match_all(detections, gt, (arithmetic,), size_warnings=False)[arithmetic]
    n_images = len(gt.images)
    face_image = np.repeat(np.arange(n_images), [len(b) for b in gt.boxes])
    image = face_image[matches.face]
    out = {}
    for setting in settings:
        proposal, first = curve_members(matches, _counted_faces(gt, setting), iou)
        out[setting] = ImageCounts(
            setting,
            float(iou),
            arithmetic,
            _histograms(image[proposal], matches.first_threshold[proposal], n_images),
            _histograms(image[first], matches.first_threshold[first], n_images),
            np.array([len(k) for k in gt.keep[setting]], dtype=np.int64),
        )
    return out


def _histograms(image: np.ndarray, first_threshold: np.ndarray, n_images: int) -> sparse.csr_matrix:
    """(I, 1000) int64 counts of (image, first threshold passed); predictions passing none are left out."""
    ones = np.ones(len(image), dtype=np.int64)
    counts = sparse.csr_matrix((ones, (image, first_threshold)), shape=(n_images, THRESHOLD_COUNT + 1))
    return counts[:, :THRESHOLD_COUNT]


def draws(n_images: int, n: int, seed: int) -> np.ndarray:
    """(n, I) int64 multiplicities of ``n`` bootstrap draws of ``n_images`` images, in blocks of ``BLOCK``."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, n_images), dtype=np.int64)
    for start in range(0, n, BLOCK):
        picks = rng.integers(0, n_images, size=(min(BLOCK, n - start), n_images))
        for row, pick in enumerate(picks, start=start):
            out[row] = np.bincount(pick, minlength=n_images)
    return out


def interval(estimate: float, values: np.ndarray, level: float = 0.95) -> Interval:
    """Percentile interval of the finite ``values`` (NaN draws are left out)."""
    kept = values[np.isfinite(values)]
    if not len(kept):
        return Interval(estimate, float("nan"), float("nan"), float("nan"), 0)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(kept, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), float(np.std(kept, ddof=1) if len(kept) > 1 else 0.0),
                    len(kept))  # fmt: skip


def bootstrap(
    predictions: Submission | Sequence[np.ndarray],
    gt: GroundTruth,
    n: int = 1000,
    seed: int = 0,
    *,
    iou: float = 0.5,
    arithmetic: str = "matlab",
    level: float = 0.95,
    settings: Sequence[str] = SETTINGS,
) -> dict[str, Interval]:
    """Setting -> AP on the evaluated images and its ``level`` bootstrap interval over ``n`` draws."""
    counts = image_counts(predictions, gt, iou, arithmetic, settings)
    weights = draws(len(gt.images), n, seed)
    everything = np.ones((1, len(gt.images)), dtype=np.int64)
    return {s: interval(float(c.ap(everything)[0]), c.ap(weights), level) for s, c in counts.items()}


def paired_bootstrap(
    a: Submission | Sequence[np.ndarray],
    b: Submission | Sequence[np.ndarray],
    gt: GroundTruth,
    n: int = 1000,
    seed: int = 0,
    *,
    iou: float = 0.5,
    arithmetic: str = "matlab",
    level: float = 0.95,
    settings: Sequence[str] = SETTINGS,
) -> dict[str, dict[str, Interval]]:
    """Setting -> ``{"a", "b", "difference"}``: each AP and ``AP(b) - AP(a)`` with intervals over the same draws."""
    counts_a = image_counts(a, gt, iou, arithmetic, settings)
    counts_b = image_counts(b, gt, iou, arithmetic, settings)
    weights = draws(len(gt.images), n, seed)
    everything = np.ones((1, len(gt.images)), dtype=np.int64)
    out = {}
    for s in settings:
        ap_a, ap_b = counts_a[s].ap(weights), counts_b[s].ap(weights)
        full_a, full_b = float(counts_a[s].ap(everything)[0]), float(counts_b[s].ap(everything)[0])
        out[s] = {
            "a": interval(full_a, ap_a, level),
            "b": interval(full_b, ap_b, level),
            "difference": interval(full_b - full_a, ap_b - ap_a, level),
        }
    return out


def record(n: int, seed: int, level: float) -> dict[str, Any]:
    """The bootstrap's settings as results files record them."""
    return {"draws": n, "seed": seed, "level": level, "method": METHOD}
