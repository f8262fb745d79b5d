"""Small building blocks shared by the backbone, the FPN and the context module."""

from __future__ import annotations

from torch import nn

from retina.models.dcn import ModulatedDeformConv2d


def activation(leaky: float) -> nn.Module:
    """LeakyReLU with the given negative slope, or ReLU when it is 0."""
    return nn.LeakyReLU(leaky, inplace=True) if leaky > 0 else nn.ReLU(inplace=True)


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BatchNorm -> activation (``act=None``: no activation). Children: conv, bn[, act].

    ``deformable=True`` makes ``conv`` a :class:`ModulatedDeformConv2d` (DCNv2, starting as the plain conv);
    the child names stay the same, the conv gains the parameters ``conv.offset_mask.{weight,bias}``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: float | None = 0.0,
        deformable: bool = False,
    ) -> None:
        super().__init__()
        conv = ModulatedDeformConv2d if deformable else nn.Conv2d
        self.conv = conv(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        if act is not None:
            self.act = activation(act)
