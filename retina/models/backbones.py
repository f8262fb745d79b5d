"""Backbones: a module returning a list of feature maps, with ``channels`` and ``strides`` attributes.

That contract (timm's ``features_only`` idea) is all the FPN needs. MobileNetV1 x0.25 is written here
(the biubug6 layout: LeakyReLU(0.1) everywhere, stages ending at strides 8/16/32); ResNets come from the
torchvision definitions (``torchvision.models.resnet50/152``, v1.5: stride on the 3x3 conv).
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from retina.config import STAGE_STRIDE
from retina.models.layers import ConvBNAct


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv -> BN -> act, then 1x1 pointwise conv -> BN -> act (MobileNetV1 block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, leaky: float) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, act=leaky)
        self.pw = ConvBNAct(in_channels, out_channels, 1, 1, act=leaky)


class MobileNetV1(nn.Module):
    """MobileNetV1 with width multiplier 0.25 (8 to 256 channels), returning C3, C4, C5.

    Input (B, 3, H, W); outputs of stages C3/C4/C5 have 64/128/256 channels at strides 8/16/32
    (spatial size ceil(H / stride), from 3x3 convs with padding 1).
    """

    # (out_channels, stride) of the blocks after the stem; stage boundaries at C3, C4, C5.
    _STAGES: tuple[tuple[tuple[int, int], ...], ...] = (
        ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1)),
        ((128, 2), (128, 1), (128, 1), (128, 1), (128, 1), (128, 1)),
        ((256, 2), (256, 1)),
    )

    def __init__(self, stages: tuple[int, ...] = (3, 4, 5), leaky: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Sequential] = []
        in_ch = 8
        first: list[nn.Module] = [ConvBNAct(3, in_ch, 3, 2, act=leaky)]
        for i, spec in enumerate(self._STAGES):
            blocks = first if i == 0 else []
            for out_ch, stride in spec:
                blocks.append(DepthwiseSeparable(in_ch, out_ch, stride, leaky))
                in_ch = out_ch
            layers.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(layers)
        self.return_stages = stages
        self.channels = tuple(self._STAGES[s - 3][-1][0] for s in stages)
        self.strides = tuple(STAGE_STRIDE[s] for s in stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for index, stage in enumerate(self.stages, start=3):
            x = stage(x)
            if index in self.return_stages:
                out.append(x)
        return out


class ResNetBackbone(nn.Module):
    """A torchvision ResNet (50 or 152) returning the requested stages C2..C5 (layer1..layer4)."""

    def __init__(self, depth: int, stages: tuple[int, ...]) -> None:
        super().__init__()
        factory = {50: torchvision.models.resnet50, 152: torchvision.models.resnet152}[depth]
        net = factory(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4][: max(stages) - 1])
        self.return_stages = stages
        self.channels = tuple(256 * 2 ** (s - 2) for s in stages)
        self.strides = tuple(STAGE_STRIDE[s] for s in stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        out = []
        for index, layer in enumerate(self.layers, start=2):
            x = layer(x)
            if index in self.return_stages:
                out.append(x)
        return out


def build_backbone(name: str, stages: tuple[int, ...]) -> nn.Module:
    """The backbone for a ``BackboneCfg.name`` (weights initialised randomly; see retina.checkpoint)."""
    if name == "mobilenet0.25":
        return MobileNetV1(stages)
    if name in ("resnet50", "resnet152"):
        return ResNetBackbone(int(name[len("resnet") :]), stages)
    raise ValueError(f"unknown backbone {name!r}")
