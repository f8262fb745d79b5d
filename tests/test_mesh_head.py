"""The dense branch's optional mesh head (HeadCfg.mesh): off changes nothing, on adds 144 values per anchor."""

import dataclasses
import math

import pytest
import torch

from retina.build import build_detector
from retina.config import DetectorCfg, config_hash, from_dict, preset, to_dict
from retina.models.detector import MeshPredictions, Predictions
from retina.models.heads import DEFAULT_CAMERA, DEFAULT_LIGHT, MESH_OUTPUTS, MeshHead, split_mesh
from retina.priors import make_priors

# config_hash of the presets before HeadCfg.mesh existed (computed on commit 3e27fd3).
HASHES_BEFORE = {
    "mobilenet0.25": "b3b5173f282f",
    "resnet50": "6195af27e145",
    "resnet50-paper": "3e31cf87cd99",
    "resnet152-paper": "55bb3cd13e1c",
}
MESH_PRESETS = {"mobilenet0.25-mesh": "mobilenet0.25", "resnet50-paper-mesh": "resnet50-paper"}


def _build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_detector(preset(name)).eval()


@pytest.mark.parametrize("name", sorted(HASHES_BEFORE))
def test_switch_off_keeps_configs_and_hashes(name):
    cfg = preset(name)
    assert cfg.head.mesh is False
    assert "mesh" not in to_dict(cfg)["head"]
    assert config_hash(cfg) == HASHES_BEFORE[name]
    # A config written before the field existed (no "mesh" key) reads back as mesh off.
    assert from_dict(DetectorCfg, to_dict(cfg)) == cfg


@pytest.mark.parametrize("name,base", sorted(MESH_PRESETS.items()))
def test_mesh_presets_differ_from_their_base_only_in_the_switch(name, base):
    cfg = preset(name)
    assert cfg.head.mesh is True and to_dict(cfg)["head"]["mesh"] is True
    assert dataclasses.replace(cfg, name=base, head=dataclasses.replace(cfg.head, mesh=False)) == preset(base)
    assert from_dict(DetectorCfg, to_dict(cfg)) == cfg and config_hash(cfg) != config_hash(preset(base))


def test_switch_off_model_is_the_detector():
    plain, mesh = _build("mobilenet0.25"), _build("mobilenet0.25-mesh")
    assert not hasattr(plain, "mesh_head") and not hasattr(plain, "mesh_decoder")
    plain_keys, mesh_keys = list(plain.state_dict()), list(mesh.state_dict())
    # Same module construction order, so the same seed gives the same detector weights; the mesh head and the
    # decoder (built under a forked RNG) come last.
    assert mesh_keys[: len(plain_keys)] == plain_keys
    extra = mesh_keys[len(plain_keys) :]
    head = [k for k in extra if k.startswith("mesh_head.")]
    assert len(head) == 2 * 3  # weight + bias per level (biubug6: one conv per level)
    assert all(k.startswith("mesh_decoder.") for k in extra if k not in head)
    assert list(mesh.mesh_decoder.state_dict()) == [k.removeprefix("mesh_decoder.") for k in extra if k not in head]
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(mesh.state_dict()[name], value, rtol=0, atol=0)
    x = torch.randn(2, 3, 37, 50)
    with torch.no_grad():
        out, out_mesh = plain(x), mesh(x)
    assert type(out) is Predictions and len(out) == 3
    assert type(out_mesh) is MeshPredictions
    for a, b in zip(out, out_mesh.detection(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(MESH_PRESETS))
def test_output_shapes_and_anchor_count(name):
    cfg = preset(name)
    model = _build(name)
    hw = (37, 50)
    with torch.no_grad():
        out = model(torch.randn(2, 3, *hw))
    anchors = len(make_priors(hw, cfg.priors.strides, cfg.priors.sizes))
    assert out.logits.shape == (2, anchors, 2) and out.boxes.shape == (2, anchors, 4)
    assert out.landmarks.shape == (2, anchors, 10)
    assert out.mesh_code.shape == (2, anchors, 128)
    assert out.mesh_camera.shape == (2, anchors, 7)
    assert out.mesh_light.shape == (2, anchors, 9)


@pytest.mark.parametrize("name", sorted(MESH_PRESETS))
def test_initial_camera_and_light_are_the_defaults(name):
    model = _build(name)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 40, 40) * 50)
    n = out.mesh_camera.shape[1]
    assert torch.equal(out.mesh_camera[0], torch.tensor(DEFAULT_CAMERA).expand(n, 7))
    assert torch.equal(out.mesh_light[0], torch.tensor(DEFAULT_LIGHT).expand(n, 9))
    assert out.mesh_code.std() > 0  # the code rows keep a random initialisation: anchors differ


def test_shared_and_per_level_parameter_counts():
    channels, anchors, levels = 64, 2, 3
    per_conv = channels * anchors * 144 + anchors * 144  # 1x1 conv weight + bias
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(MeshHead(channels, anchors, levels, shared=False)) == levels * per_conv == 56_160
    assert count(MeshHead(channels, anchors, levels, shared=True)) == per_conv == 18_720
    # In the presets: mobilenet0.25-mesh has one conv per level (64 ch, 2 anchors, 3 levels),
    # resnet50-paper-mesh one shared conv (256 ch, 3 anchors) for its 5 levels.
    assert count(_build("mobilenet0.25-mesh").mesh_head) == 56_160
    assert count(_build("resnet50-paper-mesh").mesh_head) == 256 * 3 * 144 + 3 * 144 == 111_024


