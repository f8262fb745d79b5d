"""The procedural face template, its morphable space and albedo, and the OBJ loader."""

from __future__ import annotations

import numpy as np
import pytest

from retina.errors import DataFormatError
from retina.mesh import REGIONS, FaceParams, build_template, load_obj, mesh_edges, sample_face_params
from retina.mesh.albedo import AlbedoColors, HairStyle, albedo_at, face_zone
from retina.mesh.morphable import EXPRESSION_NAMES, IDENTITY_NAMES, face_shape, vertex_albedo, vertex_tint
from retina.mesh.template import LANDMARK_XY
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def template():
    return build_template()


def test_template_is_a_closed_genus0_surface(template):
    v, t = template.vertices, template.triangles
    assert v.shape == (2 + 48 * 64, 3) and t.shape == (2 * 48 * 64, 3)
    edges = mesh_edges(t)
    # Closed: every edge is shared by exactly two triangles; sphere-like: V - E + F = 2.
    directed = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    _, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    assert np.all(counts == 2)
    assert len(v) - len(edges) + len(t) == 2
    # Consistent orientation: each directed edge appears once (the neighbour walks it the other way).
    assert len(np.unique(directed, axis=0)) == len(directed)


def test_template_normals_point_outwards(template):
    v, t = template.vertices, template.triangles
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    assert np.all(np.einsum("ij,ij->i", n, v[t].mean(1)) > 0)
    assert np.all(np.linalg.norm(n, axis=1) > 0)


def test_template_landmarks_sit_exactly_on_their_feature_points(template):
    ids = template.landmark_ids
    np.testing.assert_allclose(template.coords[ids, :2], LANDMARK_XY, atol=1e-12)
    lm = template.landmarks
    # RetinaFace order in the model frame (+x = image right on a frontal face): 0 left of 1, nose in
    # the middle and in front, mouth corners below the nose.
    assert lm[0, 0] < 0 < lm[1, 0] and lm[3, 0] < 0 < lm[4, 0] and lm[2, 0] == 0
    assert lm[2, 2] == template.vertices[:, 2].max()  # the nose tip is the frontmost vertex
    assert lm[3, 1] < lm[2, 1] < lm[0, 1]


def test_template_is_mirror_symmetric(template):
    from scipy.spatial import cKDTree

    v = template.vertices
    # Every vertex has a mirror twin (the grid is symmetric about the midline).
    dist, _ = cKDTree(v).query(v * [-1, 1, 1])
    assert dist.max() < 1e-9


def test_template_regions_and_readonly(template):
    counts = np.bincount(template.region, minlength=len(REGIONS))
    assert np.all(counts > 0), dict(zip(REGIONS, counts, strict=True))
    with pytest.raises(ValueError):
        template.vertices[0, 0] = 1.0


def test_levels_of_detail_share_landmarks():
    fine, coarse = build_template(), build_template(24, 32)
    assert coarse.grid == (24, 32) and fine.grid == (48, 64)
    np.testing.assert_allclose(fine.landmarks, coarse.landmarks, atol=1e-12)
    with pytest.raises(ValueError):
        build_template(4, 4)


def test_morphable_space_is_linear_and_zero_is_the_template(template):
    zero = FaceParams()
    np.testing.assert_array_equal(face_shape(template, zero), template.vertices)
    np.testing.assert_allclose(vertex_tint(template, zero), 1.0)
    a = FaceParams(identity=tuple(np.linspace(-1, 1, len(IDENTITY_NAMES))), expression=(0.5, 0.0, 0.2))
    b = FaceParams(identity=tuple(np.linspace(1, 0, len(IDENTITY_NAMES))), expression=(0.1, 0.7, 0.0))
    ab = FaceParams(
        identity=tuple(np.add(a.identity, b.identity)), expression=tuple(np.add(a.expression, b.expression))
    )
    base = template.vertices
    sum_of_moves = (face_shape(template, a) - base) + (face_shape(template, b) - base)
    np.testing.assert_allclose(face_shape(template, ab) - base, sum_of_moves, atol=1e-12)
    # Each basis moves the face, by an amount of a plausible size (model units; the head is ~2 tall).
    for k in range(len(IDENTITY_NAMES)):
        unit = FaceParams(identity=tuple(float(i == k) for i in range(len(IDENTITY_NAMES))))
        move = np.abs(face_shape(template, unit) - base).max()
        assert 0.005 < move < 0.15, IDENTITY_NAMES[k]
    for k in range(len(EXPRESSION_NAMES)):
        unit = FaceParams(expression=tuple(float(i == k) for i in range(len(EXPRESSION_NAMES))))
        assert 0.01 < np.abs(face_shape(template, unit) - base).max() < 0.15, EXPRESSION_NAMES[k]


