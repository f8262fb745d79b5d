"""DCNv2 (retina.models.dcn): a float64 reference from the definition, gradcheck, zero-init == plain conv, and
the ``neck.dcn`` switch on the paper preset (which convs, forward/backward, BatchNorm folding)."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retina.build import build_detector
from retina.config import preset
from retina.models.dcn import ModulatedDeformConv2d
from retina.models.fuse import fuse_batchnorm


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: with several threads, thread wake-ups dominate (10x slower on a busy 2-core machine, e.g.
    gradcheck's ~1,200 forward passes); one thread keeps every test here around a second."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bilinear_zero_padded(image: np.ndarray, y: float, x: float) -> np.ndarray:
    """image (C, H, W) sampled at the real position (y, x): bilinear over the 4 neighbours, 0 outside."""
    _, h, w = image.shape
    y0, x0 = math.floor(y), math.floor(x)
    out = np.zeros(image.shape[0])
    for yy, wy in ((y0, 1.0 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1.0 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * image[:, yy, xx]
    return out


def _reference(x, offset, mask, weight, bias, stride, padding, dilation):
    """y[b, o, p0] = bias[o] + sum_{c in o's group, k} weight[o, c, k] * mask[b, k, p0] * x[b, c](p0 + p_k + dp_k).

    Offsets: channel 2k is the row (y) shift of tap k, 2k+1 the column (x) shift; taps row-major. All float64 numpy.
    """
    b_, c_in, _, _ = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    groups = c_in // c_per_group
    h_out, w_out = offset.shape[-2:]
    out = np.zeros((b_, c_out, h_out, w_out))
    for b in range(b_):
        for oy in range(h_out):
            for ox in range(w_out):
                cols = np.zeros((c_in, kh, kw))  # modulated samples of every input channel at every tap
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        y = oy * stride - padding + i * dilation + offset[b, 2 * k, oy, ox]
                        xx = ox * stride - padding + j * dilation + offset[b, 2 * k + 1, oy, ox]
                        cols[:, i, j] = mask[b, k, oy, ox] * _bilinear_zero_padded(x[b], y, xx)
                for o in range(c_out):
                    g = o // (c_out // groups)
                    group_cols = cols[g * c_per_group : (g + 1) * c_per_group]
                    out[b, o, oy, ox] = (weight[o] * group_cols).sum() + (bias[o] if bias is not None else 0.0)
    return out


def _randomise_offsets(layer: ModulatedDeformConv2d, gen: torch.Generator, shift: float, weight_scale: float) -> None:
    """Offsets of a few pixels (``shift``: std of the offset biases), enough to sample outside small images."""
    taps = layer.kernel_size[0] * layer.kernel_size[1]
    with torch.no_grad():
        om = layer.offset_mask
        om.weight.copy_(torch.randn(om.weight.shape, generator=gen, dtype=om.weight.dtype) * weight_scale)
        om.bias.copy_(torch.randn(om.bias.shape, generator=gen, dtype=om.bias.dtype))
        om.bias[: 2 * taps] *= shift


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups"),
    [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1), (2, 0, 1, 1)],
)
def test_matches_float64_reference_with_offsets_outside_the_image(stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(stride * 100 + padding * 10 + dilation + groups)
    layer = ModulatedDeformConv2d(4, 6, 3, stride, padding, dilation, groups, bias=True).double()
    _randomise_offsets(layer, gen, shift=3.0, weight_scale=0.5)
    x = torch.randn(2, 4, 6, 7, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        got = layer(x).numpy()
        # Offsets and mask recomputed here from the documented layout: 2K offsets (dy, dx per tap), K mask logits.
        raw = F.conv2d(x, layer.offset_mask.weight, layer.offset_mask.bias, stride, padding, dilation).numpy()
    offset, mask = raw[:, :18], 2.0 / (1.0 + np.exp(-raw[:, 18:]))
    # The random offsets must really exercise the zero padding: some taps sample fully outside the image.
    h = x.shape[-2]
    oy = np.arange(offset.shape[2])[:, None] * stride - padding
    ys = oy + (np.arange(9) // 3 * dilation)[:, None, None] + offset[:, 0::2]
    assert ((ys <= -1) | (ys >= h)).mean() > 0.05
    want = _reference(
        x.numpy(), offset, mask, layer.weight.detach().numpy(), layer.bias.detach().numpy(), stride, padding, dilation
    )
    plain = F.conv2d(x, layer.weight, None, stride, padding, dilation, groups)
    assert got.shape == want.shape == plain.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_offsets_and_mask_follow_the_documented_layout():
    """Every tap's (dy, dx) = (0, +1) with mask 2*sigmoid(0) = 1 is the plain conv of x moved one pixel left."""
    layer = ModulatedDeformConv2d(1, 1, 3, padding=1, bias=False).double()
    with torch.no_grad():
        layer.offset_mask.bias[1:18:2] = 1.0  # every dx = +1 pixel, every dy = 0
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64)
    # Output column c reads x columns c..c+2 instead of c-1..c+1: padding 2 on the right and none on the left.
    shifted = F.pad(x, (0, 2, 1, 1))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.conv2d(shifted, layer.weight), rtol=1e-12, atol=1e-12)


