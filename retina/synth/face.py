"""SynthFace: render one face of the morphable template as a sprite with exact annotations.

The face is rendered with :mod:`retina.render` (torch backend) into its own canvas, ``supersample``
times larger than the target resolution, and box-filtered down (``cv2.INTER_AREA``), which antialiases
edges. Shading is deferred: the rasterizer interpolates the template's feature coordinates, camera-frame
normals and positions and the skin tint per pixel; the albedo (:func:`retina.mesh.albedo.albedo_at`) and
the Lambertian light are evaluated there, so small features stay sharp on large faces.

Sprite pixel coordinates are continuous, pixel (i, j) covering ``x in [j, j + 1)``, ``y in [i, i + 1)``.
The sprite's camera looks at the head from ``DISTANCE`` model units with its principal point at
``principal``; pasting the sprite at an integer offset moves the principal point by that offset, so the
annotations of the full image follow from a per-face pinhole camera (recorded in the metadata).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from retina.mesh.albedo import albedo_at, face_zone
from retina.mesh.morphable import EXPRESSION_NAMES, FaceParams, face_shape, vertex_tint
from retina.mesh.template import FaceTemplate
from retina.render import euler_rotation, lambertian, perspective, project, rasterize
from retina.render.light import vertex_normals

DISTANCE = 12.0  # camera to head centre, model units (the head is ~2 units tall): mild perspective
FACE_HEIGHT_UNITS = 1.33  # frontal face-zone height (chin to mid forehead) of the mean template
ATLAS_WIDTH = 1024  # super-resolution pixels per atlas row (wider when one canvas is wider)
ATLAS_PIXELS = 1 << 21  # canvases per rasterizer call, in super-resolution pixels (bounds its memory)
SELF_OCCLUSION_TOL = 0.12  # model units (~ half a nose width): silhouette points stay visible


@dataclass(frozen=True, eq=False)
class FaceSprite:
    """A rendered face; all coordinates in sprite pixels (see module docstring).

    color (ndarray[h, w, 3]) float32 RGB premultiplied by ``alpha``; alpha (ndarray[h, w]) float32 head
    coverage; face_alpha (ndarray[h, w]) float32 coverage of the face zone
    (:func:`retina.mesh.albedo.face_zone`); box (ndarray[4]) float64 tight x0 y0 x1 y1 of the face zone
    (NaN when none of it is visible); landmarks (ndarray[5, 2]) float64; landmark_visible (ndarray[5])
    bool (not hidden by the head itself); focal (pixels) and principal (ndarray[2]) of the camera.
    """

    color: np.ndarray
    alpha: np.ndarray
    face_alpha: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray
    landmark_visible: np.ndarray
    focal: float
    principal: np.ndarray


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


@functools.lru_cache(maxsize=4)
def _template_tensors(template: FaceTemplate) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(triangles int64, feature coordinates float32, landmark ids int64) as torch tensors."""
    return (
        torch.from_numpy(np.array(template.triangles)),
        _tensor(template.coords),
        torch.from_numpy(np.array(template.landmark_ids)),
    )


@dataclass(frozen=True, eq=False)
class FaceSpec:
    """One face to render: its frontal face box would be ``face_px`` pixels tall.

    pose_rad: (pitch, yaw, roll) radians, conventions of :mod:`retina.render.camera`; light
    (ndarray[9]): point-light position (camera frame, model units; the head centre is at
    ``(0, 0, DISTANCE)``), light colour, ambient colour; supersample: render this many times larger.
    """

    template: FaceTemplate
    params: FaceParams
    pose_rad: tuple[float, float, float]
    face_px: float
    light: np.ndarray
    supersample: int = 2


@dataclass(frozen=True)
class _Canvas:
    """A face's canvas: low-resolution size (h, w), supersampling s, focal and principal point in
    super-resolution pixels, and its top-left corner (x, y) in the atlas (super-resolution pixels)."""

    h: int
    w: int
    s: int
    focal: float
    principal: np.ndarray
    x: int = 0
    y: int = 0


def render_face(spec: FaceSpec) -> FaceSprite:
    """Render one face (see :func:`render_faces`)."""
    return render_faces([spec])[0]


def render_faces(specs: Sequence[FaceSpec]) -> list[FaceSprite]:
    """Render faces, each into its own canvas. The canvases are packed into shared atlases of at most
    ``ATLAS_PIXELS`` so that one rasterizer call serves many faces (per-call overhead dominates the cost
    of a small face). The packing is a function of the specs alone, so the result is deterministic."""
    with torch.no_grad():  # images only: no autograd bookkeeping
        return _render_faces(specs)