def test_face_params_round_trip_and_sampling():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    p = sample_face_params(rng_a)
    assert p == sample_face_params(rng_b)
    assert FaceParams.from_dict(p.to_dict()) == p
    assert all(-2.5 <= c <= 2.5 for c in p.identity) and all(0 <= c <= 1 for c in p.expression)
    with pytest.raises(ValueError):
        FaceParams(identity=(0.0,))
    with pytest.raises(ValueError):
        AlbedoColors(skin=(1.2, 0.0, 0.0))
    with pytest.raises(ValueError):
        HairStyle(front=0.1, side=0.5, back=0.0)


def test_albedo_regions(template):
    p = FaceParams()
    albedo = vertex_albedo(template, p)
    assert albedo.shape == template.vertices.shape and albedo.min() >= 0 and albedo.max() <= 1
    # Feature points get their region's colour: pupil centre dark, lips red-ish, crown hair, cheek skin.
    pts = np.array([[0.29, 0.10, 0.9], [0.0, -0.40, 0.9], [0.0, 0.98, 0.1], [0.4, -0.2, 0.8]])
    out = albedo_at(pts, p.colors, p.hair)
    np.testing.assert_allclose(out[0], [0.03, 0.03, 0.03], atol=1e-6)
    np.testing.assert_allclose(out[1], p.colors.lips, atol=1e-6)
    np.testing.assert_allclose(out[2], p.colors.hair, atol=1e-6)
    np.testing.assert_allclose(out[3], p.colors.skin, atol=1e-6)
    zone = face_zone(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.6, 0.0, 0.2], [0.0, 0.9, 0.5]]), p.hair)
    np.testing.assert_array_equal(zone, [True, False, False, False])


def test_obj_loader_triangulates_and_resolves_indices(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text(
        "# a unit quad and a triangle with negative indices\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 1\n"
        "g quad\nusemtl skin\ns off\n"
        "f 1/1/1 2/2/1 3/3/1 4/4/1\n"
        "f -4/-4 -2/-2 -1/-1\n"
    )
    mesh = load_obj(path)
    np.testing.assert_array_equal(mesh.triangles, [[0, 1, 2], [0, 2, 3], [0, 2, 3]])
    assert mesh.vertices.shape == (4, 3) and mesh.uvs is not None
    np.testing.assert_array_equal(mesh.uvs, [[0, 0], [1, 0], [1, 1], [0, 1]])


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("v 0 0 0\nv 1 0\n", 2, "'v' needs 3"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", 4, "out of range"),
        ("v 0 0 0\nv 1 0 0\nf 1 2\n", 3, "at least 3"),
        ("v 0 0 x\n", 1, "bad number"),
        ("v 0 0 0\nf 1 a 1\n", 2, "bad index"),
    ],
)
def test_obj_loader_errors_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.obj"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=rf"bad\.obj:{line}: .*{message}"):
        load_obj(path)


def test_obj_loader_rejects_empty_and_missing(tmp_path):
    (tmp_path / "empty.obj").write_text("# nothing\n")
    with pytest.raises(DataFormatError, match="no vertices"):
        load_obj(tmp_path / "empty.obj")
    with pytest.raises(DataFormatError, match="cannot read"):
        load_obj(tmp_path / "missing.obj")


def test_obj_loader_reads_mediapipe_face():
    mesh = load_obj(shared_file("mesh/mediapipe/canonical_face_model.obj"))
    assert mesh.vertices.shape == (468, 3) and mesh.triangles.shape == (898, 3)
    assert mesh.uvs is not None and mesh.uvs.shape == (468, 2)
    assert mesh.triangles.min() == 0 and mesh.triangles.max() == 467
    assert len(mesh_edges(mesh.triangles)) > 898
