"""Renderer backend selection and the nvdiffrast backend.

CPU: clear errors (unknown name, extra missing, no CUDA), the plugin import fix, the id encoding, and the
mapping of nvdiffrast's ``rast_out`` to :class:`Raster` against a stand-in written from nvdiffrast's
documented output format. GPU (``-m gpu``, needs CUDA and the ``render`` extra): both backends render the
template face to the same image, mask and gradients.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import numpy as np
import pytest
import torch

from retina.errors import RetinaError
from retina.mesh import FaceParams, build_template, face_shape, vertex_albedo
from retina.render import backend, render_mesh, torch_backend
from retina.render import nvdiffrast_backend as nvb

F64 = torch.float64
TRI = torch.tensor([[0, 1, 2]])
CLIP = torch.tensor([[[-1.0, -1.0, 0.0, 1.0], [1.0, -1.0, 0.5, 1.0], [-1.0, 1.0, -0.5, 1.0]]], dtype=F64)
HAS_CUDA = torch.cuda.is_available()
HAS_NVDR = importlib.util.find_spec("nvdiffrast") is not None


def _fake_nvdiffrast(monkeypatch: pytest.MonkeyPatch, **attrs: object) -> ModuleType:
    """Put stand-in ``nvdiffrast`` / ``nvdiffrast.torch`` modules in sys.modules (undone after the test)."""
    pkg, sub = ModuleType("nvdiffrast"), ModuleType("nvdiffrast.torch")
    for name, value in attrs.items():
        setattr(sub, name, value)
    pkg.torch = sub
    monkeypatch.setitem(sys.modules, "nvdiffrast", pkg)
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch", sub)
    return sub


def test_unknown_backend_lists_both():
    assert backend("torch") is torch_backend
    with pytest.raises(RetinaError, match=r"unknown renderer backend 'opengl' \(available: 'torch', 'nvdiffrast'\)"):
        backend("opengl")


def test_missing_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvdiffrast", None)  # None in sys.modules makes the import fail
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch", None)
    with pytest.raises(RetinaError) as err:
        backend("nvdiffrast")
    assert str(err.value) == nvb.MISSING_EXTRA
    assert "pip install -e .[render]" in str(err.value) and "non-commercial" in str(err.value)
    with pytest.raises(RetinaError, match=r"optional extra"):
        render_mesh(*_tetra(), (8, 8), backend_name="nvdiffrast")


def test_no_cuda_is_a_clear_error(monkeypatch):
    _fake_nvdiffrast(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RetinaError, match=r"^nvdiffrast backend needs a CUDA device"):
        backend("nvdiffrast")
    with pytest.raises(RetinaError, match=r"^nvdiffrast backend needs a CUDA device"):
        nvb.rasterize(CLIP, TRI, (4, 4))


def test_cpu_tensors_are_a_clear_error(monkeypatch):
    _fake_nvdiffrast(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert backend("nvdiffrast") is nvb
    with pytest.raises(RetinaError, match=r"inputs are on cpu"):
        nvb.rasterize(CLIP, TRI, (4, 4))


def test_plugin_missing_from_sys_modules_is_registered_and_retried(monkeypatch):
    name = "nvdiffrast_plugin_0_3_3_1_torch_test"
    calls: list[int] = []

    def get_log_level() -> int:  # what nvdiffrast's _get_plugin does on torch >= 2.9 until registered
        calls.append(1)
        if name not in sys.modules:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return 0

    module = _fake_nvdiffrast(monkeypatch, get_log_level=get_log_level)
    built = ModuleType(name)
    monkeypatch.setattr(nvb, "_import_built", lambda n: built if n == name else None)
    monkeypatch.delitem(sys.modules, name, raising=False)
    nvb._load_plugin(module)
    assert sys.modules[name] is built and len(calls) == 2
    monkeypatch.delitem(sys.modules, name)

    def other_missing() -> int:
        raise ModuleNotFoundError("No module named 'numpy_x'", name="numpy_x")

    with pytest.raises(ModuleNotFoundError, match="numpy_x"):  # anything else is not ours to hide
        nvb._load_plugin(_fake_nvdiffrast(monkeypatch, get_log_level=other_missing))


def test_unbuilt_plugin_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    with pytest.raises(RetinaError, match=r"nvdiffrast plugin nvdiffrast_plugin_x was not built"):
        nvb._import_built("nvdiffrast_plugin_x")


def test_triangle_id_channel_round_trips():
    ids = torch.tensor([-1, 0, 1, 41, (1 << 24) - 1, 1 << 24, (1 << 24) + 5, 100_000_000])
    enc = nvb._encode_ids(ids)
    # By hand: id + 1 as a float value up to 2**24, background (-1) is 0.
    assert enc[:5].tolist() == [0.0, 1.0, 2.0, 42.0, float(1 << 24)]
    assert torch.equal(nvb._decode_ids(enc), ids)


# --- the rast_out mapping, against a CPU stand-in of nvdiffrast's documented output ---------------------


def _stand_in_rasterize(ctx, pos, tri, resolution, grad_db=True):
    """(u, v, z/w, id + 1) from the torch backend: u, v weigh vertices 0 and 1 (nvdiffrast docs)."""
    assert pos.dtype == torch.float32 and tri.dtype == torch.int32 and tri.is_contiguous() and not grad_db
    r = torch_backend.rasterize(pos, tri, resolution)
    depth = torch.where(r.mask, r.depth, torch.zeros_like(r.depth))
    rast = torch.cat([r.bary[..., :2], depth[..., None], (r.tri_id + 1).float()[..., None]], -1)
    return rast, rast[..., :0]


def _stand_in_interpolate(attr, rast, tri):
    """Documented formula: u a0 + v a1 + (1 - u - v) a2 over triangle id - 1, zero on the background."""
    assert attr.dtype == torch.float32 and attr.dim() == 3 and tri.dtype == torch.int32
    ids = rast[..., 3].long() - 1
    covered = ids >= 0
    b = torch.stack([rast[..., 0], rast[..., 1], 1 - rast[..., 0] - rast[..., 1]], -1) * covered[..., None]
    corners = attr.expand(ids.shape[0], -1, -1)[torch.arange(ids.shape[0])[:, None, None], tri.long()[ids.clamp(min=0)]]
    return (b[..., None] * corners).sum(-2), rast[..., :0]


@pytest.fixture
def stand_in(monkeypatch):
    _fake_nvdiffrast(monkeypatch, rasterize=_stand_in_rasterize, interpolate=_stand_in_interpolate)
    monkeypatch.setattr(nvb, "_cuda_index", lambda t: 0)
    monkeypatch.setattr(nvb, "_context", lambda index: None)


def test_raster_mapping_matches_torch_backend(stand_in):
    clip = torch.tensor(
        [[[-0.9, -0.8, 0.1, 1.0], [0.85, -0.95, 0.2, 1.2], [-0.7, 0.9, -0.1, 0.9], [0.9, 0.9, 0.3, 1.1]]], dtype=F64
    )
    tris = torch.tensor([[0, 1, 2], [1, 3, 2]])
    ref, got = torch_backend.rasterize(clip, tris, (7, 9)), nvb.rasterize(clip, tris, (7, 9))
    assert torch.equal(got.tri_id, ref.tri_id) and got.mask.sum() > 20 and (got.tri_id == 1).any()
    assert got.bary.dtype == F64
    torch.testing.assert_close(got.bary, ref.bary, atol=1e-6, rtol=0)  # float32 inside
    torch.testing.assert_close(got.depth, ref.depth, atol=1e-6, rtol=0)
    attr = torch.rand(1, 4, 5, dtype=F64)
    torch.testing.assert_close(
        nvb.interpolate(attr, got, tris), torch_backend.interpolate(attr, ref, tris), atol=1e-6, rtol=0
    )
    # (V, C) attributes broadcast over the batch.
    torch.testing.assert_close(nvb.interpolate(attr[0], got, tris), nvb.interpolate(attr, got, tris))
    empty = nvb.rasterize(clip, torch.zeros(0, 3, dtype=torch.int64), (3, 3))
    assert not empty.mask.any() and torch.isinf(empty.depth).all()


def test_depth_is_differentiable_through_the_barycentrics(stand_in):
    # nvdiffrast does not differentiate its z/w channel: the backend rebuilds depth from u, v and the clip
    # coordinates, so depth gradients reach pos_clip as in the torch backend.
    clip = CLIP.clone()
    clip[0, 2] *= 2.0  # w = 2 on one vertex: the perspective-correct path
    a, b = clip.clone().requires_grad_(True), clip.clone().requires_grad_(True)
    ref, got = torch_backend.rasterize(a, TRI, (4, 4)), nvb.rasterize(b, TRI, (4, 4))
    w = torch.rand(1, 4, 4, dtype=F64)
    (ref.depth[ref.mask] * w[ref.mask]).sum().backward()
    (got.depth[got.mask] * w[got.mask]).sum().backward()
    torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-5)


# --- GPU: both backends on the template face ----------------------------------------------------------


def _gpu(test):
    """Mark a test ``gpu`` and skip it, with the reason, without CUDA or without nvdiffrast."""
    test = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")(test)
    test = pytest.mark.skipif(not HAS_NVDR, reason="needs nvdiffrast: pip install -e .[render]")(test)
    return pytest.mark.gpu(test)


def _tetra() -> tuple[torch.Tensor, ...]:
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]]) - 0.3
    tris = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    camera = torch.tensor([[0.0, 0.0, 4.0, 0.2, 0.5, 0.1, 18.0]])
    light = torch.tensor([[1.0, -2.0, -1.0, 0.8, 0.7, 0.6, 0.2, 0.2, 0.25]])
    return verts, tris, torch.rand(1, 4, 3), camera, light


def face_scene(device: str, size: int = 128) -> dict[str, object]:
    """The template face, slightly turned, lit from the side: float32 tensors on ``device``."""
    template = build_template()
    params = FaceParams()
    verts = torch.from_numpy(face_shape(template, params)).float()[None]
    colors = torch.from_numpy(vertex_albedo(template, params)).float()[None]
    tris = torch.from_numpy(np.array(template.triangles))
    camera = torch.tensor([[0.05, -0.1, 10.0, 0.1, 0.25, -0.05, 4.0 * size]])
    light = torch.tensor([[2.0, -1.0, 0.0, 0.6, 0.6, 0.55, 0.35, 0.35, 0.4]])
    return {
        "vertices": verts.to(device),
        "tris": tris.to(device),
        "colors": colors.to(device),
        "camera": camera.to(device),
        "light": light.to(device),
        "resolution": (size, size),
        "near": 5.0,
        "far": 15.0,
    }


@_gpu
def test_gpu_one_triangle_by_hand():
    # The hand case of test_render.py: centres with i + j < 3 are strictly inside (on the hypotenuse the
    # fill rules may differ), depth 0.25 x - 0.25 y, weights (0.75, 0.125, 0.125) at pixel (0, 0).
    r = nvb.rasterize(CLIP.float().cuda(), TRI.cuda(), (4, 4))
    i, j = np.indices((4, 4))
    inside = torch.from_numpy(i + j < 3).cuda()
    assert torch.all(r.tri_id[0][inside] == 0) and torch.all(r.tri_id[0][torch.from_numpy(i + j > 3).cuda()] == -1)
    x, y = (2 * j + 1) / 4 - 1, (2 * i + 1) / 4 - 1
    depth = torch.from_numpy(0.25 * x - 0.25 * y).float().cuda()
    torch.testing.assert_close(r.depth[0][inside], depth[inside], atol=1e-6, rtol=0)
    torch.testing.assert_close(r.bary[0, 0, 0].cpu(), torch.tensor([0.75, 0.125, 0.125]), atol=1e-6, rtol=0)


@_gpu
def test_gpu_backends_render_the_same_face():
    scene = face_scene("cuda")
    ref, got = (render_mesh(**scene, backend_name=name) for name in ("torch", "nvdiffrast"))
    agree = (ref.mask == got.mask).float().mean().item()
    both = ref.mask & got.mask
    assert ref.mask.sum() > 0.2 * ref.mask.numel() and agree >= 0.99, agree
    mad = (ref.image - got.image).abs()[both].mean().item()
    assert mad < 1 / 255, mad
    same_id = (ref.raster.tri_id == got.raster.tri_id)[both].float().mean().item()
    assert same_id >= 0.99, same_id


@_gpu
def test_gpu_backends_give_the_same_gradients():
    # Neither backend differentiates coverage (no antialias): position gradients come from the
    # barycentrics of covered pixels and the shading, colour gradients from interpolation.
    scene = face_scene("cuda")
    weights = torch.rand((1, *scene["resolution"], 3), generator=torch.Generator().manual_seed(0)).cuda()
    grads = {}
    for name in ("torch", "nvdiffrast"):
        verts = scene["vertices"].clone().requires_grad_(True)
        colors = scene["colors"].clone().requires_grad_(True)
        out = render_mesh(**{**scene, "vertices": verts, "colors": colors}, backend_name=name)
        (out.image * weights).sum().backward()
        grads[name] = (verts.grad.flatten(), colors.grad.flatten())
    for k, what in enumerate(("positions", "colours")):
        a, b = grads["torch"][k], grads["nvdiffrast"][k]
        cos = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0).item()
        assert cos >= 0.99, (what, cos)
