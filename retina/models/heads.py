"""Per-anchor prediction heads: 1x1 convs for face score (2), box (4) and five landmarks (10).

biubug6 uses one set of convs per pyramid level; the paper shares one set across levels (all levels have
the same channel count). Either way the outputs of all levels are concatenated in the prior order of
``retina.priors.make_priors``: level, then row, then column, then anchor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Head(nn.Module):
    """A 1x1 conv per level (or one shared) producing ``outputs`` values per anchor."""

    def __init__(self, channels: int, anchors: int, outputs: int, levels: int, shared: bool) -> None:
        super().__init__()
        self.outputs = outputs
        count = 1 if shared else levels
        self.convs = nn.ModuleList(nn.Conv2d(channels, anchors * outputs, 1) for _ in range(count))

    def forward(self, features: list[Tensor]) -> Tensor:
        """features: per level (B, C, H_l, W_l) -> (B, sum_l H_l * W_l * anchors, outputs)."""
        out = []
        for i, f in enumerate(features):
            y = self.convs[i % len(self.convs)](f)  # (B, A*K, H, W)
            out.append(y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, self.outputs))  # -> (B, H*W*A, K)
        return torch.cat(out, dim=1)
