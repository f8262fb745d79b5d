"""The suite's own procedural 3D face template (no external mesh file needed).

The head is a closed latitude-longitude surface: an ellipsoid with a tapered jaw, displaced along its
normal by smooth bumps (nose, brow ridge, eye sockets, lips, chin, cheekbones, ears). The grid is denser
at the front of the face, where the features are. Frames and units:

- model frame: ``+x`` is the viewer's right when the face looks at the viewer (the subject's left),
  ``+y`` up, ``+z`` out of the face towards the viewer; the head is about 2 units tall (crown at
  ``y = 1``), the eyes at ``y ~ 0.1``.
- ``coords`` (V, 3): per-vertex *feature coordinates* ``(X, Y, dz)``: the position on the undeformed
  ellipsoid before the features were added (``X``, ``Y``) and the forward component ``dz`` of its
  direction (1 at the front, -1 at the back). They are continuous over the whole closed surface (no
  seam), so a renderer can interpolate them per pixel and evaluate the albedo of
  :mod:`retina.mesh.albedo` there, crisp at any resolution. Every morph keeps them fixed.

The five landmark vertices follow the RetinaFace order: 0 the subject's right eye (image-left when the
face looks at the camera), 1 the subject's left eye, 2 the nose tip, 3 and 4 the mouth corners on the
subject's right and left.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from retina.mesh.albedo import DEFAULT_HAIR, region_labels

# Landmark feature coordinates (X, Y) on the front of the face, RetinaFace order (see module docstring).
LANDMARK_XY = np.array([[-0.29, 0.10], [0.29, 0.10], [0.0, -0.19], [-0.19, -0.44], [0.19, -0.44]])
HEAD_RADII = (0.68, 1.0, 0.9)  # x, y (crown side), z; the lower half uses JAW_Y_RADIUS for y
JAW_Y_RADIUS = 0.85
# Front-facing bumps: (X centre, Y centre, X sigma, Y sigma, amplitude) in model units; mirrored
# features list both sides. Amplitudes push along the ellipsoid normal.
FRONT_BUMPS = (
    (0.0, -0.02, 0.06, 0.14, 0.10),  # nose bridge
    (0.0, -0.19, 0.07, 0.06, 0.14),  # nose tip
    (-0.08, -0.22, 0.05, 0.04, 0.05),  # nose wings
    (0.08, -0.22, 0.05, 0.04, 0.05),
    (-0.29, 0.10, 0.10, 0.07, -0.05),  # eye sockets
    (0.29, 0.10, 0.10, 0.07, -0.05),
    (-0.29, 0.10, 0.045, 0.035, 0.02),  # eyeballs under the lids
    (0.29, 0.10, 0.045, 0.035, 0.02),
    (-0.28, 0.24, 0.14, 0.05, 0.035),  # brow ridge
    (0.28, 0.24, 0.14, 0.05, 0.035),
    (0.0, -0.39, 0.13, 0.035, 0.035),  # upper lip
    (0.0, -0.48, 0.11, 0.035, 0.03),  # lower lip
    (0.0, -0.72, 0.12, 0.08, 0.05),  # chin
    (-0.42, -0.02, 0.10, 0.08, 0.025),  # cheekbones
    (0.42, -0.02, 0.10, 0.08, 0.025),
)
EAR = (-0.02, 0.15, 0.12, 0.07)  # Y centre, Y sigma, angular sigma (rad), amplitude


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, so caches can key on it
class FaceTemplate:
    """A face mesh with its graph and semantic data (arrays are read-only).

    vertices (ndarray[V, 3]) float64 model frame; triangles (ndarray[T, 3]) int64, counter-clockwise
    seen from outside (outward normals); coords (ndarray[V, 3]) feature coordinates (X, Y, dz);
    region (ndarray[V]) int64 index into ``retina.mesh.albedo.REGIONS`` for the default hair style;
    landmark_ids (ndarray[5]) int64 vertex ids in RetinaFace order.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    coords: np.ndarray
    region: np.ndarray
    landmark_ids: np.ndarray

    @property
    def grid(self) -> tuple[int, int]:
        """(n_lat, n_lon) of the latitude-longitude grid this template was built with."""
        n_lon = int(np.sum(self.triangles[:, 0] == 0))  # the bottom pole's fan has one triangle per column
        return (self.num_vertices - 2) // n_lon, n_lon

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def landmarks(self) -> np.ndarray:
        """(5, 3) float64 positions of the landmark vertices."""
        return self.vertices[self.landmark_ids]


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _grid(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes (n_lat,) and longitudes (n_lon,), denser near the front centre (sinh warping)."""
    k_lat, k_lon = 1.5, 2.5
    v = np.linspace(-1.0, 1.0, n_lat + 2)[1:-1]
    lat = 0.5 * np.pi * np.sinh(k_lat * v) / np.sinh(k_lat)
    # Symmetric about the midline (u = 0 is a column of vertices); u = -1 is the back of the head.
    u = np.arange(n_lon) / n_lon * 2.0 - 1.0
    lon = np.pi * np.sinh(k_lon * u) / np.sinh(k_lon)
    return lat, lon


def _triangles(n_lat: int, n_lon: int) -> np.ndarray:
    """Triangles of a closed lat-long grid: bottom pole 0, rings bottom to top, top pole last."""
    ring = lambda i, j: 1 + i * n_lon + (j % n_lon)  # noqa: E731
    top = 1 + n_lat * n_lon
    tris = []
    for j in range(n_lon):
        tris.append((0, ring(0, j + 1), ring(0, j)))
        tris.append((ring(n_lat - 1, j), ring(n_lat - 1, j + 1), top))
    for i in range(n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j + 1), ring(i + 1, j)
            tris += [(a, b, c), (a, c, d)]
    return np.asarray(tris, dtype=np.int64)


def _directions(n_lat: int, n_lon: int) -> np.ndarray:
    lat, lon = _grid(n_lat, n_lon)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    d = np.stack([np.sin(lo) * np.cos(la), np.sin(la), np.cos(lo) * np.cos(la)], -1).reshape(-1, 3)
    return np.concatenate([[[0.0, -1.0, 0.0]], d, [[0.0, 1.0, 0.0]]])


def _surface(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ellipsoid points for unit directions d (V, 3), and the feature coordinates (V, 3)."""
    a, b, c = HEAD_RADII
    by = np.where(d[:, 1] > 0, b, JAW_Y_RADIUS)
    p = np.stack([a * d[:, 0], by * d[:, 1], c * d[:, 2]], -1)
    coords = np.stack([p[:, 0], p[:, 1], d[:, 2]], -1)
    # Jaw taper: narrower and shallower towards the chin.
    taper = _smoothstep(0.35, -0.9, p[:, 1])
    p[:, 0] *= 1.0 - 0.32 * taper
    p[:, 2] *= 1.0 - 0.08 * taper
    return p, coords


def _displacement(coords: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Signed displacement (V,) along the normal: facial features at the front, ears on the sides."""
    x, y, dz = coords.T
    front = _smoothstep(0.05, 0.45, dz)
    bump = np.zeros_like(x)
    for cx, cy, sx, sy, amp in FRONT_BUMPS:
        bump += amp * np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))
    ey, esy, esa, eamp = EAR
    side = np.arctan2(d[:, 0], d[:, 2])  # longitude
    ears = sum(np.exp(-0.5 * ((side - s * np.pi / 2) / esa) ** 2) for s in (-1.0, 1.0))
    return front * bump + eamp * ears * np.exp(-0.5 * ((y - ey) / esy) ** 2)


def _normals_of(p: np.ndarray) -> np.ndarray:
    a, b, c = HEAD_RADII
    by = np.where(p[:, 1] > 0, b, JAW_Y_RADIUS)
    n = np.stack([p[:, 0] / a**2, p[:, 1] / by**2, p[:, 2] / c**2], -1)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _readonly(*arrays: np.ndarray) -> None:
    for arr in arrays:
        arr.setflags(write=False)


@functools.lru_cache(maxsize=4)
def build_template(n_lat: int = 48, n_lon: int = 64) -> FaceTemplate:
    """Build the procedural face template: ``2 + n_lat * n_lon`` vertices (3,074 by default).

    The result is deterministic and cached (its arrays are read-only).
    """
    if n_lat < 8 or n_lon < 8:
        raise ValueError(f"template grid too coarse: n_lat={n_lat}, n_lon={n_lon} (need >= 8 each)")
    d = _directions(n_lat, n_lon)
    # Landmarks: the front vertices nearest to the landmark feature coordinates, moved exactly onto
    # them (by less than half a grid step) so the albedo's eyes and mouth corners sit on the vertices.
    _, coords = _surface(d)
    dist = np.linalg.norm(coords[None, :, :2] - LANDMARK_XY[:, None, :], axis=-1)
    dist[:, coords[:, 2] < 0.3] = np.inf
    landmark_ids = np.argmin(dist, axis=1).astype(np.int64)
    a, b, _ = HEAD_RADII
    for (x, y), i in zip(LANDMARK_XY, landmark_ids, strict=True):
        dx, dy = x / a, y / (b if y > 0 else JAW_Y_RADIUS)
        d[i] = (dx, dy, np.sqrt(1.0 - dx * dx - dy * dy))
    base, coords = _surface(d)
    verts = base + _displacement(coords, d)[:, None] * _normals_of(base)
    tris = _triangles(n_lat, n_lon)
    region = region_labels(coords, DEFAULT_HAIR)
    _readonly(verts, tris, coords, region, landmark_ids)
    return FaceTemplate(verts, tris, coords, region, landmark_ids)


def mesh_edges(triangles: np.ndarray) -> np.ndarray:
    """Unique undirected edges (E, 2) int64, sorted, of a triangle mesh (T, 3): the mesh graph."""
    tris = np.asarray(triangles, dtype=np.int64)
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)
