import dataclasses

import pytest
import torch
import torchvision

from retina import Detector
from retina.build import build_detector
from retina.checkpoint import (
    convert_biubug6,
    load_pretrained_backbone,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from retina.config import preset, to_dict
from retina.errors import CheckpointError
from tests.conftest import shared_file

BIUBUG6 = "weights/retinaface_mobilenet0.25_Final.pth"


def test_own_format_round_trip(tmp_path):
    cfg = preset("mobilenet0.25")
    torch.manual_seed(1)
    model = build_detector(cfg)
    path = save_checkpoint(tmp_path / "m.pth", model, cfg, provenance={"seed": 1}, extra={"iteration": 7})
    cfg2, state, payload = read_checkpoint(path)
    assert cfg2 == cfg and payload["provenance"]["seed"] == 1 and payload["extra"]["iteration"] == 7
    model2 = build_detector(cfg2)
    load_weights(model2, state, str(path))
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError, match="not the requested preset"):
        read_checkpoint(path, "resnet50")


def test_strict_loading_names_the_mismatch():
    model = build_detector(preset("mobilenet0.25"))
    state = dict(model.state_dict())
    missing = {k: v for k, v in state.items() if k != "cls_head.convs.0.weight"}
    with pytest.raises(CheckpointError, match=r"1 missing: cls_head\.convs\.0\.weight"):
        load_weights(model, missing, "test")
    with pytest.raises(CheckpointError, match=r"1 unused: extra\.weight"):
        load_weights(model, {**state, "extra.weight": torch.zeros(1)}, "test")
    wrong = {**state, "box_head.convs.1.bias": torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"wrong shape: box_head\.convs\.1\.bias"):
        load_weights(model, wrong, "test")


class _NotAllowed:
    """A class that the weights-only unpickler refuses."""


def test_garbage_and_missing_files_are_one_line_errors(tmp_path):
    def refused(payload, message, raw=False):
        path = tmp_path / f"case{len(list(tmp_path.iterdir()))}.pth"
        path.write_bytes(payload) if raw else torch.save(payload, path)
        with pytest.raises(CheckpointError, match=message) as err:
            read_checkpoint(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
        if not raw:
            with pytest.raises(CheckpointError):
                load_pretrained_backbone(build_detector(preset("mobilenet0.25")), path)

    for raw in (b"\x00garbage", b"", b"these are not weights\n"):
        refused(raw, r"cannot load .*: not a PyTorch weights file \(\w+\)$", raw=True)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pth")
    refused(
        {"model": _NotAllowed()}, r"refers to the Python object tests\.test_checkpoint\._NotAllowed, which is never"
    )
    refused({"foo": torch.zeros(2)}, "neither a retina checkpoint nor a biubug6")
    refused({"state_dict": 3}, "neither a retina checkpoint nor a biubug6")
    refused({1: torch.zeros(1)}, "neither a retina checkpoint nor a biubug6")
    refused(torch.zeros(2), "not a state dict or retina checkpoint")
    refused({"format": "retina", "version": 1, "state_dict": {}}, r"without a valid config \(KeyError\)")
    refused({"format": "retina", "version": 1, "config": {"nme": 1}, "state_dict": {}}, "without a valid config")
    refused({"format": "retina", "version": 2}, "version 2 is not supported")
    config = to_dict(preset("mobilenet0.25"))
    refused({"format": "retina", "version": 1, "config": config}, "without a state dict")


def test_biubug6_import_with_and_without_module_prefix(tmp_path):
    path = shared_file(BIUBUG6)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    cfg, state, _ = read_checkpoint(path)
    assert cfg == preset("mobilenet0.25") and len(state) == len(raw) == 300
    prefixed = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in raw.items()}, prefixed)
    _, state2, _ = read_checkpoint(prefixed, "mobilenet0.25")
    assert all(torch.equal(state[k], state2[k]) for k in state)
    with pytest.raises(CheckpointError, match="not the requested preset 'resnet50'"):
        read_checkpoint(path, "resnet50")
    with pytest.raises(CheckpointError, match="unrecognised keys"):
        convert_biubug6({**raw, "body.extra.0.weight": torch.zeros(1)})
    # a resnet50 model cannot take mobilenet weights: the error lists missing tensors
    with pytest.raises(CheckpointError, match="missing"):
        load_weights(build_detector(preset("resnet50")), state, "mobilenet weights")


