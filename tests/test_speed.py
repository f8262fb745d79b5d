"""Smoke tests of the speed benchmark and its report on tiny settings (no timing is asserted).

Also checks that the biubug6-style baseline the fast path is compared against is a faithful pipeline:
its priors and NMS equal ours, and it finds the same faces.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.ops import nms

from benchmarks import speed
from benchmarks.speed_fastpath import baseline, numpy_nms, python_priors
from retina import Detector
from retina.config import preset
from retina.priors import PriorCache, make_priors
from retina.report import speed as report
from tests.conftest import shared_file

needs_onnx = pytest.mark.skipif(bool(speed.missing_onnx_modules()), reason="the onnx extra is not installed")


def test_python_priors_equal_make_priors():
    cfg = preset("resnet50-paper")  # five levels, three anchors per cell
    torch.testing.assert_close(python_priors((67, 101), cfg), make_priors((67, 101), cfg.strides, cfg.priors.sizes))


def test_numpy_nms_equals_torchvision_with_plus_one_areas():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=gen) * 30], 1).double()
    scores = torch.rand(300, generator=gen).double()
    shifted = boxes.clone()
    shifted[:, 2:] += 1
    expected = nms(shifted, scores, 0.4).numpy()
    np.testing.assert_array_equal(numpy_nms(boxes.numpy(), scores.numpy(), 0.4), expected)
    assert len(numpy_nms(np.zeros((0, 4)), np.zeros(0), 0.4)) == 0


def test_biubug6_style_baseline_finds_the_same_faces():
    weights = shared_file("weights/retinaface_mobilenet0.25_Final.pth")
    image = speed.photo_at(shared_file("samples/biubug6_Pytorch_Retinaface_test.jpg"), (480, 640))[0]
    model, kind = speed.load_model("mobilenet0.25", weights)
    assert kind == "real"
    cfg = preset("mobilenet0.25")
    boxes, scores, _ = baseline(model, cfg, lambda hw: python_priors(hw, cfg), "numpy")(image)
    ours = Detector(model, cfg)(image)
    assert len(ours) == len(scores) > 20
    np.testing.assert_allclose(scores, ours.scores, atol=1e-4)
    np.testing.assert_allclose(boxes, ours.boxes, atol=1e-2)


def test_channels_last_option_gives_the_same_detections():
    torch.manual_seed(0)
    model, _ = speed.load_model("mobilenet0.25", None)
    cfg = preset("mobilenet0.25")
    image = speed.photo_at(None, (96, 128))[0]
    speed.spread_random_scores(model, image, cfg)
    plain, fast = Detector(model, cfg)(image), Detector(model, cfg, channels_last=True)(image)
    assert len(plain) == len(fast) > 0
    np.testing.assert_allclose(fast.boxes, plain.boxes, atol=1e-3)
    np.testing.assert_allclose(fast.scores, plain.scores, atol=1e-5)


def test_random_scores_spread_and_threshold_picks_the_count():
    model, kind = speed.load_model("mobilenet0.25", None)
    assert kind == "random"
    cfg = preset("mobilenet0.25")
    image = speed.photo_at(None, (96, 128))[0]  # synthetic
    speed.spread_random_scores(model, image, cfg)
    det = Detector(model, cfg)
    threshold = speed.threshold_for_count(det, image, 100)
    assert speed.candidate_count(det, image, threshold) == 100
    assert speed.threshold_for_count(det, image, 0) > 0.5 > speed.threshold_for_count(det, image, 10**6)


def test_parse_size_and_flops():
    assert speed.parse_size("vga") == (480, 640) and speed.parse_size("160x120") == (120, 160)
    with pytest.raises(SystemExit):
        speed.parse_size("big")
    # FLOPs grow with the pixel count (up to border cells)
    small, large = speed.gflops(preset("mobilenet0.25"), (240, 320)), speed.gflops(preset("mobilenet0.25"), (480, 640))
    assert 3.5 < large / small < 4.5


@pytest.mark.slow
@needs_onnx
def test_grid_and_report_smoke(tmp_path):
    out = tmp_path / "speed" / "this-machine"
    args = ["grid", "--presets", "mobilenet0.25", "--sizes", "128x96,160x120", "--settings", "cpu1,gpu-fp32"]
    args += ["--weights", str(tmp_path / "none.pth"), "--image", str(tmp_path / "none.jpg")]  # random, synthetic
    args += ["--repeats", "2", "--min-repeats", "1", "--warmup", "1", "--out", str(out)]
    assert speed.main(args) == 0
    record = json.loads((out / "grid.json").read_text())
    assert record["provenance"]["versions"]["torch"] and record["provenance"]["benchmark"] == "grid"
    rows = [r for r in record["rows"] if r["setting"] == "cpu1"]  # (a GPU machine also has gpu-fp32 rows)
    expected = {(s, b) for s in ("128x96", "160x120") for b in ("onnx", "torch")}
    assert {(r["size"], r["backend"]) for r in rows} == expected
    for r in rows:
        assert r["weights"] == "random" and r["image"] == "synthetic" and r["threads"] == 1
        assert r["repeats"] >= 1 and r["e2e_method"] == "api call"
        assert all(r[f"{k}_ms"] > 0 for k in ("pre", "forward", "priors", "decode_nms", "e2e"))
    assert len(pd.read_csv(out / "grid.csv")) == len(record["rows"])
    assert report.main(["--results", str(tmp_path / "speed")]) == 0
    text = (tmp_path / "speed" / "speed.md").read_text()
    assert "MobileNet-0.25 (CPU, 1 thread)" in text and "| mobilenet0.25 | 160x120 | cpu1 | onnx |" in text
    assert (tmp_path / "speed" / "speed.png").stat().st_size > 0


@pytest.mark.slow
@needs_onnx
def test_fastpath_smoke(tmp_path):
    shared_file("weights/retinaface_mobilenet0.25_Final.pth")
    assert speed.main(["fastpath", "--rounds", "1", "--warmup", "0", "--out", str(tmp_path / "m")]) == 0
    rows = json.loads((tmp_path / "m" / "fastpath.json").read_text())["rows"]
    e2e = [r for r in rows if r["section"] == "e2e"]
    assert len({r["detections"] for r in e2e}) == 1  # every pipeline finds the same faces
    assert {r["section"] for r in rows} == {"e2e", "forward", "pre", "pre 4K", "scoring", "post", "priors", "meta"}
    assert report.main(["--results", str(tmp_path)]) == 0
    assert "Fast path vs the biubug6-style pipeline" in (tmp_path / "speed.md").read_text()


@pytest.mark.parametrize("command", [["fastpath"], ["grid", "--backends", "onnx"]])
def test_missing_onnxruntime_is_a_clear_error(monkeypatch, capsys, tmp_path, command):
    monkeypatch.setattr(speed, "missing_onnx_modules", lambda: ["onnxruntime"])
    assert speed.main([*command, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime not installed" in err and "pip install -e .[onnx]" in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_grid_without_onnx_backend_does_not_need_onnxruntime(monkeypatch, tmp_path):
    monkeypatch.setattr(speed, "missing_onnx_modules", lambda: ["onnxruntime"])
    monkeypatch.setattr(speed, "run_grid", lambda args: 0)
    assert speed.main(["grid", "--backends", "torch", "--out", str(tmp_path)]) == 0


def test_report_without_records_is_a_clear_error(tmp_path, capsys):
    assert report.main(["--results", str(tmp_path)]) == 2
    assert "no records" in capsys.readouterr().err


def test_prior_cache_is_what_the_grid_times():
    cache = PriorCache((8, 16, 32), ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0)))
    first = cache((48, 64), torch.float32, torch.device("cpu"))
    assert cache((48, 64), torch.float32, torch.device("cpu")) is first  # a lookup, not a rebuild
