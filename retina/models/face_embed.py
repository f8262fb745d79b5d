"""A small face-embedding backbone for 112x112 aligned crops: MobileFaceNet-style, written here.

Chen, Liu, Gao, Han, "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on Mobile
Devices" (arXiv 1804.07573), table 1: a 3x3 stride-2 conv and a 3x3 depthwise conv, MobileNetV2 inverted
residual bottlenecks (1x1 expand, 3x3 depthwise, linear 1x1 project; a residual when the shape is kept), a
1x1 conv to 512 channels, then a *global depthwise conv* (7x7, one filter per channel, no padding: a learned,
position-dependent pooling, where average pooling would weigh the eyes and the background alike), and a linear
1x1 (here ``nn.Linear``) with BatchNorm giving the embedding. PReLU activations.

Input: ``normalize_crops``: RGB crops, NCHW float, ``(x - 127.5) / 128`` (insightface's arcface_torch
convention: about [-1, 1]). Output: (B, D) embeddings, not normalised (the ArcFace head and the verification
code normalise them).

Presets (``EMBED_PRESETS``), parameters at D = 128 (checked by tests):
- ``mobilefacenet``: the paper's layout, width 1.0: about 1.0 M parameters and 221 M multiply-adds per
  112x112 crop (as the paper);
- ``mobilefacenet-s``: width 0.5, fewer repeated blocks, 256 head channels: about 0.15 M parameters and 33 M
  multiply-adds, for CPU training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from retina.models.layers import ConvBNAct

# (expansion t, output channels c, repeats n, stride of the first repeat s): MobileNetV2 bottleneck groups.
Block = tuple[int, int, int, int]

# arXiv 1804.07573 table 1 (after the stem conv and the 3x3 depthwise conv, both 64 channels).
MOBILEFACENET_BLOCKS: tuple[Block, ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)
SMALL_BLOCKS: tuple[Block, ...] = ((2, 64, 2, 2), (4, 128, 1, 2), (2, 128, 2, 1), (4, 128, 1, 2), (2, 128, 1, 1))


@dataclass(frozen=True)
class FaceEmbedCfg:
    """The embedding network. Channel counts are multiplied by ``width`` and rounded to a multiple of 8."""

    name: str = "mobilefacenet"
    width: float = 1.0
    stem_channels: int = 64
    blocks: tuple[Block, ...] = MOBILEFACENET_BLOCKS
    head_channels: int = 512  # the 1x1 conv before the global depthwise conv (also scaled by width)
    embedding_dim: int = 128
    input_size: int = 112  # square crops; the global depthwise kernel covers the whole last feature map

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if min(self.stem_channels, self.head_channels, self.embedding_dim) < 1:
            raise ValueError("stem_channels, head_channels and embedding_dim must be positive")
        if not self.blocks or any(len(b) != 4 or min(b) < 1 or b[3] > 2 for b in self.blocks):
            raise ValueError(f"blocks must be (t, c, n, s) with positive entries and s in (1, 2), got {self.blocks}")
        if self.input_size % self.stride:
            raise ValueError(f"input_size {self.input_size} is not a multiple of the network stride {self.stride}")

    @property
    def stride(self) -> int:
        """Total downsampling: the stem's 2 times the first stride of every block group."""
        total = 2
        for block in self.blocks:
            total *= block[3]
        return total

    def channels(self, c: int) -> int:
        """``c`` scaled by the width, rounded to the nearest multiple of 8 (at least 8)."""
        return max(8, int(c * self.width + 4) // 8 * 8)


EMBED_PRESETS: dict[str, FaceEmbedCfg] = {
    "mobilefacenet": FaceEmbedCfg(),
    "mobilefacenet-s": FaceEmbedCfg(name="mobilefacenet-s", width=0.5, blocks=SMALL_BLOCKS, head_channels=256),
}


def embed_preset(name: str) -> FaceEmbedCfg:
    try:
        return EMBED_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown embedding preset {name!r}; choose one of {sorted(EMBED_PRESETS)}") from None


def conv_bn_prelu(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> ConvBNAct:
    """conv (padding kernel // 2, no bias) -> BatchNorm -> PReLU (one slope per channel)."""
    block = ConvBNAct(cin, cout, kernel, stride, groups=groups, act=None)
    block.act = nn.PReLU(cout)
    return block


class InvertedResidual(nn.Module):
    """1x1 expand (BN, PReLU) -> 3x3 depthwise with ``stride`` (BN, PReLU) -> linear 1x1 project (BN).

    A residual connection when stride is 1 and the channel count is kept. (B, cin, H, W) -> (B, cout, H/s, W/s).
    """

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            conv_bn_prelu(cin, mid, 1),
            conv_bn_prelu(mid, mid, 3, stride, groups=mid),
            ConvBNAct(mid, cout, 1, act=None),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class FaceEmbedNet(nn.Module):
    """(B, 3, S, S) normalised RGB crops (S = ``cfg.input_size``) -> (B, D) embeddings (D = ``cfg.embedding_dim``)."""

    def __init__(self, cfg: FaceEmbedCfg | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or FaceEmbedCfg()
        stem = cfg.channels(cfg.stem_channels)
        layers: list[nn.Module] = [conv_bn_prelu(3, stem, 3, 2), conv_bn_prelu(stem, stem, 3, 1, groups=stem)]
        cin = stem
        for t, c, n, s in cfg.blocks:
            cout = cfg.channels(c)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        head = cfg.channels(cfg.head_channels)
        layers.append(conv_bn_prelu(cin, head, 1))
        self.features = nn.Sequential(*layers)
        side = cfg.input_size // cfg.stride
        # Global depthwise conv: one side x side filter per channel over the whole map -> (B, head, 1, 1); linear.
        self.gdc = nn.Sequential(nn.Conv2d(head, head, side, groups=head, bias=False), nn.BatchNorm2d(head))
        self.embedding = nn.Linear(head, cfg.embedding_dim, bias=False)
        self.bn = nn.BatchNorm1d(cfg.embedding_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        size = self.cfg.input_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2:] != (size, size):
            raise ValueError(f"expected (B, 3, {size}, {size}) input, got {tuple(x.shape)}")
        x = self.gdc(self.features(x)).flatten(1)
        return self.bn(self.embedding(x))


def normalize_crops(crops: Tensor) -> Tensor:
    """(B, S, S, 3) uint8 RGB crops -> (B, 3, S, S) float32 ``(x - 127.5) / 128``."""
    return (crops.permute(0, 3, 1, 2).float() - 127.5) / 128.0


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_embedder(cfg: FaceEmbedCfg | str = "mobilefacenet", seed: int | None = None) -> FaceEmbedNet:
    """A freshly initialised network from a config or preset name (``seed``: a private generator state)."""
    cfg = embed_preset(cfg) if isinstance(cfg, str) else cfg
    if seed is None:
        return FaceEmbedNet(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FaceEmbedNet(cfg)
