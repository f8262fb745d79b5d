"""Anchor (prior) boxes.

Box format of every prior tensor here: (cx, cy, w, h) in input-image pixels. For pyramid level l with
stride s_l, the feature map has ceil(H / s_l) x ceil(W / s_l) cells (what stride-2 3x3 convs with padding 1
produce); cell (i, j) has centre ((j + 0.5) s_l, (i + 0.5) s_l) and one square anchor per size. Order:
level, row, column, anchor size -- the order in which the heads emit their outputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def feature_sizes(image_hw: tuple[int, int], strides: tuple[int, ...]) -> list[tuple[int, int]]:
    """(rows, cols) of each level's feature map for an input of (H, W) pixels."""
    h, w = image_hw
    return [(math.ceil(h / s), math.ceil(w / s)) for s in strides]


def make_priors(
    image_hw: tuple[int, int],
    strides: tuple[int, ...],
    sizes: tuple[tuple[float, ...], ...],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Tensor[A, 4] of (cx, cy, w, h) pixels, A = sum_l rows_l * cols_l * len(sizes[l])."""
    out = []
    for (rows, cols), stride, level_sizes in zip(feature_sizes(image_hw, strides), strides, sizes, strict=True):
        cy = (torch.arange(rows, dtype=torch.float64) + 0.5) * stride
        cx = (torch.arange(cols, dtype=torch.float64) + 0.5) * stride
        yy, xx = torch.meshgrid(cy, cx, indexing="ij")  # (rows, cols)
        side = torch.tensor(level_sizes, dtype=torch.float64)
        k = len(level_sizes)
        level = torch.stack(
            [
                xx[..., None].expand(rows, cols, k),
                yy[..., None].expand(rows, cols, k),
                side.expand(rows, cols, k),
                side.expand(rows, cols, k),
            ],
            dim=-1,
        )  # (rows, cols, k, 4)
        out.append(level.reshape(-1, 4))
    return torch.cat(out).to(dtype=dtype, device=device)


class PriorCache:
    """Priors per input size, dtype and device, built once (rebuilding them dominated older ports' latency)."""

    def __init__(self, strides: tuple[int, ...], sizes: tuple[tuple[float, ...], ...], max_entries: int = 32):
        self.strides = strides
        self.sizes = sizes
        self.max_entries = max_entries
        self._cache: dict[tuple, Tensor] = {}

    def __call__(self, image_hw: tuple[int, int], dtype: torch.dtype, device: torch.device) -> Tensor:
        key = (tuple(image_hw), dtype, str(device))
        priors = self._cache.get(key)
        if priors is None:
            if len(self._cache) >= self.max_entries:  # bounded: multi-scale testing sees many sizes
                self._cache.pop(next(iter(self._cache)))
            priors = make_priors(tuple(image_hw), self.strides, self.sizes, dtype, device)
            self._cache[key] = priors
        return priors
