"""WIDER FACE evaluation: the official MATLAB ``eval_tools`` protocol, exact and vectorised (pure functions).

Protocol (the WIDER FACE eval_tools sources ``wider_eval.m``, ``read_pred.m``, ``norm_score.m``,
``evaluation.m``, ``boxoverlap.m``):

1. each image's predictions are sorted by score, descending (MATLAB ``sort`` is stable on ties);
2. scores are min-max normalised over all images;
3. per image, each prediction in that order takes the face of highest overlap (the first on ties), with
   x2 = x + w and areas with the +1 pixel convention; if overlap >= IoU and the face does not count in the
   setting, the prediction is dropped from the proposals; if it counts, it is a true positive when the face
   was not found yet, a false positive (duplicate) otherwise; below the IoU it is a false positive.
   Images without faces are skipped (their predictions count nowhere); images without predictions still add
   their faces to the recall denominator;
4. at thresholds t = 1 - k/1000 (k = 1..1000), proposals and true positives with normalised score >= t are
   summed over images; precision = TP / proposals (NaN with no proposal, as MATLAB's 0/0), recall = TP / faces;
5. AP = VOC area under the precision envelope (MATLAB ``max`` skips NaN, so does ``np.fmax``).

Two arithmetics, because MATLAB's is not the textbook one:

* ``"matlab"`` (default): bit-for-bit what the official code computes with the official files. The .mat
  stores boxes as int32, and MATLAB evaluates ``max(int32, double)`` and ``int32 +- double`` in int32 with
  rounding (half away from zero) and saturation: prediction corners are rounded to whole pixels, the
  prediction's own area stays a double from its unrounded corners, and the overlap ``inter ./ union`` is
  an int32 division (``retina.eval.overlap``). The overlap is thus an integer: usually 0 or 1 (1 when
  2 * inter >= union), more than 1 for sub-pixel predictions (a 0.2 x 0.2 box on a 1 x 1 face: 4 / 1),
  INT32_MAX for a union of 0. A prediction takes the face of largest overlap, the first on ties
  (MATLAB's ``max``): often the first face with IoU >= 0.5 rather than the best one; and any IoU
  threshold in (0, 1] acts as 0.5. Boxes of negative or zero width or height are evaluated by the same
  formulas, as the official code does. ``norm_score.m`` starts its running max/min at
  ``realmin('single')`` / ``realmax('single')``, which makes the normalisation single precision.
  Evidence: hand-worked cases in ``tests/test_eval_matlab_cases.py``; ``benchmarks/octave_eval.py`` runs
  the official eval_tools under GNU Octave (same mixed-type rules as MATLAB) and compares the APs.
* ``"float64"``: the protocol text in float64 throughout (real IoU, argmax face, float64 normalisation).
  This is what the Python ports compute once step 1 is added, and the only arithmetic in which an IoU
  other than 0.5 means anything: the WIDER Challenge 2018 metric (hard AP averaged over IoU
  0.50:0.05:0.95) uses it. Boxes of negative or zero size go through the same float64 formulas: a
  prediction whose width or height is <= -1 overlaps nothing; one in (-1, 0] acts as a box of
  width + 1 < 1 pixel (a real IoU in (0, 1]), and no input crashes it.

Speed: the best face and overlap of every prediction are computed once per arithmetic, image by image
with dense (predictions x faces) arrays; settings and IoU thresholds then only re-threshold flat arrays,
and the 1000-threshold sums are two ``searchsorted`` calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import numpy as np

from retina.data.widerface import (  # re-exported: the formats an evaluation needs
    SETTINGS,
    GroundTruth,
    Submission,
    load_ground_truth,
    read_predictions,
    write_predictions,
)
from retina.eval.overlap import INT32_MAX, INT32_MIN, best_faces

__all__ = [
    "ARITHMETICS",
    "CHALLENGE_IOUS",
    "SETTINGS",
    "THRESHOLDS",
    "EvalResult",
    "GroundTruth",
    "Matches",
    "PRCurve",
    "Submission",
    "curve_members",
    "evaluate",
    "load_ground_truth",
    "match_predictions",
    "normalise_scores",
    "pr_curve",
    "read_predictions",
    "voc_ap",
    "write_predictions",
]

ARITHMETICS: tuple[str, ...] = ("matlab", "float64")
THRESHOLD_COUNT = 1000
# t = 1 - k/1000, k = 1..1000, evaluated as MATLAB does (1 - (k / 1000) in double).
THRESHOLDS: np.ndarray = 1.0 - np.arange(1, THRESHOLD_COUNT + 1, dtype=np.float64) / THRESHOLD_COUNT
THRESHOLDS.setflags(write=False)
CHALLENGE_IOUS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
_SINGLE_MIN, _SINGLE_MAX = np.float32(np.finfo(np.float32).tiny), np.float32(np.finfo(np.float32).max)

PROTOCOL = (
    "WIDER FACE official eval_tools protocol (evaluation.m): per-image sort by score (descending, stable), "
    "global min-max score normalisation, each prediction takes its best-overlap face (+1 pixel areas); a "
    "match (overlap >= IoU) to a face outside the setting is dropped from the proposals, repeat matches are "
    "false positives; 1000 thresholds t = 1 - k/1000; precision = TP/proposals, recall = TP/faces of the "
    "setting (all images); AP = VOC area under the precision envelope. Arithmetic 'matlab' reproduces "
    "MATLAB's int32/single evaluation of the official code with the int32 .mat ground truth (rounded "
    "prediction corners, double prediction area, overlap an int32 division, so an integer; a prediction "
    "takes the face of largest overlap, the first on ties); 'float64' evaluates the same protocol in "
    "float64. Boxes of negative or zero size are evaluated as the official code does. hard_map_50_95: "
    "WIDER Challenge 2018 metric, hard AP averaged over IoU 0.50:0.05:0.95 in float64 arithmetic."
)


@dataclass(frozen=True, eq=False)
class Matches:
    """Every prediction that the protocol looks at, in evaluation order (image by image, sorted by score).

    ``score (P,)`` normalised scores (NaN when all raw scores are equal: MATLAB's 0/0); ``overlap (P,)`` the
    best overlap (an integer in 'matlab' arithmetic, IoU in 'float64'); ``face (P,)`` index of that face in
    the concatenation of ``gt.boxes``. Predictions on images without faces are left out (MATLAB skips them).
    ``first_threshold (P,)``: index of the first (highest) threshold the score passes, 1000 if none;
    ``by_face (P,)``: a stable ordering of the predictions by ``face``.
    """

    arithmetic: str
    score: np.ndarray
    overlap: np.ndarray
    face: np.ndarray
    n_faces: int
    warnings: tuple[str, ...] = ()

    @cached_property
    def first_threshold(self) -> np.ndarray:
        # THRESHOLDS descend; a score passes the last ``n`` of them, n = how many are <= score.
        passed = np.searchsorted(THRESHOLDS[::-1], self.score, side="right")
        return np.where(np.isnan(self.score), THRESHOLD_COUNT, THRESHOLD_COUNT - passed)

    @cached_property
    def by_face(self) -> np.ndarray:
        return np.argsort(self.face, kind="stable")


@dataclass(frozen=True, eq=False)
class PRCurve:
    """Counts at the 1000 thresholds of one setting and IoU; ``precision`` / ``recall`` / ``ap`` derive from them."""

    setting: str
    iou: float
    arithmetic: str
    proposals: np.ndarray  # (1000,) int64 proposals with score >= THRESHOLDS[k]
    true_positives: np.ndarray  # (1000,) int64
    n_faces: int  # faces that count in the setting (recall denominator)

    @property
    def thresholds(self) -> np.ndarray:
        return THRESHOLDS

    @property
    def precision(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.true_positives / self.proposals.astype(np.float64)

    @property
    def recall(self) -> np.ndarray:
        return self.true_positives / float(self.n_faces)

    @property
    def ap(self) -> float:
        return voc_ap(self.recall, self.precision)


@dataclass(frozen=True, eq=False)
class EvalResult:
    """APs and PR curves of one evaluation; see ``PROTOCOL`` and the module docstring."""

    iou: float
    arithmetic: str
    curves: Mapping[str, PRCurve]  # setting -> curve at ``iou`` in ``arithmetic``
    float64_curves: Mapping[str, PRCurve]  # the same in float64 arithmetic (equal objects when arithmetic is float64)
    challenge_hard_ap: Mapping[float, float]  # IoU -> hard AP in float64 arithmetic (empty when not computed)
    counts: Mapping[str, int]
    warnings: tuple[str, ...] = ()
    protocol: str = field(default=PROTOCOL)

    @property
    def ap(self) -> dict[str, float]:
        return {s: c.ap for s, c in self.curves.items()}

    @property
    def hard_map_50_95(self) -> float | None:
        if len(self.challenge_hard_ap) != len(CHALLENGE_IOUS):
            return None
        return float(np.mean([self.challenge_hard_ap[t] for t in CHALLENGE_IOUS]))


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC AP (VOCdevkit ``VOCap``): area under the precision envelope; NaN precisions are skipped as MATLAB's
    ``max`` does. ``recall``, ``precision (ndarray[T])`` ordered by decreasing threshold."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    # summed left to right, as Octave's (and for a vector this short MATLAB's) ``sum``; np.sum is pairwise
    return float(np.cumsum(np.r_[0.0, (mrec[i] - mrec[i - 1]) * mpre[i]])[-1])


def normalise_scores(scores: np.ndarray, arithmetic: str = "matlab") -> np.ndarray:
    """Global min-max normalisation of ``scores (ndarray[P])`` as ``norm_score.m`` computes it.

    'matlab': the running max/min start at single ``realmin``/``realmax``, so they and the result are
    single precision (a double operand is converted to single first); all-negative scores are therefore
    normalised against a max of ~1.2e-38. 'float64': plain (s - min) / (max - min).
    Equal min and max give NaN (0/0), which no threshold accepts, as in MATLAB.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        if arithmetic == "float64":
            lo, hi = scores.min(), scores.max()
            return (scores - lo) / (hi - lo)
        _check_arithmetic(arithmetic)
        s32 = scores.astype(np.float32)
        hi = max(_SINGLE_MIN, s32.max())
        lo = min(_SINGLE_MAX, s32.min())
        return ((s32 - lo) / (hi - lo)).astype(np.float64)


def match_predictions(detections: Sequence[np.ndarray], gt: GroundTruth, arithmetic: str = "matlab") -> Matches:
    """Sort, normalise and match every prediction to its best face (steps 1-3 up to the IoU test).

    ``detections[k] (ndarray[N, 5])`` x y w h score of ``gt.images[k]``, any order; finite values, sizes of
    any sign (a negative or zero size gives a warning per image, and is evaluated as the official code does).
    """
    return _match_all(detections, gt, (arithmetic,))[arithmetic]


def _match_all(
    detections: Sequence[np.ndarray], gt: GroundTruth, arithmetics: Sequence[str], size_warnings: bool = True
) -> dict[str, Matches]:
    """``match_predictions`` for several arithmetics, sharing the sort and the (prediction, face) pairs.

    ``size_warnings``: report images with boxes of negative or zero size (off when the caller has already
    reported them line by line, as ``read_predictions`` does)."""
    for arithmetic in arithmetics:
        _check_arithmetic(arithmetic)
    dets, image = _concat_sorted(detections, gt)
    face_count = np.array([len(b) for b in gt.boxes], dtype=np.int64)
    face_start = np.cumsum(face_count) - face_count
    on_faces = face_count[image] > 0
    skipped = int(len(dets) - on_faces.sum())
    warnings = _degenerate_box_warnings(dets, image, gt) if size_warnings else []
    if skipped:
        warnings.append(f"{skipped} predictions on images without faces are ignored (the official code skips them)")
    raw = dets[:, 4]
    if "matlab" in arithmetics and raw.size and np.abs(raw).max() > _SINGLE_MAX:
        raise ValueError("a score exceeds single precision range: MATLAB's normalisation would give inf")
    if raw.size and raw.min() == raw.max():
        warnings.append(
            f"all {raw.size} prediction scores are equal ({raw[0]!r}): min-max normalisation divides 0 by 0 "
            "and no prediction passes any threshold (AP 0, as in the official code)"
        )
    all_faces = np.concatenate([*gt.boxes, np.zeros((0, 4))])
    if "matlab" in arithmetics and not _is_int32(all_faces):
        raise ValueError(
            "the ground-truth boxes are not int32 pixels (as in the official .mat): use arithmetic='float64'"
        )
    best = best_faces(
        dets[on_faces, :4], face_start[image[on_faces]], face_count[image[on_faces]], all_faces, arithmetics
    )
    return {
        a: Matches(a, normalise_scores(raw, a)[on_faces], *best[a], len(all_faces), tuple(warnings))
        for a in arithmetics
    }


def pr_curve(
    matches: Matches, gt: GroundTruth, setting: str, iou: float = 0.5, counted_faces: np.ndarray | None = None
) -> PRCurve:
    """Steps 3-4 for one setting and IoU: proposal and true-positive counts at the 1000 thresholds.

    ``counted_faces``: ``_counted_faces(gt, setting)`` when the caller has it (it is reused across IoUs).
    """
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"IoU threshold must be in (0, 1], got {iou}")
    n_faces = gt.count(setting)
    if n_faces == 0:
        raise ValueError(f"no face counts in setting '{setting}': recall is undefined")
    proposal, first = curve_members(
        matches, _counted_faces(gt, setting) if counted_faces is None else counted_faces, iou
    )
    return PRCurve(
        setting,
        float(iou),
        matches.arithmetic,
        _count_at_thresholds(matches.first_threshold[proposal]),
        _count_at_thresholds(matches.first_threshold[first]),
        n_faces,
    )


