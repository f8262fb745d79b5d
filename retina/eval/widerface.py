"""WIDER FACE evaluation: the official MATLAB ``eval_tools`` protocol, exact and vectorised (pure functions).

Protocol (``shared/docs/reference.md``, and the eval_tools sources ``read_pred.m``, ``norm_score.m``,
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
  rounding (half away from zero): prediction corners are rounded to whole pixels and the overlap
  ``inter ./ union`` is an int32 division, i.e. 0 or 1 (1 exactly when 2 * inter >= union). So a prediction
  takes the first face with IoU >= 0.5 (rounded corners), not the best one, and any IoU threshold in
  (0, 1] acts as 0.5. ``norm_score.m`` starts its running max/min at ``realmin('single')`` /
  ``realmax('single')``, which makes the normalisation single precision. Checked against the eval_tools
  code run in GNU Octave 7.3 (same mixed-type rules as MATLAB); see the issue report.
* ``"float64"``: the protocol text in float64 throughout (real IoU, argmax face, float64 normalisation).
  This is what the Python ports compute once step 1 is added, and the only arithmetic in which an IoU
  other than 0.5 means anything: the WIDER Challenge 2018 metric (hard AP averaged over IoU
  0.50:0.05:0.95) uses it.

Speed: the best face and overlap of every prediction are computed once per arithmetic, image by image
with dense (predictions x faces) arrays; settings and IoU thresholds then only re-threshold flat arrays,
and the 1000-threshold sums are two ``searchsorted`` calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from retina.data.widerface import (  # re-exported: the formats an evaluation needs
    SETTINGS,
    GroundTruth,
    Predictions,
    load_ground_truth,
    read_predictions,
    write_predictions,
)

__all__ = [
    "ARITHMETICS",
    "CHALLENGE_IOUS",
    "SETTINGS",
    "THRESHOLDS",
    "EvalResult",
    "GroundTruth",
    "Matches",
    "PRCurve",
    "Predictions",
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
# MATLAB int32 arithmetic is emulated in float64, exact while no intermediate leaves int32's range.
_COORD_LIMIT = 2.0**29
_INT32_MIN, _INT32_MAX = -(2.0**31), 2.0**31 - 1
_SINGLE_MIN, _SINGLE_MAX = np.float32(np.finfo(np.float32).tiny), np.float32(np.finfo(np.float32).max)

PROTOCOL = (
    "WIDER FACE official eval_tools protocol (evaluation.m): per-image sort by score (descending, stable), "
    "global min-max score normalisation, each prediction takes its best-overlap face (+1 pixel areas); a "
    "match (overlap >= IoU) to a face outside the setting is dropped from the proposals, repeat matches are "
    "false positives; 1000 thresholds t = 1 - k/1000; precision = TP/proposals, recall = TP/faces of the "
    "setting (all images); AP = VOC area under the precision envelope. Arithmetic 'matlab' reproduces "
    "MATLAB's int32/single evaluation of the official code with the int32 .mat ground truth (overlap is an "
    "int32 division, so a prediction takes the first face with rounded-corner IoU >= 0.5); 'float64' "
    "evaluates the same protocol in float64. hard_map_50_95: WIDER Challenge 2018 metric, hard AP averaged "
    "over IoU 0.50:0.05:0.95 in float64 arithmetic."
)


@dataclass(frozen=True, eq=False)
class Matches:
    """Every prediction that the protocol looks at, in evaluation order (image by image, sorted by score).

    ``score (P,)`` normalised scores (NaN when all raw scores are equal: MATLAB's 0/0); ``overlap (P,)`` the
    best overlap (an integer in 'matlab' arithmetic, IoU in 'float64'); ``face (P,)`` index of that face in
    the concatenation of ``gt.boxes``. Predictions on images without faces are left out (MATLAB skips them).
    """

    arithmetic: str
    score: np.ndarray
    overlap: np.ndarray
    face: np.ndarray
    n_faces: int
    warnings: tuple[str, ...] = ()


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
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


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

    ``detections[k] (ndarray[N, 5])`` x y w h score of ``gt.images[k]``, any order.
    """
    _check_arithmetic(arithmetic)
    if len(detections) != len(gt.images):
        raise ValueError(f"{len(detections)} detection arrays for {len(gt.images)} ground-truth images")
    sorted_dets = [_sorted_detections(np.asarray(d, dtype=np.float64), k) for k, d in enumerate(detections)]
    all_scores = np.concatenate([d[:, 4] for d in sorted_dets]) if sorted_dets else np.zeros(0)
    if arithmetic == "matlab" and all_scores.size and np.abs(all_scores).max() > _SINGLE_MAX:
        raise ValueError("a score exceeds single precision range: MATLAB's normalisation would give inf")
    norm = normalise_scores(all_scores, arithmetic)
    warnings = []
    if all_scores.size and np.isnan(norm).all():
        warnings.append(
            f"all {all_scores.size} prediction scores are equal ({all_scores[0]!r}): min-max normalisation "
            "divides 0 by 0 and no prediction passes any threshold (AP 0, as in the official code)"
        )
    face_offsets = np.cumsum([0] + [len(b) for b in gt.boxes])
    scores, overlaps, faces = [], [], []
    skipped = 0
    start = 0
    for k, dets in enumerate(sorted_dets):
        n = len(dets)
        image_scores, start = norm[start : start + n], start + n
        if n == 0:
            continue
        faces_k = gt.boxes[k]
        if len(faces_k) == 0:
            skipped += n
            continue
        if arithmetic == "matlab":
            overlap = _overlap_matlab(faces_k, dets[:, :4], gt.images[k])
        else:
            overlap = _overlap_float64(faces_k, dets[:, :4])
        best = overlap.argmax(axis=1)  # first maximum, as MATLAB's max
        scores.append(image_scores)
        overlaps.append(overlap[np.arange(n), best])
        faces.append(best + face_offsets[k])
    if skipped:
        warnings.append(f"{skipped} predictions on images without faces are ignored (the official code skips them)")
    cat = lambda xs, dtype: np.concatenate(xs) if xs else np.zeros(0, dtype)  # noqa: E731
    return Matches(
        arithmetic,
        cat(scores, np.float64),
        cat(overlaps, np.float64),
        cat(faces, np.int64),
        int(face_offsets[-1]),
        tuple(warnings),
    )


def pr_curve(matches: Matches, gt: GroundTruth, setting: str, iou: float = 0.5) -> PRCurve:
    """Steps 3-4 for one setting and IoU: proposal and true-positive counts at the 1000 thresholds."""
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"IoU threshold must be in (0, 1], got {iou}")
    counts = np.zeros(matches.n_faces, dtype=bool)
    offsets = np.cumsum([0] + [len(b) for b in gt.boxes])
    counts[np.concatenate([keep + off for keep, off in zip(gt.keep[setting], offsets, strict=False)])] = True
    n_faces = gt.count(setting)
    if n_faces == 0:
        raise ValueError(f"no face counts in setting '{setting}': recall is undefined")
    hit = matches.overlap >= iou
    counted = counts[matches.face]
    proposal = ~(hit & ~counted)
    candidates = np.flatnonzero(hit & counted)
    # A face is found by the first candidate that reaches it (evaluation order = array order).
    _, first = np.unique(matches.face[candidates], return_index=True)
    tp = np.zeros(len(matches.face), dtype=bool)
    tp[candidates[first]] = True
    return PRCurve(
        setting,
        float(iou),
        matches.arithmetic,
        _count_at_thresholds(matches.score[proposal]),
        _count_at_thresholds(matches.score[tp]),
        n_faces,
    )


