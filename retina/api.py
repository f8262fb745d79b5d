"""The public inference API: ``Detector`` and ``Detections``.

    detector = retina.Detector.from_checkpoint("weights.pth", device="cpu")
    dets = detector(cv2.imread("photo.jpg"))                 # one image -> Detections
    dets = detector(["a.jpg", "b.png"], protocol="fixed")    # several (any sizes) -> list[Detections]
    fast = retina.Detector.from_onnx("model.onnx", threads=1)  # ONNX Runtime backend (``retina export-onnx``)

Images are (H, W, 3) uint8 BGR arrays (the OpenCV convention; grayscale and BGRA are converted) or paths.
Results are in original-image pixels. Images whose network inputs have the same size are batched
together; images of different sizes run in separate batches, so batched results equal per-image results.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from retina.build import build_detector
from retina.checkpoint import load_weights, read_checkpoint
from retina.config import DetectorCfg, PostCfg
from retina.config import preset as get_preset
from retina.errors import RetinaError
from retina.images import ImageLike, load
from retina.models.detector import Predictions
from retina.models.fuse import fuse_batchnorm
from retina.postprocess import RawDetections, box_voting, postprocess
from retina.preprocess import normalize
from retina.priors import PriorCache
from retina.protocols import Resize, TestProtocol
from retina.protocols import protocol as get_protocol

# Horizontal flip swaps left and right: eyes (0, 1) and mouth corners (3, 4).
FLIP_LANDMARKS = (1, 0, 2, 4, 3)


@dataclass(frozen=True)
class Detections:
    """One image's faces: boxes (N, 4) x1 y1 x2 y2 pixels, scores (N,) in [0, 1], landmarks (N, 5, 2) pixels.

    Sorted by score, descending. Landmarks: left eye, right eye, nose, left and right mouth corner
    (left = smaller image x for a frontal face).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def to_dict(self) -> dict[str, Any]:
        return {
            "boxes": self.boxes.tolist(),
            "scores": self.scores.tolist(),
            "landmarks": self.landmarks.tolist(),
        }

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


@dataclass(frozen=True)
class _Pass:
    """One network input made from one image: which image, how it was resized and flipped."""

    index: int
    resize: Resize
    flip: bool


Model = Callable[[Tensor], Predictions]  # images (B, 3, H, W) float, normalised -> raw predictions


