"""SSH-style context module (Najibi et al. 2017; RetinaFace section 3.2: "context modules").

Three branches of effective receptive field 3x3, 5x5 and 7x7 built from stacked 3x3 convs, with
C/2, C/4 and C/4 channels, concatenated and passed through ReLU. The 5x5 and 7x7 branches share their
first conv.

With ``dcn=True`` all five 3x3 convs (branch3, branch5_1, branch5_2, branch7_2, branch7_3) are DCNv2
(:class:`retina.models.dcn.ModulatedDeformConv2d`), as the paper's "+DCN" row does for its context modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retina.models.layers import ConvBNAct


class ContextModule(nn.Module):
    """(B, C, H, W) -> (B, C, H, W); ``leaky`` is the slope of the inner activations (0: ReLU)."""

    def __init__(self, channels: int, leaky: float, dcn: bool = False) -> None:
        super().__init__()
        half, quarter = channels // 2, channels // 4
        self.branch3 = ConvBNAct(channels, half, act=None, deformable=dcn)
        self.branch5_1 = ConvBNAct(channels, quarter, act=leaky, deformable=dcn)
        self.branch5_2 = ConvBNAct(quarter, quarter, act=None, deformable=dcn)
        self.branch7_2 = ConvBNAct(quarter, quarter, act=leaky, deformable=dcn)
        self.branch7_3 = ConvBNAct(quarter, quarter, act=None, deformable=dcn)

    def forward(self, x: Tensor) -> Tensor:
        shared = self.branch5_1(x)
        b7 = self.branch7_3(self.branch7_2(shared))
        return F.relu(torch.cat([self.branch3(x), self.branch5_2(shared), b7], dim=1))
