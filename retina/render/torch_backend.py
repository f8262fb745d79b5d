"""Rasterization and attribute interpolation in plain PyTorch (CPU or GPU, no extension to build).

The API mirrors nvdiffrast's ``rasterize`` / ``interpolate`` so a GPU backend can implement the same
two functions. Visibility is decided without gradients (float64 edge functions at pixel centres,
z-buffer); the barycentric weights of the winning triangle are then recomputed with autograd, so
gradients reach the vertex positions for pixels inside triangles (not through silhouettes, which
would need antialiasing as in nvdiffrast's ``antialias``).

Work is bounded by triangle bounding boxes: every (triangle, pixel-centre-in-its-box) pair is tested
in one vectorised pass, so cost grows with the covered area, not with ``T * H * W``.
"""

from __future__ import annotations

import torch

from retina.render.types import Raster


def screen(pos_clip: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Continuous pixel coordinates (x in [0, W], y in [0, H]), NDC depth and w of clip positions."""
    h, w = hw
    inv_w = 1.0 / pos_clip[..., 3]
    sx = (pos_clip[..., 0] * inv_w + 1.0) * (0.5 * w)
    sy = (pos_clip[..., 1] * inv_w + 1.0) * (0.5 * h)
    return sx, sy, pos_clip[..., 2] * inv_w, pos_clip[..., 3]


def _barycentric(
    x: torch.Tensor, y: torch.Tensor, px: torch.Tensor, py: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Screen-space barycentrics (N, 3) of points (px, py) (N,) in triangles x, y (N, 3); doubled area."""
    x0, x1, x2 = x.unbind(-1)
    y0, y1, y2 = y.unbind(-1)
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    e0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)  # opposite vertex 0
    e1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
    e2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    return torch.stack([e0, e1, e2], -1) / area2[..., None], area2


