"""Invariants of the face mesh hierarchy (retina.mesh.hierarchy)."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

from retina.mesh.albedo import DEFAULT_HAIR, face_zone
from retina.mesh.hierarchy import build_hierarchy, default_hierarchy
from retina.mesh.template import build_template, mesh_edges


@pytest.fixture(scope="module")
def hier():
    return default_hierarchy()


def _directed_edges(tris: np.ndarray) -> list[tuple[int, int]]:
    return [(int(t[i]), int(t[(i + 1) % 3])) for t in tris for i in range(3)]


def _vertex_is_manifold(tris: np.ndarray, v: int) -> bool:
    """The triangles around v form one fan (a disc, or a half-disc on the boundary)."""
    fan = [t for t in tris if v in t]
    links = [tuple(int(w) for w in t if w != v) for t in fan]
    seen, stack = {0}, [0]
    while stack:
        i = stack.pop()
        for j, other in enumerate(links):
            if j not in seen and set(links[i]) & set(other):
                seen.add(j)
                stack.append(j)
    return len(seen) == len(fan)


def test_finest_level_is_the_face_zone(hier):
    t = build_template()
    zone = face_zone(t.coords, DEFAULT_HAIR)
    assert zone[hier.template_ids].all()
    assert hier.num_vertices[0] >= 0.99 * zone.sum()  # 1,169 of 1,170 (one zone vertex has no inside triangle)
    np.testing.assert_array_equal(hier.levels[0].vertices, t.vertices[hier.template_ids])


def test_vertex_counts_strictly_decrease(hier):
    counts = hier.num_vertices
    assert len(counts) == 4
    assert all(a > b for a, b in itertools.pairwise(counts))
    assert counts == (1169, 293, 74, 19)  # measured on the default template (factor 4)


@pytest.mark.parametrize("level", range(4))
def test_levels_are_oriented_manifolds_with_boundary(hier, level):
    lv = hier.levels[level]
    tris, verts = lv.triangles, lv.vertices
    assert np.all(tris[:, 0] != tris[:, 1]) and np.all(tris[:, 1] != tris[:, 2]) and np.all(tris[:, 0] != tris[:, 2])
    n = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    assert np.linalg.norm(n, axis=1).min() > 1e-8  # no degenerate triangles
    assert n[:, 2].sum() > 0.0  # counter-clockwise seen from the front (outward normals)
    und = Counter(tuple(sorted(e)) for e in _directed_edges(tris))
    assert max(und.values()) <= 2
    assert 1 in und.values()  # it has a boundary
    directed = Counter(_directed_edges(tris))
    assert max(directed.values()) == 1  # consistent orientation: each interior edge traversed both ways once
    assert np.array_equal(np.unique(tris), np.arange(lv.num_vertices))  # every vertex is used
    assert all(_vertex_is_manifold(tris, v) for v in range(lv.num_vertices))
    e = mesh_edges(tris)
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(lv.num_vertices,) * 2)
    assert sp.csgraph.connected_components(adj, directed=False)[0] == 1


def test_landmarks_survive_every_level(hier):
    want = build_template().landmarks
    for lv in hier.levels:
        np.testing.assert_array_equal(lv.vertices[lv.landmark_ids], want)


def test_sampling_rows_sum_to_one(hier):
    for level, (down, up) in enumerate(zip(hier.down, hier.up, strict=True)):
        fine, coarse = hier.num_vertices[level], hier.num_vertices[level + 1]
        assert down.shape == (coarse, fine) and up.shape == (fine, coarse)
        np.testing.assert_allclose(np.asarray(down.sum(axis=1)).ravel(), 1.0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(up.sum(axis=1)).ravel(), 1.0, atol=1e-12)
        assert down.min() >= 0.0 and up.min() >= 0.0
        assert np.all(np.diff(down.indptr) == 1)  # selection: one kept fine vertex per coarse vertex
        # A kept vertex up-samples to itself.
        np.testing.assert_allclose((up @ down).diagonal()[down.indices], 1.0, atol=1e-9)


def test_down_gives_the_coarse_vertices(hier):
    for level, down in enumerate(hier.down):
        np.testing.assert_array_equal(down @ hier.levels[level].vertices, hier.levels[level + 1].vertices)


def test_up_down_roundtrip_of_a_smooth_field(hier):
    # x = the vertex coordinates; measured relative errors 0.0022, 0.013, 0.048 (bounds leave margin).
    bounds = (0.005, 0.025, 0.08)
    for level, (down, up) in enumerate(zip(hier.down, hier.up, strict=True)):
        x = hier.levels[level].vertices
        rel = np.linalg.norm(up @ (down @ x) - x) / np.linalg.norm(x)
        assert rel < bounds[level]


@pytest.mark.parametrize("level", range(4))
def test_scaled_laplacian_spectrum(hier, level):
    lap = hier.levels[level].laplacian
    assert isinstance(lap, sp.csr_matrix) and lap.dtype == np.float64
    dense = lap.toarray()
    np.testing.assert_allclose(dense, dense.T, atol=0)
    ev = np.linalg.eigvalsh(dense)
    assert ev.min() >= -1.0 - 1e-9 and ev.max() <= 1.0 + 1e-9
    assert abs(ev.max() - 1.0) < 1e-8  # lambda_max maps to exactly 1
    # The combinatorial Laplacian has the constant vector in its kernel: L~ 1 = -1.
    np.testing.assert_allclose(lap @ np.ones(lap.shape[0]), -1.0, atol=1e-12)


def test_build_is_deterministic(hier):
    other = build_hierarchy(build_template())
    for a, b in zip(hier.levels, other.levels, strict=True):
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.triangles, b.triangles)
        assert (a.laplacian != b.laplacian).nnz == 0
    for mats_a, mats_b in ((hier.down, other.down), (hier.up, other.up)):
        for a, b in zip(mats_a, mats_b, strict=True):
            assert (a != b).nnz == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="levels"):
        build_hierarchy(build_template(), levels=0)
