"""Silhouette antialiasing: box-filter values by hand, gradients, silhouette edges, invariants, render_mesh.

Screen convention (see :class:`retina.render.types.Raster`): pixel (i, j) has its centre at screen
``(x, y) = (j + 0.5, i + 0.5)`` px; with w = 1 a screen point maps to clip ``x = 2x / W - 1``, ``y = 2y / H - 1``.
"""

from __future__ import annotations

import numpy as np
import torch

from retina.render import rasterize, render_mesh
from retina.render.antialias import antialias, screen_xy, silhouette_edges

F64 = torch.float64
FAR = 100.0  # px: corners this far out keep a triangle's other edges off an 8x8 image


def clip_of(points: list[tuple[float, float]], hw: tuple[int, int], w: list[float] | None = None) -> torch.Tensor:
    """(1, V, 4) float64 clip positions of screen points (x, y) px; z = 0, w = 1 unless given per vertex."""
    h, wd = hw
    ws = w or [1.0] * len(points)
    rows = [[(2 * x / wd - 1) * s, (2 * y / h - 1) * s, 0.0, s] for (x, y), s in zip(points, ws, strict=True)]
    return torch.tensor([rows], dtype=F64)


def blend(points: list[tuple[float, float]], tris: list[list[int]], hw=(8, 8), color=None) -> torch.Tensor:
    """(H, W) antialiased image of a mesh given in screen px: colour 1 on covered pixels, 0 elsewhere."""
    pos, tri = clip_of(points, hw), torch.tensor(tris)
    raster = rasterize(pos, tri, hw)
    if color is None:
        color = raster.mask.to(F64)[..., None]
    return antialias(color, raster, pos, tri)[0, ..., 0]


def vertical_edge(x: float) -> list[tuple[float, float]]:
    """A large triangle covering the screen left of the vertical line at x px (its right edge)."""
    return [(x, -FAR), (x, FAR), (-FAR, 0.0)]


def horizontal_edge(y: float) -> list[tuple[float, float]]:
    """A large triangle covering the screen above (smaller y than) the horizontal line at y px."""
    return [(-FAR, y), (FAR, y), (0.0, -FAR)]


def box_coverage(edge: float, n: int = 8) -> np.ndarray:
    """Covered fraction of each pixel's 1-px box [j, j + 1] by the half-line (-inf, edge]."""
    j = np.arange(n)
    return np.clip(edge - j, 0.0, 1.0)


