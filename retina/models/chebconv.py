"""Chebyshev spectral graph convolution (RetinaFace sec. 3.2, eq. 3; Defferrard et al. 2016).

``y = sum_{k<K} T_k(L~) x theta_k`` with ``T_0 x = x``, ``T_1 x = L~ x`` and
``T_k x = 2 L~ T_{k-1} x - T_{k-2} x``, where ``L~`` is the scaled Laplacian (spectrum in [-1, 1]) of
:mod:`retina.mesh.hierarchy`. Plain ``torch.sparse.mm``; no graph library needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from retina.mesh.hierarchy import MeshHierarchy


def sparse_tensor(matrix: sp.spmatrix | torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A coalesced torch sparse COO tensor from a scipy sparse matrix (or a torch tensor)."""
    if isinstance(matrix, torch.Tensor):
        out = matrix.to_sparse_coo() if matrix.layout != torch.sparse_coo else matrix
        return out.to(dtype).coalesce()
    coo = sp.coo_matrix(matrix)
    idx = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float64))
    return torch.sparse_coo_tensor(idx, values, coo.shape, check_invariants=True).to(dtype).coalesce()


class ChebConv(nn.Module):
    """Chebyshev graph convolution of order ``K`` on a fixed graph.

    laplacian: the scaled Laplacian ``L~`` (V, V), scipy sparse or torch; kept as a float64 sparse COO
    buffer (not saved in the state dict: it is derived from the mesh), so ``.to(device)`` moves it, and
    cast to the input's dtype per call (a float64 master copy keeps ``.double()`` exact after init).
    Input (B, V, in_channels) -> output (B, V, out_channels), in the input's dtype.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        K: int,
        laplacian: sp.spmatrix | torch.Tensor,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if K < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"ChebConv needs K, in_channels, out_channels >= 1, got {K}, {in_channels}, {out_channels}"
            )
        if laplacian.shape[0] != laplacian.shape[1]:
            raise ValueError(f"ChebConv laplacian must be square, got {tuple(laplacian.shape)}")
        self.in_channels, self.out_channels, self.K = in_channels, out_channels, K
        self.register_buffer("laplacian", sparse_tensor(laplacian, torch.float64), persistent=False)
        self.weight = nn.Parameter(torch.empty(K, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        bound = math.sqrt(6.0 / (K * in_channels + out_channels))  # Glorot over the stacked filters
        nn.init.uniform_(self.weight, -bound, bound)

    @property
    def num_vertices(self) -> int:
        return int(self.laplacian.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, V, C_in) -> (B, V, C_out)."""
        b, v, c = x.shape
        if v != self.num_vertices or c != self.in_channels:
            raise ValueError(f"ChebConv expects (B, {self.num_vertices}, {self.in_channels}), got {tuple(x.shape)}")
        lap = self.laplacian if self.laplacian.dtype == x.dtype else self.laplacian.to(x.dtype)
        t0 = x.permute(1, 0, 2).reshape(v, b * c)  # (V, B*C): one sparse product per order for the batch
        terms = [t0]
        if self.K > 1:
            terms.append(torch.sparse.mm(lap, t0))
        for _ in range(2, self.K):
            terms.append(2.0 * torch.sparse.mm(lap, terms[-1]) - terms[-2])
        stacked = torch.stack(terms).reshape(self.K, v, b, c)
        y = torch.einsum("kvbc,kco->bvo", stacked, self.weight.to(x.dtype))
        return y if self.bias is None else y + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, K={self.K}, V={self.num_vertices}"


def sparse_apply(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A sparse (M, V) matrix applied per batch item to x (B, V, C) -> (B, M, C)."""
    b, v, c = x.shape
    m = matrix if matrix.dtype == x.dtype else matrix.to(x.dtype)
    y = torch.sparse.mm(m, x.permute(1, 0, 2).reshape(v, b * c))
    return y.reshape(-1, b, c).permute(1, 0, 2)


@dataclass(frozen=True)
class MeshDecoderConfig:
    """code_dim: input code size; channels[0]: features per coarsest vertex, channels[i]: the width after
    the i-th up-sampling (len(channels) == number of levels); K: Chebyshev order; out_channels: xyz + rgb."""

    code_dim: int = 128
    channels: tuple[int, ...] = (64, 64, 32, 32)
    K: int = 6
    out_channels: int = 6


class MeshDecoder(nn.Module):
    """Graph-convolution decoder of the dense branch: code (B, code_dim) -> (B, V_finest, out_channels).

    Linear -> (B, V_coarsest, channels[0]); then per level, coarse to fine: up-sample (sparse U),
    ChebConv(K), ELU; a last ChebConv to ``out_channels`` at the finest level.
    """

    def __init__(self, hierarchy: MeshHierarchy, config: MeshDecoderConfig = MeshDecoderConfig()) -> None:
        super().__init__()
        n = len(hierarchy.levels)
        if len(config.channels) != n:
            raise ValueError(f"MeshDecoderConfig.channels needs {n} widths (one per level), got {config.channels}")
        self.config = config
        self.num_coarse = hierarchy.levels[-1].num_vertices
        self.fc = nn.Linear(config.code_dim, self.num_coarse * config.channels[0])
        convs = []
        for i, level in enumerate(range(n - 2, -1, -1)):  # coarse to fine
            self.register_buffer(f"up{i}", sparse_tensor(hierarchy.up[level], torch.float64), persistent=False)
            lap = hierarchy.levels[level].laplacian
            convs.append(ChebConv(config.channels[i], config.channels[i + 1], config.K, lap))
        self.convs = nn.ModuleList(convs)
        self.out = ChebConv(config.channels[-1], config.out_channels, config.K, hierarchy.levels[0].laplacian)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """code (B, code_dim) -> (B, V_finest, out_channels)."""
        x = self.fc(code).reshape(code.shape[0], self.num_coarse, self.config.channels[0])
        for i, conv in enumerate(self.convs):
            x = nn.functional.elu(conv(sparse_apply(getattr(self, f"up{i}"), x)))
        return self.out(x)


class FaceDecoder(nn.Module):
    """The dense branch's decoder: ``mean + scale * MeshDecoder(code)``, code (B, code_dim) -> (B, V_finest, 6)
    xyz (model frame of :mod:`retina.mesh.template`) + rgb albedo in [0, 1] (``retina.mesh.pretrain``).

    mean (V, 6): the pre-training set's mean face; scale (6,): its standard deviation over faces, per vertex and
    channel, averaged over the vertices. The graph decoder thus learns standardised residuals from the mean face
    (a morphable model's mean + offsets), which trains far faster than absolute coordinates; both are persistent
    buffers, saved with the weights. ``triangles`` (T, 3) int64: the finest level's triangles (a non-persistent
    buffer, derived from the mesh), what a renderer needs with the decoded vertices.
    """

    def __init__(self, hierarchy: MeshHierarchy, config: MeshDecoderConfig | None = None) -> None:
        super().__init__()
        config = config or MeshDecoderConfig()
        self.config = config
        self.decoder = MeshDecoder(hierarchy, config)
        v = hierarchy.levels[0].num_vertices
        self.register_buffer("mean", torch.zeros(v, config.out_channels))
        self.register_buffer("scale", torch.ones(config.out_channels))
        tris = torch.from_numpy(np.array(hierarchy.levels[0].triangles, dtype=np.int64))
        self.register_buffer("triangles", tris, persistent=False)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """code (B, code_dim) -> (B, V_finest, out_channels)."""
        return self.mean + self.scale * self.decoder(code)
