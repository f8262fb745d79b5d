"""ArcFace: the additive angular margin head and its loss.

Deng, Guo, Xue, Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019
(arXiv 1801.07698), eq. 3. Embeddings x (B, D) and class centres W (C, D) are both L2-normalised, so the
logits are cosines: ``cos theta_j = <x/|x|, W_j/|W_j|>``. The target class y gets ``cos(theta_y + m)``
instead of ``cos theta_y``, every logit is multiplied by the scale s, and the loss is softmax cross-entropy:

    L = -log( e^{s cos(theta_y + m)} / (e^{s cos(theta_y + m)} + sum_{j != y} e^{s cos theta_j}) )

Paper defaults: s = 64, m = 0.5.

``cos(theta + m)`` is computed without ``acos``: ``cos theta cos m - sin theta sin m`` with
``sin theta = sqrt((1 - c)(1 + c))`` of the cosine c clamped to ``[-1 + eps, 1 - eps]`` (theta is in [0, pi], so
sin theta >= 0). Why: the derivative of the target logit with respect to the cosine is
``sin(theta + m) / sin theta`` (either way of writing it), which grows like m / theta as theta -> 0, and the
derivative of ``acos`` itself, ``-1 / sqrt(1 - c^2)``, is infinite at c = +-1. A cosine of exactly 1 (an
embedding on its class centre; also any rounding past 1) would then give an infinite or NaN gradient. After
the clamp, ``sqrt`` sees at least ``2 eps - eps^2`` and the derivative is bounded by
``cos m + sin m / sqrt(2 eps - eps^2)`` (about 340 at eps = 1e-6, m = 0.5); the clamped cosines themselves get
no gradient. ``(1 - c)(1 + c)`` rather than ``1 - c^2``: ``1 - c`` is exact in floating point near c = 1.
The same identity lets the branch tests below compare cosines, with no angle computed at all.

theta + m can pass pi (cos(theta + m) would rise again: a larger angle, a larger logit). Two rules:
- default (insightface's ``easy_margin=False``): with ``th = cos(pi - m)`` and ``mm = sin(pi - m) m = m sin m``,
  the target logit is ``cos(theta + m)`` where ``cos theta > th`` (theta + m < pi) and ``cos theta - mm``
  elsewhere (a CosFace-like additive margin, still decreasing in theta);
- ``easy_margin=True``: the margin is applied only where ``cos theta > 0`` (theta < pi / 2); elsewhere the
  target logit is ``cos theta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ArcFaceCfg:
    """Scale s, additive angular margin m (radians), the margin rule past pi, and the cosine clamp."""

    scale: float = 64.0
    margin: float = 0.5
    easy_margin: bool = False
    eps: float = 1e-6  # cosines are clamped to [-1 + eps, 1 - eps] before the square root

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"arcface scale must be positive, got {self.scale}")
        if not 0.0 <= self.margin < math.pi / 2:
            raise ValueError(f"arcface margin must be in [0, pi/2) radians, got {self.margin}")
        if not 0.0 < self.eps < 0.5:
            raise ValueError(f"arcface eps must be in (0, 0.5), got {self.eps}")


def target_logit(cos: Tensor, cfg: ArcFaceCfg) -> Tensor:
    """The unscaled target logit for cosines ``cos`` (any shape): ``cos(theta + m)`` with the rule past pi."""
    m = cfg.margin
    c = cos.clamp(-1.0 + cfg.eps, 1.0 - cfg.eps)
    sin = torch.sqrt((1.0 - c) * (1.0 + c))
    phi = c * math.cos(m) - sin * math.sin(m)
    if cfg.easy_margin:
        return torch.where(c > 0, phi, c)
    th, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m
    return torch.where(c > th, phi, c - mm)


def margin_logits(cos: Tensor, labels: Tensor, cfg: ArcFaceCfg) -> Tensor:
    """Scaled logits (B, C): ``s cos theta_j``, with ``s target_logit(cos theta_y)`` at each row's label.

    ``cos`` (B, C) cosines; ``labels`` (B,) int64 in [0, C).
    """
    index = labels.long().view(-1, 1)
    phi = target_logit(cos.gather(1, index), cfg)
    return cfg.scale * cos.scatter(1, index, phi)


def arcface_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean softmax cross-entropy over the scaled margin logits (B, C); labels (B,)."""
    return F.cross_entropy(logits, labels.long())


class ArcFaceHead(nn.Module):
    """Class centres W (C, D) and the margin logits of normalised embeddings.

    ``forward(embeddings (B, D), labels (B,)) -> (B, C)`` scaled margin logits (float32, or float64 for float64
    inputs); ``cosine(embeddings) -> (B, C)`` the plain cosines (what the classifier predicts with).
    """

    def __init__(self, embedding_dim: int, num_classes: int, cfg: ArcFaceCfg | None = None) -> None:
        super().__init__()
        if embedding_dim < 1 or num_classes < 1:
            raise ValueError(f"need embedding_dim >= 1 and num_classes >= 1, got {embedding_dim}, {num_classes}")
        self.cfg = cfg or ArcFaceCfg()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=embedding_dim**-0.5)  # rows of norm about 1 (only directions matter)

    def cosine(self, embeddings: Tensor) -> Tensor:
        """(B, C) cosines between the embeddings and every class centre (computed in at least float32)."""
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        x = F.normalize(embeddings.to(dtype), dim=1)
        w = F.normalize(self.weight.to(dtype), dim=1)
        return F.linear(x, w)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return margin_logits(self.cosine(embeddings), labels, self.cfg)
