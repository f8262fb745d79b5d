"""ONNX embedder: a tiny torch module exported to ONNX must give the module's output after the same preprocessing."""

from __future__ import annotations

import hashlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from retina.errors import RetinaError
from retina.verify.embed import EmbedCfg, OnnxEmbedder

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

MEAN = (120.0, 110.0, 100.0)  # per channel in the model's order: catches a mean applied in the wrong order
STD = (60.0, 70.0, 80.0)


class TinyEmbedder(nn.Module):
    """conv 3x3 stride 2 + ReLU + global average pool + linear: (B, 3, H, W) -> (B, 8)."""

    def __init__(self, nhwc: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.nhwc = nhwc
        self.conv = nn.Conv2d(3, 6, 3, stride=2)
        self.fc = nn.Linear(6, 8)

    def forward(self, x: Tensor) -> Tensor:
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        x = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.fc(x)


def _export(module: nn.Module, path: Path, shape: tuple[int, ...], dynamic_batch: bool = True) -> Path:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.zeros(shape),),
            buffer,
            dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
            input_names=["data"],
            output_names=["embedding"],
            dynamic_axes={"data": {0: "batch"}, "embedding": {0: "batch"}} if dynamic_batch else None,
            opset_version=17,
        )
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "nchw": _export(TinyEmbedder(), folder / "nchw.onnx", (2, 3, 112, 112)),
        "nhwc": _export(TinyEmbedder(nhwc=True), folder / "nhwc.onnx", (2, 112, 112, 3)),
        "fixed": _export(TinyEmbedder(), folder / "fixed.onnx", (4, 3, 112, 112), dynamic_batch=False),
    }


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def _reference(crops: np.ndarray, layout: str, channels: str, flip: bool = False) -> np.ndarray:
    """The torch module on crops preprocessed independently (float64 normalisation), float32 forward."""
    module = TinyEmbedder(nhwc=layout == "nhwc").eval()

    def run(x: np.ndarray) -> np.ndarray:
        x = x[..., ::-1] if channels == "rgb" else x  # crops are BGR
        x = (x.astype(np.float64) - np.array(MEAN)) / np.array(STD)
        x = x if layout == "nhwc" else x.transpose(0, 3, 1, 2)
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run(crops) + run(crops[:, :, ::-1]) if flip else run(crops)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("channels", ["rgb", "bgr"])
def test_embedder_matches_torch(models: dict[str, Path], layout: str, channels: str) -> None:
    crops = _crops(5)
    cfg = EmbedCfg(layout=layout, channels=channels, mean=MEAN, std=STD, batch=2)  # batches 2 + 2 + 1
    got = OnnxEmbedder(models[layout], cfg)(crops)
    assert got.dtype == np.float32 and got.shape == (5, 8)
    np.testing.assert_allclose(got, _reference(crops, layout, channels), atol=1e-5, rtol=0)
    if channels == "bgr":  # the channel order matters, so the check above can tell them apart
        assert np.abs(got - _reference(crops, layout, "rgb")).max() > 1e-3


def test_embedder_flip(models: dict[str, Path]) -> None:
    crops = _crops(3, seed=1)
    cfg = EmbedCfg(mean=MEAN, std=STD, flip=True)
    got = OnnxEmbedder(models["nchw"], cfg)(crops)
    np.testing.assert_allclose(got, _reference(crops, "nchw", "rgb", flip=True), atol=1e-5, rtol=0)
    plain = OnnxEmbedder(models["nchw"], EmbedCfg(mean=MEAN, std=STD))(crops)
    mirrored = OnnxEmbedder(models["nchw"], EmbedCfg(mean=MEAN, std=STD))(crops[:, :, ::-1])
    np.testing.assert_allclose(got, plain + mirrored, atol=1e-6, rtol=0)


def test_embedder_fixed_batch_pads(models: dict[str, Path]) -> None:
    crops = _crops(6, seed=2)  # the model takes exactly 4: runs of 4 and 2 (padded to 4)
    embedder = OnnxEmbedder(models["fixed"], EmbedCfg(mean=MEAN, std=STD, batch=64))
    assert embedder.input_shape == (4, 3, 112, 112) and embedder.spatial_size == (112, 112)
    np.testing.assert_allclose(embedder(crops), _reference(crops, "nchw", "rgb"), atol=1e-5, rtol=0)


def test_default_settings_are_arcface(models: dict[str, Path]) -> None:
    cfg = EmbedCfg()
    assert (cfg.layout, cfg.channels, cfg.mean, cfg.std, cfg.flip) == ("nchw", "rgb", (127.5,) * 3, (127.5,) * 3, False)
    crops = np.full((1, 112, 112, 3), (0, 127, 255), dtype=np.uint8)  # B, G, R
    x = OnnxEmbedder(models["nchw"]).preprocess(crops)
    assert x.shape == (1, 3, 112, 112) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [127.5 / 127.5, -0.5 / 127.5, -127.5 / 127.5])  # R, G, B


def test_settings_record(models: dict[str, Path]) -> None:
    path = models["nhwc"]
    record = OnnxEmbedder(path, EmbedCfg(layout="nhwc", flip=True)).settings_record()
    assert record["model"] == "nhwc.onnx"
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record["input_name"], record["input_shape"], record["output_name"]) == (
        "data",
        ["batch", 112, 112, 3],
        "embedding",
    )
    assert record["settings"]["layout"] == "nhwc" and record["settings"]["flip"] is True


def test_embedder_errors(models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RetinaError, match=r"no 3 channels for layout 'nhwc'; try layout='nchw'"):
        OnnxEmbedder(models["nchw"], EmbedCfg(layout="nhwc"))
    embedder = OnnxEmbedder(models["nchw"])
    with pytest.raises(RetinaError, match=r"crops are 96x112, the model takes \(112, 112\)"):
        embedder(np.zeros((1, 96, 112, 3), np.uint8))
    with pytest.raises(RetinaError, match=r"expected \(N, H, W, 3\) uint8 BGR, got float32"):
        embedder(np.zeros((1, 112, 112, 3), np.float32))
    with pytest.raises(RetinaError, match="ONNX model not found"):
        OnnxEmbedder(tmp_path / "absent.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(RetinaError, match="cannot load ONNX model"):
        OnnxEmbedder(tmp_path / "junk.onnx")
    with pytest.raises(RetinaError, match="channels must be"):
        EmbedCfg(channels="rbg")  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(RetinaError, match=r"pip install -e \.\[onnx\]"):
        OnnxEmbedder(models["nchw"])