def test_sampling_entirely_outside_gives_the_bias():
    layer = ModulatedDeformConv2d(3, 2, 3, padding=1, bias=True).double()
    with torch.no_grad():
        layer.offset_mask.bias[:18] = 50.0  # every tap 50 px below-right of a 6x6 image
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        out = layer(x)
    torch.testing.assert_close(out, layer.bias.detach().view(1, 2, 1, 1).expand_as(out), rtol=0, atol=0)


def test_gradcheck_input_weight_bias_and_offset_mask_conv():
    gen = torch.Generator().manual_seed(7)
    layer = ModulatedDeformConv2d(2, 2, 3, padding=1, bias=True).double()
    # Non-integer offsets: bilinear sampling has kinks at integer positions, where finite differences disagree.
    _randomise_offsets(layer, gen, shift=1.5, weight_scale=0.3)
    x = torch.randn(1, 2, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    names = ["weight", "bias", "offset_mask.weight", "offset_mask.bias"]
    params = {n: p.detach().clone().requires_grad_(True) for n, p in layer.named_parameters()}
    assert sorted(params) == sorted(names)

    def f(x, *tensors):
        return torch.func.functional_call(layer, dict(zip(names, tensors, strict=True)), (x,))

    assert torch.autograd.gradcheck(f, (x, *(params[n] for n in names)), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize(("stride", "dilation", "groups"), [(1, 1, 1), (2, 1, 2), (1, 2, 1)])
def test_zero_initialised_layer_equals_the_plain_conv(stride, dilation, groups):
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(4, 6, 3, stride, dilation, dilation, groups, bias=True).double()
    assert not layer.offset_mask.weight.any() and not layer.offset_mask.bias.any()
    conv = torch.nn.Conv2d(4, 6, 3, stride, dilation, dilation, groups, bias=True).double()
    conv.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), conv(x), rtol=1e-12, atol=1e-12)
    _randomise_offsets(layer, torch.Generator().manual_seed(1), 1.0, 1.0)
    layer.reset_parameters()  # generic re-initialisation keeps the plain-conv start
    assert not layer.offset_mask.weight.any() and not layer.offset_mask.bias.any()


# --- the neck.dcn switch on the paper preset ------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_models():
    cfg = preset("resnet50-paper")
    torch.manual_seed(0)
    plain = build_detector(cfg)
    torch.manual_seed(0)
    dcn = build_detector(dataclasses.replace(cfg, neck=dataclasses.replace(cfg.neck, dcn=True)))
    return plain, dcn


def test_dcn_switch_makes_exactly_the_merge_and_context_convs_deformable(paper_models):
    plain, dcn = paper_models
    deformable = {n for n, m in dcn.named_modules() if isinstance(m, ModulatedDeformConv2d)}
    branches = ("branch3", "branch5_1", "branch5_2", "branch7_2", "branch7_3")
    expected = {f"fpn.merge.{i}.conv" for i in range(3)}  # P2-P4 merges; P5 has none, P6 (extra) stays plain
    expected |= {f"contexts.{level}.{b}.conv" for level in range(5) for b in branches}
    assert deformable == expected
    assert not any(isinstance(m, ModulatedDeformConv2d) for m in plain.modules())
    # Same names as the plain model plus the offset/mask convs, same shapes: plain weights load into a DCN model.
    plain_state, dcn_state = plain.state_dict(), dcn.state_dict()
    assert set(dcn_state) - set(plain_state) == {f"{n}.offset_mask.{p}" for n in expected for p in ("weight", "bias")}
    assert set(plain_state) <= set(dcn_state)
    assert all(v.shape == dcn_state[k].shape for k, v in plain_state.items())


def test_dcn_paper_model_forward_backward(paper_models):
    _, model = paper_models
    model.train()
    x = torch.randn(2, 3, 48, 48)  # batch 2: training BatchNorm needs 2 values on the 1x1 P6 map
    out = model(x)
    loss = out.logits.square().mean() + out.boxes.square().mean() + out.landmarks.square().mean()
    loss.backward()
    offset_grads = [m.offset_mask.weight.grad for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
    assert len(offset_grads) == 28
    assert all(g is not None and torch.isfinite(g).all() for g in offset_grads)
    assert all(g.abs().sum() > 0 for g in offset_grads)  # the offsets and masks learn from the start
    model.zero_grad(set_to_none=True)


def test_dcn_paper_model_fused_equals_unfused(paper_models):
    model = copy.deepcopy(paper_models[1]).eval().double()
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen, dtype=torch.float64) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen, dtype=torch.float64) + 0.5)
        if isinstance(m, ModulatedDeformConv2d):  # non-trivial offsets, so folding is checked on a real DCN
            _randomise_offsets(m, gen, shift=1.0, weight_scale=1e-3)
    x = torch.randn(1, 3, 33, 41, dtype=torch.float64)  # odd sizes: maps are ceil(size / stride)
    fused = fuse_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert sum(isinstance(m, ModulatedDeformConv2d) for m in fused.modules()) == 28
    with torch.no_grad():
        ref, got = model(x), fused(x)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * float(a.abs().max()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(11)
    layer = ModulatedDeformConv2d(8, 8, 3, padding=1, bias=True).double()
    _randomise_offsets(layer, gen, shift=3.0, weight_scale=0.3)
    x = torch.randn(2, 8, 12, 10, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        cpu = layer(x)
        cuda = layer.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(cuda, cpu, rtol=1e-10, atol=1e-10)