def evaluate(
    predictions: Predictions | Sequence[np.ndarray],
    gt: GroundTruth,
    iou: float = 0.5,
    *,
    settings: Sequence[str] = SETTINGS,
    arithmetic: str = "matlab",
    challenge: bool = True,
) -> EvalResult:
    """AP and PR curves per setting at ``iou``, plus the WIDER Challenge 2018 hard mAP (``challenge``).

    ``predictions``: a :class:`Predictions` or, per ``gt.images`` entry, an (N, 5) array x y w h score.
    The float64 curves of the same settings are always computed too (they cost one more matching pass).
    """
    detections = predictions.detections if isinstance(predictions, Predictions) else tuple(predictions)
    matches = {arithmetic: match_predictions(detections, gt, arithmetic)}
    if "float64" not in matches:
        matches["float64"] = match_predictions(detections, gt, "float64")
    curves = {s: pr_curve(matches[arithmetic], gt, s, iou) for s in settings}
    float_curves = (
        curves if arithmetic == "float64" else {s: pr_curve(matches["float64"], gt, s, iou) for s in settings}
    )
    challenge_ap = {}
    if challenge and "hard" in gt.keep:
        challenge_ap = {t: pr_curve(matches["float64"], gt, "hard", t).ap for t in CHALLENGE_IOUS}
    n_dets = [len(d) for d in detections]
    counts = {
        "images": len(gt.images),
        "faces": gt.n_faces,
        **{f"faces_{s}": gt.count(s) for s in gt.keep},
        "predictions": int(sum(n_dets)),
        "images_without_predictions": int(sum(n == 0 for n in n_dets)),
    }
    if isinstance(predictions, Predictions):
        counts["images_missing_prediction_file"] = len(predictions.missing)
    return EvalResult(
        iou=float(iou),
        arithmetic=arithmetic,
        curves=MappingProxyType(curves),
        float64_curves=MappingProxyType(float_curves),
        challenge_hard_ap=MappingProxyType(challenge_ap),
        counts=MappingProxyType(counts),
        warnings=matches[arithmetic].warnings,
    )