def _render_faces(specs: Sequence[FaceSpec]) -> list[FaceSprite]:
    pts, normals = _camera_geometry(specs)
    canvases = [_canvas(spec, p) for spec, p in zip(specs, pts, strict=True)]
    sprites: dict[int, FaceSprite] = {}
    order = sorted(range(len(specs)), key=lambda i: (-canvases[i].h * canvases[i].s, i))  # tallest first
    chunks: list[list[int]] = [[]]
    area = 0
    for i in order:
        a = canvases[i].h * canvases[i].w * canvases[i].s ** 2
        if chunks[-1] and area + a > ATLAS_PIXELS:
            chunks.append([])
            area = 0
        chunks[-1].append(i)
        area += a
    for chunk in chunks:
        if chunk:
            out = _render_atlas(
                [specs[i] for i in chunk],
                [pts[i] for i in chunk],
                [normals[i] for i in chunk],
                [canvases[i] for i in chunk],
            )
            sprites.update(zip(chunk, out, strict=True))
    return [sprites[i] for i in range(len(specs))]


def _camera_geometry(specs: Sequence[FaceSpec]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Camera-frame vertices and normals (V, 3) of each face, batched over faces sharing a template."""
    pts: list[torch.Tensor] = [torch.empty(0)] * len(specs)
    normals = list(pts)
    groups: dict[int, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(id(spec.template), []).append(i)
    for idx in groups.values():
        template = specs[idx[0]].template
        verts = _tensor(np.stack([face_shape(template, specs[i].params) for i in idx]))
        rot = _tensor(np.array([specs[i].pose_rad for i in idx]))
        p = _to_camera(verts, rot)
        n = vertex_normals(p, _template_tensors(template)[0])
        for k, i in enumerate(idx):
            pts[i], normals[i] = p[k], n[k]
    return pts, normals


def _to_camera(verts: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """:func:`retina.render.model_to_camera` (at ``DISTANCE``) with the same bits on every x86 machine.

    There ``vertices @ R^T`` is a BLAS sgemm, and MKL picks its kernel by CPU vendor: on Intel CPUs each term
    ``v_k R_k`` is added by a fused multiply-add (k = 0, 1, 2, one rounding each), on AMD ones MKL's generic path
    rounds products and sums separately. About one coordinate in five then differed in its last bit, which
    changed about one image in seven and some SynthFace-ID labels. Here the fused chain is evaluated in float64
    (where a float32 product is exact) and rounded to float32 after each term: the Intel results (those of the
    published records), from elementwise operations that round the same everywhere.
    """
    r = euler_rotation(rot).transpose(-1, -2).double()  # rotated = verts @ r; r from ATen's own 3x3 kernel
    v = verts.double()
    out = (v[..., 0:1] * r[:, None, 0]).float()
    for k in (1, 2):
        out = (v[..., k : k + 1] * r[:, None, k] + out.double()).float()
    return out * out.new_tensor((1.0, -1.0, -1.0)) + torch.tensor([0.0, 0.0, DISTANCE])


def _canvas(spec: FaceSpec, pts: torch.Tensor) -> _Canvas:
    """The projected head plus a 2-pixel margin, in whole low-resolution pixels."""
    s = int(spec.supersample)
    focal = spec.face_px * s * DISTANCE / FACE_HEIGHT_UNITS
    uv = (focal * pts[:, :2] / pts[:, 2:]).double().numpy()
    lo, hi = np.floor(uv.min(0) / s) - 2, np.ceil(uv.max(0) / s) + 2
    return _Canvas(h=int(hi[1] - lo[1]), w=int(hi[0] - lo[0]), s=s, focal=focal, principal=-lo * s)


def _pack(canvases: list[_Canvas]) -> tuple[list[_Canvas], int, int]:
    """Shelf-pack canvases (given tallest first) into rows; returns placed canvases and atlas (H, W)."""
    width = max([ATLAS_WIDTH] + [c.w * c.s for c in canvases])
    placed, x, y, row = [], 0, 0, 0
    for c in canvases:
        cw, ch = c.w * c.s, c.h * c.s
        if x + cw > width:
            x, y, row = 0, y + row, 0
        placed.append(replace(c, x=x, y=y))
        x, row = x + cw, max(row, ch)
    return placed, y + row, width


def _render_atlas(
    specs: list[FaceSpec], pts: list[torch.Tensor], normals: list[torch.Tensor], canvases: list[_Canvas]
) -> list[FaceSprite]:
    canvases, height, width = _pack(canvases)
    clips, tris, face_of_tri, attrs = [], [], [], []
    offset = 0
    groups: dict[int, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(id(spec.template), []).append(i)
    for idx in groups.values():  # batched over faces that share a template
        template = specs[idx[0]].template
        t, coords_t, _ = _template_tensors(template)
        p = torch.stack([pts[i] for i in idx])  # (B, V, 3)
        focal = torch.tensor([canvases[i].focal for i in idx])
        principal = _tensor(np.stack([canvases[i].principal + np.array([canvases[i].x, canvases[i].y]) for i in idx]))
        clips.append(perspective(p, focal, (height, width), principal, DISTANCE - 3.0, DISTANCE + 3.0).reshape(-1, 4))
        # Back-face culling (the z-buffer would hide them anyway; this halves the work).
        tri_n = torch.cross(p[:, t[:, 1]] - p[:, t[:, 0]], p[:, t[:, 2]] - p[:, t[:, 0]], dim=-1)
        b, k = ((tri_n * p[:, t].mean(2)).sum(-1) < 0).nonzero(as_tuple=True)
        tris.append(t[k] + (offset + b * p.shape[1])[:, None])
        face_of_tri.append(torch.tensor(idx)[b])
        tint = _tensor(np.stack([vertex_tint(template, specs[i].params) for i in idx]))
        n = torch.stack([normals[i] for i in idx])
        attrs.append(torch.cat([coords_t.expand(len(idx), -1, -1), n, p, tint], -1).reshape(-1, 12))
        offset += p.numel() // 3
    tris_all = torch.cat(tris)
    raster = rasterize(torch.cat(clips)[None], tris_all, (height, width))
    # Attributes at covered pixels only (no dense image of them): coords 3, normal 3, position 3, tint 3.
    rows_t, cols_t = (raster.tri_id[0] >= 0).nonzero(as_tuple=True)
    tid = raster.tri_id[0, rows_t, cols_t]
    corners = torch.cat(attrs)[tris_all[tid]]  # (N, 3, 12)
    px = (raster.bary[0, rows_t, cols_t].unsqueeze(-1) * corners).sum(1)
    face = torch.cat(face_of_tri)[tid].numpy()
    lights = _tensor(np.stack([spec.light for spec in specs]))[face]
    coords = px[:, 0:3].double().numpy()
    albedo = np.empty((len(face), 3))
    zone = np.empty(len(face), dtype=bool)
    by_face = np.argsort(face, kind="stable")
    bounds = np.searchsorted(face[by_face], np.arange(len(specs) + 1))
    for i, spec in enumerate(specs):
        sel = by_face[bounds[i] : bounds[i + 1]]
        mouth_open = spec.params.expression[EXPRESSION_NAMES.index("jaw_open")]
        tint = px[sel, 9:12].double().numpy()
        albedo[sel] = albedo_at(coords[sel], spec.params.colors, spec.params.hair, tint, mouth_open)
        zone[sel] = face_zone(coords[sel], spec.params.hair)
    shaded = lambertian(_tensor(albedo), px[:, 3:6], px[:, 6:9], lights[:, 0:3], lights[:, 3:6], lights[:, 6:9])
    shaded = np.clip(shaded.numpy(), 0.0, 1.0)
    rows, cols = rows_t.numpy(), cols_t.numpy()
    depth = px[:, 8].numpy()
    sprites = []
    for i, (spec, c) in enumerate(zip(specs, canvases, strict=True)):
        sel = by_face[bounds[i] : bounds[i + 1]]
        r, q = rows[sel] - c.y, cols[sel] - c.x  # canvas pixels
        big = np.zeros((c.h * c.s, c.w * c.s, 5), dtype=np.float32)
        big[r, q, 0:3] = shaded[sel]
        big[r, q, 3] = 1.0
        z = zone[sel]
        big[r[z], q[z], 4] = 1.0
        surface_z = np.full(big.shape[:2], np.inf, dtype=np.float32)
        surface_z[r, q] = depth[sel]
        box = np.full(4, np.nan)
        if z.any():
            box = np.array([q[z].min(), r[z].min(), q[z].max() + 1, r[z].max() + 1]) / c.s
        small = cv2.resize(big, (c.w, c.h), interpolation=cv2.INTER_AREA) if c.s > 1 else big
        lm, visible = _landmarks(spec, pts[i], normals[i], c, surface_z)
        sprites.append(
            FaceSprite(
                color=np.ascontiguousarray(small[..., 0:3]),
                alpha=np.ascontiguousarray(small[..., 3]),
                face_alpha=np.ascontiguousarray(small[..., 4]),
                box=box,
                landmarks=lm / c.s,
                landmark_visible=visible,
                focal=c.focal / c.s,
                principal=c.principal / c.s,
            )
        )
    return sprites


def _landmarks(
    spec: FaceSpec, pts: torch.Tensor, normals: torch.Tensor, c: _Canvas, surface_z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Projected landmark vertices (5, 2) in canvas super-resolution pixels, and whether the head itself
    leaves each visible: the vertex faces the camera (or grazes it, on a silhouette) and no surface
    nearer by more than ``SELF_OCCLUSION_TOL`` covers its pixel."""
    ids = _template_tensors(spec.template)[2]
    lm_cam = pts[ids].double()
    uv = project(lm_cam[None], torch.tensor([c.focal], dtype=torch.float64), torch.from_numpy(c.principal)[None])[
        0
    ].numpy()
    facing = ((normals[ids].double() * -lm_cam).sum(-1) / lm_cam.norm(dim=-1)).numpy() > -0.3
    visible = np.zeros(5, dtype=bool)
    for k, (x, y) in enumerate(uv):
        i, j = math.floor(y), math.floor(x)
        inside = 0 <= i < surface_z.shape[0] and 0 <= j < surface_z.shape[1]
        nearer = inside and surface_z[i, j] < float(lm_cam[k, 2]) - SELF_OCCLUSION_TOL
        visible[k] = bool(facing[k]) and not nearer
    return uv, visible
