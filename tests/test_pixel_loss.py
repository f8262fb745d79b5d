"""The dense branch's pixel loss: crops, photometric L1, face selection, robustness, gradients, engine wiring."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import Tensor, nn
from torchvision.ops import box_convert, box_iou

from retina.checkpoint import read_checkpoint
from retina.config import AugmentCfg, LossCfg, PixelCfg, TrainCfg, preset
from retina.data.dataset import SplitPaths, Target
from retina.dense.crops import CANONICAL_CROP, crop_camera, crop_images, crop_to_image, square_crops
from retina.dense.pixel import FaceSelection, photometric_l1, pixel_loss, select_faces
from retina.engine import RunSpec, train
from retina.errors import RetinaError
from retina.losses import assign
from retina.matching import POSITIVE
from retina.models.detector import MeshPredictions
from retina.models.heads import DEFAULT_CAMERA, DEFAULT_LIGHT
from retina.models.mesh_decoder import load_mesh_decoder
from retina.priors import make_priors
from retina.render import render_mesh
from retina.weights import DEFAULT_DECODER
from tests.toy_faces import make_toy_split

F64 = torch.float64
MESH_MODEL = preset("mobilenet0.25-mesh")


# --- helpers -------------------------------------------------------------------------------------------


def _grid_mesh(n: int = 3) -> tuple[Tensor, Tensor]:
    """A bumpy n x n grid (V = n * n, 6) xyz + rgb in the model frame (+z to the viewer), x, y in [-0.5, 0.5],
    and its 2 (n - 1)^2 triangles, counter-clockwise seen from +z."""
    t = torch.linspace(-0.5, 0.5, n, dtype=F64)
    y, x = torch.meshgrid(t, t, indexing="ij")
    z = 0.15 * torch.cos(2.0 * x) * torch.cos(1.5 * y) + 0.05 * x
    rgb = torch.stack([0.5 + 0.4 * x, 0.5 + 0.3 * y, 0.6 - 0.2 * x * y], -1)
    verts = torch.cat([torch.stack([x, y, z], -1), rgb], -1).reshape(-1, 6)
    tris = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            tris += [[a, b, d], [a, d, c]]
    return verts, torch.tensor(tris, dtype=torch.int64)


class LinearDecoder(nn.Module):
    """Stand-in for ``FaceDecoder``: code (K, C) -> base (V, 6) + code @ weight, (K, V, 6); ``triangles`` (T, 3)."""

    def __init__(self, base: Tensor, tris: Tensor, code_dim: int = 128, scale: float = 0.02, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("base", base.clone())
        self.register_buffer("weight", scale * torch.randn(code_dim, base.numel(), generator=g, dtype=base.dtype))
        self.register_buffer("triangles", tris)

    def forward(self, code: Tensor) -> Tensor:
        return self.base.to(code.dtype) + (code @ self.weight.to(code.dtype)).view(code.shape[0], *self.base.shape)


def _pred(code: Tensor, camera: Tensor, light: Tensor) -> MeshPredictions:
    """Mesh predictions (B, A, ...) of the given mesh outputs; the detection outputs are unused by the loss."""
    b, a = code.shape[:2]
    return MeshPredictions(code.new_zeros(b, a, 2), code.new_zeros(b, a, 4), code.new_zeros(b, a, 10),
                           code, camera, light)  # fmt: skip


def _mesh_outputs(b: int, a: int, seed: int = 0, code_scale: float = 0.3) -> tuple[Tensor, Tensor, Tensor]:
    """Leaf tensors code (B, A, 128), camera (B, A, 7) = DEFAULT_CAMERA, light (B, A, 9) = DEFAULT_LIGHT."""
    g = torch.Generator().manual_seed(seed)
    code = (code_scale * torch.randn(b, a, 128, generator=g)).requires_grad_()
    camera = torch.tensor(DEFAULT_CAMERA).repeat(b, a, 1).requires_grad_()
    light = torch.tensor(DEFAULT_LIGHT).repeat(b, a, 1).requires_grad_()
    return code, camera, light


def _image(b: int = 1, size: int = 64, seed: int = 0) -> Tensor:
    """Random uint8 BGR images (B, H, W, 3)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, size, size, 3), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def face_decoder() -> nn.Module:
    return load_mesh_decoder(DEFAULT_DECODER)[0]


