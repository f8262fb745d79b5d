"""The multi-task loss (arXiv 1905.00641 eq. 1): named, unweighted parts (the pixel loss is ``retina.dense.pixel``).

``assign`` matches anchors to faces and builds regression targets; ``losses`` returns
``{"cls": ..., "box": ..., "landmarks": ...}``, each a sum over anchors divided by a count that the caller
passes (the number of positives, resp. positives with landmarks, over the global batch: with DDP the
caller all-reduces the counts, so every process's loss is a share of the same global mean). The weights
of ``LossCfg`` are applied in one place, ``weighted_total``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from retina.coding import encode_boxes, encode_landmarks
from retina.config import LossCfg
from retina.data.dataset import Target
from retina.matching import POSITIVE, hard_negatives, match
from retina.models.detector import Predictions


@dataclass(frozen=True)
class Assigned:
    """Per-anchor training targets for a batch of B images and A anchors.

    labels (B, A) int64 (POSITIVE / NEGATIVE / IGNORED); box_targets (B, A, 4) and landmark_targets (B, A, 10)
    encoded offsets (valid where positive); landmark_mask (B, A) bool: positive and the face has landmarks;
    face_index (B, A) int64: the index of the matched face in its image's target (valid where positive).
    """

    labels: Tensor
    box_targets: Tensor
    landmark_targets: Tensor
    landmark_mask: Tensor
    face_index: Tensor

    @property
    def num_positive(self) -> Tensor:
        return (self.labels == POSITIVE).sum()

    @property
    def num_landmarks(self) -> Tensor:
        return self.landmark_mask.sum()


def assign(targets: Sequence[Target], priors: Tensor, variances: tuple[float, float], cfg: LossCfg) -> Assigned:
    """Match every image's faces to the priors (A, 4) cxcywh and encode the targets."""
    labels, boxes, lmks, masks, faces = [], [], [], [], []
    for t in targets:
        gt_boxes = t.boxes.to(priors.device, priors.dtype)
        lab, idx = match(gt_boxes, priors, cfg)
        if len(gt_boxes):
            boxes.append(encode_boxes(gt_boxes[idx], priors, variances))
            lmks.append(encode_landmarks(t.landmarks.to(priors.device, priors.dtype)[idx], priors, variances))
            masks.append((lab == POSITIVE) & t.has_landmarks.to(priors.device)[idx])
        else:
            boxes.append(torch.zeros_like(priors))
            lmks.append(priors.new_zeros(priors.shape[0], 10))
            masks.append(torch.zeros(priors.shape[0], dtype=torch.bool, device=priors.device))
        labels.append(lab)
        faces.append(idx)
    return Assigned(*(torch.stack(x) for x in (labels, boxes, lmks, masks, faces)))


def losses(
    pred: Predictions, assigned: Assigned, cfg: LossCfg, num_positive: Tensor, num_landmarks: Tensor
) -> dict[str, Tensor]:
    """Unweighted named losses; ``num_*`` are the normalising counts (clamped to at least 1)."""
    logits = pred.logits.float()
    labels = assigned.labels
    cls_all = F.cross_entropy(logits.flatten(0, 1), labels.clamp(min=0).flatten(), reduction="none").view_as(labels)
    positive = labels == POSITIVE
    selected = positive | hard_negatives(cls_all, labels, cfg.ohem_ratio)
    n_pos = num_positive.clamp(min=1).float()
    n_lmk = num_landmarks.clamp(min=1).float()
    box = F.smooth_l1_loss(pred.boxes.float()[positive], assigned.box_targets.float()[positive], reduction="sum")
    lmk_mask = assigned.landmark_mask
    pts = F.smooth_l1_loss(
        pred.landmarks.float()[lmk_mask], assigned.landmark_targets.float()[lmk_mask], reduction="sum"
    )
    return {"cls": cls_all[selected].sum() / n_pos, "box": box / n_pos, "landmarks": pts / n_lmk}


def weighted_total(parts: dict[str, Tensor], cfg: LossCfg) -> Tensor:
    """L = w_cls Lcls + w_box Lbox + w_pts Lpts (+ w_pixel Lpixel when ``parts`` has it)."""
    total = cfg.w_cls * parts["cls"] + cfg.w_box * parts["box"] + cfg.w_landmarks * parts["landmarks"]
    return total + cfg.w_pixel * parts["pixel"] if "pixel" in parts else total
