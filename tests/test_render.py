"""The torch renderer: coverage and depth against hand values, gradients against finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from retina.errors import RetinaError
from retina.mesh import FaceParams, build_template, face_shape, vertex_albedo
from retina.mesh.template import LANDMARK_XY
from retina.render import (
    backend,
    euler_rotation,
    interpolate,
    lambertian,
    model_to_camera,
    perspective,
    project,
    rasterize,
    render_mesh,
    vertex_normals,
)

F64 = torch.float64

# One triangle over a 4x4 image, NDC corners A(-1, -1), B(1, -1), C(-1, 1), depths 0, 0.5, -0.5.
# Pixel centres are at NDC (2j + 1) / 4 - 1 (columns) and (2i + 1) / 4 - 1 (rows, row 0 at y = -1),
# so the centre (i, j) is inside (or on the hypotenuse x + y = 0) exactly when i + j <= 3, and the
# depth there is z = 0.25 x - 0.25 y.
TRI = torch.tensor([[0, 1, 2]])
CLIP = torch.tensor([[[-1.0, -1.0, 0.0, 1.0], [1.0, -1.0, 0.5, 1.0], [-1.0, 1.0, -0.5, 1.0]]], dtype=F64)
COVERED = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
DEPTH = np.array([[0.0, 0.125, 0.25, 0.375], [-0.125, 0.0, 0.125, 0], [-0.25, -0.125, 0, 0], [-0.375, 0, 0, 0]])


def test_one_triangle_pixels_and_depths_by_hand():
    r = rasterize(CLIP, TRI, (4, 4))
    np.testing.assert_array_equal(r.tri_id[0].numpy(), np.where(COVERED, 0, -1))
    np.testing.assert_array_equal(r.mask[0].numpy(), COVERED)
    depth = r.depth[0].numpy()
    np.testing.assert_allclose(depth[COVERED], DEPTH[COVERED], atol=1e-12)
    assert np.all(np.isinf(depth[~COVERED]))
    # Screen-space barycentrics at pixel (0, 0), NDC (-0.75, -0.75): B weight (x + 1) / 2, C weight (y + 1) / 2.
    np.testing.assert_allclose(r.bary[0, 0, 0].numpy(), [0.75, 0.125, 0.125], atol=1e-12)
    assert torch.all(r.bary[0][~torch.from_numpy(COVERED)] == 0)


def test_perspective_correct_barycentrics_by_hand():
    # Scaling C's clip coordinates by w = 2 keeps its NDC position: same pixels and depths, but the
    # weights become (l_k / w_k) / sum(l_j / w_j) = (0.75, 0.125, 0.0625) / 0.9375 at pixel (0, 0).
    clip = CLIP.clone()
    clip[0, 2] *= 2.0
    r = rasterize(clip, TRI, (4, 4))
    np.testing.assert_array_equal(r.mask[0].numpy(), COVERED)
    np.testing.assert_allclose(r.depth[0].numpy()[COVERED], DEPTH[COVERED], atol=1e-12)
    np.testing.assert_allclose(r.bary[0, 0, 0].numpy(), [0.8, 0.4 / 3, 0.2 / 3], atol=1e-12)


def test_z_buffer_keeps_the_nearest_and_ties_go_to_the_lowest_id():
    near = CLIP.clone()
    near[0, :, 2] -= 0.2  # same triangle, nearer
    clip = torch.cat([CLIP, near], 1)
    r = rasterize(clip, torch.tensor([[0, 1, 2], [3, 4, 5]]), (4, 4))
    assert torch.all(r.tri_id[0][torch.from_numpy(COVERED)] == 1)
    r = rasterize(torch.cat([CLIP, CLIP], 1), torch.tensor([[3, 4, 5], [0, 1, 2]]), (4, 4))
    assert torch.all(r.tri_id[0][torch.from_numpy(COVERED)] == 0)


def test_degenerate_outside_and_behind_camera_triangles_draw_nothing():
    behind = CLIP.clone()
    behind[0, 0, 3] = -1.0
    flat = CLIP.clone()
    flat[0, 2, :2] = flat[0, 1, :2]
    far = CLIP.clone()
    far[0, :, 2] = 1.5  # beyond the far plane
    for clip in (behind, flat, far):
        assert not rasterize(clip, TRI, (4, 4)).mask.any()
    assert not rasterize(CLIP, torch.zeros(0, 3, dtype=torch.int64), (4, 4)).mask.any()


def test_batch_equals_single_images_and_interpolation_is_exact_for_affine_attributes():
    other = CLIP.clone()
    other[0, :, 0] *= -1  # mirrored
    batch = rasterize(torch.cat([CLIP, other]), TRI, (5, 7))
    for b, clip in enumerate((CLIP, other)):
        single = rasterize(clip, TRI, (5, 7))
        assert torch.equal(batch.tri_id[b], single.tri_id[0])
        assert torch.allclose(batch.bary[b], single.bary[0])
    # With w = 1 an attribute equal to the NDC position interpolates to the pixel centre.
    r = rasterize(CLIP, TRI, (4, 4))
    xy = interpolate(CLIP[..., :2], r, TRI)[0]
    centres = (2 * torch.arange(4, dtype=F64) + 1) / 4 - 1
    mask = r.mask[0]
    assert torch.allclose(xy[..., 0][mask], centres[None, :].expand(4, 4)[mask])
    assert torch.allclose(xy[..., 1][mask], centres[:, None].expand(4, 4)[mask])
    assert torch.all(xy[~mask] == 0)
    assert torch.equal(interpolate(CLIP[0, :, :2], r, TRI), xy[None])  # (V, C) attributes broadcast


def test_gradcheck_rasterize_and_interpolate():
    # A triangle whose pixel centres all stay well inside under the finite-difference steps.
    clip = torch.tensor(
        [[[-0.9, -0.8, 0.1, 1.0], [0.85, -0.95, 0.2, 1.2], [-0.7, 0.9, -0.1, 0.9]]], dtype=F64, requires_grad=True
    )
    attr = torch.rand(1, 3, 2, dtype=F64, requires_grad=True)

    def f(clip, attr):
        r = rasterize(clip, TRI, (5, 6))
        return interpolate(attr, r, TRI), torch.where(r.mask, r.depth, torch.zeros_like(r.depth))

    assert torch.autograd.gradcheck(f, (clip, attr))


def test_euler_rotation_conventions():
    r = euler_rotation(torch.tensor([[0.3, -0.7, 1.1]], dtype=F64))[0]
    assert torch.allclose(r @ r.T, torch.eye(3, dtype=F64)) and math.isclose(torch.det(r), 1.0)
    forward = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    yaw = euler_rotation(torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=F64))[0]
    assert torch.allclose(yaw @ forward, torch.tensor([1.0, 0, 0], dtype=F64), atol=1e-12)
    pitch = euler_rotation(torch.tensor([[math.pi / 2, 0.0, 0.0]], dtype=F64))[0]
    assert torch.allclose(pitch @ forward, torch.tensor([0.0, -1, 0], dtype=F64), atol=1e-12)


def test_camera_projection_agrees_with_clip_coordinates():
    pts = model_to_camera(
        torch.tensor([[[0.2, 0.5, 0.1], [-0.3, -0.4, 0.3]]], dtype=F64),
        torch.zeros(1, 3, dtype=F64),
        torch.tensor([[0.1, 0.0, 5.0]], dtype=F64),
    )
    # Zero pose: x kept, y and z flipped (model +y up -> image up; +z towards the camera), then translated.
    assert torch.allclose(pts[0, 0], torch.tensor([0.3, -0.5, 4.9], dtype=F64))
    focal, principal = torch.tensor([100.0], dtype=F64), torch.tensor([[40.0, 30.0]], dtype=F64)
    clip = perspective(pts, focal, (60, 80), principal)
    ndc = clip[..., :2] / clip[..., 3:]
    pixels = (ndc + 1) / 2 * torch.tensor([80.0, 60.0], dtype=F64)
    assert torch.allclose(pixels, project(pts, focal, principal))
    assert torch.allclose(
        project(pts, focal, principal)[0, 0], torch.tensor([40 + 100 * 0.3 / 4.9, 30 - 100 * 0.5 / 4.9], dtype=F64)
    )


def test_gradcheck_camera_and_light():
    verts = torch.rand(1, 4, 3, dtype=F64, requires_grad=True)
    pose = torch.tensor([[0.1, -0.2, 0.3]], dtype=F64, requires_grad=True)
    trans = torch.tensor([[0.1, 0.2, 6.0]], dtype=F64, requires_grad=True)
    focal = torch.tensor([50.0], dtype=F64, requires_grad=True)

    def cam(v, p, t, f):
        return perspective(model_to_camera(v, p, t), f, (32, 48))

    assert torch.autograd.gradcheck(cam, (verts, pose, trans, focal))
    albedo = torch.rand(1, 5, 3, dtype=F64, requires_grad=True)
    normals = torch.tensor([[[0.0, 0.1, -1.0]] * 5], dtype=F64) + 0.1 * torch.rand(1, 5, 3, dtype=F64)
    normals.requires_grad_(True)
    points = (torch.rand(1, 5, 3, dtype=F64) + torch.tensor([0.0, 0.0, 5.0], dtype=F64)).requires_grad_(True)
    light = [
        torch.tensor([[0.5, -1.0, -2.0]], dtype=F64),
        torch.tensor([[0.9, 0.8, 0.7]], dtype=F64),
        torch.tensor([[0.2, 0.25, 0.3]], dtype=F64),
    ]
    light = [x.view(1, 1, 3).requires_grad_(True) for x in light]
    assert torch.autograd.gradcheck(lambda a, n, p, *lt: lambertian(a, n, p, *lt), (albedo, normals, points, *light))
    # Hand value: a point facing the light straight on gets albedo * (ambient + colour).
    out = lambertian(
        torch.ones(1, 1, 3),
        torch.tensor([[[0.0, 0.0, -1.0]]]),
        torch.zeros(1, 1, 3),
        torch.tensor([[[0.0, 0.0, -3.0]]]),
        torch.full((1, 1, 3), 0.6),
        torch.full((1, 1, 3), 0.3),
    )
    assert torch.allclose(out, torch.full((1, 1, 3), 0.9))


def test_vertex_normals_of_a_tetrahedron_point_outwards_and_gradcheck():
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=F64)
    tris = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    n = vertex_normals(v, tris)
    assert torch.all((n * (v - v.mean(1, keepdim=True))).sum(-1) > 0)
    # By hand: vertex 0 sums the three axis faces' normals -(1,0,0) -(0,1,0) -(0,0,1); vertex 3 sums
    # (0,-1,0), (-1,0,0) and the slanted face's (1,1,1): (0, 0, 1).
    assert torch.allclose(n[0, 0], torch.full((3,), -1 / math.sqrt(3), dtype=F64))
    assert torch.allclose(n[0, 3], torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    assert torch.autograd.gradcheck(lambda x: vertex_normals(x, tris), (v.clone().requires_grad_(True),))


def test_gradcheck_render_mesh_end_to_end():
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=F64) - 0.3
    tris = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    colors = torch.rand(1, 4, 3, dtype=F64)
    camera = torch.tensor([[0.0, 0.0, 4.0, 0.2, 0.5, 0.1, 18.0]], dtype=F64)
    light = torch.tensor([[1.0, -2.0, -1.0, 0.8, 0.7, 0.6, 0.2, 0.2, 0.25]], dtype=F64)
    inputs = tuple(x.clone().requires_grad_(True) for x in (verts, colors, camera, light))
    out = render_mesh(*inputs[:1], tris, *inputs[1:], (8, 8))
    assert out.mask.sum() >= 12 and len(out.raster.tri_id.unique()) >= 3  # pixels inside several triangles
    assert torch.autograd.gradcheck(lambda v, c, cam, lt: render_mesh(v, tris, c, cam, lt, (8, 8)).image, inputs)


def test_front_on_template_has_its_landmarks_where_their_vertices_project():
    template = build_template()
    params = FaceParams()
    verts = torch.from_numpy(face_shape(template, params))[None]
    colors = torch.from_numpy(vertex_albedo(template, params))[None]
    tris = torch.from_numpy(np.array(template.triangles))
    h = w = 160
    camera = torch.tensor([[0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 400.0]], dtype=F64)
    light = torch.tensor([[0.0, 0.0, 0.0, 0.6, 0.6, 0.6, 0.4, 0.4, 0.4]], dtype=F64)
    out = render_mesh(verts, tris, colors, camera, light, (h, w), near=5.0, far=15.0)
    cam_pts = model_to_camera(verts, camera[:, 3:6], camera[:, :3])
    lm_px = project(
        cam_pts[:, np.array(template.landmark_ids)], camera[:, 6], torch.tensor([[w / 2, h / 2]], dtype=F64)
    )[0]
    # RetinaFace order on the image: landmark 0 (the subject's right eye) is image-left.
    assert lm_px[0, 0] < lm_px[2, 0] < lm_px[1, 0] and lm_px[3, 0] < lm_px[4, 0]
    assert lm_px[0, 1] < lm_px[2, 1] < lm_px[3, 1]
    # The surface seen at each landmark's pixel is the landmark's neighbourhood: its interpolated feature
    # coordinates are within 1.5 pixels of the landmark's (focal 400 px at distance ~10: ~40 px per unit).
    coords = torch.from_numpy(np.array(template.coords))[None]
    feat = interpolate(coords, out.raster, tris)[0]
    unit_px = 400.0 / 10.0  # pixels per model unit at the face
    for k, (x, y) in enumerate(lm_px.numpy()):
        i, j = math.floor(y), math.floor(x)
        assert out.mask[0, i, j]
        np.testing.assert_allclose(feat[i, j, :2].numpy(), LANDMARK_XY[k], atol=1.5 / unit_px)
    # The rasterized depth there matches the landmark's own depth.
    depth_ndc = perspective(cam_pts[:, np.array(template.landmark_ids)], camera[:, 6], (h, w), None, 5.0, 15.0)
    z = (depth_ndc[..., 2] / depth_ndc[..., 3])[0]
    for k, (x, y) in enumerate(lm_px.numpy()):
        assert abs(out.raster.depth[0, math.floor(y), math.floor(x)] - z[k]) < 5e-3


def test_unknown_backend_is_a_clear_error():
    assert backend("torch").rasterize is rasterize
    with pytest.raises(RetinaError, match="unknown renderer backend"):
        backend("opengl")


def test_renders_a_user_mesh_loaded_from_obj():
    from retina.mesh import load_obj
    from tests.conftest import shared_file

    mesh = load_obj(shared_file("mesh/mediapipe/canonical_face_model.obj"))
    v = torch.from_numpy(mesh.vertices - mesh.vertices.mean(0))[None]
    v = v / v.abs().max()  # about unit size; MediaPipe's +z faces the viewer like the template's
    tris = torch.from_numpy(mesh.triangles)
    camera = torch.tensor([[0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 60.0]], dtype=F64)
    light = torch.tensor([[0.0, 0.0, 0.0, 0.7, 0.7, 0.7, 0.3, 0.3, 0.3]], dtype=F64)
    out = render_mesh(v, tris, torch.full_like(v, 0.8), camera, light, (64, 64), near=2.0, far=8.0)
    # The face covers a compact region around the image centre, lit from the camera.
    ys, xs = out.mask[0].nonzero(as_tuple=True)
    assert 200 < len(ys) < 64 * 64 and abs(xs.double().mean() - 32) < 6 and abs(ys.double().mean() - 32) < 8
    assert out.image[0][out.mask[0]].mean() > 0.3
