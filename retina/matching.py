"""Anchor-to-face matching and OHEM selection (arXiv 1905.00641 section 4.1).

Labels per anchor: ``POSITIVE`` (IoU >= pos_iou with some face, or the best anchor of a face), ``NEGATIVE``
(IoU < neg_iou with every face) or ``IGNORED`` (in between). IoU here is the continuous one on xyxy boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

from retina.config import LossCfg

POSITIVE = 1
NEGATIVE = 0
IGNORED = -1


def match(gt_boxes: Tensor, priors: Tensor, cfg: LossCfg) -> tuple[Tensor, Tensor]:
    """gt_boxes (N, 4) xyxy, priors (A, 4) cxcywh -> labels (A,) int64 and matched face index (A,) int64.

    The matched index is meaningful where the label is POSITIVE. With no faces every anchor is NEGATIVE.
    When a face's best anchor is forced positive and several faces claim one anchor, the later face wins.
    """
    a = priors.shape[0]
    labels = torch.full((a,), NEGATIVE, dtype=torch.long, device=priors.device)
    matched = torch.zeros(a, dtype=torch.long, device=priors.device)
    if gt_boxes.numel() == 0:
        return labels, matched
    iou = box_iou(gt_boxes.to(priors.dtype), box_convert(priors, "cxcywh", "xyxy"))  # (N, A)
    best_iou, matched = iou.max(dim=0)
    labels[best_iou >= cfg.neg_iou] = IGNORED
    labels[best_iou >= cfg.pos_iou] = POSITIVE
    if cfg.force_best_anchor:
        best_anchor_iou, best_anchor = iou.max(dim=1)  # (N,)
        faces = torch.nonzero(best_anchor_iou >= max(cfg.min_best_iou, 1e-12)).squeeze(1)
        labels[best_anchor[faces]] = POSITIVE
        matched[best_anchor[faces]] = faces  # index_put: the last face written wins on duplicates
    return labels, matched


def hard_negatives(cls_loss: Tensor, labels: Tensor, ratio: float) -> Tensor:
    """OHEM: per image, the ``ratio * max(positives, 1)`` negatives of highest loss.

    cls_loss, labels (B, A) -> bool mask (B, A). Images without faces still contribute ``ratio``
    negatives, so that background-only images teach the classifier.
    """
    negative = labels == NEGATIVE
    num_pos = (labels == POSITIVE).sum(dim=1, keepdim=True)
    k = (ratio * num_pos.clamp(min=1)).long().clamp(max=labels.shape[1] - 1)
    loss = cls_loss.detach().masked_fill(~negative, float("-inf"))
    order = loss.argsort(dim=1, descending=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(labels.shape[1], device=labels.device).expand_as(order)
    )
    return negative & (rank < k)
