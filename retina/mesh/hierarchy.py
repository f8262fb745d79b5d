"""Multi-resolution face meshes for the dense branch's graph-convolution decoder (RetinaFace sec. 3.2).

The finest level is the face region of the suite's template (:func:`retina.mesh.albedo.face_zone`): the
zone's vertices that belong to a triangle lying wholly inside it, re-indexed (1,169 vertices and 2,198
triangles on the default 48 x 64 template). Each coarser level comes from greedy *half-edge collapse*
ordered by the quadric error metric (Garland and Heckbert 1997), which keeps the coarse vertices a subset
of the fine ones, with these guards so the result stays a 2-manifold with boundary and consistent
orientation: the link condition, boundary vertices only slide along boundary edges, no triangle may flip
or degenerate, and the five landmark vertices are never removed. Boundary edges add constraint quadrics
(planes through the edge, perpendicular to its triangle) so the outline survives.

Per level pair (fine ``l``, coarse ``l + 1``):

- ``down[l]`` (V_{l+1} x V_l): a selection matrix, one 1 per row at the kept vertex (rows sum to 1);
- ``up[l]`` (V_l x V_{l+1}): the barycentric weights of each fine vertex's closest point on the nearest
  coarse triangle (non-negative, rows sum to 1); a kept vertex maps to itself exactly.

Each level's ``laplacian`` is the scaled Laplacian ``L~ = 2 L / lambda_max - I`` of the *combinatorial*
graph Laplacian ``L = D - A`` of the mesh edges (unit weights), ``lambda_max`` from ``eigsh``; its spectrum
lies in [-1, 1], as the Chebyshev filters of :mod:`retina.models.chebconv` need.
"""

from __future__ import annotations

import functools
import heapq
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from retina.mesh.albedo import DEFAULT_HAIR, face_zone
from retina.mesh.template import FaceTemplate, build_template, mesh_edges

BOUNDARY_WEIGHT = 100.0  # weight of the boundary constraint quadrics relative to the face-plane ones
MIN_FLIP_COS = 0.1  # a collapse may not turn any triangle's normal by more than ~84 degrees


@dataclass(frozen=True, eq=False)
class MeshLevel:
    """One resolution: vertices (ndarray[V, 3]) float64 model frame; triangles (ndarray[T, 3]) int64,
    counter-clockwise seen from outside; laplacian (csr[V, V]) float64 scaled Laplacian ``L~``;
    landmark_ids (ndarray[5]) int64 landmark vertex ids in RetinaFace order."""

    vertices: np.ndarray
    triangles: np.ndarray
    laplacian: sp.csr_matrix
    landmark_ids: np.ndarray

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])


@dataclass(frozen=True, eq=False)
class MeshHierarchy:
    """Finest-first mesh levels with the sampling matrices between consecutive levels.

    levels: ``levels[0]`` is the face region of the template; down[l] (csr[V_{l+1}, V_l]) and
    up[l] (csr[V_l, V_{l+1}]) float64 map level ``l`` to ``l + 1`` and back; template_ids (ndarray[V_0])
    int64: the template vertex of each finest-level vertex.
    """

    levels: tuple[MeshLevel, ...]
    down: tuple[sp.csr_matrix, ...]
    up: tuple[sp.csr_matrix, ...]
    template_ids: np.ndarray

    @property
    def num_vertices(self) -> tuple[int, ...]:
        return tuple(level.num_vertices for level in self.levels)


def face_region(template: FaceTemplate) -> tuple[np.ndarray, np.ndarray]:
    """Template vertex ids (V,) of the face region and its triangles (T, 3) re-indexed to them."""
    zone = face_zone(template.coords, DEFAULT_HAIR)
    tris = template.triangles[zone[template.triangles].all(axis=1)]
    ids = np.unique(tris)
    remap = np.full(template.num_vertices, -1, dtype=np.int64)
    remap[ids] = np.arange(len(ids))
    return ids.astype(np.int64), remap[tris]


def scaled_laplacian(triangles: np.ndarray, num_vertices: int) -> sp.csr_matrix:
    """``2 L / lambda_max - I`` (csr[V, V] float64) of the combinatorial Laplacian of the mesh edges."""
    e = mesh_edges(triangles)
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(num_vertices, num_vertices))
    adj = (adj + adj.T).tocsr()
    lap = sp.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj
    v0 = np.random.default_rng(0).standard_normal(num_vertices)  # fixed start: deterministic
    lam = float(eigsh(lap, k=1, which="LA", v0=v0, tol=0.0, return_eigenvectors=False)[0])
    out = (2.0 / lam) * lap - sp.identity(num_vertices)
    return sp.csr_matrix(out, dtype=np.float64)


def _normal(p: np.ndarray) -> np.ndarray:
    """Unnormalised normal (3,) of a triangle with corners p (3, 3)."""
    return np.cross(p[1] - p[0], p[2] - p[0])


