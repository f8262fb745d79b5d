"""DCN trained as DCN is trained (issue 25): the offset/mask convs in their own SGD group (a learning-rate multiple,
no weight decay, or frozen at zero), their statistics in metrics.jsonl, and the frozen control computing the
plain model's function."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from retina.checkpoint import read_checkpoint
from retina.config import DCN_OFFSET_LR, AugmentCfg, TrainCfg, config_hash, preset, to_dict
from retina.data.dataset import SplitPaths
from retina.engine import RunSpec, initial_model, param_groups, train
from retina.errors import RetinaError
from retina.models.dcn import ModulatedDeformConv2d, OffsetMonitor, offset_parameters
from tests.toy_faces import make_toy_split

PLAIN = preset("mobilenet0.25")
DCN = dataclasses.replace(PLAIN, neck=dataclasses.replace(PLAIN.neck, dcn=True))


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: thread wake-ups would dominate on a busy machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return SplitPaths.from_root(make_toy_split(tmp_path_factory.mktemp("toy")))


def _cfg(**kw):
    base = dict(recipe="test", batch_size=2, max_iterations=3, lr=0.01, warmup_lr=0.001,
                augment=AugmentCfg(image_size=64), seed=0)  # fmt: skip
    return TrainCfg(**{**base, **kw})


def _spec(out, data, **kw):
    return RunSpec(**{"out_dir": out, "data": data, "workers": 0, "checkpoint_every": 100, "log_every": 1,
                      "progress": False, **kw})  # fmt: skip


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_multiplier_leaves_configs_without_it_as_they_were():
    assert "dcn_offset_lr" not in to_dict(TrainCfg()) and config_hash(TrainCfg()) == "71325accc51d"  # paper recipe
    assert to_dict(TrainCfg(dcn_offset_lr=1.0))["dcn_offset_lr"] == 1.0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="dcn_offset_lr"):
            TrainCfg(dcn_offset_lr=bad)


def test_param_groups_plain_dcn_and_frozen():
    plain = initial_model(PLAIN, 0)
    (group,) = param_groups(plain, TrainCfg())
    assert group["params"] == list(plain.parameters())  # one group, every parameter, as before

    model = initial_model(DCN, 0)
    offsets = offset_parameters(model)
    assert len(offsets) == 2 * (2 + 3 * 5)  # weight and bias: 2 FPN merge convs, 5 context convs on each of 3 levels
    main, own = param_groups(model, TrainCfg())
    assert own["params"] == offsets and own["lr_scale"] == DCN_OFFSET_LR and own["weight_decay"] == 0.0
    assert {id(p) for p in main["params"]} == {id(p) for p in model.parameters()} - {id(p) for p in offsets}

    frozen = initial_model(DCN, 0)
    (only,) = param_groups(frozen, TrainCfg(dcn_offset_lr=0.0))
    assert all(not p.requires_grad for p in offset_parameters(frozen))
    assert {id(p) for p in only["params"]}.isdisjoint(id(p) for p in offset_parameters(frozen))


def test_offset_monitor_hand_worked():
    """A 3x3 DCN layer whose offset/mask conv has zero weights and a chosen bias predicts that bias everywhere:
    offsets (dy, dx) per tap = (1, -2) for tap 0 and 0 elsewhere, mask logits 0 except tap 4 at ln 3
    (mask 2 * 3/4 = 1.5) and tap 8 at -ln 3 (mask 0.5)."""
    layer = ModulatedDeformConv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        layer.offset_mask.bias[0], layer.offset_mask.bias[1] = 1.0, -2.0
        layer.offset_mask.bias[18 + 4] = torch.log(torch.tensor(3.0))
        layer.offset_mask.bias[18 + 8] = -torch.log(torch.tensor(3.0))
    monitor = OffsetMonitor(layer)
    layer(torch.randn(2, 2, 5, 5))
    layer(torch.randn(1, 2, 5, 5))
    got = monitor.read()
    assert got["dcn_offset_max"] == 2.0
    assert got["dcn_offset_mean"] == pytest.approx(3.0 / 18, rel=1e-6)  # (1 + 2) over 18 offsets, every position
    assert got["dcn_mask_min"] == pytest.approx(0.5, rel=1e-6) and got["dcn_mask_max"] == pytest.approx(1.5, rel=1e-6)
    assert monitor.read() == {}  # read starts again
    monitor.remove()
    layer(torch.randn(1, 2, 5, 5))
    assert monitor.read() == {}


def test_frozen_offsets_compute_the_plain_models_function():
    """Paired initialisation + offsets 0 and mask 1: the DCN model with frozen offsets is the plain model, in
    training mode (batch statistics) and after an optimiser step on the same batch."""
    plain, dcn = initial_model(PLAIN, 3), initial_model(DCN, 3)
    x = torch.randn(2, 3, 64, 64)
    for a, b in zip(plain(x), dcn(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    opt_a = torch.optim.SGD(param_groups(plain, TrainCfg()), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_b = torch.optim.SGD(param_groups(dcn, TrainCfg(dcn_offset_lr=0.0)), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for model, opt in ((plain, opt_a), (dcn, opt_b)):
        sum(t.square().mean() for t in model(x)).backward()
        opt.step()
    state_a, state_b = plain.state_dict(), dcn.state_dict()
    for k in state_a:
        torch.testing.assert_close(state_a[k], state_b[k], rtol=1e-4, atol=1e-6, msg=k)
    assert all(not state_b[k].any() for k in state_b if ".offset_mask." in k)


@pytest.mark.slow
def test_engine_scales_the_offset_step_and_logs_the_offsets(toy, tmp_path):
    """One iteration from zero offsets: the offset convs' step is -lr * multiplier * gradient, so two multipliers
    give offset weights in their ratio, and every other weight the same; metrics.jsonl has the statistics."""
    runs = {}
    for scale in (1.0, 0.25):
        out = tmp_path / f"s{scale}"
        train(DCN, _cfg(max_iterations=1, dcn_offset_lr=scale), _spec(out, toy))
        _, state, payload = read_checkpoint(out / "final.pth")
        assert payload["provenance"]["dcn_offset_lr"] == scale
        runs[scale] = (state, _metrics(out))
    (a, metrics_a), (b, _) = runs[1.0], runs[0.25]
    moved = [k for k in a if ".offset_mask." in k and a[k].any()]
    assert moved  # the offsets did learn
    for k in a:
        if ".offset_mask." in k:
            torch.testing.assert_close(b[k], 0.25 * a[k], rtol=1e-4, atol=1e-9, msg=k)
        else:
            torch.testing.assert_close(a[k], b[k], msg=k)
    assert metrics_a[0]["dcn_offset_max"] == 0.0 and metrics_a[0]["dcn_mask_min"] == 1.0  # the forward before the step
    assert set(metrics_a[0]) >= {"dcn_offset_max", "dcn_offset_mean", "dcn_mask_min", "dcn_mask_max"}


@pytest.mark.slow
def test_frozen_dcn_run_follows_the_plain_run(toy, tmp_path):
    """The control row through the engine: same seed, same batches, the same losses to float32 precision at first,
    and the offsets stay 0 (mask 1) throughout. Later steps drift apart as any two summation orders of one function
    do in training (the plain model on 1 and on 2 threads differs by ~1% in loss by the third step)."""
    train(PLAIN, _cfg(), _spec(tmp_path / "plain", toy))
    train(DCN, _cfg(dcn_offset_lr=0.0), _spec(tmp_path / "frozen", toy))
    plain, frozen = _metrics(tmp_path / "plain"), _metrics(tmp_path / "frozen")
    assert "dcn_offset_max" not in plain[0]
    assert frozen[0]["loss"] == pytest.approx(plain[0]["loss"], rel=1e-6)
    assert frozen[1]["loss"] == pytest.approx(plain[1]["loss"], rel=1e-4)
    assert all((f["dcn_offset_max"], f["dcn_mask_min"], f["dcn_mask_max"]) == (0.0, 1.0, 1.0) for f in frozen)
    _, state, _ = read_checkpoint(tmp_path / "frozen" / "final.pth")
    assert all(not state[k].any() for k in state if ".offset_mask." in k)


def test_resume_refuses_a_dcn_run_from_before_the_multiplier(toy, tmp_path):
    out = tmp_path / "old"
    train(DCN, _cfg(max_iterations=2), _spec(out, toy, stop_after=1, checkpoint_every=1))
    payload = torch.load(out / "last.pth", weights_only=True)
    del payload["provenance"]["dcn_offset_lr"]  # what a run from before issue 25 wrote
    torch.save(payload, out / "last.pth")
    with pytest.raises(RetinaError, match="before the offsets had their own learning rate"):
        train(DCN, _cfg(max_iterations=2), _spec(out, toy, resume=True))
