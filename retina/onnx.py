"""ONNX export and an ONNX Runtime backend for :class:`retina.Detector`.

The exported graph is the inference form of the network: BatchNorm folded into the convolutions and the
three heads (score 2, box 4, landmarks 10 values per anchor) merged into one 1x1 conv per pyramid level, so
it has one output ``packed`` (B, A, 16) = logits | box deltas | landmark deltas per anchor, in the prior order
of ``retina.priors.make_priors``. Merging is exact (the same dot products, concatenated) and measured faster
under ONNX Runtime (benchmarks/speed.py, ``fastpath``). Input ``images`` (B, 3, H, W) float32, normalised as
the config's ``InputCfg`` says; batch, height and width are dynamic. The architecture config is stored as
JSON in the model's metadata (key ``retina.config``), so ``Detector.from_onnx(path)`` needs nothing else.

    retina export-onnx --weights W.pth --out model.onnx
    detector = Detector.from_onnx("model.onnx", threads=1)

Post-processing (threshold, decode, NMS) stays in PyTorch, shared with the PyTorch backend.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from retina.config import DetectorCfg, from_dict, to_json
from retina.errors import RetinaError
from retina.models.detector import Predictions, RetinaFace
from retina.models.fuse import fuse_batchnorm
from retina.results import write_bytes

PACKED_WIDTH = 16  # 2 logits + 4 box deltas + 10 landmark deltas per anchor
CONFIG_KEY = "retina.config"
FORMAT_KEY = "retina.format"
FORMAT = "packed-v1"
INPUT_NAME = "images"
OUTPUT_NAME = "packed"
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


class PackedRetinaFace(nn.Module):
    """RetinaFace with one 1x1 head conv per level: images (B, 3, H, W) -> packed (B, A, 16).

    The merged conv's output channels are, per anchor k: 2 logits, 4 box deltas, 10 landmark deltas, so a
    (B, 16 * anchors, H, W) map reshapes to (B, H * W * anchors, 16) in prior order.
    """

    def __init__(self, model: RetinaFace) -> None:
        super().__init__()
        self.backbone, self.fpn, self.contexts = model.backbone, model.fpn, model.contexts
        heads = (model.cls_head, model.box_head, model.landmark_head)
        if sum(h.outputs for h in heads) != PACKED_WIDTH:
            raise ValueError(f"heads give {[h.outputs for h in heads]} values per anchor, expected 2 + 4 + 10")
        self.convs = nn.ModuleList(
            _merge_convs([h.convs[level % len(h.convs)] for h in heads], [h.outputs for h in heads])
            for level in range(len(self.contexts))
        )

    def forward(self, images: Tensor) -> Tensor:
        pyramid = self.fpn(self.backbone(images))
        out = []
        for conv, ctx, p in zip(self.convs, self.contexts, pyramid, strict=True):
            y = conv(ctx(p))  # (B, anchors * 16, H, W)
            out.append(y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, PACKED_WIDTH))  # -> (B, H*W*anchors, 16)
        return torch.cat(out, dim=1)


def _merge_convs(convs: list[nn.Conv2d], widths: list[int]) -> nn.Conv2d:
    """1x1 convs with ``anchors * widths[i]`` outputs each -> one conv, outputs interleaved per anchor."""
    anchors = convs[0].out_channels // widths[0]
    weights, biases = [], []
    for k in range(anchors):
        for conv, w in zip(convs, widths, strict=True):
            weights.append(conv.weight[k * w : (k + 1) * w])
            biases.append(conv.bias[k * w : (k + 1) * w])
    merged = nn.Conv2d(convs[0].in_channels, anchors * sum(widths), 1)
    with torch.no_grad():
        merged.weight.copy_(torch.cat(weights))
        merged.bias.copy_(torch.cat(biases))
    return merged


def unpack(packed: Tensor) -> Predictions:
    """packed (B, A, 16) -> :class:`Predictions` (views, no copy)."""
    return Predictions(packed[..., :2], packed[..., 2:6], packed[..., 6:])


def export_onnx(
    model: RetinaFace,
    cfg: DetectorCfg,
    path: str | os.PathLike,
    *,
    example_hw: tuple[int, int] = (480, 640),
    opset: int = 17,
    fuse: bool = True,
) -> Path:
    """Write ``model`` (weights as given; BN folded unless ``fuse=False``) as ONNX to ``path``, atomically.

    Batch, height and width are dynamic axes; ``example_hw`` only drives the tracing.
    """
    onnx = _require("onnx")

    if cfg.neck.dcn:
        raise RetinaError("ONNX export of deformable convolutions (neck.dcn=True) is not supported")
    if cfg.head.mesh:
        raise RetinaError("ONNX export of the mesh head (head.mesh=True) is not supported: export a preset without it")
    model = fuse_batchnorm(model) if fuse else model.eval()
    packed = PackedRetinaFace(model).eval()
    example = torch.zeros(1, 3, *example_hw)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter: the dynamo one needs onnxscript, which is not a dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            packed,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "anchors"}},
            opset_version=opset,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in ((CONFIG_KEY, to_json(cfg)), (FORMAT_KEY, FORMAT)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return write_bytes(path, proto.SerializeToString())


def _require(name: str) -> Any:
    """Import an optional dependency, or a clear error saying how to install it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise RetinaError(f"{name} is not installed; install the optional extra: pip install -e .[onnx]") from None


def _session(path: Path, threads: int | None, optimization: str, providers: list[str] | None) -> Any:
    ort = _require("onnxruntime")

    if optimization not in OPTIMIZATION_LEVELS:
        raise RetinaError(f"unknown ONNX Runtime optimisation level {optimization!r}; choose {OPTIMIZATION_LEVELS}")
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # the graph is a chain: no parallel branches worth a second pool
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable or invalid files
        raise RetinaError(f"cannot load ONNX model {path}: {exc}") from None


class OrtModel:
    """An ONNX Runtime session as a Detector model: images (B, 3, H, W) float32 CPU tensor -> Predictions.

    ``threads``: ONNX Runtime intra-op threads (None: its default, all cores). ``optimization``: graph
    optimisation level ("all" lets ONNX Runtime use its blocked NCHWc convolution layout on x86).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        optimization: str = "all",
        providers: list[str] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RetinaError(f"ONNX model not found: {self.path}")
        self.session = _session(self.path, threads, optimization, providers)
        metadata = self.session.get_modelmeta().custom_metadata_map
        if metadata.get(FORMAT_KEY) != FORMAT:
            raise RetinaError(
                f"{self.path}: not a retina ONNX export (metadata {FORMAT_KEY}={metadata.get(FORMAT_KEY)!r})"
            )
        self.cfg = config_from_metadata(metadata, str(self.path))

    def __call__(self, images: Tensor) -> Predictions:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (packed,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return unpack(torch.from_numpy(packed))


def config_from_metadata(metadata: dict[str, str], source: str) -> DetectorCfg:
    """The DetectorCfg stored by :func:`export_onnx`."""
    import json

    try:
        return from_dict(DetectorCfg, json.loads(metadata[CONFIG_KEY]))
    except KeyError:
        raise RetinaError(f"{source}: no {CONFIG_KEY} metadata (not exported by retina export-onnx)") from None
    except (ValueError, TypeError) as exc:
        raise RetinaError(f"{source}: invalid {CONFIG_KEY} metadata: {exc}") from None
