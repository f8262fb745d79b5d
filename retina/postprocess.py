"""Post-processing: raw predictions -> per-image detections.

decode -> score threshold -> per-image top-k -> NMS (torchvision ``batched_nms``, one call for the whole
batch) -> per-image max detections. Also box voting, the merge step of the paper's multi-scale test.
Boxes here are (x1, y1, x2, y2) pixels of the network input; ``retina.api`` maps them back to the image.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou
from torchvision.ops import nms as tv_nms

from retina.coding import decode_boxes, decode_landmarks
from retina.config import PostCfg
from retina.models.detector import Predictions


class RawDetections(NamedTuple):
    """One image's detections as tensors: boxes (N, 4) xyxy, scores (N,), landmarks (N, 5, 2)."""

    boxes: Tensor
    scores: Tensor
    landmarks: Tensor


def face_scores(logits: Tensor) -> Tensor:
    """(..., 2) background/face logits -> (...,) softmax face probability."""
    return torch.softmax(logits, dim=-1)[..., 1]


def logit_bound(threshold: float, margin: float = 1e-3) -> float:
    """A bound on ``face - background`` logits below which the face probability cannot exceed ``threshold``.

    softmax(l)[1] > t  <=>  l1 - l0 > log(t / (1 - t)). Filtering on this difference skips the softmax over
    every anchor (measured in benchmarks/speed.py); ``margin`` keeps float rounding from dropping a
    borderline anchor, and the exact ``score > threshold`` test is then applied to the survivors.
    """
    if threshold <= 0.0:
        return -math.inf
    if threshold >= 1.0:
        return math.inf
    return math.log(threshold) - math.log1p(-threshold) - margin