# --- 1. crops ------------------------------------------------------------------------------------------


def test_square_crops_by_hand():
    boxes = torch.tensor([[10.0, 20.0, 20.0, 40.0], [0.0, 0.0, 30.0, 10.0]])  # 10 x 20 and 30 x 10
    # centres (15, 30) and (15, 5); sides 1.2 * 20 = 24 and 1.2 * 30 = 36
    expected = torch.tensor([[3.0, 18.0, 27.0, 42.0], [-3.0, -13.0, 33.0, 23.0]])
    torch.testing.assert_close(square_crops(boxes, 1.2), expected)


def _roi_weights(start: int, n: int, width: int) -> Tensor:
    """(n, width): 1-px bins from pixel ``start``, two samples each at +0.25, +0.75 (pixel centres at +0.5):
    each output is 1/8 of the left neighbour, 3/4 of the pixel and 1/8 of the right neighbour."""
    w = torch.zeros(n, width, dtype=F64)
    for j in range(n):
        w[j, start + j - 1] += 0.125
        w[j, start + j] += 0.75
        w[j, start + j + 1] += 0.125
    return w


def test_crop_images_integer_crop_by_hand():
    img = torch.arange(2 * 10 * 12, dtype=F64).view(2, 1, 10, 12) ** 1.5  # not linear: neighbours matter
    crops = torch.tensor([[2.0, 3.0, 6.0, 7.0], [4.0, 1.0, 8.0, 5.0]])  # xyxy: pixels x 2..5 y 3..6; x 4..7 y 1..4
    out = crop_images(img, torch.tensor([0, 1]), crops, 4)
    assert out.shape == (2, 1, 4, 4)
    for k, (x0, y0) in enumerate([(2, 3), (4, 1)]):
        ref = _roi_weights(y0, 4, 10) @ img[k, 0] @ _roi_weights(x0, 4, 12).T
        torch.testing.assert_close(out[k, 0], ref, rtol=1e-12, atol=1e-9)
    # an image linear in x and y: the crop returns exactly the covered pixels
    yy, xx = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing="ij")
    lin = (3.0 * xx + 0.5 * yy + 1.0)[None, None].to(F64)
    out = crop_images(lin, torch.tensor([0]), crops[:1], 4)
    torch.testing.assert_close(out[0, 0], lin[0, 0, 3:7, 2:6])


def test_crop_images_zero_outside_the_image():
    img = torch.rand(1, 3, 8, 8, dtype=F64) + 1.0
    outside = torch.tensor([[-20.0, -20.0, -10.0, -10.0], [9.5, 0.0, 17.5, 8.0], [0.0, 20.0, 8.0, 28.0]])
    out = crop_images(img, torch.zeros(3, dtype=torch.int64), outside, 4)
    assert torch.count_nonzero(out) == 0
    # half outside (x in [-4, 4), 2-px bins, samples at pixel indices -4, -3 | -2, -1 | 0, 1 | 2, 3 along x and
    # 2i, 2i + 1 along y): zero far outside; roi_align takes a sample within one pixel of the border (index -1)
    # as the border pixel, so column 1 is half the border column's two-row mean
    half = crop_images(img, torch.tensor([0]), torch.tensor([[-4.0, 0.0, 4.0, 8.0]]), 4)[0]
    assert torch.count_nonzero(half[..., 0]) == 0
    torch.testing.assert_close(half[..., 1], (img[0, :, 0::2, 0] + img[0, :, 1::2, 0]) / 4)
    torch.testing.assert_close(half[..., 2], img[0, :, :, :2].reshape(3, 4, 2, 2).mean((2, 3)))


def test_crop_camera_scales_only_the_focal():
    camera = torch.tensor([[0.1, -0.2, 10.0, 0.3, -0.4, 0.5, 700.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -56.0]])
    out = crop_camera(camera, 28)  # 28 / 112 = 1/4
    expected = camera.clone()
    expected[:, 6] = torch.tensor([175.0, -14.0])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(crop_camera(camera, CANONICAL_CROP), camera)


