"""The data a rasterizer hands to interpolation: one type shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Raster:
    """Per-pixel result of rasterizing a batch of meshes into an (H, W) image.

    tri_id (Tensor[B, H, W]) int64: index of the visible triangle, ``-1`` where no triangle covers the
    pixel centre. bary (Tensor[B, H, W, 3]): perspective-correct barycentric weights of that
    triangle's three vertices (zero where uncovered), differentiable with respect to the vertex
    positions. depth (Tensor[B, H, W]): ``z_clip / w_clip`` of the visible surface (NDC depth in
    [-1, 1], smaller is nearer), ``+inf`` where uncovered.

    Pixel convention (the same as nvdiffrast): pixel (i, j) has its centre at NDC
    ``x = (2j + 1) / W - 1``, ``y = (2i + 1) / H - 1``; row 0 is ``y = -1``.
    """

    tri_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool: pixels covered by some triangle."""
        return self.tri_id >= 0