def test_biubug6_resnet50_layout_maps_onto_our_resnet50(tmp_path):
    # Build a state dict in the biubug6 resnet50 key layout from our model and import it back.
    model = build_detector(preset("resnet50"))
    ours = model.state_dict()
    reverse = {}
    for k in ours:
        b = k.replace("backbone.stem.0.", "body.conv1.").replace("backbone.stem.1.", "body.bn1.")
        if b.startswith("backbone.layers."):
            _, _, i, rest = b.split(".", 3)
            b = f"body.layer{int(i) + 1}.{rest}"
        for ours_name, theirs in (("lateral", "output"), ("merge", "merge")):
            if b.startswith(f"fpn.{ours_name}."):
                _, _, i, part, rest = b.split(".", 4)
                b = f"fpn.{theirs}{int(i) + 1}.{0 if part == 'conv' else 1}.{rest}"
        reverse[k] = b
    ssh = {"branch3": "conv3X3", "branch5_1": "conv5X5_1", "branch5_2": "conv5X5_2", "branch7_2": "conv7X7_2",
           "branch7_3": "conv7x7_3"}  # fmt: skip
    heads = {"cls_head": "ClassHead", "box_head": "BboxHead", "landmark_head": "LandmarkHead"}
    for k, b in list(reverse.items()):
        if b.startswith("contexts."):
            _, i, branch, part, rest = b.split(".", 4)
            reverse[k] = f"ssh{int(i) + 1}.{ssh[branch]}.{0 if part == 'conv' else 1}.{rest}"
        elif b.split(".")[0] in heads:
            head, _, i, rest = b.split(".", 3)
            reverse[k] = f"{heads[head]}.{i}.conv1x1.{rest}"
    path = tmp_path / "biubug6_r50.pth"
    torch.save({reverse[k]: v for k, v in ours.items()}, path)
    cfg, state, _ = read_checkpoint(path)
    assert cfg == preset("resnet50")
    assert set(state) == set(ours) and all(torch.equal(state[k], ours[k]) for k in ours)


def test_imagenet_backbone_import(tmp_path):
    model = build_detector(preset("mobilenet0.25"))
    path = shared_file("weights/mobilenetV1X0.25_pretrain.tar")
    load_pretrained_backbone(model, path)
    raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(model.backbone.stages[1][0].pw.conv.weight, raw["module.stage2.0.3.weight"])


def test_torchvision_resnet_backbone_import(tmp_path):
    torch.manual_seed(3)
    source = torchvision.models.resnet50(weights=None)
    torch.save(source.state_dict(), tmp_path / "r50.pth")
    cfg = preset("resnet50-paper")
    model = build_detector(cfg)
    load_pretrained_backbone(model, tmp_path / "r50.pth")
    assert torch.equal(model.backbone.layers[3][2].conv3.weight, source.layer4[2].conv3.weight)
    assert torch.equal(model.backbone.stem[1].running_var, source.bn1.running_var)
    with pytest.raises(CheckpointError, match="612 missing: layers"):  # resnet50 weights into a resnet152
        load_pretrained_backbone(build_detector(dataclasses.replace(cfg, backbone=dataclasses.replace(
            cfg.backbone, name="resnet152"))), tmp_path / "r50.pth")  # fmt: skip


def test_backbone_from_a_retina_checkpoint_takes_the_backbone_only(tmp_path):
    cfg = preset("mobilenet0.25")
    torch.manual_seed(0)
    trained = build_detector(cfg)
    path = save_checkpoint(tmp_path / "trained.pth", trained, cfg)
    torch.manual_seed(1)
    fresh = build_detector(cfg)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    load_pretrained_backbone(fresh, path)
    for key, value in fresh.state_dict().items():
        source = trained.state_dict()[key] if key.startswith("backbone.") else before[key]
        assert torch.equal(value, source), key  # backbone copied, FPN, context and heads untouched
    r50 = preset("resnet50")
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_pretrained_backbone(build_detector(r50), path)


def test_detector_from_checkpoint_round_trip(tmp_path):
    cfg = preset("mobilenet0.25")
    model = build_detector(cfg)
    path = save_checkpoint(tmp_path / "m.pth", model, cfg)
    det = Detector.from_checkpoint(path, preset="mobilenet0.25")
    assert det.cfg == cfg
