"""The biubug6 ResNet-50 import, checked against that model's own parameter names and shapes.

The names and shapes below are written out by hand from the biubug6/Pytorch_Retinaface model definition
(``models/retinaface.py`` and ``models/net.py``, cfg_re50): the body is torchvision's ResNet-50 cut after
``layer4`` (layers 2-4 feed the FPN), the FPN has 1x1 ``output1..3`` and 3x3 ``merge1..2`` conv+BN blocks with
256 channels, each SSH has five conv+BN blocks (128 + 4 x 64 channels), and each of the three levels has
1x1 class / box / landmark convs (with bias) for 2 anchors. The file was saved from DataParallel, so every key
starts with ``module.``. Nothing here is derived from our own key mapping.
"""

from __future__ import annotations

import torch

from retina.build import build_detector
from retina.checkpoint import read_checkpoint
from retina.config import preset

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def conv_bn(prefix: str, conv: str, bn: str, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """A bias-free conv ``prefix+conv`` of ``shape`` followed by a BatchNorm ``prefix+bn`` of shape[0] channels."""
    out = {f"{prefix}{conv}.weight": shape}
    for name in BN:
        out[f"{prefix}{bn}.{name}"] = () if name == "num_batches_tracked" else (shape[0],)
    return out


def resnet50_body() -> dict[str, tuple[int, ...]]:
    """torchvision ResNet-50 without avgpool/fc: bottlenecks of widths 64/128/256/512 (x4 out), 3/4/6/3 blocks."""
    names = conv_bn("body.", "conv1", "bn1", (64, 3, 7, 7))
    in_ch = 64
    for layer, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for b in range(blocks):
            p = f"body.layer{layer}.{b}."
            names |= conv_bn(p, "conv1", "bn1", (width, in_ch, 1, 1))
            names |= conv_bn(p, "conv2", "bn2", (width, width, 3, 3))
            names |= conv_bn(p, "conv3", "bn3", (4 * width, width, 1, 1))
            if b == 0:
                names |= conv_bn(p, "downsample.0", "downsample.1", (4 * width, in_ch, 1, 1))
            in_ch = 4 * width
    return names


def biubug6_resnet50() -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer name of biubug6's RetinaFace(cfg_re50) -> its shape."""
    names = resnet50_body()
    for i, in_ch in enumerate((512, 1024, 2048), start=1):
        names |= conv_bn(f"fpn.output{i}.", "0", "1", (256, in_ch, 1, 1))
    for i in (1, 2):
        names |= conv_bn(f"fpn.merge{i}.", "0", "1", (256, 256, 3, 3))
    for i in (1, 2, 3):
        p = f"ssh{i}."
        names |= conv_bn(p + "conv3X3.", "0", "1", (128, 256, 3, 3))
        names |= conv_bn(p + "conv5X5_1.", "0", "1", (64, 256, 3, 3))
        names |= conv_bn(p + "conv5X5_2.", "0", "1", (64, 64, 3, 3))
        names |= conv_bn(p + "conv7X7_2.", "0", "1", (64, 64, 3, 3))
        names |= conv_bn(p + "conv7x7_3.", "0", "1", (64, 64, 3, 3))
    for head, per_anchor in (("ClassHead", 2), ("BboxHead", 4), ("LandmarkHead", 10)):
        for i in range(3):
            names[f"{head}.{i}.conv1x1.weight"] = (2 * per_anchor, 256, 1, 1)
            names[f"{head}.{i}.conv1x1.bias"] = (2 * per_anchor,)
    return names


def fake_file(tmp_path, seed: int = 0):
    """A biubug6-layout Resnet50_Final.pth with distinct random values, and that state dict."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in biubug6_resnet50().items():
        if name.endswith("num_batches_tracked"):
            state[f"module.{name}"] = torch.randint(0, 1000, (), generator=gen)
        else:
            state[f"module.{name}"] = torch.randn(shape, generator=gen)
    path = tmp_path / "Resnet50_Final.pth"
    torch.save(state, path)
    return path, state


def test_hand_written_layout_has_the_known_parameter_count():
    names = biubug6_resnet50()
    # conv+BN pairs (6 names each): body 1 stem + 16 blocks x 3 + 4 downsamples, FPN 5, SSH 15; 9 head convs
    # (weight, bias): 318 + 30 + 90 + 18 = 456 names
    assert len(names) == 456
    params = sum(torch.Size(s).numel() for n, s in names.items() if not n.endswith(("running_mean", "running_var",
                                                                                  "num_batches_tracked")))  # fmt: skip
    # trainable parameters of the shapes above: what our resnet50 preset must hold too
    assert params == sum(p.numel() for p in build_detector(preset("resnet50")).parameters())


def test_every_biubug6_tensor_lands_where_the_model_uses_it(tmp_path):
    path, theirs = fake_file(tmp_path)
    cfg, state, payload = read_checkpoint(path)
    assert cfg == preset("resnet50") and payload["format"] == "biubug6"
    assert len(state) == len(theirs)
    model = build_detector(cfg)
    model.load_state_dict(state, strict=True)  # every name consumed, every shape equal
    t = {k.removeprefix("module."): v for k, v in theirs.items()}
    b = model.backbone
    assert torch.equal(b.stem[0].weight, t["body.conv1.weight"])
    assert torch.equal(b.stem[1].running_var, t["body.bn1.running_var"])
    assert torch.equal(b.layers[1][0].downsample[0].weight, t["body.layer2.0.downsample.0.weight"])
    assert torch.equal(b.layers[3][2].bn3.bias, t["body.layer4.2.bn3.bias"])
    assert torch.equal(model.fpn.lateral[2].conv.weight, t["fpn.output3.0.weight"])  # from layer4 (2048 ch)
    assert torch.equal(model.fpn.merge[0].bn.running_mean, t["fpn.merge1.1.running_mean"])
    assert torch.equal(model.contexts[1].branch7_3.conv.weight, t["ssh2.conv7x7_3.0.weight"])
    assert torch.equal(model.contexts[2].branch3.bn.weight, t["ssh3.conv3X3.1.weight"])
    assert torch.equal(model.cls_head.convs[2].bias, t["ClassHead.2.conv1x1.bias"])
    assert torch.equal(model.landmark_head.convs[0].weight, t["LandmarkHead.0.conv1x1.weight"])