def _rank_within(groups: Tensor, order_scores: Tensor) -> tuple[Tensor, Tensor]:
    """Sort items by (group, score desc); return that order and each item's rank inside its group."""
    order = torch.argsort(order_scores, descending=True, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    g = groups[order]
    starts = torch.searchsorted(g, g, right=False)
    return order, torch.arange(len(g), device=g.device) - starts


def candidates(
    pred: Predictions, priors: Tensor, variances: tuple[float, float], cfg: PostCfg
) -> tuple[Tensor, RawDetections]:
    """Decoded candidates above the score threshold, top-k per image: (image index (M,), detections).

    Candidates come in (image, anchor) order, or (image, score desc) order when the top-k cut applied.
    """
    logits = pred.logits
    batch, anchors = logits.shape[:2]
    diff = logits[..., 1].float() - logits[..., 0].float()  # float32 at least, so the margin covers rounding
    b, a = torch.nonzero(diff > logit_bound(cfg.score_threshold), as_tuple=True)
    flat = b * anchors + a  # one flat index_select per tensor is much cheaper than [b, a] indexing
    s = face_scores(logits.reshape(-1, 2).index_select(0, flat))
    exact = s > cfg.score_threshold
    if not bool(exact.all()):
        b, a, flat, s = b[exact], a[exact], flat[exact], s[exact]
    k = cfg.pre_nms_top_k
    if k is not None and len(s) > k and int(torch.bincount(b).max()) > k:  # the sort only when it cuts
        order, rank = _rank_within(b, s)
        order = order[rank < k]
        b, a, flat, s = b[order], a[order], flat[order], s[order]
    p = priors.index_select(0, a)
    boxes = decode_boxes(pred.boxes.reshape(batch * anchors, -1).index_select(0, flat), p, variances)
    landmarks = decode_landmarks(pred.landmarks.reshape(batch * anchors, -1).index_select(0, flat), p, variances)
    return b, RawDetections(boxes, s, landmarks)


def nms(image_index: Tensor, dets: RawDetections, cfg: PostCfg) -> Tensor:
    """Indices kept by per-image NMS, sorted by image then score (desc), at most max_detections each."""
    # "+1 pixel" convention of the classic NMS: IoU of [x1, x2 + 1) intervals.
    shifted = dets.boxes.clone()
    shifted[:, 2:] += cfg.nms_pixel_offset
    if len(image_index) == 0 or bool((image_index == image_index[0]).all()):  # one image: plain NMS
        keep = tv_nms(shifted, dets.scores, cfg.nms_iou)  # sorted by score desc
        return keep if cfg.max_detections is None else keep[: cfg.max_detections]
    keep = batched_nms(shifted, dets.scores, image_index, cfg.nms_iou)  # sorted by score desc
    order = torch.argsort(image_index[keep], stable=True)  # -> by image, score desc within each
    keep = keep[order]
    if cfg.max_detections is None:
        return keep
    g = image_index[keep]
    rank = torch.arange(len(g), device=g.device) - torch.searchsorted(g, g, right=False)
    return keep[rank < cfg.max_detections]


def postprocess(pred: Predictions, priors: Tensor, variances: tuple[float, float], cfg: PostCfg) -> list[RawDetections]:
    """Batched predictions (B, A, .) with priors (A, 4) cxcywh -> B per-image :class:`RawDetections`."""
    batch = pred.logits.shape[0]
    if pred.logits.shape[1] != priors.shape[0]:
        raise ValueError(f"{pred.logits.shape[1]} predictions per image but {priors.shape[0]} priors")
    image_index, dets = candidates(pred, priors, variances, cfg)
    keep = nms(image_index, dets, cfg)
    counts = torch.bincount(image_index[keep], minlength=batch).tolist()
    parts = [t.index_select(0, keep).split(counts) for t in dets]
    return [RawDetections(*(p[i] for p in parts)) for i in range(batch)]


def box_voting(dets: RawDetections, iou: float, pixel_offset: float = 1.0) -> RawDetections:
    """Greedy clustering with score-weighted averaging (the merge of multi-scale test outputs).

    Clusters are those of greedy NMS at ``iou``: each kept box (a cluster head, in score order) takes every
    not yet assigned box whose IoU with it is at least ``iou``. A cluster's box and landmarks are the
    score-weighted means of its members; its score is the highest member score. Output sorted by score.
    """
    if len(dets.scores) == 0:
        return dets
    order = torch.argsort(dets.scores, descending=True, stable=True)
    boxes, scores, landmarks = dets.boxes[order], dets.scores[order], dets.landmarks[order]
    shifted = boxes.clone()
    shifted[:, 2:] += pixel_offset
    threshold = iou - 1e-9  # torchvision suppresses IoU > t; the merge rule is IoU >= iou
    heads = torch.ops.torchvision.nms(shifted, scores, threshold)
    heads = torch.sort(heads).values  # positions in score order
    assign = torch.full((len(scores),), -1, dtype=torch.long, device=scores.device)
    chunk = max(1, 4_000_000 // max(1, len(heads)))
    for start in range(0, len(scores), chunk):  # bounded memory: (heads, chunk) IoU at a time
        stop = min(start + chunk, len(scores))
        overlap = box_iou(shifted[heads], shifted[start:stop]) > threshold  # (K, n)
        # A box belongs to the first head (in score order) at or before it that overlaps it enough.
        positions = torch.arange(start, stop, device=scores.device)
        overlap &= heads[:, None] <= positions[None, :]
        assign[start:stop] = torch.where(overlap.any(0), overlap.float().argmax(0), -1)
    assign[heads] = torch.arange(len(heads), device=scores.device)
    k = len(heads)
    w = scores[:, None]
    box_sum = torch.zeros(k, 4, dtype=boxes.dtype, device=boxes.device).index_add_(0, assign, boxes * w)
    lmk_sum = torch.zeros(k, 5, 2, dtype=boxes.dtype, device=boxes.device).index_add_(
        0, assign, landmarks * w[..., None]
    )
    weight = torch.zeros(k, dtype=scores.dtype, device=scores.device).index_add_(0, assign, scores)
    top = scores[heads]  # the head is its cluster's highest score
    return RawDetections(box_sum / weight[:, None], top, lmk_sum / weight[:, None, None])
