"""RetinaFace: backbone -> FPN -> context module per level -> shared-shape heads.

``forward`` returns raw per-anchor predictions (a :class:`Predictions`), the same in training and
inference: no loss, no decoding, no NMS inside (those live in ``retina.losses`` and
``retina.postprocess``).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from retina.models.heads import Head


class Predictions(NamedTuple):
    """Raw outputs for A anchors (ordered as ``retina.priors.make_priors``).

    logits (B, A, 2): background / face logits (softmax gives the face score);
    boxes (B, A, 4): encoded box offsets (dcx, dcy, dw, dh), see ``retina.coding``;
    landmarks (B, A, 10): encoded landmark offsets (x0, y0, ..., x4, y4).
    """

    logits: Tensor
    boxes: Tensor
    landmarks: Tensor


class RetinaFace(nn.Module):
    """input (B, 3, H, W) float, normalised as ``InputCfg`` says -> :class:`Predictions`."""

    def __init__(
        self,
        backbone: nn.Module,
        fpn: nn.Module,
        contexts: nn.ModuleList,
        channels: int,
        anchors: int,
        shared_heads: bool,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn
        self.contexts = contexts
        levels = len(contexts)
        self.cls_head = Head(channels, anchors, 2, levels, shared_heads)
        self.box_head = Head(channels, anchors, 4, levels, shared_heads)
        self.landmark_head = Head(channels, anchors, 10, levels, shared_heads)

    def forward(self, images: Tensor) -> Predictions:
        pyramid = self.fpn(self.backbone(images))
        features = [ctx(p) for ctx, p in zip(self.contexts, pyramid, strict=True)]
        return Predictions(self.cls_head(features), self.box_head(features), self.landmark_head(features))
