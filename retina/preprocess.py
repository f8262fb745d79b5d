"""Pixel normalisation shared by training and inference."""

from __future__ import annotations

import torch
from torch import Tensor

from retina.config import InputCfg


def normalize(images: Tensor, cfg: InputCfg) -> Tensor:
    """uint8 (B, H, W, 3) BGR -> float32 (B, 3, H, W) ``(x - mean) / std`` in ``cfg.channel_order``.

    The permute makes a channels-last view; arithmetic keeps that memory format.
    """
    x = images.permute(0, 3, 1, 2)
    if cfg.channel_order == "rgb":
        x = x.flip(1)
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    x = x.float() - mean
    if any(s != 1.0 for s in cfg.std):
        # times the float32 reciprocal, exactly as the CPU inference path computes it
        inv_std = 1.0 / torch.tensor(cfg.std, dtype=torch.float32, device=x.device)
        x = x * inv_std.view(1, 3, 1, 1)
    return x
