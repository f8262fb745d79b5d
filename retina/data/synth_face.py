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
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from retina.mesh.albedo import albedo_at, face_zone
from retina.mesh.morphable import EXPRESSION_NAMES, FaceParams, face_shape, vertex_tint
from retina.mesh.template import FaceTemplate
from retina.render import interpolate, lambertian, model_to_camera, perspective, project, rasterize
from retina.render.light import vertex_normals

DISTANCE = 12.0  # camera to head centre, model units (the head is ~2 units tall): mild perspective
FACE_HEIGHT_UNITS = 1.33  # frontal face-zone height (chin to mid forehead) of the mean template
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
    return (torch.from_numpy(np.array(template.triangles)), _tensor(template.coords),
            torch.from_numpy(np.array(template.landmark_ids)))  # fmt: skip


def render_face(
    template: FaceTemplate,
    params: FaceParams,
    pose_rad: tuple[float, float, float],
    face_px: float,
    light: np.ndarray,
    supersample: int = 2,
) -> FaceSprite:
    """Render a face whose frontal face box would be ``face_px`` pixels tall.

    pose_rad: (pitch, yaw, roll) radians, conventions of :mod:`retina.render.camera`; light
    (ndarray[9]): point-light position (camera frame, model units; the head centre is at
    ``(0, 0, DISTANCE)``), light colour, ambient colour.
    """
    s = int(supersample)
    focal = face_px * s * DISTANCE / FACE_HEIGHT_UNITS
    verts = _tensor(face_shape(template, params))[None]
    pts = model_to_camera(verts, _tensor(np.asarray(pose_rad))[None], _tensor(np.array([0.0, 0.0, DISTANCE]))[None])
    # Canvas: the projected head plus a margin, in whole low-resolution pixels.
    uv = project(pts, torch.tensor([focal]), torch.zeros(1, 2))[0].numpy().astype(np.float64)
    lo = np.floor(uv.min(0) / s) - 2
    hi = np.ceil(uv.max(0) / s) + 2
    w, h = int(hi[0] - lo[0]), int(hi[1] - lo[1])
    principal = -lo * s  # super-resolution pixels
    tris, coords_t, lm_ids = _template_tensors(template)
    normals = vertex_normals(pts, tris)
    # Back-face culling (the z-buffer would hide them anyway; this halves the work).
    v = pts[0]
    tri_n = torch.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]], dim=-1)
    tris = tris[(tri_n * v[tris].mean(1)).sum(-1) < 0]
    clip = perspective(pts, torch.tensor([focal]), (h * s, w * s), _tensor(principal)[None],
                       DISTANCE - 3.0, DISTANCE + 3.0)  # fmt: skip
    raster = rasterize(clip, tris, (h * s, w * s))
    tint = _tensor(vertex_tint(template, params))[None]
    attrs = torch.cat([coords_t[None], normals, pts, tint], -1)
    pix = interpolate(attrs, raster, tris)[0]  # (H, W, 12)
    mask = raster.tri_id[0] >= 0
    rows, cols = np.nonzero(mask.numpy())
    px = pix[mask]  # (N, 12) covered pixels, row-major order
    coords = px[:, 0:3].double().numpy()
    mouth_open = params.expression[EXPRESSION_NAMES.index("jaw_open")]
    albedo = albedo_at(coords, params.colors, params.hair, px[:, 9:12].double().numpy(), mouth_open)
    lt = _tensor(light)
    shaded = lambertian(_tensor(albedo), px[:, 3:6], px[:, 6:9], lt[0:3], lt[3:6], lt[6:9]).numpy()
    big = np.zeros((h * s, w * s, 5), dtype=np.float32)
    big[rows, cols, 0:3] = np.clip(shaded, 0.0, 1.0)
    big[rows, cols, 3] = 1.0
    zone = face_zone(coords, params.hair)
    big[rows[zone], cols[zone], 4] = 1.0
    small = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA) if s > 1 else big
    box = np.full(4, np.nan)
    if zone.any():
        box = np.array([cols[zone].min(), rows[zone].min(), cols[zone].max() + 1, rows[zone].max() + 1]) / s
    # Landmarks: projected vertices; hidden when the surface seen at that pixel is nearer.
    lm_cam = pts[0, lm_ids]
    lm_uv = project(lm_cam[None], torch.tensor([focal]), _tensor(principal)[None])[0].double().numpy()
    # Self-visible: the vertex faces the camera (or grazes it, on a silhouette) and no nearer surface
    # covers its pixel.
    lm_n = normals[0, lm_ids]
    facing = ((lm_n * -lm_cam).sum(-1) / lm_cam.norm(dim=-1)).numpy() > -0.3
    visible = np.zeros(5, dtype=bool)
    for k, (x, y) in enumerate(lm_uv):
        i, j = math.floor(y), math.floor(x)
        covered = 0 <= i < h * s and 0 <= j < w * s and bool(mask[i, j])
        nearer = covered and float(pix[i, j, 8]) < float(lm_cam[k, 2]) - SELF_OCCLUSION_TOL
        visible[k] = bool(facing[k]) and not nearer
    return FaceSprite(
        color=np.ascontiguousarray(small[..., 0:3]),
        alpha=np.ascontiguousarray(small[..., 3]),
        face_alpha=np.ascontiguousarray(small[..., 4]),
        box=box,
        landmarks=lm_uv / s,
        landmark_visible=visible,
        focal=focal / s,
        principal=principal / s,
    )