def test_crop_to_image_corners_and_centre():
    crops = torch.tensor([[3.0, 18.0, 27.0, 42.0], [-10.0, 5.0, 102.0, 117.0]])  # sides 24 and 112
    points = torch.tensor([[0.0, 0.0], [56.0, 56.0], [112.0, 112.0], [28.0, 84.0]]).expand(2, 4, 2)
    expected = torch.tensor([
        [[3.0, 18.0], [15.0, 30.0], [27.0, 42.0], [9.0, 36.0]],
        [[-10.0, 5.0], [46.0, 61.0], [102.0, 117.0], [18.0, 89.0]],
    ])  # fmt: skip
    torch.testing.assert_close(crop_to_image(points, crops), expected)


# --- 2. photometric L1 ---------------------------------------------------------------------------------


def test_photometric_l1_by_hand():
    rendered = torch.zeros(2, 2, 2, 3)
    target = torch.zeros(2, 2, 2, 3)
    rendered[0, 0, 0] = torch.tensor([0.5, 0.2, 0.1])  # |diff|_1 = 0.8
    target[0, 1, 1] = torch.tensor([1.0, 1.0, 1.0])  # |diff|_1 = 3.0 (an uncovered, black rendered pixel counts)
    rendered[1, 1, 0] = torch.tensor([0.25, 0.0, 0.0])
    target[1, 1, 0] = torch.tensor([0.0, 0.5, 0.0])  # |diff|_1 = 0.75
    out = photometric_l1(rendered, target)
    torch.testing.assert_close(out, torch.tensor([(0.8 + 3.0) / 4, 0.75 / 4]))


def test_photometric_l1_gradcheck():
    g = torch.Generator().manual_seed(1)
    rendered = torch.rand(2, 3, 4, 3, generator=g, dtype=F64, requires_grad=True)
    target = torch.rand(2, 3, 4, 3, generator=g, dtype=F64, requires_grad=True)  # |diff| away from 0 a.s.
    assert torch.autograd.gradcheck(photometric_l1, (rendered, target))


# --- 3. face selection ---------------------------------------------------------------------------------


def _target(boxes: list[list[float]]) -> Target:
    b = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    return Target(b, torch.zeros(len(b), 5, 2), torch.zeros(len(b), dtype=torch.bool))


def test_select_faces_tallest_eligible_with_best_anchor():
    priors = make_priors((128, 128), MESH_MODEL.priors.strides, MESH_MODEL.priors.sizes)
    targets = [
        _target([[10, 10, 30, 40], [60, 60, 70, 70], [40, 20, 100, 90], [70, 5, 90, 25]]),  # h 30, 10, 70, 20
        _target([]),
        _target([[5, 5, 20, 17]]),  # 12 tall: too small
        _target([[0, 0, 64, 64], [64, 64, 112, 112], [10, 70, 40, 100]]),  # h 64, 48, 30
    ]
    assigned = assign(targets, priors, MESH_MODEL.priors.variances, LossCfg())
    sel = select_faces(targets, priors, assigned, PixelCfg(max_faces=2, min_face=16.0))
    assert sel.batch.tolist() == [0, 0, 3, 3]
    chosen = [(0, 2), (0, 0), (3, 0), (3, 1)]  # (image, face): tallest first
    torch.testing.assert_close(sel.boxes, torch.stack([targets[b].boxes[i] for b, i in chosen]))
    anchors_xyxy = box_convert(priors, "cxcywh", "xyxy")
    for k, (b, i) in enumerate(chosen):  # brute force: the owned positive anchor of highest IoU
        best, best_iou = -1, -1.0
        for a in range(len(priors)):
            if assigned.labels[b, a] == POSITIVE and assigned.face_index[b, a] == i:
                iou = float(box_iou(targets[b].boxes[i : i + 1], anchors_xyxy[a : a + 1]))
                if iou > best_iou:
                    best, best_iou = a, iou
        assert best >= 0
        assert int(sel.anchor[k]) == best
    one = select_faces(targets, priors, assigned, PixelCfg(max_faces=1, min_face=16.0))
    assert one.batch.tolist() == [0, 3] and one.anchor.tolist() == sel.anchor[[0, 2]].tolist()
    none = select_faces(targets, priors, assigned, PixelCfg(min_face=100.0))
    assert len(none) == 0 and none.boxes.shape == (0, 4)
    empty = [_target([]), _target([])]
    assert len(select_faces(empty, priors, assign(empty, priors, (0.1, 0.2), LossCfg()), PixelCfg())) == 0