class _Collapser:
    """Greedy quadric-ordered half-edge collapse on an indexed triangle mesh (mutable working state)."""

    def __init__(self, verts: np.ndarray, tris: np.ndarray, protected: np.ndarray) -> None:
        self.p = verts
        self.tris: dict[int, tuple[int, int, int]] = {i: tuple(int(v) for v in t) for i, t in enumerate(tris)}
        self.vt: list[set[int]] = [set() for _ in range(len(verts))]
        for i, t in self.tris.items():
            for v in t:
                self.vt[v].add(i)
        self.alive = np.ones(len(verts), dtype=bool)
        self.protected = set(int(i) for i in protected)
        self.version = np.zeros(len(verts), dtype=np.int64)
        self.q = self._quadrics()
        self.heap: list[tuple[float, int, int, int, int]] = []

    def _quadrics(self) -> np.ndarray:
        q = np.zeros((len(self.p), 4, 4))
        for t in self.tris.values():
            n = _normal(self.p[list(t)])
            area2 = np.linalg.norm(n)
            if area2 <= 0.0:
                continue
            plane = np.append(n / area2, -np.dot(n / area2, self.p[t[0]]))
            for v in t:
                q[v] += 0.5 * area2 * np.outer(plane, plane)
        for a, b in self._boundary_edges():
            (t,) = self.vt[a] & self.vt[b]
            n = _normal(self.p[list(self.tris[t])])
            d = np.cross(self.p[b] - self.p[a], n)
            norm = np.linalg.norm(d)
            if norm <= 0.0:
                continue
            plane = np.append(d / norm, -np.dot(d / norm, self.p[a]))
            w = BOUNDARY_WEIGHT * float(np.sum((self.p[b] - self.p[a]) ** 2))
            q[a] += w * np.outer(plane, plane)
            q[b] += w * np.outer(plane, plane)
        return q

    def _boundary_edges(self) -> list[tuple[int, int]]:
        edges = mesh_edges(np.array(list(self.tris.values())))
        return [(int(a), int(b)) for a, b in edges if len(self.vt[a] & self.vt[b]) == 1]

    def neighbours(self, v: int) -> set[int]:
        return {w for t in self.vt[v] for w in self.tris[t]} - {v}

    def _on_boundary(self, v: int) -> bool:
        return any(len(self.vt[v] & self.vt[w]) == 1 for w in self.neighbours(v))

    def _cost(self, u: int, v: int) -> float:
        h = np.append(self.p[v], 1.0)
        return float(h @ (self.q[u] + self.q[v]) @ h)

    def push(self, u: int) -> None:
        """Queue the collapses of ``u`` onto each neighbour and of each neighbour onto ``u``."""
        for w in sorted(self.neighbours(u)):
            for a, b in ((u, w), (w, u)):
                if a not in self.protected:
                    item = (self._cost(a, b), a, b, int(self.version[a]), int(self.version[b]))
                    heapq.heappush(self.heap, item)

    def valid(self, u: int, v: int) -> bool:
        """Whether collapsing ``u`` into ``v`` keeps the mesh a consistently oriented 2-manifold."""
        shared = self.vt[u] & self.vt[v]
        if not shared:
            return False
        opposite = {w for t in shared for w in self.tris[t]} - {u, v}
        if self.neighbours(u) & self.neighbours(v) != opposite:  # link condition
            return False
        if self._on_boundary(u) and len(shared) != 1:  # a boundary vertex only slides along the boundary
            return False
        for t in self.vt[u] - shared:
            corners = self.tris[t]
            old = _normal(self.p[list(corners)])
            new = _normal(self.p[[v if c == u else c for c in corners]])
            nn, no = np.linalg.norm(new), np.linalg.norm(old)
            if nn <= 1e-12 * max(no, 1e-300) or np.dot(new, old) < MIN_FLIP_COS * nn * no:
                return False
        return True

    def collapse(self, u: int, v: int) -> None:
        for t in sorted(self.vt[u]):
            corners = self.tris[t]
            for c in corners:
                self.vt[c].discard(t)
            if v in corners:
                del self.tris[t]
            else:
                self.tris[t] = tuple(v if c == u else c for c in corners)
                for c in self.tris[t]:
                    self.vt[c].add(t)
        self.alive[u] = False
        self.q[v] += self.q[u]
        self.version[v] += 1
        self.version[u] += 1

    def run(self, target: int) -> None:
        """Collapse edges, cheapest first, until ``target`` vertices remain or no collapse is valid."""
        for v in range(len(self.p)):
            if self.vt[v]:
                self.push(v)
        while int(self.alive.sum()) > target and self.heap:
            _, u, v, ver_u, ver_v = heapq.heappop(self.heap)
            if not (self.alive[u] and self.alive[v]) or (ver_u, ver_v) != (self.version[u], self.version[v]):
                continue
            if not self.valid(u, v):
                continue
            ring = self.neighbours(v) | self.neighbours(u)
            self.collapse(u, v)
            for w in sorted(ring - {u}):  # validity around the one-ring may have changed
                self.version[w] += 1
            for w in sorted(ring - {u}):
                self.push(w)