def curve_members(matches: Matches, counted_faces: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Step 3 per prediction: ``proposal (P,) bool`` (it counts as a proposal) and ``first (T,)`` the indices of
    the true positives (the first hit on each counted face). ``counted_faces (F,) bool``: ``_counted_faces``."""
    counted = counted_faces[matches.face]
    hit = matches.overlap >= iou
    proposal = ~hit | counted  # a hit on a face that does not count is dropped
    # A counted face is found by the first hit that reaches it: walk the predictions grouped by face.
    order = matches.by_face
    candidates = order[(hit & counted)[order]]
    faces = matches.face[candidates]
    first = candidates[np.r_[True, faces[1:] != faces[:-1]]] if len(candidates) else candidates
    return proposal, first


def evaluate(
    predictions: Submission | Sequence[np.ndarray],
    gt: GroundTruth,
    iou: float = 0.5,
    *,
    settings: Sequence[str] = SETTINGS,
    arithmetic: str = "matlab",
    challenge: bool = True,
) -> EvalResult:
    """AP and PR curves per setting at ``iou``, plus the WIDER Challenge 2018 hard mAP (``challenge``).

    ``predictions``: a :class:`Submission` or, per ``gt.images`` entry, an (N, 5) array x y w h score.
    ``arithmetic``: one of ``ARITHMETICS`` (see the module docstring). The float64 curves of the same
    settings are always computed too (they cost one more matching pass). ``EvalResult.warnings``: the
    submission's (one per box of negative or zero size, naming file and line), then the evaluation's.
    """
    submission = predictions if isinstance(predictions, Submission) else None
    detections = submission.detections if submission is not None else tuple(predictions)
    arithmetics = (arithmetic,) if arithmetic == "float64" else (arithmetic, "float64")
    matches = _match_all(detections, gt, arithmetics, size_warnings=submission is None)
    counted = {s: _counted_faces(gt, s) for s in {*settings, *(("hard",) if challenge else ())} if s in gt.keep}
    curves = {s: pr_curve(matches[arithmetic], gt, s, iou, counted[s]) for s in settings}
    float_curves = (
        curves
        if arithmetic == "float64"
        else {s: pr_curve(matches["float64"], gt, s, iou, counted[s]) for s in settings}
    )
    challenge_ap = {}
    if challenge and "hard" in gt.keep:
        challenge_ap = {t: pr_curve(matches["float64"], gt, "hard", t, counted["hard"]).ap for t in CHALLENGE_IOUS}
    n_dets = [len(d) for d in detections]
    counts = {
        "images": len(gt.images),
        "faces": gt.n_faces,
        **{f"faces_{s}": gt.count(s) for s in gt.keep},
        "predictions": int(sum(n_dets)),
        "images_without_predictions": int(sum(n == 0 for n in n_dets)),
    }
    if submission is not None:
        counts["images_missing_prediction_file"] = len(submission.missing)
    return EvalResult(
        iou=float(iou),
        arithmetic=arithmetic,
        curves=MappingProxyType(curves),
        float64_curves=MappingProxyType(float_curves),
        challenge_hard_ap=MappingProxyType(challenge_ap),
        counts=MappingProxyType(counts),
        warnings=(*(submission.warnings if submission is not None else ()), *matches[arithmetic].warnings),
    )


# ----------------------------------------------------------------------------------------- internals


def _check_arithmetic(arithmetic: str) -> None:
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic must be one of {ARITHMETICS}, got {arithmetic!r}")


def _concat_sorted(detections: Sequence[np.ndarray], gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """All detections (P, 5) grouped by image and sorted by descending score within each image (stable, as
    MATLAB's ``sort(..., 'descend')``), and the image index of each."""
    if len(detections) != len(gt.images):
        raise ValueError(f"{len(detections)} detection arrays for {len(gt.images)} ground-truth images")
    arrays = [np.asarray(d, dtype=np.float64) for d in detections]
    for k, d in enumerate(arrays):
        if d.shape[-1:] != (5,) or d.ndim != 2:
            if d.size:
                raise ValueError(f"detections of image {k}: expected shape (N, 5) x y w h score, got {d.shape}")
            arrays[k] = d.reshape(0, 5)
    dets = np.concatenate([*arrays, np.zeros((0, 5))])
    image = np.repeat(np.arange(len(arrays)), [len(d) for d in arrays])
    bad = ~np.isfinite(dets).all(axis=1)
    if bad.any():
        event, stem = gt.images[image[np.argmax(bad)]]
        raise ValueError(f"detections of {event}/{stem}: NaN or infinite values")
    order = np.lexsort((-dets[:, 4], image))  # lexsort is stable
    return dets[order], image[order]


def _degenerate_box_warnings(dets: np.ndarray, image: np.ndarray, gt: GroundTruth) -> list[str]:
    """One message per image with boxes of negative or zero width or height (``dets (P, 5)``, ``image (P,)``)."""
    sizes = dets[:, 2:4]
    negative = (sizes < 0).any(axis=1)
    zero = (sizes == 0).any(axis=1) & ~negative
    n_neg = np.bincount(image[negative], minlength=len(gt.images))
    n_zero = np.bincount(image[zero], minlength=len(gt.images))
    out = []
    for k in np.flatnonzero(n_neg + n_zero).tolist():
        counts = ((n_neg[k], "negative"), (n_zero[k], "zero"))
        what = ", ".join(f"{n} box(es) of {kind} width or height" for n, kind in counts if n)
        event, stem = gt.images[k]
        out.append(f"detections of {event}/{stem}: {what}; evaluated as the official tool does")
    return out


def _is_int32(values: np.ndarray) -> bool:
    """Are all ``values`` integers in int32's range (as the official .mat stores the faces)?"""
    return bool(np.array_equal(values, np.round(values)) and np.all((values >= INT32_MIN) & (values <= INT32_MAX)))


def _counted_faces(gt: GroundTruth, setting: str) -> np.ndarray:
    """Boolean (F,) over the concatenated faces: does the face count in ``setting``?"""
    sizes = np.array([len(b) for b in gt.boxes], dtype=np.int64)
    keep = gt.keep[setting]
    per_image = np.array([len(k) for k in keep], dtype=np.int64)
    index = np.concatenate([*keep, np.zeros(0, np.int64)]) + np.repeat(np.cumsum(sizes) - sizes, per_image)
    counted = np.zeros(int(sizes.sum()), dtype=bool)
    counted[index] = True
    return counted


def _count_at_thresholds(first_threshold: np.ndarray) -> np.ndarray:
    """How many predictions pass each threshold, from the index of the first one each passes."""
    return np.cumsum(np.bincount(first_threshold, minlength=THRESHOLD_COUNT + 1)[:THRESHOLD_COUNT])