# --- 4. robustness: finite losses and gradients --------------------------------------------------------


def _loss_and_grads(decoder: nn.Module, selection: FaceSelection, camera_fn=None, cfg: PixelCfg | None = None):
    """pixel_loss on a 64-px image with 3 anchors (all DEFAULT_CAMERA / DEFAULT_LIGHT unless ``camera_fn``
    edits the camera) -> (loss, grads of code, camera, light)."""
    code, camera, light = _mesh_outputs(1, 3)
    if camera_fn is not None:
        with torch.no_grad():
            camera_fn(camera)
    loss = pixel_loss(_pred(code, camera, light), _image(), selection, decoder, cfg or PixelCfg(crop_size=32))
    loss.backward()
    return loss, code.grad, camera.grad, light.grad


def _black(selection: FaceSelection, cfg: PixelCfg) -> float:
    """The pixel loss of an all-black rendering (nothing covered): the crops' mean |I|_1."""
    rgb = _image().permute(0, 3, 1, 2).flip(1).float() / 255.0
    crops = crop_images(rgb, selection.batch, square_crops(selection.boxes, cfg.crop_margin), cfg.crop_size)
    target = crops.permute(0, 2, 3, 1)
    return photometric_l1(torch.zeros_like(target), target).sum().item()


def _assert_finite(*tensors: Tensor) -> None:
    for t in tensors:
        assert t is not None and torch.isfinite(t).all()


def test_faces_below_min_face_are_not_rendered_but_stay_in_the_graph(face_decoder):
    priors = make_priors((64, 64), MESH_MODEL.priors.strides, MESH_MODEL.priors.sizes)
    targets = [_target([[10, 10, 22, 22], [40, 40, 50, 52]])]  # 12 and 12 tall
    assigned = assign(targets, priors, MESH_MODEL.priors.variances, LossCfg())
    sel = select_faces(targets, priors, assigned, PixelCfg(min_face=16.0))
    assert len(sel) == 0
    code, camera, light = _mesh_outputs(1, len(priors))
    loss = pixel_loss(_pred(code, camera, light), _image(), sel, face_decoder, PixelCfg())
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    for g in (code.grad, camera.grad, light.grad):
        assert g is not None and torch.count_nonzero(g) == 0


@pytest.mark.parametrize(
    "box",
    [[-100.0, -90.0, -60.0, -50.0], [200.0, 10.0, 260.0, 70.0], [40.0, 40.0, 90.0, 100.0], [-30.0, -30.0, 100.0, 90.0]],
    ids=["left-above", "right", "bottom-right-partly", "larger-than-image"],
)
def test_faces_outside_the_image_give_finite_losses(face_decoder, box):
    sel = FaceSelection(torch.tensor([0]), torch.tensor([1]), torch.tensor([box]))
    loss, *grads = _loss_and_grads(face_decoder, sel)
    _assert_finite(loss, *grads)
    assert loss.item() > 0  # the rendered face differs from the black outside
    assert torch.count_nonzero(grads[1][0, 1]) > 0 and torch.count_nonzero(grads[1][0, [0, 2]]) == 0


def _set(index: int, value: float):
    def edit(camera: Tensor) -> None:
        camera[..., index] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "rendered"),
    [
        (_set(2, 0.0), False),  # the model origin on the camera plane: every vertex behind it
        (_set(2, -10.0), False),  # behind the camera
        (_set(2, 0.5), None),  # straddling the camera plane (mean face z in [0.2, 1.05])
        (_set(6, 0.0), False),  # focal 0: everything projects to the centre, no area
        (_set(6, -700.0), True),  # negative focal: a mirrored face
        (_set(6, 1e-6), None),  # a tiny focal
    ],
    ids=["z0", "z-neg", "z-straddle", "focal0", "focal-neg", "focal-tiny"],
)
def test_degenerate_cameras_give_finite_losses(face_decoder, edit, rendered):
    sel = FaceSelection(torch.tensor([0]), torch.tensor([1]), torch.tensor([[10.0, 10.0, 50.0, 54.0]]))
    loss, *grads = _loss_and_grads(face_decoder, sel, edit)
    _assert_finite(loss, *grads)
    if rendered is not None:  # a rendered face changes the loss from that of a black crop
        assert (abs(loss.item() - _black(sel, PixelCfg(crop_size=32))) > 1e-6) == rendered