def _closest_on_triangles(x: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple:
    """Squared distance (N, T) from points x (N, 3) to triangles (a, b, c each (T, 3)) and the
    barycentric weights (N, T, 3) of the closest points."""
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    nn = np.einsum("ij,ij->i", n, n)
    # Interior candidate: projection onto the plane, valid when all barycentrics are >= 0.
    ax = x[:, None, :] - a[None]
    wb = np.einsum("ntk,tk->nt", np.cross(ax, ac[None]), n) / nn
    wc = np.einsum("ntk,tk->nt", np.cross(ab[None], ax), n) / nn
    bary = np.stack([1.0 - wb - wc, wb, wc], -1)
    inside = (bary >= 0.0).all(-1)
    best_d = np.where(inside, np.einsum("ntk,tk->nt", ax, n) ** 2 / nn, np.inf)
    best = bary.copy()
    # Edge candidates: the closest point on each segment.
    for i, j in ((0, 1), (1, 2), (2, 0)):
        p, q = (a, b, c)[i], (a, b, c)[j]
        pq = q - p
        s = np.clip(np.einsum("ntk,tk->nt", x[:, None, :] - p[None], pq) / np.einsum("tk,tk->t", pq, pq), 0.0, 1.0)
        d = np.sum((p[None] + s[..., None] * pq[None] - x[:, None, :]) ** 2, -1)
        better = d < best_d
        w = np.zeros_like(bary)
        w[..., i], w[..., j] = 1.0 - s, s
        best = np.where(better[..., None], w, best)
        best_d = np.where(better, d, best_d)
    return best_d, best


def upsampling_matrix(fine: np.ndarray, coarse: np.ndarray, coarse_tris: np.ndarray) -> sp.csr_matrix:
    """(V_fine x V_coarse) barycentric weights of each fine vertex's closest point on the coarse mesh."""
    d, w = _closest_on_triangles(fine, *(coarse[coarse_tris[:, k]] for k in range(3)))
    t = np.argmin(d, axis=1)  # first minimum: deterministic
    weights = w[np.arange(len(fine)), t]
    rows = np.repeat(np.arange(len(fine)), 3)
    up = sp.coo_matrix((weights.ravel(), (rows, coarse_tris[t].ravel())), shape=(len(fine), len(coarse)))
    up = sp.csr_matrix(up)
    up.eliminate_zeros()
    return up


def _coarsen(
    verts: np.ndarray, tris: np.ndarray, landmarks: np.ndarray, target: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kept vertex ids (V',) into ``verts``, coarse triangles (T', 3) and landmark ids, re-indexed."""
    col = _Collapser(verts, tris, landmarks)
    col.run(target)
    kept = np.flatnonzero(col.alive & np.array([bool(s) for s in col.vt]))
    remap = np.full(len(verts), -1, dtype=np.int64)
    remap[kept] = np.arange(len(kept))
    coarse = remap[np.array([col.tris[k] for k in sorted(col.tris)], dtype=np.int64)]
    return kept, coarse, remap[landmarks]


def build_hierarchy(template: FaceTemplate, levels: int = 4, factor: float = 4.0) -> MeshHierarchy:
    """Face region of ``template`` and ``levels - 1`` coarser meshes, each about ``1 / factor`` the size.

    Deterministic: the same template and arguments give identical arrays.
    """
    if levels < 1 or factor <= 1.0:
        raise ValueError(f"build_hierarchy needs levels >= 1 and factor > 1, got levels={levels}, factor={factor}")
    ids, tris = face_region(template)
    remap = np.full(template.num_vertices, -1, dtype=np.int64)
    remap[ids] = np.arange(len(ids))
    landmarks = remap[template.landmark_ids]
    verts = np.asarray(template.vertices[ids], dtype=np.float64)
    out = [MeshLevel(verts, tris, scaled_laplacian(tris, len(verts)), landmarks)]
    down, up = [], []
    for _ in range(levels - 1):
        fine = out[-1]
        target = max(int(np.ceil(fine.num_vertices / factor)), len(landmarks) + 3)
        kept, ctris, clm = _coarsen(fine.vertices, fine.triangles, fine.landmark_ids, target)
        cverts = fine.vertices[kept]
        ones = np.ones(len(kept))
        down.append(sp.csr_matrix((ones, (np.arange(len(kept)), kept)), shape=(len(kept), fine.num_vertices)))
        up.append(upsampling_matrix(fine.vertices, cverts, ctris))
        out.append(MeshLevel(cverts, ctris, scaled_laplacian(ctris, len(kept)), clm))
    for level in out:
        for arr in (level.vertices, level.triangles, level.landmark_ids):
            arr.setflags(write=False)
    ids.setflags(write=False)
    return MeshHierarchy(tuple(out), tuple(down), tuple(up), ids)


@functools.lru_cache(maxsize=1)
def default_hierarchy() -> MeshHierarchy:
    """The 4-level hierarchy of the default template (cached; treat its matrices as read-only)."""
    return build_hierarchy(build_template())