def _planes(tx: torch.Tensor, ty: torch.Tensor, tz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Screen-space planes ``value = a x + b y + c`` of the three barycentrics and the NDC depth of
    triangles with screen corners tx, ty and depths tz (..., 3): coefficients (..., 12) laid out as
    ``[a (4) | b (4) | c (4)]``, and the doubled signed areas (...,)."""
    x0, x1, x2 = tx.unbind(-1)
    y0, y1, y2 = ty.unbind(-1)
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    inv = 1.0 / torch.where(area2 == 0, torch.ones_like(area2), area2)
    # lambda_k = edge opposite vertex k evaluated at (x, y), over the doubled area.
    a = torch.stack([y1 - y2, y2 - y0, y0 - y1], -1) * inv[..., None]
    b = torch.stack([x2 - x1, x0 - x2, x1 - x0], -1) * inv[..., None]
    c = torch.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], -1) * inv[..., None]
    za, zb, zc = ((coef * tz).sum(-1, keepdim=True) for coef in (a, b, c))
    planes = torch.cat([a, za, b, zb, c, zc], -1)  # (..., 12): [a (4) | b (4) | c (4)]
    return planes, area2


def _visible_triangles(pos_clip: torch.Tensor, tris: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) int64 id of the nearest triangle covering each pixel centre, -1 if none."""
    b, h, w = pos_clip.shape[0], hw[0], hw[1]
    num_tris = tris.shape[0]
    sx, sy, zn, ww = screen(pos_clip.detach().double(), hw)
    tx, ty = sx[:, tris], sy[:, tris]  # (B, T, 3)
    # Pixel j's centre is at j + 0.5: the box holds centres in [min, max].
    x0 = torch.ceil(tx.amin(-1) - 0.5).clamp(min=0)
    x1 = torch.floor(tx.amax(-1) - 0.5).clamp(max=w - 1)
    y0 = torch.ceil(ty.amin(-1) - 0.5).clamp(min=0)
    y1 = torch.floor(ty.amax(-1) - 0.5).clamp(max=h - 1)
    # No near-plane clipping: a triangle with a vertex at or behind the camera (w <= 0) is dropped.
    ok = (ww[:, tris] > 0).all(-1) & (x1 >= x0) & (y1 >= y0)
    bi, ti = ok.nonzero(as_tuple=True)
    tri_id = torch.full((b * h * w,), -1, dtype=torch.int64, device=pos_clip.device)
    if bi.numel() == 0:
        return tri_id.view(b, h, w)
    planes, area2 = _planes(tx[bi, ti], ty[bi, ti], zn[bi[:, None], tris[ti]])  # (K, 12), (K,)
    keep = (area2 != 0).nonzero().squeeze(1)
    bi, ti, planes = bi[keep], ti[keep], planes[keep]
    x0, y0 = x0[bi, ti].long(), y0[bi, ti].long()
    bw, bh = x1[bi, ti].long() - x0 + 1, y1[bi, ti].long() - y0 + 1
    counts = bw * bh
    # One row per (triangle, pixel centre in its box) pair; a single gather per pair (index_select).
    pair = torch.repeat_interleave(torch.arange(bi.numel(), device=bi.device), counts)  # (P,)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(pair.numel(), device=bi.device) - start.index_select(0, pair)
    meta = torch.stack([x0, y0, bw, bi * (h * w), ti], -1).index_select(0, pair)  # (P, 5)
    px = meta[:, 0] + local % meta[:, 2]
    py = meta[:, 1] + local // meta[:, 2]
    pl = planes.index_select(0, pair)  # (P, 12)
    vals = pl[:, 8:12].addcmul(pl[:, 0:4], (px.double() + 0.5)[:, None])
    vals.addcmul_(pl[:, 4:8], (py.double() + 0.5)[:, None])  # (P, 4): lambda_0..2, z
    z = vals[:, 3]
    # Centres on an edge belong to every triangle sharing it; the z-test then keeps one.
    inside = ((vals[:, :3] >= 0).all(-1) & (z >= -1.0) & (z <= 1.0)).nonzero().squeeze(1)
    pix = (meta[:, 3] + py * w + px).index_select(0, inside)
    z, pt = z.index_select(0, inside), meta[:, 4].index_select(0, inside)
    zbuf = torch.full((b * h * w,), float("inf"), dtype=z.dtype, device=z.device)
    zbuf.scatter_reduce_(0, pix, z, reduce="amin")
    nearest = z == zbuf[pix]  # ties (equal depth) go to the lowest triangle id
    best = torch.full((b * h * w,), num_tris, dtype=torch.int64, device=z.device)
    best.scatter_reduce_(0, pix[nearest], pt[nearest], reduce="amin")
    tri_id = torch.where(best < num_tris, best, tri_id)
    return tri_id.view(b, h, w)


def rasterize(pos_clip: torch.Tensor, tris: torch.Tensor, resolution: tuple[int, int]) -> Raster:
    """Rasterize triangles given in clip space.

    pos_clip (Tensor[B, V, 4]): homogeneous clip coordinates (x, y, z, w) per vertex; tris (Tensor[T, 3])
    integer vertex indices shared by the batch; resolution (H, W). No back-face culling. Returns a
    :class:`Raster` (see there for the pixel convention).
    """
    if pos_clip.dim() != 3 or pos_clip.shape[-1] != 4:
        raise ValueError(f"pos_clip must be (B, V, 4), got {tuple(pos_clip.shape)}")
    if tris.dim() != 2 or tris.shape[-1] != 3:
        raise ValueError(f"tris must be (T, 3), got {tuple(tris.shape)}")
    h, w = int(resolution[0]), int(resolution[1])
    tris = tris.to(device=pos_clip.device, dtype=torch.int64)
    tri_id = _visible_triangles(pos_clip, tris, (h, w))
    bi, yi, xi = (tri_id >= 0).nonzero(as_tuple=True)
    vidx = tris[tri_id[bi, yi, xi]]  # (N, 3)
    sx, sy, zn, ww = screen(pos_clip[bi[:, None], vidx], (h, w))  # each (N, 3), with autograd
    lam, _ = _barycentric(sx, sy, xi.to(sx.dtype) + 0.5, yi.to(sx.dtype) + 0.5)
    q = lam / ww  # perspective correction: screen-space weights over w, renormalised
    bary = q / q.sum(-1, keepdim=True)
    depth = (lam * zn).sum(-1)  # z/w is affine in screen space
    shape = tri_id.shape
    bary_img = pos_clip.new_zeros((*shape, 3)).index_put((bi, yi, xi), bary)
    depth_img = pos_clip.new_full(shape, float("inf")).index_put((bi, yi, xi), depth)
    return Raster(tri_id, bary_img, depth_img)


def interpolate(attr: torch.Tensor, raster: Raster, tris: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex attributes over the covered pixels.

    attr (Tensor[B, V, C] or Tensor[V, C]); returns (Tensor[B, H, W, C]), zero where uncovered.
    Differentiable with respect to ``attr`` and, through ``raster.bary``, the vertex positions.
    """
    tris = tris.to(device=raster.tri_id.device, dtype=torch.int64)
    bi, yi, xi = (raster.tri_id >= 0).nonzero(as_tuple=True)
    vidx = tris[raster.tri_id[bi, yi, xi]]  # (N, 3)
    corners = attr[vidx] if attr.dim() == 2 else attr[bi[:, None], vidx]  # (N, 3, C)
    values = (raster.bary[bi, yi, xi].unsqueeze(-1) * corners).sum(1)
    out = attr.new_zeros((*raster.tri_id.shape, attr.shape[-1]))
    return out.index_put((bi, yi, xi), values.to(out.dtype))
