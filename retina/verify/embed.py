"""Face embeddings from an ONNX model (ArcFace-style) run with ONNX Runtime, on aligned crops.

    embedder = OnnxEmbedder("arcface_r100.onnx")              # EmbedCfg() defaults: insightface's ArcFace ONNX
    emb = embedder(crops)                                      # (N, 112, 112, 3) uint8 BGR -> (N, D) float32
    embedder.settings_record()                                 # model file, sha256, input, settings

Crops come in the OpenCV channel order, BGR (as ``align_face`` gives them for images read with OpenCV); the
embedder converts them to the model's order, normalises, and lays them out as the model's input says.
onnxruntime is an optional dependency (``pip install -e .[onnx]``), imported only when a model is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from retina.errors import RetinaError
from retina.results import file_sha256


@dataclass(frozen=True)
class EmbedCfg:
    """How crops become model input. Defaults: insightface's ArcFace ONNX models (RGB, (x - 127.5) / 127.5,
    NCHW).

    ``channels``: the model's channel order. ``mean`` and ``std``: per channel, in the model's channel order,
    on 0..255 pixel values: input = (pixel - mean) / std. ``flip``: the embedding is the sum of the crop's and
    its horizontal mirror's embeddings (insightface's verification test; not normalised, as there).
    ``batch``: crops per run (a model with a fixed batch size uses that size instead). ``threads``:
    ONNX Runtime intra-op threads (None: its default).
    """

    layout: Literal["nchw", "nhwc"] = "nchw"
    channels: Literal["rgb", "bgr"] = "rgb"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    flip: bool = False
    batch: int = 64
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("nchw", "nhwc"):
            raise RetinaError(f"layout must be 'nchw' or 'nhwc', got {self.layout!r}")
        if self.channels not in ("rgb", "bgr"):
            raise RetinaError(f"channels must be 'rgb' or 'bgr', got {self.channels!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s > 0 for s in self.std):
            raise RetinaError(f"mean and std need 3 values each, std > 0; got {self.mean} and {self.std}")
        if self.batch < 1:
            raise RetinaError(f"batch must be at least 1, got {self.batch}")


def _onnxruntime() -> Any:
    """The onnxruntime module, or a RetinaError saying how to install it."""
    try:
        return importlib.import_module("onnxruntime")
    except ImportError:
        raise RetinaError("onnxruntime is not installed; install the optional extra: pip install -e .[onnx]") from None


def _dim(value: Any) -> int | None:
    """A static dimension, or None for a symbolic/unknown one."""
    return value if isinstance(value, int) and value > 0 else None


class OnnxEmbedder:
    """An ONNX face-embedding model: (N, H, W, 3) uint8 BGR crops -> (N, D) float32 embeddings.

    The input name, layout checks, fixed sizes and batch size are read from the model's first input; the
    embedding is its first output, flattened per crop. Crops must have the model's spatial size when it is
    fixed (112 x 112 for ArcFace).
    """

    def __init__(self, path: str | os.PathLike, cfg: EmbedCfg | None = None, providers: list[str] | None = None):
        self.path = Path(path)
        self.cfg = cfg or EmbedCfg()
        if not self.path.is_file():
            raise RetinaError(f"ONNX model not found: {self.path}")
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: older exports warn once per weight listed as a graph input
        if self.cfg.threads is not None:
            options.intra_op_num_threads = self.cfg.threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime has its own exception types for unreadable or invalid models
            raise RetinaError(f"cannot load ONNX model {self.path}: {exc}") from None
        model_input, self.output_name = self.session.get_inputs()[0], self.session.get_outputs()[0].name
        self.input_name, self.input_shape = model_input.name, tuple(model_input.shape)
        self._check_input(model_input.type)

    def _check_input(self, dtype: str) -> None:
        """The model's first input must be a rank-4 float tensor with 3 channels where the layout puts them."""
        if dtype != "tensor(float)":
            raise RetinaError(f"{self.path}: input {self.input_name!r} is {dtype}, expected tensor(float)")
        if len(self.input_shape) != 4:
            raise RetinaError(f"{self.path}: input {self.input_name!r} has shape {self.input_shape}, expected rank 4")
        channel_axis, other_axis = (1, 3) if self.cfg.layout == "nchw" else (3, 1)
        if _dim(self.input_shape[channel_axis]) not in (None, 3):
            hint = f"; try layout={'nhwc' if self.cfg.layout == 'nchw' else 'nchw'!r}"
            hint = hint if _dim(self.input_shape[other_axis]) == 3 else ""
            raise RetinaError(
                f"{self.path}: input shape {self.input_shape} has no 3 channels for layout {self.cfg.layout!r}{hint}"
            )

    @property
    def spatial_size(self) -> tuple[int | None, int | None]:
        """The model's fixed input (height, width); None where the model leaves it free."""
        axes = (2, 3) if self.cfg.layout == "nchw" else (1, 2)
        return _dim(self.input_shape[axes[0]]), _dim(self.input_shape[axes[1]])

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 BGR -> the model input (N, 3, H, W) or (N, H, W, 3) float32, normalised."""
        x = crops[..., ::-1] if self.cfg.channels == "rgb" else crops
        x = (x.astype(np.float32) - np.float32(self.cfg.mean)) / np.float32(self.cfg.std)
        if self.cfg.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _check_crops(self, crops: np.ndarray) -> np.ndarray:
        ok = isinstance(crops, np.ndarray) and crops.dtype == np.uint8 and crops.ndim == 4 and crops.shape[3] == 3
        if not ok:
            got = f"{crops.dtype} {crops.shape}" if isinstance(crops, np.ndarray) else type(crops).__name__
            raise RetinaError(f"crops: expected (N, H, W, 3) uint8 BGR, got {got}")
        for axis, size in zip((1, 2), self.spatial_size, strict=True):
            if size is not None and crops.shape[axis] != size:
                raise RetinaError(f"crops are {crops.shape[1]}x{crops.shape[2]}, the model takes {self.spatial_size}")
        return crops

    def _run(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) float32 of (N, H, W, 3) crops, in batches (padded to a fixed model batch)."""
        fixed = _dim(self.input_shape[0])
        batch = fixed or self.cfg.batch
        out = []
        for start in range(0, len(crops), batch):
            chunk = self.preprocess(crops[start : start + batch])
            count = len(chunk)
            if fixed and count < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - count, *chunk.shape[1:]), np.float32)])
            try:
                (y,) = self.session.run([self.output_name], {self.input_name: chunk})
            except Exception as exc:  # onnxruntime's own exception types: shape or type mismatches
                raise RetinaError(
                    f"{self.path}: ONNX Runtime failed on an input of shape {chunk.shape}: {exc}"
                ) from None
            out.append(np.asarray(y, dtype=np.float32)[:count].reshape(count, -1))
        return np.concatenate(out)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 BGR aligned crops -> (N, D) float32 embeddings (with ``flip``: crop + mirror)."""
        crops = self._check_crops(crops)
        if not len(crops):
            raise RetinaError("crops: no crops given (N = 0)")
        emb = self._run(crops)
        if self.cfg.flip:
            emb = emb + self._run(crops[:, :, ::-1])
        return emb

    def settings_record(self) -> dict[str, Any]:
        """Provenance: model file name and sha256, its input and output, and the embedding settings."""
        return {
            "model": self.path.name,
            "sha256": file_sha256(self.path),
            "input_name": self.input_name,
            "input_shape": [d if isinstance(d, int) else str(d) for d in self.input_shape],
            "output_name": self.output_name,
            "settings": dataclasses.asdict(self.cfg),
        }
