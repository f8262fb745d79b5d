"""The fast evaluator against a slow loop-by-loop reference written here from the protocol text.

The reference follows ``shared/docs/reference.md`` ("WIDER FACE evaluation protocol") step by step with
Python scalars: float64 for the textbook arithmetic, and Python integers plus explicit rounding for the
MATLAB arithmetic of the official code (int32 faces, double predictions, single-precision normalisation).
It shares no code with ``retina.eval.widerface``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from retina.data.widerface import SETTINGS, GroundTruth, load_ground_truth
from retina.eval.synthetic import degraded_predictions
from retina.eval.widerface import CHALLENGE_IOUS, evaluate
from tests.conftest import shared_file


def _matlab_round(x: float) -> int:
    """MATLAB round / conversion to int32: half away from zero."""
    t = math.trunc(x)
    return int(t) + (int(math.copysign(1, x)) if abs(x - t) >= 0.5 else 0)


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
    # MATLAB: max/min(int32, double) round the double; int32 +- double rounds; int32 ./ int32 rounds.
    fx1, fy1, fx2, fy2 = (int(v) for v in face)
    w = min(fx2, _matlab_round(pred[2])) - max(fx1, _matlab_round(pred[0])) + 1
    h = min(fy2, _matlab_round(pred[3])) - max(fy1, _matlab_round(pred[1])) + 1
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    face_area = (fx2 - fx1 + 1) * (fy2 - fy1 + 1)
    pred_area = (pred[2] - pred[0] + 1) * (pred[3] - pred[1] + 1)
    union = _matlab_round(face_area + pred_area) - inter
    return float(_matlab_round(inter / union))


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
