"""Silhouette antialiasing with gradients: what makes a pixel loss see where a mesh's outline lies.

A hard rasteriser's colours move with the vertices only inside triangles; whether a pixel is covered at all
has no gradient, so a loss cannot grow or shrink a face's outline. :func:`antialias` blends, for every pair of
neighbouring pixels (horizontal or vertical) of which exactly one is covered, the two colours by where the
mesh's *silhouette* edge crosses the segment between their centres: with the crossing at ``t`` (0 at the
covered centre, 1 at the uncovered one), the uncovered pixel takes ``max(0, t - 1/2)`` of the covered colour
and the covered pixel ``max(0, 1/2 - t)`` of the uncovered one. ``t`` is computed from the edge's screen
positions with autograd, so the loss's gradient reaches the silhouette vertices. A silhouette edge is a mesh
boundary edge or one whose two triangles face opposite ways on screen; a pair whose covered triangle is left
through another edge (an interior edge: the outline is on a neighbouring triangle) is not blended. Pairs of two
covered pixels (self-occlusion outlines) are not blended either: the outer outline is what a face crop needs.

The blend is the 1-D box-filter coverage of a straight edge between two pixel centres, the idea behind
post-process antialiasing of rasterised images (as in nvdiffrast's ``antialias``, whose code is not used here).
Colours of a pixel in several pairs receive the sum of their blends. Limits: an edge shared by three or more
triangles is paired with one of them only; triangles with a vertex at or behind the camera are not clipped, so
their screen orientation (and the silhouette test of their edges) can be wrong.
"""

from __future__ import annotations

import torch
from torch import Tensor

from retina.render.torch_backend import screen
from retina.render.types import Raster


def screen_xy(pos_clip: Tensor, hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Continuous pixel coordinates (B, V) each of clip positions (B, V, 4): x in [0, W], y in [0, H]."""
    sx, sy, _, _ = screen(pos_clip, hw)
    return sx, sy


def silhouette_edges(sx: Tensor, sy: Tensor, tris: Tensor) -> Tensor:
    """(B, T, 3) bool: edge k of triangle t (opposite its vertex k) is a silhouette on screen.

    sx, sy (B, V) screen coordinates; tris (T, 3) int64. An edge is a silhouette when no other triangle shares it
    or the two triangles sharing it have opposite (or zero) screen orientation.
    """
    num_tris, num_verts = tris.shape[0], int(sx.shape[1])
    a, b = tris[:, [1, 2, 0]].reshape(-1), tris[:, [2, 0, 1]].reshape(-1)  # edge k joins vertices k+1, k+2
    key = torch.minimum(a, b) * num_verts + torch.maximum(a, b)  # (3T,)
    order = torch.argsort(key, stable=True)
    k = key[order]
    partner = torch.full_like(key, -1)
    same = (k[1:] == k[:-1]).nonzero().squeeze(1)  # sorted positions i, i + 1 share an edge
    partner[order[same]] = order[same + 1]
    partner[order[same + 1]] = order[same]
    tx, ty = sx[:, tris], sy[:, tris]  # (B, T, 3)
    area = (tx[..., 1] - tx[..., 0]) * (ty[..., 2] - ty[..., 0]) - (tx[..., 2] - tx[..., 0]) * (ty[..., 1] - ty[..., 0])
    facing = torch.sign(area.detach())  # (B, T)
    own = facing.repeat_interleave(3, dim=1)  # (B, 3T): edge e belongs to triangle e // 3
    other = own[:, partner.clamp(min=0)]
    return ((partner < 0) | (own != other) | (own == 0)).view(-1, num_tris, 3)


def _pairs(tri_id: Tensor) -> tuple[Tensor, ...]:
    """Neighbouring pixel pairs with exactly one covered: batch, covered (row, col), uncovered (row, col)."""
    out = []
    for dy, dx in ((0, 1), (1, 0)):
        h, w = tri_id.shape[1] - dy, tri_id.shape[2] - dx
        first, second = tri_id[:, :h, :w] >= 0, tri_id[:, dy:, dx:] >= 0
        bi, yi, xi = (first != second).nonzero(as_tuple=True)
        inside_first = first[bi, yi, xi]
        y_in, x_in = torch.where(inside_first, yi, yi + dy), torch.where(inside_first, xi, xi + dx)
        y_out, x_out = torch.where(inside_first, yi + dy, yi), torch.where(inside_first, xi + dx, xi)
        out.append((bi, y_in, x_in, y_out, x_out))
    return tuple(torch.cat(parts) for parts in zip(*out, strict=True))


def antialias(color: Tensor, raster: Raster, pos_clip: Tensor, tris: Tensor) -> Tensor:
    """Colours (B, H, W, C) blended across the outer silhouette; differentiable w.r.t. colours and pos_clip.

    raster: the :class:`Raster` of ``pos_clip`` (B, V, 4) and ``tris`` (T, 3); any backend's.
    """
    tris = tris.to(device=pos_clip.device, dtype=torch.int64)
    hw = (int(raster.tri_id.shape[1]), int(raster.tri_id.shape[2]))
    bi, y_in, x_in, y_out, x_out = _pairs(raster.tri_id)
    if bi.numel() == 0:
        return color
    sx, sy = screen_xy(pos_clip, hw)
    tri = raster.tri_id[bi, y_in, x_in]  # (N,) covered triangle
    vx, vy = sx[bi[:, None], tris[tri]], sy[bi[:, None], tris[tri]]  # (N, 3) its corners
    px_in, py_in = x_in.to(vx.dtype) + 0.5, y_in.to(vx.dtype) + 0.5
    px_out, py_out = x_out.to(vx.dtype) + 0.5, y_out.to(vx.dtype) + 0.5
    ax, ay = vx[:, [1, 2, 0]], vy[:, [1, 2, 0]]  # edge k from corner k+1 ...
    ex, ey = vx[:, [2, 0, 1]] - ax, vy[:, [2, 0, 1]] - ay  # ... to corner k+2
    # Edge functions, positive on the triangle's side (the sign of its opposite corner).
    side = torch.sign(ex * (vy - ay) - ey * (vx - ax)).detach()
    e_in = side * (ex * (py_in[:, None] - ay) - ey * (px_in[:, None] - ax))
    e_out = side * (ex * (py_out[:, None] - ay) - ey * (px_out[:, None] - ax))
    crosses = (e_in.detach() >= 0) & (e_out.detach() < 0)
    t = torch.where(
        crosses, e_in / torch.where(crosses, e_in - e_out, torch.ones_like(e_in)), torch.full_like(e_in, 2.0)
    )
    t_exit, edge = t.min(1)  # the first edge the segment leaves the triangle through
    silhouette = silhouette_edges(sx, sy, tris)[bi, tri, edge]
    keep = (silhouette & (t_exit <= 1.0)).nonzero().squeeze(1)
    if keep.numel() == 0:
        return color
    t_exit = t_exit[keep]
    b, yi, xi, yo, xo = bi[keep], y_in[keep], x_in[keep], y_out[keep], x_out[keep]
    c_in, c_out = color[b, yi, xi], color[b, yo, xo]
    spill_out = (t_exit - 0.5).clamp(min=0)[:, None] * (c_in - c_out)  # the surface reaches into the uncovered pixel
    spill_in = (0.5 - t_exit).clamp(min=0)[:, None] * (c_out - c_in)  # the background reaches into the covered one
    out = color.index_put((b, yo, xo), spill_out.to(color.dtype), accumulate=True)
    return out.index_put((b, yi, xi), spill_in.to(color.dtype), accumulate=True)