class _Collapsed(nn.Module):
    """A FaceDecoder whose output is squashed onto a point (``axes`` = ()) or a line (``axes`` = (0,)) about
    the mean face's centre: xyz = centre + mask * (xyz - centre), colours kept."""

    def __init__(self, decoder: nn.Module, axes: tuple[int, ...]) -> None:
        super().__init__()
        self.decoder = decoder
        self.register_buffer("triangles", decoder.triangles)
        self.register_buffer("keep", torch.tensor([float(i in axes) for i in range(3)]))

    def forward(self, code: Tensor) -> Tensor:
        mesh = self.decoder(code)
        xyz = mesh[..., :3]
        centre = xyz.mean(1, keepdim=True)
        return torch.cat([centre + self.keep * (xyz - centre), mesh[..., 3:]], -1)


@pytest.mark.parametrize("axes", [(), (0,), (1,), (2,)], ids=["point", "line-x", "line-y", "line-z"])
@pytest.mark.parametrize("crop", [31, 32])  # odd: the principal point is a pixel centre
def test_collapsed_meshes_give_finite_losses(face_decoder, axes, crop):
    sel = FaceSelection(torch.tensor([0]), torch.tensor([2]), torch.tensor([[10.0, 10.0, 50.0, 50.0]]))
    loss, *grads = _loss_and_grads(_Collapsed(face_decoder, axes), sel, cfg=PixelCfg(crop_size=crop))
    _assert_finite(loss, *grads)


@pytest.mark.parametrize("crop", [13, 31])
def test_stand_in_line_through_pixel_centres_gives_finite_losses(crop):
    """Collinear triangles along a diagonal through the principal point (a pixel centre at odd sizes): rounding
    can leave them a tiny non-zero area, so they may cover a pixel; the loss and gradients stay finite."""
    n = 30
    t = torch.linspace(-0.5, 0.5, n, dtype=F64)
    verts = torch.stack([t, 0.37 * t, 0 * t, 0.5 + 0 * t, 0.5 + 0 * t, 0.5 + 0 * t], -1)
    tris = torch.stack([torch.arange(n - 2), torch.arange(1, n - 1), torch.arange(2, n)], -1)
    decoder = LinearDecoder(verts.float(), tris, scale=0.0)
    sel = FaceSelection(torch.tensor([0]), torch.tensor([0]), torch.tensor([[10.0, 10.0, 50.0, 50.0]]))
    loss, *grads = _loss_and_grads(decoder, sel, _set(1, 0.0), PixelCfg(crop_size=crop))
    _assert_finite(loss, *grads)


# --- 5. gradients --------------------------------------------------------------------------------------

CROP = 12
BOXES = torch.tensor([[6.0, 4.0, 26.0, 28.0], [20.0, 14.0, 34.0, 30.0]], dtype=F64)


def _grad_setup():
    """Two faces (images 0 and 1, anchors 1 and 0) of a 3-code stand-in decoder (3 x 3 grid), cameras that
    frame the grid at a CROP-px crop with a pose, the default-like lights, random uint8 images."""
    base, tris = _grid_mesh()
    decoder = LinearDecoder(base, tris, code_dim=3, scale=0.05, seed=3)
    g = torch.Generator().manual_seed(5)
    code = 0.5 * torch.randn(2, 2, 3, generator=g, dtype=F64)
    camera = torch.tensor([[0.03, -0.02, 8.0, 0.15, 0.25, 0.1, 700.0], [-0.04, 0.05, 9.0, -0.1, -0.2, 0.3, 650.0]],
                          dtype=F64)[:, None].repeat(1, 2, 1)  # fmt: skip
    light = torch.tensor([[1.0, -2.0, -1.0, 0.7, 0.6, 0.5, 0.3, 0.35, 0.4]], dtype=F64).repeat(2, 2, 1)
    light[1, :, 0] = -1.5
    images = _image(2, 40, seed=7)
    sel = FaceSelection(torch.tensor([0, 1]), torch.tensor([1, 0]), BOXES.float())
    return decoder, code, camera, light, images, sel


