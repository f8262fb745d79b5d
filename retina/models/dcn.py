"""Modulated deformable convolution (DCNv2: Zhu, Hu, Lin, Dai, "Deformable ConvNets v2: More Deformable,
Better Results", CVPR 2019, arXiv 1811.11168) on ``torchvision.ops.deform_conv2d``.

For an output position p0 and kernel taps p_k (k = 0..K-1, K = kh*kw, row-major over the kernel), DCNv2 computes

    y(p0) = sum_k w_k * m_k(p0) * x(p0 + p_k + dp_k(p0))

where the offsets dp_k and the modulation scalars m_k are predicted from the same input by a plain conv with
the same kernel size, stride, padding and dilation, and x(.) at fractional positions is bilinear
interpolation with zeros outside the image. RetinaFace (arXiv 1905.00641 section 4.1) uses it for every 3x3
conv of the lateral connections and context modules.

Offset layout (what ``torchvision.ops.deform_conv2d`` expects, one offset group):
offset (B, 2*K, H_out, W_out) with channels (dy_0, dx_0, dy_1, dx_1, ..., dy_{K-1}, dx_{K-1}): row (y)
displacement first, then column (x), in input pixels; mask (B, K, H_out, W_out) in the same tap order.
The offset/mask conv here emits 3*K channels: the 2*K offsets in that layout, then K mask logits.

Initialisation: the offset/mask conv starts with zero weight and bias, so dp = 0 and, with the mask taken as
``2 * sigmoid(logit)``, m = 1: the layer starts as exactly the plain convolution with its weights. (The
DCNv2 paper uses ``sigmoid``, i.e. m = 0.5 at start; the factor 2 only rescales the mask's range to (0, 2).)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from retina.models.rng import isolated_rng


class ModulatedDeformConv2d(nn.Conv2d):
    """A DCNv2 conv: (B, C_in, H, W) -> (B, C_out, H_out, W_out), H_out/W_out as for ``nn.Conv2d``.

    It *is* an ``nn.Conv2d`` (same ``weight``/``bias``, same arguments, zero padding only) so that code that
    treats convs generically, such as BatchNorm folding (``retina.models.fuse``), folds it unchanged: folding
    rescales ``weight`` and sets ``bias``, which DCN applies exactly like a conv. The extra child
    ``offset_mask`` (``nn.Conv2d``: C_in -> 3*kh*kw, bias) predicts offsets and mask logits from the input.
    Anything that re-initialises convs generically must leave ``offset_mask`` at zero (or call
    :meth:`reset_parameters`), else the layer no longer starts as a plain conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        taps = self.kernel_size[0] * self.kernel_size[1]
        # Sees every input channel (groups=1) whatever ``groups`` the main conv has: one offset group. Its (discarded)
        # random init leaves the model's random stream alone: a DCN model's other weights are the plain model's.
        with isolated_rng():
            self.offset_mask = nn.Conv2d(
                in_channels, 3 * taps, self.kernel_size, self.stride, self.padding, self.dilation, bias=True
            )
        self._zero_offset_mask()

    def _zero_offset_mask(self) -> None:
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def reset_parameters(self) -> None:
        """Conv weights as ``nn.Conv2d`` initialises them; offsets 0 and mask 1 (a plain conv)."""
        super().reset_parameters()
        if hasattr(self, "offset_mask"):  # nn.Conv2d.__init__ calls this before the child exists
            self._zero_offset_mask()

    def offsets_and_mask(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """offset (B, 2*K, H_out, W_out) as (dy, dx) per tap in input pixels; mask (B, K, H_out, W_out) in (0, 2)."""
        out = self.offset_mask(x)
        taps = out.shape[1] // 3
        return out[:, : 2 * taps], 2.0 * torch.sigmoid(out[:, 2 * taps :])

    def forward(self, x: Tensor) -> Tensor:
        offset, mask = self.offsets_and_mask(x)
        return deform_conv2d(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
        )


def offset_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of every DCN layer's offset/mask conv in ``model`` (empty without DCN), in module order."""
    return [p for m in model.modules() if isinstance(m, ModulatedDeformConv2d) for p in m.offset_mask.parameters()]


class OffsetMonitor:
    """What the DCN layers of a model predicted over its forwards since the last :meth:`read`, all layers together:
    the largest and the mean |offset| (pixels of each layer's input) and the mask's range (offsets 0 and mask 1:
    the plain conv). Forward hooks on the offset/mask convs; the running values stay on the device until read."""

    def __init__(self, model: nn.Module) -> None:
        layers = [m.offset_mask for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
        self.handles = [layer.register_forward_hook(self._seen) for layer in layers]
        self._values: Tensor | None = None  # (max |offset|, sum |offset|, offsets seen, min logit, max logit)

    def _seen(self, module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
        with torch.no_grad():
            taps = out.shape[1] // 3
            offset, logit = out[:, : 2 * taps].detach().float().abs(), out[:, 2 * taps :].detach().float()
            now = torch.stack(
                [offset.amax(), offset.sum(), offset.new_tensor(offset.numel()), logit.amin(), logit.amax()]
            )
            if self._values is None:
                self._values = now
            else:
                v = self._values
                self._values = torch.stack([torch.maximum(v[0], now[0]), v[1] + now[1], v[2] + now[2],
                                            torch.minimum(v[3], now[3]), torch.maximum(v[4], now[4])])  # fmt: skip

    def read(self) -> dict[str, float]:
        """``dcn_offset_max``, ``dcn_offset_mean`` (pixels), ``dcn_mask_min``, ``dcn_mask_max`` since the last read
        (empty when no DCN layer ran), and start again."""
        if self._values is None:
            return {}
        big, total, count, low, high = self._values.tolist()
        self._values = None
        mask = 2.0 * torch.sigmoid(torch.tensor([low, high], dtype=torch.float64))  # monotone: the logits' range
        return {"dcn_offset_max": big, "dcn_offset_mean": total / count, "dcn_mask_min": float(mask[0]),
                "dcn_mask_max": float(mask[1])}  # fmt: skip

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