def outline_of(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: pixels of (H, W) ``mask`` in a horizontal or vertical pair with exactly one covered pixel."""
    out = torch.zeros_like(mask)
    hx, vy = mask[:, 1:] != mask[:, :-1], mask[1:] != mask[:-1]
    out[:, 1:] |= hx
    out[:, :-1] |= hx
    out[1:] |= vy
    out[:-1] |= vy
    return out


# --- 1. golden values by hand ------------------------------------------------------------------------------


def test_vertical_edge_golden_rows():
    # Edge at 3.7: pair (3, 4) is crossed at t = 0.2 from the covered centre 3.5, so pixel 3 keeps 1 - (0.5 - 0.2).
    img = blend(vertical_edge(3.7), [[0, 1, 2]]).numpy()
    np.testing.assert_allclose(img, np.tile([1, 1, 1, 0.7, 0, 0, 0, 0], (8, 1)), atol=1e-12)
    # Edge at 4.2: t = 0.7, the uncovered pixel 4 takes 0.7 - 0.5 of the covered colour.
    img = blend(vertical_edge(4.2), [[0, 1, 2]]).numpy()
    np.testing.assert_allclose(img, np.tile([1, 1, 1, 1, 0.2, 0, 0, 0], (8, 1)), atol=1e-12)


def test_horizontal_edge_golden_columns():
    # The same through vertical pairs: rows above y = 3.7 / 4.2 are covered.
    img = blend(horizontal_edge(3.7), [[0, 1, 2]]).numpy()
    np.testing.assert_allclose(img, np.tile([[1], [1], [1], [0.7], [0], [0], [0], [0]], (1, 8)), atol=1e-12)
    img = blend(horizontal_edge(4.2), [[0, 1, 2]]).numpy()
    np.testing.assert_allclose(img, np.tile([[1], [1], [1], [1], [0.2], [0], [0], [0]], (1, 8)), atol=1e-12)


def test_blend_is_the_box_filter_coverage_of_each_pixel():
    # A straight edge at x: each pixel's value is the covered length of its own 1-px box along the row.
    for x in (2.05, 3.3, 3.5 + 1e-6, 4.0, 4.45, 5.9):
        img = blend(vertical_edge(x), [[0, 1, 2]]).numpy()
        np.testing.assert_allclose(img, np.tile(box_coverage(x), (8, 1)), atol=1e-9, err_msg=f"edge at {x}")


def test_diagonal_edge_one_pair_by_hand():
    # Covered where x + 2 y < 11.2. Pixel (3, 3), centre (3.5, 3.5), s = x + 2y = 10.5: covered; its right
    # neighbour (3, 4), centre (4.5, 3.5), s = 11.5: not covered. That horizontal pair is crossed at x = 4.2, t = 0.7.
    #   (3, 4) gets 0.7 - 0.5 = 0.2 from it, plus 0.35 from its upper neighbour (2, 4) (centre (4.5, 2.5), s = 9.5;
    #   crossing y = 3.35, t = 0.85); its other neighbours are uncovered: value 0.55.
    #   (3, 3) loses nothing to (3, 4) (t > 0.5) but 0.5 - 0.35 = 0.15 to (4, 3) below (centre (3.5, 4.5), s = 12.5;
    #   crossing y = 3.85, t = 0.35); left (3, 2) and up (2, 3) are covered: value 0.85.
    pts = [(11.2 + 2 * FAR, -FAR), (11.2 - 2 * FAR, FAR), (-FAR, -FAR)]
    img = blend(pts, [[0, 1, 2]]).numpy()
    np.testing.assert_allclose(img[3, 3:5], [0.85, 0.55], atol=1e-12)


# --- 2. gradients ------------------------------------------------------------------------------------------


def test_gradient_with_respect_to_the_edge_position_is_one_pixel_per_pixel():
    hw, row = (8, 8), 2
    for x, col in ((3.7, 3), (4.2, 4)):
        pos = clip_of(vertical_edge(x), hw).requires_grad_(True)
        tri = torch.tensor([[0, 1, 2]])
        raster = rasterize(pos.detach(), tri, hw)
        out = antialias(raster.mask.to(F64)[..., None], raster, pos, tri)
        (g,) = torch.autograd.grad(out[0, row, col, 0], pos)
        # Moving both edge vertices by dx px moves the edge by dx: d value / d x_px = 1, i.e. W / 2 per unit of
        # x_clip, split between the two vertices by where the row's centre y = 2.5 lies along the edge.
        y, wt = row + 0.5, hw[1] / 2
        split = [(FAR - y) / (2 * FAR), (y + FAR) / (2 * FAR)]
        np.testing.assert_allclose(g[0, :2, 0].numpy(), [wt * split[0], wt * split[1]], rtol=1e-12)
        assert abs(g[0, :2, 0].sum().item() - wt) < 1e-12
        assert torch.all(g[0, 2] == 0) and torch.all(g[0, :, 1:3] == 0)  # the far corner, y and z do not matter
        # x_px = (x_clip / w + 1) W / 2: d / dw = -x_clip / w^2 d / dx_clip, with w = 1.
        np.testing.assert_allclose(g[0, :2, 3].numpy(), -(pos[0, :2, 0] * g[0, :2, 0]).detach().numpy(), rtol=1e-12)


# Two triangles of an irregular quad (shared edge 0-2) and a separate small triangle, on a 10x10 image, with
# several w != 1 so the perspective divide is exercised.
GC_HW = (10, 10)
GC_POINTS = [(1.33, 2.21), (8.12, 1.38), (7.63, 8.27), (2.14, 7.18), (8.61, 8.84), (9.72, 6.11), (9.86, 9.78)]
GC_W = [1.0, 1.3, 0.8, 1.1, 1.0, 1.2, 0.9]
GC_TRIS = [[0, 1, 2], [0, 2, 3], [4, 5, 6]]


def crossing_margin(points: list[tuple[float, float]], tris: list[list[int]], hw: tuple[int, int]) -> float:
    """Smallest distance (px, along the pair segments) from an edge crossing of a row / column of pixel centres
    to a pixel centre or a pixel boundary (where the blend has a kink), and from a corner to a centre line."""
    margin = float("inf")
    for t in tris:
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            for axis in (0, 1):  # crossings of rows (axis 0: x at y = i + 0.5) and of columns
                p, q = points[a], points[b]
                u0, u1, v0, v1 = (p[1], q[1], p[0], q[0]) if axis == 0 else (p[0], q[0], p[1], q[1])
                for line in np.arange(hw[axis]) + 0.5:
                    if u0 == u1 or not min(u0, u1) <= line <= max(u0, u1):
                        continue
                    v = v0 + (line - u0) / (u1 - u0) * (v1 - v0)
                    frac = (v % 0.5) if 0 <= v <= hw[1 - axis] else 0.25
                    margin = min(margin, frac, 0.5 - frac)
        for k in t:
            for c in points[k]:
                margin = min(margin, abs((c % 1.0) - 0.5))
    return margin


def test_gradcheck_antialias_float64():
    tri = torch.tensor(GC_TRIS)
    # The visibility is recomputed from the perturbed positions: it must not flip under the finite differences.
    assert crossing_margin(GC_POINTS, GC_TRIS, GC_HW) > 5e-3
    pos = clip_of(GC_POINTS, GC_HW, GC_W)
    raster = rasterize(pos, tri, GC_HW)
    assert len(raster.tri_id.unique()) == 4  # all three triangles and the background are visible
    color = torch.rand((1, *GC_HW, 1), dtype=F64, generator=torch.Generator().manual_seed(0))
    base = antialias(color, raster, pos, tri)
    assert (base != color).any(dim=-1).sum() >= 10  # many pixels are blended

    def fn(p: torch.Tensor) -> torch.Tensor:
        r = rasterize(p, tri, GC_HW)
        assert torch.equal(r.tri_id, raster.tri_id)
        return antialias(color, r, p, tri)

    assert torch.autograd.gradcheck(fn, (pos.requires_grad_(True),))
    # Colours: the blend is linear in them (the raster is that of the unperturbed positions).
    assert torch.autograd.gradcheck(lambda c: antialias(c, raster, pos.detach(), tri), (color.requires_grad_(True),))


# --- 3. silhouette edges -----------------------------------------------------------------------------------


def test_silhouette_edges_of_a_quad_fold_and_degenerate():
    # Quad 0 (0, 0), 1 (4, 0), 2 (4, 4), 3 (0, 4) as triangles (0, 1, 2), (0, 2, 3): the shared edge 0-2 is edge 1
    # of the first (opposite vertex 1) and edge 2 of the second. Batch entries: flat, vertex 3 folded over the
    # shared edge (second triangle's orientation flips), vertex 3 on the diagonal (second triangle has zero area).
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    sx = torch.tensor([[0.0, 4, 4, 0], [0.0, 4, 4, 6], [0.0, 4, 4, 2]], dtype=F64)
    sy = torch.tensor([[0.0, 0, 4, 4], [0.0, 0, 4, 2], [0.0, 0, 4, 2]], dtype=F64)
    sil = silhouette_edges(sx, sy, tris)
    assert sil.shape == (3, 2, 3)
    assert sil[0].tolist() == [[True, False, True], [True, True, False]]
    assert sil[1].all() and sil[2].all()
    # Mirroring the whole screen flips both orientations together: nothing changes.
    assert torch.equal(silhouette_edges(-sx, sy, tris), sil)


def test_screen_xy_is_the_pixel_convention():
    sx, sy = screen_xy(clip_of([(3.7, 1.25), (0.0, 8.0)], (8, 10), [2.0, 0.5]), (8, 10))
    np.testing.assert_allclose(sx[0].numpy(), [3.7, 0.0], atol=1e-12)
    np.testing.assert_allclose(sy[0].numpy(), [1.25, 8.0], atol=1e-12)


# --- 4. invariants -----------------------------------------------------------------------------------------


def test_empty_and_fully_covered_images_are_returned_unchanged():
    color = torch.rand(1, 8, 8, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    tri = torch.tensor([[0, 1, 2]])
    for pts in ([(20.0, 20.0), (30.0, 20.0), (20.0, 30.0)], [(-50.0, -50.0), (200.0, -50.0), (-50.0, 200.0)]):
        pos = clip_of(pts, (8, 8))
        raster = rasterize(pos, tri, (8, 8))
        assert raster.mask.all() or not raster.mask.any()
        assert torch.equal(antialias(color, raster, pos, tri), color)


def test_only_pixels_next_to_the_outline_change_and_a_uniform_colour_is_kept():
    tri = torch.tensor(GC_TRIS)
    pos = clip_of(GC_POINTS, GC_HW, GC_W)
    raster = rasterize(pos, tri, GC_HW)
    color = torch.rand((1, *GC_HW, 3), dtype=F64, generator=torch.Generator().manual_seed(2))
    out = antialias(color, raster, pos, tri)
    mixed = outline_of(raster.mask[0])
    assert torch.equal(out[0][~mixed], color[0][~mixed])
    assert (out[0][mixed] != color[0][mixed]).any()
    # Background colour equal to the face colour: every blend is zero.
    flat = torch.tensor([0.3, 0.6, 0.9], dtype=F64).expand(1, *GC_HW, 3)
    assert torch.equal(antialias(flat, raster, pos, tri), flat)


def test_pairs_leaving_through_an_interior_edge_are_not_blended():
    # Triangle A covers x < 3.8; a sliver B shares A's right edge (same orientation) and reaches x ~ 4.2 without
    # covering a pixel centre. The pair (3, 4) crosses the shared edge first (t = 0.3), so it is not blended,
    # while A alone blends pixel 3 to 1 - (0.5 - 0.3) = 0.8.
    pts = [(3.8, -FAR), (3.8, FAR), (-FAR, 0.0), (4.2, 4.0)]
    tris = torch.tensor([[0, 1, 2], [1, 0, 3]])
    pos = clip_of(pts, (8, 8))
    sx, sy = screen_xy(pos, (8, 8))
    sil = silhouette_edges(sx, sy, tris)[0]
    assert not sil[0, 2] and not sil[1, 2] and sil[1, 0] and sil[1, 1]  # shared edge 0-1 interior; B's outer ones not
    raster = rasterize(pos, tris, (8, 8))
    assert torch.equal(raster.tri_id[0], torch.where(torch.arange(8) < 4, 0, -1).expand(8, 8))  # B covers nothing
    color = raster.mask.to(F64)[..., None]
    assert torch.equal(antialias(color, raster, pos, tris), color)
    alone = blend(pts[:3], [[0, 1, 2]]).numpy()
    np.testing.assert_allclose(alone, np.tile([1, 1, 1, 0.8, 0, 0, 0, 0], (8, 1)), atol=1e-12)


def test_self_occlusion_outlines_between_two_covered_pixels_are_not_blended():
    # A near triangle (z = -0.5) over part of a far full-screen one: every pixel is covered, so nothing blends
    # although the near triangle's edges are boundary edges.
    pts = [(-FAR, -FAR), (3 * FAR, -FAR), (-FAR, 3 * FAR), (1.2, 1.3), (6.7, 1.4), (1.1, 6.6)]
    pos = clip_of(pts, (8, 8))
    pos[0, 3:, 2] = -0.5
    tris = torch.tensor([[0, 1, 2], [3, 4, 5]])
    raster = rasterize(pos, tris, (8, 8))
    assert raster.mask.all() and len(raster.tri_id.unique()) == 2
    color = raster.tri_id.to(F64)[..., None]
    assert torch.equal(antialias(color, raster, pos, tris), color)


# --- 5. render_mesh ----------------------------------------------------------------------------------------


def test_render_mesh_with_and_without_antialias():
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=F64) - 0.3
    tris = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colors = torch.tensor([[[0.9, 0.2, 0.3], [0.4, 0.8, 0.5], [0.6, 0.6, 0.1], [0.2, 0.3, 0.9]]], dtype=F64)
    camera = torch.tensor([[0.0, 0.0, 4.0, 0.2, 0.5, 0.1, 30.0]], dtype=F64)
    light = torch.tensor([[1.0, -2.0, -1.0, 0.8, 0.7, 0.6, 0.2, 0.2, 0.25]], dtype=F64)
    hard = render_mesh(verts, tris, colors, camera, light, (16, 16))
    soft = render_mesh(verts, tris, colors, camera, light, (16, 16), antialias=True)
    assert torch.equal(hard.mask, soft.mask) and torch.equal(hard.raster.tri_id, soft.raster.tri_id)
    m = hard.mask[0]
    assert 20 < int(m.sum()) < 16 * 16 - 20
    outline = outline_of(m)
    assert torch.equal(soft.image[0][~outline], hard.image[0][~outline])
    changed = (soft.image[0] != hard.image[0]).any(-1)
    assert changed.sum() >= 5 and not (changed & ~outline).any()
