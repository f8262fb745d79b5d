"""The fast evaluator against a slow loop-by-loop reference written here from the protocol text.

The reference follows the official eval_tools protocol (listed in ``retina.eval.widerface``) step by step with
Python scalars: float64 for the textbook arithmetic, and Python integers plus explicit rounding for the
MATLAB arithmetic of the official code (int32 faces, double predictions, single-precision normalisation).
It shares no code with ``retina.eval.widerface``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from retina.data.widerface import SETTINGS, GroundTruth, load_ground_truth
from retina.eval.overlap import best_faces
from retina.eval.synthetic import degraded_predictions
from retina.eval.widerface import CHALLENGE_IOUS, evaluate
from tests.conftest import shared_file

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


def _sat(v: int) -> int:
    """int32 saturation of an exact integer."""
    return min(max(v, I32_MIN), I32_MAX)


def _matlab_round(x: float) -> int:
    """MATLAB round / conversion to int32: half away from zero, saturated, NaN -> 0."""
    if math.isnan(x):
        return 0
    if math.isinf(x):
        return I32_MAX if x > 0 else I32_MIN
    t = math.trunc(x)
    return _sat(int(t) + (int(math.copysign(1, x)) if abs(x - t) >= 0.5 else 0))


def _int32_divide(a: int, b: int) -> int:
    """int32 ./ int32: exact quotient rounded half away from zero; x / 0 gives the int32 limits (or 0)."""
    if b == 0:
        return I32_MAX if a > 0 else I32_MIN if a < 0 else 0
    q, r = divmod(abs(a), abs(b))
    n = q + (2 * r >= abs(b))  # |a| / |b| rounded half up, exactly
    return _sat(n if (a < 0) == (b < 0) else -n)


def _overlap(face: list[float], pred: list[float], arithmetic: str) -> float:
    """IoU of one face and one prediction, both x1 y1 x2 y2 (x2 = x + w), +1 pixel areas."""
    if arithmetic == "float64":
        w = min(face[2], pred[2]) - max(face[0], pred[0]) + 1
        h = min(face[3], pred[3]) - max(face[1], pred[1]) + 1
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        union = (face[2] - face[0] + 1) * (face[3] - face[1] + 1) + (pred[2] - pred[0] + 1) * (pred[3] - pred[1] + 1)
        return inter / (union - inter)
    # MATLAB: max/min(int32, double) round the double; int32 +- double rounds; int32 ./ int32 rounds;
    # every int32 result saturates. Face corners are int32 (saturated sums).
    fx1, fy1, fx2, fy2 = (int(v) for v in face)
    w = _sat(_sat(min(fx2, _matlab_round(pred[2])) - max(fx1, _matlab_round(pred[0]))) + 1)
    h = _sat(_sat(min(fy2, _matlab_round(pred[3])) - max(fy1, _matlab_round(pred[1]))) + 1)
    if w <= 0 or h <= 0:
        return 0.0
    inter = _sat(w * h)
    face_area = _sat(_sat(_sat(fx2 - fx1) + 1) * _sat(_sat(fy2 - fy1) + 1))
    pred_area = (pred[2] - pred[0] + 1) * (pred[3] - pred[1] + 1)
    union = _sat(_matlab_round(face_area + pred_area) - inter)
    return float(_int32_divide(inter, union))


def _normalise(all_scores: list[float], arithmetic: str) -> list[float]:
    if arithmetic == "float64":
        lo, hi = min(all_scores), max(all_scores)
        return [(s - lo) / (hi - lo) for s in all_scores]
    f32 = np.float32
    hi = max(f32(np.finfo(np.float32).tiny), *(f32(s) for s in all_scores))  # realmin('single') start
    lo = min(f32(np.finfo(np.float32).max), *(f32(s) for s in all_scores))  # realmax('single') start
    return [float((f32(s) - lo) / (hi - lo)) for s in all_scores]


def reference_ap(predictions: list[np.ndarray], gt: GroundTruth, setting: str, iou: float, arithmetic: str) -> float:
    # (1) per-image sort by score, descending; Python's sort is stable like MATLAB's
    per_image = [sorted(p.tolist(), key=lambda row: -row[4]) for p in predictions]
    # (2) min-max normalisation over all images
    flat = [row[4] for rows in per_image for row in rows]
    normalised = iter(_normalise(flat, arithmetic))
    per_image = [[[*row[:4], next(normalised)] for row in rows] for rows in per_image]
    # (3) per image, each prediction in order takes the face of highest overlap (first on ties)
    n_faces = 0
    image_results = []
    for rows, boxes, keep in zip(per_image, gt.boxes, gt.keep[setting], strict=True):
        n_faces += len(keep)
        if len(boxes) == 0 or len(rows) == 0:
            continue
        faces = [[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in boxes.tolist()]
        if arithmetic == "matlab":  # int32 corners: saturated sums
            faces = [[b[0], b[1], _sat(int(b[0] + b[2])), _sat(int(b[1] + b[3]))] for b in boxes.tolist()]
        counts = set(keep.tolist())
        found = [False] * len(faces)
        proposal, recall_so_far = [], []
        for x, y, w, h, _ in rows:
            overlaps = [_overlap(face, [x, y, x + w, y + h], arithmetic) for face in faces]
            best = max(range(len(faces)), key=lambda j: (overlaps[j], -j))
            is_proposal = True
            if overlaps[best] >= iou:
                if best not in counts:
                    is_proposal = False
                elif not found[best]:
                    found[best] = True
            proposal.append(is_proposal)
            recall_so_far.append(sum(found[j] for j in counts))
        image_results.append(([row[4] for row in rows], proposal, recall_so_far))
    # (4) 1000 thresholds; per image, everything up to the last prediction with score >= t
    precision, recall = [], []
    for k in range(1, 1001):
        t = 1 - k / 1000
        n_prop = n_tp = 0
        for scores, proposal, recall_so_far in image_results:
            last = max((i for i, s in enumerate(scores) if s >= t), default=None)
            if last is not None:
                n_prop += sum(proposal[: last + 1])
                n_tp += recall_so_far[last]
        precision.append(n_tp / n_prop if n_prop else math.nan)
        recall.append(n_tp / n_faces)
    # (5) VOC AP: precision envelope (NaN skipped, as MATLAB's max does), summed where recall changes
    mrec, mpre = [0.0, *recall, 1.0], [0.0, *precision, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        if math.isnan(mpre[i]) or mpre[i + 1] > mpre[i]:
            mpre[i] = mpre[i + 1]
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


@pytest.fixture(scope="module")
def degraded() -> tuple[GroundTruth, list[np.ndarray]]:
    """A subset of the real val ground truth (every 12th image, crowded ones included) with SYNTHETIC
    degraded predictions: jittered boxes, misses, duplicates, false positives, tied scores."""
    full = load_ground_truth(shared_file("widerface/ground_truth"))
    sizes = np.array([len(b) for b in full.boxes])
    chosen = sorted(set(range(0, len(full.images), 12)) | set(np.flatnonzero((sizes > 80) & (sizes < 200))[:3]))
    gt = GroundTruth(
        full.events,
        tuple(full.images[k] for k in chosen),
        tuple(full.boxes[k] for k in chosen),
        {s: tuple(full.keep[s][k] for k in chosen) for s in SETTINGS},
    )
    return gt, degraded_predictions(gt, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("arithmetic", ["float64", "matlab"])
def test_fast_equals_reference_on_degraded_predictions(degraded, arithmetic: str) -> None:
    gt, preds = degraded
    fast = evaluate(preds, gt, arithmetic=arithmetic, challenge=False)
    for setting in SETTINGS:
        assert fast.ap[setting] == pytest.approx(reference_ap(preds, gt, setting, 0.5, arithmetic), abs=1e-9)


@pytest.mark.slow
def test_challenge_ious_equal_reference(degraded) -> None:
    gt, preds = degraded
    fast = evaluate(preds, gt)
    for iou in (CHALLENGE_IOUS[3], CHALLENGE_IOUS[8]):
        assert fast.challenge_hard_ap[iou] == pytest.approx(reference_ap(preds, gt, "hard", iou, "float64"), abs=1e-9)
    assert fast.hard_map_50_95 == pytest.approx(np.mean(list(fast.challenge_hard_ap.values())), abs=1e-15)
    # the fast code must be checked where the arithmetics differ, or this comparison would prove little
    assert fast.ap["hard"] != fast.float64_curves["hard"].ap


def _strange_case(seed: int) -> tuple[GroundTruth, list[np.ndarray]]:
    """SYNTHETIC: small and tiny integral faces (zero and negative sizes included), and predictions near
    them with sub-pixel, zero, negative and exact-half sizes and offsets, tied scores included."""
    rng = np.random.default_rng(seed)
    boxes, preds = [], []
    for _ in range(12):
        n = int(rng.integers(1, 6))
        xy = rng.integers(0, 40, (n, 2))
        wh = rng.choice([-2, -1, 0, 1, 2, 3, 8], (n, 2))
        faces = np.column_stack([xy, wh]).astype(float)
        boxes.append(faces)
        m = int(rng.integers(0, 12))
        base = faces[rng.integers(0, n, m)]
        offset = rng.choice([-0.5, -0.4, 0.0, 0.0, 0.0, 0.2, 0.4, 0.5, 0.6, 1.5], (m, 4))
        sizes = np.where(rng.random((m, 2)) < 0.8, base[:, 2:] + offset[:, 2:], rng.uniform(-1.5, 1.5, (m, 2)))
        scores = rng.choice([0.1, 0.3, 0.3, 0.5, 0.7, 0.9], m)
        preds.append(np.column_stack([base[:, :2] + offset[:, :2], sizes, scores]))
    share = dict(zip(SETTINGS, (0.4, 0.6, 0.9), strict=True))
    keep = {s: tuple(np.flatnonzero(rng.random(len(b)) < p) for b in boxes) for s, p in share.items()}
    gt = GroundTruth(("0--S",), tuple(("0--S", f"s{k}") for k in range(len(boxes))), tuple(boxes), keep)
    return gt, preds


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("arithmetic", ["float64", "matlab"])
def test_fast_equals_reference_on_strange_boxes(seed: int, arithmetic: str) -> None:
    gt, preds = _strange_case(seed)
    fast = evaluate(preds, gt, arithmetic=arithmetic, challenge=False)
    for setting in SETTINGS:
        if gt.count(setting):
            assert fast.ap[setting] == pytest.approx(reference_ap(preds, gt, setting, 0.5, arithmetic), abs=1e-12)


@pytest.mark.parametrize("arithmetic", ["float64", "matlab"])
def test_pair_overlaps_equal_reference_on_strange_boxes(arithmetic: str) -> None:
    """Every (prediction, face) pair on its own: the overlap value itself, not just the AP it leads to."""
    rng = np.random.default_rng(5)
    n = 3000
    faces = np.column_stack([rng.integers(0, 12, (n, 2)), rng.choice([-2, -1, 0, 1, 2, 5, 50000], (n, 2))])
    halves = rng.integers(-6, 30, (n, 4)) / 2  # exact halves
    jitter = np.round(rng.uniform(-1.5, 12, (n, 4)), 1)  # sub-pixel and negative sizes
    preds = np.where(rng.random((n, 4)) < 0.5, halves, jitter)
    preds[: n // 10] = faces[: n // 10]  # some exact boxes: overlaps of 1, INT32_MAX from saturated areas
    tiny = slice(n // 10, n // 3)  # sub-pixel boxes at the faces' corners: overlaps > 1, unions of 0
    m = len(preds[tiny])
    faces[tiny, 2:] = rng.choice([0, 1], (m, 2))
    preds[tiny, :2] = faces[tiny, :2] + rng.choice([-0.5, 0.0, 0.3, 0.4, 0.5, 0.6, 1.0], (m, 2))
    preds[tiny, 2:] = rng.choice([-1.0, -0.8, -0.3, 0.0, 0.2, 0.5, 1.0], (m, 2))
    best = best_faces(preds, np.arange(n), np.ones(n, np.int64), faces.astype(float), (arithmetic,))[arithmetic][0]
    for k in range(n):
        x, y, w, h = preds[k]
        fx, fy, fw, fh = faces[k].tolist()
        face = [fx, fy, fx + fw, fy + fh]
        assert best[k] == _overlap(face, [x, y, x + w, y + h], arithmetic), (faces[k], preds[k])
    if arithmetic == "matlab":  # the sample reaches the cases that matter
        assert {0.0, 1.0, float(I32_MAX)} <= set(best.tolist()) and ((best > 1) & (best < I32_MAX)).any()