# ----------------------------------------------------------------------------------------- internals


def _check_arithmetic(arithmetic: str) -> None:
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic must be one of {ARITHMETICS}, got {arithmetic!r}")


def _sorted_detections(dets: np.ndarray, k: int) -> np.ndarray:
    if dets.size == 0:
        return np.zeros((0, 5))
    if dets.ndim != 2 or dets.shape[1] != 5:
        raise ValueError(f"detections of image {k}: expected shape (N, 5) x y w h score, got {dets.shape}")
    if not np.all(np.isfinite(dets)):
        raise ValueError(f"detections of image {k}: NaN or infinite values")
    if np.any(dets[:, 2:4] < 0):
        raise ValueError(f"detections of image {k}: negative width or height")
    return dets[np.argsort(-dets[:, 4], kind="stable")]  # MATLAB sort(..., 'descend') keeps ties in order


def _count_at_thresholds(scores: np.ndarray) -> np.ndarray:
    """How many of ``scores`` are >= each threshold (NaN never is)."""
    ordered = np.sort(scores[~np.isnan(scores)])
    return (len(ordered) - np.searchsorted(ordered, THRESHOLDS, side="left")).astype(np.int64)


def _overlap_float64(faces: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """``boxoverlap.m`` in float64: (preds x faces) IoU with +1 pixel areas, 0 where boxes do not intersect."""
    fx1, fy1 = faces[:, 0], faces[:, 1]
    fx2, fy2 = fx1 + faces[:, 2], fy1 + faces[:, 3]
    px1, py1 = preds[:, 0:1], preds[:, 1:2]
    px2, py2 = px1 + preds[:, 2:3], py1 + preds[:, 3:4]
    w = np.minimum(fx2, px2) - np.maximum(fx1, px1) + 1
    h = np.minimum(fy2, py2) - np.maximum(fy1, py1) + 1
    inter = w * h
    face_area = (fx2 - fx1 + 1) * (fy2 - fy1 + 1)
    pred_area = (px2 - px1 + 1) * (py2 - py1 + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        o = inter / ((face_area + pred_area) - inter)
    o[(w <= 0) | (h <= 0)] = 0.0
    return o


def _overlap_matlab(faces: np.ndarray, preds: np.ndarray, image: tuple[str, str]) -> np.ndarray:
    """``boxoverlap.m`` as MATLAB evaluates it with int32 faces and double predictions (see module docstring).

    Integers are held in float64 (exact below 2**53); int32 saturation is applied where a product or sum
    could leave int32's range.
    """
    if not np.array_equal(faces, np.round(faces)) or np.abs(faces).max(initial=0) > _COORD_LIMIT:
        raise ValueError(
            f"ground truth of {image[0]}/{image[1]} is not int32 pixels (as in the official .mat): "
            "use arithmetic='float64'"
        )
    if max(np.abs(preds[:, :2]).max(), np.abs(preds[:, :2] + preds[:, 2:]).max()) > _COORD_LIMIT:
        raise ValueError(f"predictions of {image[0]}/{image[1]} exceed +-2**29 pixels")
    fx1, fy1 = faces[:, 0], faces[:, 1]
    fx2, fy2 = fx1 + faces[:, 2], fy1 + faces[:, 3]
    bx1, by1 = preds[:, 0:1], preds[:, 1:2]
    bx2, by2 = bx1 + preds[:, 2:3], by1 + preds[:, 3:4]
    # max/min(int32, double) -> int32: the double is rounded half away from zero.
    w = np.minimum(fx2, _round(bx2)) - np.maximum(fx1, _round(bx1)) + 1
    h = np.minimum(fy2, _round(by2)) - np.maximum(fy1, _round(by1)) + 1
    inter = _sat(w * h)
    face_area = _sat((fx2 - fx1 + 1) * (fy2 - fy1 + 1))
    pred_area = (bx2 - bx1 + 1) * (by2 - by1 + 1)  # double: the prediction alone
    union = _sat(_sat(_round(face_area + pred_area)) - inter)  # int32 + double -> int32, then - int32
    with np.errstate(invalid="ignore", divide="ignore"):
        o = _round(inter / union)  # int32 ./ int32: rounded quotient; x/0 saturates, 0/0 is 0
    o = np.where(union == 0, np.sign(inter) * _INT32_MAX, _sat(o))
    o[(w <= 0) | (h <= 0)] = 0.0
    return o


def _round(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: half away from zero (numpy rounds half to even)."""
    t = np.trunc(x)
    return t + np.where(np.abs(x - t) >= 0.5, np.sign(x), 0.0)


def _sat(x: np.ndarray) -> np.ndarray:
    return np.clip(x, _INT32_MIN, _INT32_MAX)