class Detector:
    """A ready-to-run detector: model in eval mode (BatchNorm folded), priors cached per input size.

    ``model`` is a :class:`~retina.models.detector.RetinaFace` (any ``nn.Module``: put in eval mode, BatchNorm
    folded unless ``fuse=False``, moved to ``device``, channels-last memory if ``channels_last``) or any other
    callable with the same contract, e.g. the ONNX Runtime backend of :meth:`from_onnx`, used as given.
    """

    def __init__(
        self,
        model: nn.Module | Model,
        cfg: DetectorCfg,
        post: PostCfg | None = None,
        device: str | torch.device = "cpu",
        protocol: str = "original",
        batch_size: int = 8,
        fuse: bool = True,
        channels_last: bool = True,
    ) -> None:
        self.cfg = cfg
        self.post = post or PostCfg()
        self.device = torch.device(device)
        self.protocol = protocol
        self.batch_size = batch_size
        # channels_last (nn.Module models): NHWC weights and inputs. Default on: on an idle 2-core EPYC it took
        # the eager VGA forward from 44 to 31 ms at one thread (benchmarks/speed.py fastpath).
        self.channels_last = channels_last and isinstance(model, nn.Module)
        if isinstance(model, nn.Module):
            model = model.eval()
            model = (fuse_batchnorm(model) if fuse else model).to(self.device)
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.priors = PriorCache(cfg.priors.strides, cfg.priors.sizes)
        self._unit_std = all(s == 1 for s in cfg.input.std)
        # CPU input: numpy writes (image - mean) / std channel by channel into a float32 NCHW array (measured
        # faster than torch ops or cv2.dnn.blobFromImages, benchmarks/speed.py fastpath).
        self._numpy_input = self.device.type == "cpu"
        self._channels = (2, 1, 0) if cfg.input.channel_order == "rgb" else (0, 1, 2)  # source BGR index
        self._np_mean = np.array(cfg.input.mean, np.float32)
        self._np_inv_std = 1.0 / np.array(cfg.input.std, np.float32)
        self._local = threading.local()  # per-thread reusable input buffer

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        preset: str | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> Detector:
        """Load our checkpoint format or a biubug6 state dict (``preset`` must match the file if given)."""
        cfg, state, _ = read_checkpoint(path, preset)
        model = build_detector(cfg)
        load_weights(model, state, str(path))
        return cls(model, cfg, device=device, **kwargs)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, preset: str | None = None, device: str | torch.device = "cpu", **kwargs: Any
    ) -> Detector:
        """:meth:`from_onnx` for a ``.onnx`` file (CPU only), else :meth:`from_checkpoint`; ``preset``, when
        given, must match the file's architecture."""
        if str(path).lower().endswith(".onnx"):
            detector = cls.from_onnx(path, device=device, **kwargs)
            if preset is not None and get_preset(preset) != detector.cfg:
                raise RetinaError(f"{path} holds a {detector.cfg.name!r} model, not the requested preset {preset!r}")
            return detector
        return cls.from_checkpoint(path, preset=preset, device=device, **kwargs)

    @classmethod
    def from_onnx(
        cls,
        path: str | os.PathLike,
        threads: int | None = None,
        optimization: str = "all",
        **kwargs: Any,
    ) -> Detector:
        """ONNX Runtime backend (CPU) for a file written by ``retina export-onnx``; config from its metadata.

        ``threads``: ONNX Runtime intra-op threads (None: all cores); ``optimization``: graph optimisation level.
        """
        from retina.onnx import OrtModel

        if torch.device(kwargs.get("device", "cpu")).type != "cpu":
            raise RetinaError("the ONNX Runtime backend runs on the CPU; use the PyTorch backend for GPUs")
        model = OrtModel(path, threads=threads, optimization=optimization)
        return cls(model, model.cfg, **kwargs)

    # --- stages (public so that benchmarks can time them separately) ----------------------------------

    def prepare(self, image: np.ndarray, resize: Resize, flip: bool = False) -> np.ndarray:
        """(H, W, 3) uint8 BGR -> the resized (and flipped) uint8 network input (H', W', 3)."""
        h, w = image.shape[:2]
        out_h, out_w = resize.output_size(h, w)
        if (out_h, out_w) != (h, w):
            image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        if flip:
            image = image[:, ::-1]
        return image

    def to_tensor(self, batch: np.ndarray | Sequence[np.ndarray], reuse: bool = False) -> Tensor:
        """uint8 (B, H, W, 3) BGR images of one size -> normalised float (B, 3, H, W) on the device.

        CPU: contiguous NCHW float32. ``reuse=True`` (what ``__call__`` does) writes into a per-thread buffer
        kept for the next call of the same shape (a fresh 100 MB array per 4K image costs more in page faults
        than the arithmetic), so the tensor is valid only until the next such call. Other devices: the uint8
        batch is copied over (4x less traffic than floats) and converted there (channels-last memory).
        """
        if self._numpy_input:
            images = list(batch)
            shape = (len(images), 3, *images[0].shape[:2])
            out = self._buffer(shape) if reuse else np.empty(shape, np.float32)
            for b, image in enumerate(images):
                for c, source in enumerate(self._channels):
                    np.subtract(image[:, :, source], self._np_mean[c], out=out[b, c], dtype=np.float32)
                    if not self._unit_std:
                        np.multiply(out[b, c], self._np_inv_std[c], out=out[b, c])
            return torch.from_numpy(out)
        array = np.ascontiguousarray(np.stack(batch) if not isinstance(batch, np.ndarray) else batch)
        return normalize(torch.from_numpy(array).to(self.device, non_blocking=True), self.cfg.input)

    def _buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or buffer.shape != shape:
            buffer = np.empty(shape, np.float32)
            self._local.buffer = buffer  # one per thread: the last shape only, so memory stays bounded
        return buffer

    def forward(self, x: Tensor) -> Predictions:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(x)

    def decode(self, pred: Predictions, input_hw: tuple[int, int], post: PostCfg | None = None) -> list[RawDetections]:
        """Post-process a batch of predictions for inputs of size ``input_hw`` (network-input pixels)."""
        with torch.inference_mode():
            priors = self.priors(input_hw, pred.boxes.dtype, pred.boxes.device)
            return postprocess(pred, priors, self.cfg.priors.variances, post or self.post)

    # --- the API ------------------------------------------------------------------------------------

    def __call__(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        protocol: str | None = None,
        score_threshold: float | None = None,
        nms_iou: float | None = None,
    ) -> Detections | list[Detections]:
        """Detect faces; one image in -> one :class:`Detections`, a list in -> a list."""
        single = isinstance(images, (np.ndarray, str, os.PathLike))
        items = [images] if single else list(images)
        post = self.post
        if score_threshold is not None or nms_iou is not None:
            post = dataclasses.replace(
                post,
                score_threshold=post.score_threshold if score_threshold is None else score_threshold,
                nms_iou=post.nms_iou if nms_iou is None else nms_iou,
            )
        arrays = [load(image, i)[0] for i, image in enumerate(items)]
        results = self.detect_arrays(arrays, get_protocol(protocol or self.protocol), post)
        return results[0] if single else results

    def detect_arrays(self, images: list[np.ndarray], proto: TestProtocol, post: PostCfg) -> list[Detections]:
        """BGR uint8 arrays -> detections under a test protocol (see ``retina.protocols``)."""
        passes = [
            _Pass(i, resize, flip)
            for i in range(len(images))
            for resize in proto.resizes
            for flip in ((False, True) if proto.flip else (False,))
        ]
        groups: dict[tuple[int, int], list[_Pass]] = defaultdict(list)
        for p in passes:
            h, w = images[p.index].shape[:2]
            groups[p.resize.output_size(h, w)].append(p)
        per_image: list[list[RawDetections]] = [[] for _ in images]
        for input_hw, members in groups.items():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                x = self.to_tensor([self.prepare(images[p.index], p.resize, p.flip) for p in chunk], reuse=True)
                for p, raw in zip(chunk, self.decode(self.forward(x), input_hw, post), strict=True):
                    per_image[p.index].append(self._to_image(raw, images[p.index].shape[:2], input_hw, p.flip))
        out = []
        for dets in per_image:
            merged = dets[0] if len(dets) == 1 else self._merge(dets, proto, post)
            out.append(_to_numpy(merged))
        return out

    @staticmethod
    def _to_image(
        raw: RawDetections, image_hw: tuple[int, int], input_hw: tuple[int, int], flip: bool
    ) -> RawDetections:
        """Network-input pixels -> original-image pixels (undo the flip, then the resize)."""
        boxes, landmarks = raw.boxes, raw.landmarks
        width = input_hw[1]
        if flip:
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
            landmarks = landmarks[:, list(FLIP_LANDMARKS)]
            landmarks = torch.stack([width - landmarks[..., 0], landmarks[..., 1]], dim=-1)
        sy = input_hw[0] / image_hw[0]
        sx = input_hw[1] / image_hw[1]
        if sx != 1.0 or sy != 1.0:
            scale = boxes.new_tensor([sx, sy])
            boxes = boxes / scale.repeat(2)
            landmarks = landmarks / scale
        return RawDetections(boxes, raw.scores, landmarks)

    @staticmethod
    def _merge(dets: list[RawDetections], proto: TestProtocol, post: PostCfg) -> RawDetections:
        cat = RawDetections(*(torch.cat(parts) for parts in zip(*dets, strict=True)))
        assert proto.voting_iou is not None
        voted = box_voting(cat, proto.voting_iou, post.nms_pixel_offset)
        limit = post.max_detections
        return voted if limit is None else RawDetections(*(t[:limit] for t in voted))


def _to_numpy(raw: RawDetections) -> Detections:
    if len(raw.scores) == 0:
        return Detections.empty()
    return Detections(
        raw.boxes.float().cpu().numpy(), raw.scores.float().cpu().numpy(), raw.landmarks.float().cpu().numpy()
    )