def test_gradients_reach_the_mesh_head_and_the_backbone():
    model = _build("mobilenet0.25-mesh").train()
    out = model(torch.randn(2, 3, 48, 48))
    (out.mesh_code.square().mean() + out.mesh_camera.sum() + out.mesh_light.sum()).backward()
    for conv in model.mesh_head.convs:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
        assert conv.bias.grad.abs().sum() > 0
    # Camera and light rows start with zero weights, yet they get gradients (so they learn).
    assert model.mesh_head.convs[0].weight.grad.view(2, MESH_OUTPUTS, -1)[:, 128:].abs().sum() > 0
    # The code rows pass gradients on to the shared features.
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    assert model.cls_head.convs[0].weight.grad is None  # detection heads untouched by a mesh-only loss


def test_split_mesh_order_by_hand():
    mesh = torch.arange(2 * 144.0).view(1, 2, 144)
    code, camera, light = split_mesh(mesh)
    assert code.shape == (1, 2, 128) and camera.shape == (1, 2, 7) and light.shape == (1, 2, 9)
    assert camera[0, 1].tolist() == [272.0 + k for k in range(7)]  # anchor 1 starts at 144; camera at +128
    assert light[0, 0].tolist() == [135.0 + k for k in range(9)]
    assert code.data_ptr() == mesh.data_ptr()  # views, no copy


def test_default_camera_and_light_render_the_face_region_in_a_112_crop():
    from retina.mesh import build_template
    from retina.mesh.hierarchy import face_region
    from retina.render import render_mesh

    template = build_template()
    ids, tris = face_region(template)
    verts = torch.from_numpy(template.vertices[ids])[None]
    camera = torch.tensor([DEFAULT_CAMERA], dtype=torch.float64)
    light = torch.tensor([DEFAULT_LIGHT], dtype=torch.float64)
    out = render_mesh(verts, torch.from_numpy(tris), torch.full_like(verts, 0.5), camera, light, (112, 112))
    ys, xs = out.mask[0].nonzero(as_tuple=True)
    # Centred in the crop, not clipped by it, and most of it: rows 7-100, columns 16-95 (measured).
    assert ys.min() > 0 and xs.min() > 0 and ys.max() < 111 and xs.max() < 111
    assert abs(float(ys.min() + ys.max()) / 2 - 56) < 4 and abs(float(xs.min() + xs.max()) / 2 - 56) < 1
    assert 85 <= int(ys.max() - ys.min()) <= 100 and 70 <= int(xs.max() - xs.min()) <= 90
    # Lit from the camera with colour + ambient = 1: a surface facing the camera shows its albedo.
    # (The brightest sampled pixel faces the light to within a few degrees: 0.4983 measured.)
    brightest = float(out.image[0][out.mask[0]].max())
    assert 0.495 < brightest <= 0.5 + 1e-12


def test_onnx_export_refuses_the_mesh_head(tmp_path):
    from retina.build import build_detector
    from retina.config import preset
    from retina.errors import RetinaError
    from retina.onnx import export_onnx

    cfg = preset("mobilenet0.25-mesh")
    with pytest.raises(RetinaError, match="mesh head"):
        export_onnx(build_detector(cfg), cfg, tmp_path / "m.onnx")


def test_mesh_parameters_zero_gives_defaults_and_stays_in_range():
    from retina.models.heads import CAMERA_RANGE, mesh_parameters

    camera, light = mesh_parameters(torch.zeros(2, 7), torch.zeros(2, 9))
    assert torch.equal(camera, torch.tensor([DEFAULT_CAMERA] * 2))
    assert torch.equal(light, torch.tensor([DEFAULT_LIGHT] * 2))
    big = torch.full((1, 7), 1e6)
    camera, light = mesh_parameters(
        torch.cat([big, -big]), torch.cat([big[:, :1].expand(1, 9), -big[:, :1].expand(1, 9)])
    )
    span = torch.tensor(CAMERA_RANGE)
    torch.testing.assert_close(camera[0], torch.tensor(DEFAULT_CAMERA) + span)
    torch.testing.assert_close(camera[1], torch.tensor(DEFAULT_CAMERA) - span)
    assert camera[:, 2].min() > 0 and camera[:, 6].min() > 0  # in front of the camera, positive focal
    colours = light[:, 3:]
    assert torch.isfinite(light).all() and colours.min() > 0  # colours never negative
    # By hand: depth raw atanh(0.5) -> 10 + 2 * 0.5 = 11; light colour raw atanh(0.5) -> 0.6 * e^1.
    raw = torch.zeros(1, 7)
    raw[0, 2] = math.atanh(0.5)
    raw_light = torch.zeros(1, 9)
    raw_light[0, 3] = math.atanh(0.5)
    camera, light = mesh_parameters(raw, raw_light)
    assert math.isclose(camera[0, 2].item(), 11.0, rel_tol=1e-6)
    assert math.isclose(light[0, 3].item(), 0.6 * math.e, rel_tol=1e-6)


def test_mesh_parameters_gradcheck():
    from retina.models.heads import mesh_parameters

    raw_camera = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    raw_light = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c, l: mesh_parameters(c, l), (raw_camera, raw_light))
