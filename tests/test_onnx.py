"""ONNX export and the ONNX Runtime backend: same numbers as PyTorch, config carried in the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retina import Detector
from retina.build import build_detector
from retina.cli import main
from retina.config import PostCfg, preset
from retina.errors import RetinaError
from retina.models.fuse import fuse_batchnorm
from tests.conftest import shared_file

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from retina.onnx import OrtModel, PackedRetinaFace, export_onnx, unpack  # noqa: E402

WEIGHTS = "weights/retinaface_mobilenet0.25_Final.pth"
SAMPLES = [
    "samples/biubug6_Face-Detector-1MB_sample.jpg",
    "samples/biubug6_Pytorch_Retinaface_test.jpg",
    "samples/scikit-image_astronaut.png",
]


def _random_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_detector(preset(name)).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so folding is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize(
    "name", ["mobilenet0.25", pytest.param("resnet50-paper", marks=pytest.mark.slow)]
)  # per-level heads, shared heads
def test_merged_heads_equal_separate_heads(name):
    model = _random_model(name)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        got = unpack(PackedRetinaFace(model).eval()(x))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def random_export(tmp_path_factory):
    model = _random_model("mobilenet0.25")
    path = export_onnx(model, preset("mobilenet0.25"), tmp_path_factory.mktemp("onnx") / "random.onnx")
    return model, path


@pytest.mark.parametrize("shape", [(1, 3, 480, 640), (2, 3, 67, 101)])  # dynamic batch and odd sizes
def test_onnx_runtime_equals_pytorch(random_export, shape):
    model, path = random_export
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = fuse_batchnorm(model)(x)
    got = OrtModel(path, threads=1)(x)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_config_travels_in_metadata(random_export):
    _, path = random_export
    assert OrtModel(path).cfg == preset("mobilenet0.25")
    assert Detector.from_onnx(path, threads=1).cfg == preset("mobilenet0.25")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter, used on purpose
def test_bad_files_and_settings_are_clear_errors(random_export, tmp_path):
    _, path = random_export
    with pytest.raises(RetinaError, match="not found"):
        OrtModel(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(RetinaError, match="cannot load"):
        OrtModel(garbage)
    with pytest.raises(RetinaError, match="optimisation level"):
        OrtModel(path, optimization="fastest")
    with pytest.raises(RetinaError, match="CPU"):
        Detector.from_onnx(path, device="cuda")
    plain = tmp_path / "plain.onnx"  # a valid ONNX file that retina did not write
    torch.onnx.export(torch.nn.Conv2d(3, 1, 1), (torch.zeros(1, 3, 4, 4),), str(plain), dynamo=False)
    with pytest.raises(RetinaError, match="not a retina"):
        OrtModel(plain)


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export-onnx", "--weights", str(tmp_path / "none.pth"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


@pytest.fixture(scope="module")
def real_detectors(tmp_path_factory):
    weights = shared_file(WEIGHTS)
    out = tmp_path_factory.mktemp("onnx_real") / "mnet.onnx"
    assert main(["export-onnx", "--weights", str(weights), "--out", str(out)]) == 0
    post = PostCfg(score_threshold=0.02)  # the WIDER evaluation threshold: ~1,000 detections on the crowd photo
    return Detector.from_checkpoint(weights, post=post), Detector.from_onnx(out, threads=1, post=post)


@pytest.mark.parametrize("image", SAMPLES)
def test_real_weights_detections_match_on_sample_photos(real_detectors, image):
    torch_det, ort_det = real_detectors
    ours, theirs = torch_det(shared_file(image)), ort_det(shared_file(image))
    assert len(ours) > 0 and len(ours) == len(theirs)
    np.testing.assert_allclose(theirs.boxes, ours.boxes, rtol=0, atol=1e-3)
    np.testing.assert_allclose(theirs.landmarks, ours.landmarks, rtol=0, atol=1e-3)
    np.testing.assert_allclose(theirs.scores, ours.scores, rtol=0, atol=1e-5)