def _composed64(decoder, images: Tensor, sel: FaceSelection, cfg: PixelCfg):
    """pixel_loss's computation from the same building blocks, in float64: (code, camera, light) (K, .) -> loss."""
    rgb = images.permute(0, 3, 1, 2).flip(1).to(F64) / 255.0
    target = crop_images(rgb, sel.batch, square_crops(sel.boxes.to(F64), cfg.crop_margin), cfg.crop_size)
    target = target.permute(0, 2, 3, 1)
    s = cfg.crop_size

    def loss(code: Tensor, camera: Tensor, light: Tensor) -> Tensor:
        mesh = decoder(code)
        r = render_mesh(
            mesh[..., :3],
            decoder.triangles,
            mesh[..., 3:],
            crop_camera(camera, s),
            light,
            (s, s),
            antialias=cfg.antialias,
        )
        return photometric_l1(r.image, target).sum()

    return loss


@pytest.mark.parametrize("antialias", [False, True])
def test_render_path_gradcheck_float64(antialias):
    decoder, code, camera, light, images, sel = _grad_setup()
    cfg = PixelCfg(crop_size=CROP, antialias=antialias)
    f = _composed64(decoder, images, sel, cfg)
    b, a = sel.batch, sel.anchor
    inputs = tuple(t[b, a].clone().requires_grad_() for t in (code, camera, light))
    mesh = decoder(inputs[0])
    r = render_mesh(mesh[..., :3], decoder.triangles, mesh[..., 3:], crop_camera(inputs[1], CROP), inputs[2],
                    (CROP, CROP))  # fmt: skip
    covered = r.mask.flatten(1).sum(1)
    assert (covered > 10).all() and (covered < CROP * CROP).all()  # a real face in each crop, not all of it
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("antialias", [False, True])
def test_pixel_loss_matches_the_float64_composition(antialias):
    """pixel_loss computes in float32; its value and gradients match the gradchecked float64 composition."""
    decoder, code, camera, light, images, sel = _grad_setup()
    cfg = PixelCfg(crop_size=CROP, antialias=antialias)
    leaves = [t.float().requires_grad_() for t in (code, camera, light)]
    loss = pixel_loss(_pred(*leaves), images, sel, decoder.float(), cfg)
    loss.backward()
    inputs = tuple(t[sel.batch, sel.anchor].clone().requires_grad_() for t in (code, camera, light))
    ref = _composed64(decoder.double(), images, sel, cfg)(*inputs)
    ref_grads = torch.autograd.grad(ref, inputs)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-7)
    assert all((g != 0).all() for g in ref_grads)  # every code, camera and light entry matters here
    for leaf, g in zip(leaves, ref_grads, strict=True):
        expected = torch.zeros_like(leaf.grad, dtype=F64)
        expected[sel.batch, sel.anchor] = g
        torch.testing.assert_close(leaf.grad.double(), expected, rtol=1e-3, atol=1e-5)


def test_pixel_loss_reads_bgr_images():
    """The target crop is RGB: swapping the image's B and R changes the loss unless the crop is grey."""
    decoder, code, camera, light, images, sel = _grad_setup()
    cfg = PixelCfg(crop_size=CROP)
    pred = _pred(*(t.float() for t in (code, camera, light)))
    grey = images[..., :1].expand(-1, -1, -1, 3).contiguous()
    assert pixel_loss(pred, grey, sel, decoder.float(), cfg) == pixel_loss(
        pred, grey.flip(-1), sel, decoder.float(), cfg
    )
    ref = _composed64(decoder.double(), images, sel, cfg)(*(t[sel.batch, sel.anchor] for t in (code, camera, light)))
    assert math.isclose(pixel_loss(pred, images, sel, decoder.float(), cfg).item(), ref.item(), rel_tol=1e-5)
    assert not math.isclose(pixel_loss(pred, images.flip(-1), sel, decoder.float(), cfg).item(), ref.item(),
                            rel_tol=1e-3)  # fmt: skip


# --- 6. engine -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return SplitPaths.from_root(make_toy_split(tmp_path_factory.mktemp("toy_pixel"), n=4))


