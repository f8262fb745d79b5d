"""The biubug6 MobileNet-0.25 import, checked against that model's own parameter names, shapes and forward pass.

Written out by hand from the biubug6/Pytorch_Retinaface model definition (``models/net.py``: ``conv_bn``,
``conv_dw``, ``MobileNetV1``; ``models/retinaface.py`` with cfg_mnet): the body's ``stage1`` is a 3x3 stride-2
conv+BN (8 channels) then five depthwise-separable blocks, ``stage2`` six, ``stage3`` two. A block
``conv_dw(inp, oup, stride)`` is ``Sequential(conv 3x3 depthwise, BN(inp), LeakyReLU, conv 1x1, BN(oup),
LeakyReLU)``, so its tensors sit at indices 0, 1 (depthwise) and 3, 4 (pointwise); LeakyReLU slope 0.1. The FPN,
SSH and heads work on 64 channels with 2 anchors per cell. Nothing here is derived from our own key mapping:
the body is run by hand (``biubug6_body``) and compared with our backbone.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from retina.build import build_detector
from retina.checkpoint import read_checkpoint
from retina.config import preset
from tests.test_biubug6_resnet50_import import conv_bn

# (inp, oup, stride) of each conv_dw block, per stage; stage1 starts with conv_bn(3, 8, 2).
BLOCKS = {
    1: [(8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)],
    2: [(64, 128, 2)] + [(128, 128, 1)] * 5,
    3: [(128, 256, 2), (256, 256, 1)],
}


def biubug6_mobilenet() -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer name of biubug6's RetinaFace(cfg_mnet) -> its shape."""
    names = conv_bn("body.stage1.0.", "0", "1", (8, 3, 3, 3))
    for stage, blocks in BLOCKS.items():
        first = 1 if stage == 1 else 0
        for i, (inp, oup, _) in enumerate(blocks, start=first):
            p = f"body.stage{stage}.{i}."
            names |= conv_bn(p, "0", "1", (inp, 1, 3, 3))
            names |= conv_bn(p, "3", "4", (oup, inp, 1, 1))
    for i, in_ch in enumerate((64, 128, 256), start=1):
        names |= conv_bn(f"fpn.output{i}.", "0", "1", (64, in_ch, 1, 1))
    for i in (1, 2):
        names |= conv_bn(f"fpn.merge{i}.", "0", "1", (64, 64, 3, 3))
    for i in (1, 2, 3):
        p = f"ssh{i}."
        names |= conv_bn(p + "conv3X3.", "0", "1", (32, 64, 3, 3))
        names |= conv_bn(p + "conv5X5_1.", "0", "1", (16, 64, 3, 3))
        for name in ("conv5X5_2.", "conv7X7_2.", "conv7x7_3."):
            names |= conv_bn(p + name, "0", "1", (16, 16, 3, 3))
    for head, per_anchor in (("ClassHead", 2), ("BboxHead", 4), ("LandmarkHead", 10)):
        for i in range(3):
            names[f"{head}.{i}.conv1x1.weight"] = (2 * per_anchor, 64, 1, 1)
            names[f"{head}.{i}.conv1x1.bias"] = (2 * per_anchor,)
    return names


def fake_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Distinct random float64 values in the biubug6 layout (BN variances positive, conv scales He-like)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in biubug6_mobilenet().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.randint(0, 1000, (), generator=gen)
        elif name.endswith("running_var") or (name.endswith(".weight") and len(shape) == 1):  # BN scale too
            state[name] = torch.rand(shape, generator=gen, dtype=torch.float64) + 0.5
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=gen, dtype=torch.float64) * (2 / fan_in) ** 0.5
        else:
            state[name] = torch.randn(shape, generator=gen, dtype=torch.float64) * 0.1
    return state


def _conv_bn_act(x, t, prefix, conv, bn, stride, groups=1):
    """biubug6's conv (no bias, padding k // 2) -> BatchNorm (eval) -> LeakyReLU(0.1)."""
    w = t[f"{prefix}{conv}.weight"]
    x = F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups)
    b = lambda k: t[f"{prefix}{bn}.{k}"]  # noqa: E731
    x = F.batch_norm(x, b("running_mean"), b("running_var"), b("weight"), b("bias"), False, 0.0, 1e-5)
    return F.leaky_relu(x, 0.1)


def biubug6_body(x: torch.Tensor, t: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """MobileNetV1 0.25 as biubug6 runs it, straight from the state dict: the outputs of stage1, 2, 3."""
    x = _conv_bn_act(x, t, "body.stage1.0.", "0", "1", 2)
    outs = []
    for stage, blocks in BLOCKS.items():
        first = 1 if stage == 1 else 0
        for i, (inp, _, stride) in enumerate(blocks, start=first):
            p = f"body.stage{stage}.{i}."
            x = _conv_bn_act(x, t, p, "0", "1", stride, groups=inp)  # depthwise
            x = _conv_bn_act(x, t, p, "3", "4", 1)  # pointwise
        outs.append(x)
    return outs


def test_hand_written_layout_has_the_known_size():
    names = biubug6_mobilenet()
    # conv+BN pairs (6 names each): body 1 + 13 blocks x 2, FPN 5, SSH 15; 9 head convs (weight, bias): 300 names,
    # the key count of the released mobilenet0.25_Final.pth
    assert len(names) == 300
    counted = ("running_mean", "running_var", "num_batches_tracked")
    params = sum(torch.Size(s).numel() for n, s in names.items() if not n.endswith(counted))
    assert params == sum(p.numel() for p in build_detector(preset("mobilenet0.25")).parameters())


@pytest.mark.parametrize("prefix", ["", "module."])
def test_body_runs_as_biubug6_runs_it(tmp_path, prefix):
    theirs = fake_state()
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save({prefix + k: v for k, v in theirs.items()}, path)
    cfg, state, payload = read_checkpoint(path)
    assert cfg == preset("mobilenet0.25") and payload["format"] == "biubug6" and len(state) == 300
    model = build_detector(cfg).double().eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        ours = model.backbone(x)
    expected = biubug6_body(x, theirs)
    assert [tuple(o.shape) for o in ours] == [(1, 64, 8, 12), (1, 128, 4, 6), (1, 256, 2, 3)]
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # the neck and heads: a few tensors by hand
    assert torch.equal(model.fpn.lateral[0].conv.weight, theirs["fpn.output1.0.weight"])
    assert torch.equal(model.fpn.merge[1].bn.running_var, theirs["fpn.merge2.1.running_var"])
    assert torch.equal(model.contexts[0].branch5_1.conv.weight, theirs["ssh1.conv5X5_1.0.weight"])
    assert torch.equal(model.contexts[2].branch7_2.bn.bias, theirs["ssh3.conv7X7_2.1.bias"])
    assert torch.equal(model.box_head.convs[1].weight, theirs["BboxHead.1.conv1x1.weight"])
    assert torch.equal(model.landmark_head.convs[2].bias, theirs["LandmarkHead.2.conv1x1.bias"])
