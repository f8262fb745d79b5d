"""Feature pyramid (Lin et al. 2017) as RetinaFace uses it (arXiv 1905.00641 section 3.2 / 4.1).

Lateral 1x1 conv-BN-act per backbone stage; top-down nearest upsampling to the lateral's size, addition,
then a 3x3 conv-BN-act ("merge") on every level but the top one; optional extra levels, each a 3x3
stride-2 conv-BN-act on the level below (the paper's P6 on C5).

With ``dcn=True`` (the paper's "+DCN": "every 3x3 conv in the lateral connections") the merge convs, the
only 3x3 convs on the lateral/top-down path, are DCNv2 (:class:`retina.models.dcn.ModulatedDeformConv2d`).
The lateral convs are 1x1 (nothing to deform) and the extra levels are not lateral connections (they stay
plain convs).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from retina.models.layers import ConvBNAct


class FPN(nn.Module):
    """inputs: C_k maps (B, in_channels[k], H_k, W_k), fine to coarse -> P maps (B, channels, H_k, W_k)."""

    def __init__(
        self,
        in_channels: tuple[int, ...],
        channels: int,
        leaky: float,
        extra_levels: int = 0,
        dcn: bool = False,
    ) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(ConvBNAct(c, channels, 1, act=leaky) for c in in_channels)
        self.merge = nn.ModuleList(
            ConvBNAct(channels, channels, 3, act=leaky, deformable=dcn) for _ in in_channels[:-1]
        )
        extra_in = ([in_channels[-1]] + [channels] * extra_levels)[:extra_levels]
        self.extra = nn.ModuleList(ConvBNAct(c, channels, 3, stride=2, act=leaky) for c in extra_in)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        out = [laterals[-1]]
        for i in range(len(laterals) - 2, -1, -1):
            up = F.interpolate(out[0], size=laterals[i].shape[-2:], mode="nearest")
            out.insert(0, self.merge[i](laterals[i] + up))
        x = features[-1]
        for conv in self.extra:
            x = conv(x)
            out.append(x)
        return out
