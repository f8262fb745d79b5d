"""Chebyshev spectral graph convolution (RetinaFace sec. 3.2, eq. 3; Defferrard et al. 2016).

``y = sum_{k<K} T_k(L~) x theta_k`` with ``T_0 x = x``, ``T_1 x = L~ x`` and
``T_k x = 2 L~ T_{k-1} x - T_{k-2} x``, where ``L~`` is the scaled Laplacian (spectrum in [-1, 1]) of
:mod:`retina.mesh.hierarchy`. Plain ``torch.sparse.mm``; no graph library needed.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


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