def _train(out, toy, w_pixel: float, finetune: bool = False) -> tuple[list[dict], dict]:
    cfg = TrainCfg(recipe="test", batch_size=2, max_iterations=2, lr=0.01, warmup_lr=0.001,
                   augment=AugmentCfg(image_size=64), seed=0, loss=LossCfg(w_pixel=w_pixel),
                   pixel=PixelCfg(crop_size=16, min_face=4.0, finetune_decoder=finetune))  # fmt: skip
    train(MESH_MODEL, cfg, RunSpec(out_dir=out, data=toy, workers=0, checkpoint_every=10, log_every=1, progress=False))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows, read_checkpoint(out / "final.pth")[1]


def _decoder_changed(state: dict) -> bool:
    committed = load_mesh_decoder(DEFAULT_DECODER)[0].state_dict()
    keys = [k for k in committed if k.startswith("decoder.")]
    assert keys and all(f"mesh_decoder.{k}" in state for k in keys)
    return any(not torch.equal(state[f"mesh_decoder.{k}"], committed[k]) for k in keys)


@pytest.mark.slow
def test_engine_trains_with_the_pixel_loss_and_a_frozen_decoder(toy, tmp_path):
    rows, state = _train(tmp_path / "frozen", toy, 0.01)
    assert len(rows) == 2
    for r in rows:
        assert math.isfinite(r["pixel"]) and r["rendered_faces"] >= 1
    assert any(r["pixel"] > 0 for r in rows)
    assert not _decoder_changed(state)


@pytest.mark.slow
def test_engine_finetunes_the_decoder_when_asked(toy, tmp_path):
    rows, state = _train(tmp_path / "finetune", toy, 0.01, finetune=True)
    assert all(math.isfinite(r["pixel"]) for r in rows)
    assert _decoder_changed(state)


@pytest.mark.slow
def test_engine_without_the_pixel_loss_logs_no_pixel(toy, tmp_path):
    rows, _ = _train(tmp_path / "off", toy, 0.0)
    assert rows and all("pixel" not in r and "rendered_faces" not in r for r in rows)


def test_engine_refuses_an_unavailable_renderer_before_training(toy, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the nvdiffrast backend may work")
    cfg = TrainCfg(recipe="test", batch_size=2, max_iterations=1, augment=AugmentCfg(image_size=64))
    spec = RunSpec(out_dir=tmp_path / "r", data=toy, workers=0, progress=False, renderer="nvdiffrast")
    with pytest.raises(RetinaError, match="nvdiffrast backend needs"):
        train(MESH_MODEL, cfg, spec)
    assert not (tmp_path / "r" / "last.pth").exists()


# --- 7. GPU (pytest -m gpu; skipped without CUDA) ------------------------------------------------------

HAS_CUDA = torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["torch", "nvdiffrast"])
def test_gpu_pixel_loss_matches_the_cpu(face_decoder, backend):
    """The pixel loss on CUDA (torch or nvdiffrast rasteriser) equals the CPU torch one, value and gradients."""
    if backend == "nvdiffrast":
        pytest.importorskip("nvdiffrast", reason="needs nvdiffrast: pip install -e .[render]")
    sel = FaceSelection(torch.tensor([0]), torch.tensor([1]), torch.tensor([[10.0, 10.0, 50.0, 54.0]]))
    cfg = PixelCfg(crop_size=64)
    results = []
    for device, name in (("cpu", "torch"), ("cuda", backend)):
        code, camera, light = (t.to(device).detach().requires_grad_() for t in _mesh_outputs(1, 3))
        decoder = copy.deepcopy(face_decoder).to(device)
        s = FaceSelection(*(t.to(device) for t in (sel.batch, sel.anchor, sel.boxes)))
        loss = pixel_loss(_pred(code, camera, light), _image().to(device), s, decoder, cfg, backend=name)
        loss.backward()
        results.append((loss.item(), camera.grad.cpu(), light.grad.cpu()))
    (cpu_loss, *cpu_grads), (gpu_loss, *gpu_grads) = results
    assert math.isclose(cpu_loss, gpu_loss, rel_tol=2e-2)
    for a, b in zip(cpu_grads, gpu_grads, strict=True):
        cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
        assert cos > 0.95
