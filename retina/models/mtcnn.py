"""MTCNN face detection (Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks"), written to reproduce facenet-pytorch 2.6.0's ``MTCNN.detect`` (MIT licence).

    mtcnn = load_mtcnn("weights/mtcnn")          # a folder holding pnet.pt, rnet.pt, onet.pt
    faces = mtcnn(rgb_image)                     # HxWx3 uint8, RGB unless MtcnnCfg(channels="bgr")
    faces.boxes, faces.probs, faces.landmarks    # (N, 4) x1 y1 x2 y2, (N,), (N, 5, 2) x y; pixels

The networks' layer names match facenet-pytorch's weight files (plain state dicts), which load strictly.
The cascade follows the reference step by step, with its conventions (they matter for exact agreement):

1. Pyramid: scales 12 / min_face * factor**k while the short side stays >= 12 px at that scale; level size
   ``int(side * scale + 1)``; resampling with ``torch.nn.functional.interpolate(mode="area")``; pixels
   normalised as ``(x - 127.5) * 0.0078125``.
2. P-Net: every output cell with face probability >= threshold is a 12x12 window (stride 2) in the level,
   mapped back as ``floor((2 * cell + 1) / scale)`` and ``floor((2 * cell + 12) / scale)``; IoU NMS per level
   (0.5) then across levels (0.7); regression with width ``x2 - x1``; squaring.
3. R-Net: crops of the squared boxes in the inclusive 1-based pixel convention of the MATLAB original
   (columns ``trunc(x1) .. trunc(x2)``, clipped to the image), resampled to 24x24; probability > threshold;
   IoU NMS (0.7); regression with width ``x2 - x1 + 1``; squaring.
4. O-Net: 48x48 crops likewise; probability > threshold; landmarks from the (pre-regression) boxes;
   regression; NMS with overlap = intersection / smaller area ("Min", 0.7), inclusive-pixel areas.

Faces come by probability, descending; facenet-pytorch's ``MTCNN.detect`` by default (``select_largest=True``)
returns the same faces by box area, largest first. Where this departs from the reference: boxes whose crop would be
empty (wholly outside the image) are dropped (the reference would misalign its batch), and exact ties in the
last NMS go to the earlier box (the reference's choice follows ``np.argsort``, whose order among equal values
differs between machines with and without AVX-512); two boxes tie when they share an O-Net crop, so the
alternatives differ by a fraction of a pixel.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from retina.checkpoint import load_weights, safe_load
from retina.errors import CheckpointError, RetinaError

WEIGHT_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
CELL = 12  # P-Net window (pixels of a pyramid level)
STRIDE = 2  # P-Net output stride
CHUNK = 512  # crops per R-Net / O-Net forward pass (bounds memory; results do not depend on it)
CROP_PIXELS = 1 << 22  # pixels per batch of equal-shape crops gathered for resampling


@dataclass(frozen=True)
class MtcnnCfg:
    """Detection settings; the defaults are facenet-pytorch's.

    ``thresholds``: P-Net (>=), R-Net and O-Net (>) face probabilities. ``nms``: IoU thresholds of the NMS within
    a pyramid level, across levels, after R-Net, and the "Min" overlap threshold after O-Net. ``channels``: the
    channel order of the images given to :meth:`Mtcnn.detect` (the networks take RGB).
    """

    min_face_size: float = 20.0
    factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    nms: tuple[float, float, float, float] = (0.5, 0.7, 0.7, 0.7)
    channels: Literal["rgb", "bgr"] = "rgb"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_face_size) and self.min_face_size > 0):
            raise RetinaError(f"MtcnnCfg.min_face_size must be a positive number of pixels, got {self.min_face_size}")
        if not 0.0 < self.factor < 1.0:
            raise RetinaError(f"MtcnnCfg.factor must be in (0, 1), got {self.factor}")
        if len(self.thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in self.thresholds):
            raise RetinaError(f"MtcnnCfg.thresholds must be three numbers in [0, 1], got {self.thresholds}")
        if len(self.nms) != 4 or not all(0.0 < t <= 1.0 for t in self.nms):
            raise RetinaError(f"MtcnnCfg.nms must be four numbers in (0, 1], got {self.nms}")
        if self.channels not in ("rgb", "bgr"):
            raise RetinaError(f"MtcnnCfg.channels must be 'rgb' or 'bgr', got {self.channels!r}")


@dataclass(frozen=True)
class MtcnnFaces:
    """One image's faces: boxes (N, 4) x1 y1 x2 y2, probs (N,), landmarks (N, 5, 2) x y; float32 pixels.

    Landmarks: left eye, right eye, nose, left and right mouth corner (left = smaller x for a frontal face).
    """

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.probs)

    def take(self, index: np.ndarray) -> MtcnnFaces:
        """The faces at ``index`` (int array), in that order."""
        return MtcnnFaces(self.boxes[index], self.probs[index], self.landmarks[index])


# --- networks ------------------------------------------------------------------------------------------------


class PNet(nn.Module):
    """Proposal net, fully convolutional: (N, 3, H, W) -> regression (N, 4, h, w), probabilities (N, 2, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not-face logits
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box regression

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


def _flatten_whc(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, W*H*C) in the (W, H, C) order the converted dense weights expect."""
    return x.permute(0, 3, 2, 1).flatten(1)


class RNet(nn.Module):
    """Refinement net: (N, 3, 24, 24) -> regression (N, 4), probabilities (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_whc(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net: (N, 3, 48, 48) -> regression (N, 4), landmarks (N, 10) (5 x then 5 y), probabilities (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_whc(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


# --- box arithmetic (float32 tensors, as in the reference) ------------------------------------------------------


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales 12 / min_face_size * factor**k (by repeated products) while min(height, width) * scale >= 12."""
    scale = CELL / min_face_size
    short = min(height, width) * scale
    scales = []
    while short >= CELL:
        scales.append(scale)
        scale *= factor
        short *= factor
    return scales


def level_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(rows, columns) of the pyramid level for ``scale``: ``int(side * scale + 1)``."""
    return int(height * scale + 1), int(width * scale + 1)


def window_boxes(reg: Tensor, prob: Tensor, scale: float, threshold: float) -> Tensor:
    """P-Net cells with ``prob >= threshold`` -> (K, 9): x1 y1 x2 y2 (image pixels), probability, regression (4).

    ``reg`` (4, h, w), ``prob`` (h, w) face probabilities of one level; cells in row-major order.
    """
    mask = prob >= threshold
    cells = mask.nonzero().to(reg.dtype).flip(1)  # (K, 2) x y of the cells
    top_left = ((STRIDE * cells + 1) / scale).floor()
    bottom_right = ((STRIDE * cells + CELL) / scale).floor()
    return torch.cat([top_left, bottom_right, prob[mask][:, None], reg[:, mask].T], dim=1)


def regress(boxes: Tensor, reg: Tensor, inclusive: bool) -> Tensor:
    """Boxes (N, 4) moved by regression (N, 4) in units of their width/height (``+ 1`` if ``inclusive``)."""
    extra = 1.0 if inclusive else 0.0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    return boxes + reg * torch.stack([w, h, w, h], dim=1)


def square(boxes: Tensor) -> Tensor:
    """Boxes (N, 4) -> squares of side max(w, h) (w = x2 - x1) with the same centres."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def crop_bounds(boxes: Tensor, width: int, height: int) -> np.ndarray:
    """Boxes (N, 4) -> (N, 4) int slice bounds x0 y0 x1 y1 (0-based, end exclusive) of their crops.

    MATLAB convention: the box covers 1-based pixels ``trunc(x1) .. trunc(x2)``, clipped to ``1 .. width``;
    the crop is empty where x1 <= x0 or y1 <= y0 (a box outside the image).
    """
    t = boxes.trunc().int().cpu().numpy()
    x0 = np.maximum(t[:, 0], 1) - 1
    y0 = np.maximum(t[:, 1], 1) - 1
    return np.stack([x0, y0, np.minimum(t[:, 2], width), np.minimum(t[:, 3], height)], axis=1)


def nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS with overlap = intersection / smaller area, inclusive pixels (w = x2 - x1 + 1).

    Boxes (N, 4), scores (N,) -> indices kept (int64), by score descending; overlap > threshold suppresses.
    Exact ties are common (two boxes with the same O-Net crop get the same probability): the earlier box wins.
    The reference takes the last in ``np.argsort``'s ascending order, which depends on the machine's SIMD sort.
    """
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        order = rest[iw * ih / np.minimum(area[i], area[rest]) <= threshold]
    return np.array(keep, dtype=np.int64)


def nms_iou(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """IoU NMS (boxes (N, 4), scores (N,)) -> kept indices, by score descending.

    Run as the reference runs it, through ``batched_nms`` with one group, so that exact ties on float32
    probabilities (frequent near 1) resolve in the same order.
    """
    return batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), threshold)


def normalise(pixels: Tensor) -> Tensor:
    """0..255 pixels -> the networks' input range, ``(x - 127.5) / 128``."""
    return (pixels - 127.5) * 0.0078125


def resample(image: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, 3, H, W) -> (N, 3, *size) with area interpolation (the reference's resampling everywhere)."""
    return F.interpolate(image, size=size, mode="area")


# --- the cascade ----------------------------------------------------------------------------------------------


class Mtcnn(nn.Module):
    """The three networks and the cascade; call it (or :meth:`detect`) on one image."""

    def __init__(self, cfg: MtcnnCfg | None = None) -> None:
        super().__init__()
        self.cfg = cfg or MtcnnCfg()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.eval()

    def forward(self, image: np.ndarray) -> MtcnnFaces:
        return self.detect(image)

    def detect(self, image: np.ndarray) -> MtcnnFaces:
        """Faces in an (H, W, 3) uint8 image, RGB (or BGR if ``cfg.channels == "bgr"``), by probability descending."""
        faces = self.candidates(image)
        return faces.take(nms_min(faces.boxes, faces.probs, self.cfg.nms[3]))

    @torch.inference_mode()
    def candidates(self, image: np.ndarray) -> MtcnnFaces:
        """The faces that pass O-Net, before the last ("Min") NMS: all stages but the last step."""
        pixels = self._tensor(image)
        boxes = self._refine(pixels, self._propose(pixels))
        boxes, probs, points = self._output(pixels, boxes)
        return MtcnnFaces(boxes.cpu().numpy(), probs.cpu().numpy(), points.cpu().numpy())

    def _tensor(self, image: np.ndarray) -> Tensor:
        """(H, W, 3) uint8 -> (1, 3, H, W) float32 RGB on the networks' device (H, W, C memory order kept)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise RetinaError(f"MTCNN expects an HxWx3 uint8 image, got {got}")
        if self.cfg.channels == "bgr":
            image = image[..., ::-1]
        device = self.pnet.conv1.weight.device
        return torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float()

    def _propose(self, pixels: Tensor) -> Tensor:
        """Stage 1: P-Net over the pyramid -> squared, regressed boxes (K, 4)."""
        height, width = pixels.shape[-2:]
        found = [pixels.new_zeros((0, 9))]
        for scale in pyramid_scales(height, width, self.cfg.min_face_size, self.cfg.factor):
            reg, prob = self.pnet(normalise(resample(pixels, level_size(height, width, scale))))
            cand = window_boxes(reg[0], prob[0, 1], scale, self.cfg.thresholds[0])
            found.append(cand[nms_iou(cand[:, :4], cand[:, 4], self.cfg.nms[0])])
        cand = torch.cat(found)
        cand = cand[nms_iou(cand[:, :4], cand[:, 4], self.cfg.nms[1])]
        return square(regress(cand[:, :4], cand[:, 5:], inclusive=False))

    def _refine(self, pixels: Tensor, boxes: Tensor) -> Tensor:
        """Stage 2: R-Net on 24x24 crops -> squared, regressed boxes (M, 4)."""
        boxes, crops = _crops(pixels, boxes, 24)
        reg, prob = _batched(self.rnet, crops)
        ok = prob[:, 1] > self.cfg.thresholds[1]
        boxes, probs, reg = boxes[ok], prob[ok, 1], reg[ok]
        keep = nms_iou(boxes, probs, self.cfg.nms[2])
        return square(regress(boxes[keep], reg[keep], inclusive=True))

    def _output(self, pixels: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Stage 3: O-Net on 48x48 crops -> regressed boxes (N, 4), probabilities (N,), landmarks (N, 5, 2)."""
        boxes, crops = _crops(pixels, boxes, 48)
        reg, marks, prob = _batched(self.onet, crops)
        ok = prob[:, 1] > self.cfg.thresholds[2]
        boxes, reg = boxes[ok], reg[ok]
        return regress(boxes, reg, inclusive=True), prob[ok, 1], _landmarks(boxes, marks[ok])


def _crops(pixels: Tensor, boxes: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Boxes (N, 4) -> those with a non-empty crop (M, 4) and their normalised crops (M, 3, size, size)."""
    bounds = crop_bounds(boxes, pixels.shape[-1], pixels.shape[-2])
    ok = (bounds[:, 2] > bounds[:, 0]) & (bounds[:, 3] > bounds[:, 1])
    return boxes[torch.from_numpy(ok).to(boxes.device)], normalise(crop_resize(pixels, bounds[ok], size))


def crop_resize(pixels: Tensor, bounds: np.ndarray, size: int) -> Tensor:
    """(1, 3, H, W) pixels, (M, 4) non-empty slice bounds x0 y0 x1 y1 -> (M, 3, size, size) area-resampled crops.

    Crops of one shape are resampled together, which is exact: area averages of integer pixels are sums of
    integers (exact in float32) then a division, whatever the batch.
    """
    out = pixels.new_empty((len(bounds), 3, size, size))
    shapes, group = np.unique(bounds[:, 2:] - bounds[:, :2], axis=0, return_inverse=True)
    group = group.reshape(-1)
    for g, (w, h) in enumerate(shapes.tolist()):
        members = np.flatnonzero(group == g)
        step = max(1, CROP_PIXELS // (w * h))
        for idx in np.split(members, range(step, len(members), step)):
            rows = torch.from_numpy(bounds[idx, 1:2] + np.arange(h)).to(pixels.device)  # (n, h)
            cols = torch.from_numpy(bounds[idx, 0:1] + np.arange(w)).to(pixels.device)  # (n, w)
            patches = pixels[0][:, rows[:, :, None], cols[:, None, :]].transpose(0, 1)  # (n, 3, h, w)
            out[torch.from_numpy(idx).to(pixels.device)] = resample(patches, (size, size))
    return out


def _batched(net: nn.Module, crops: Tensor) -> tuple[Tensor, ...]:
    """``net(crops)`` in chunks of ``CHUNK`` (an empty batch runs once), outputs concatenated."""
    outs = [net(crops[i : i + CHUNK]) for i in range(0, max(len(crops), 1), CHUNK)]
    return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))


def _landmarks(boxes: Tensor, marks: Tensor) -> Tensor:
    """O-Net landmark outputs (N, 10), relative to boxes (N, 4) (inclusive pixels) -> (N, 5, 2) x y pixels."""
    w = boxes[:, 2:3] - boxes[:, 0:1] + 1
    h = boxes[:, 3:4] - boxes[:, 1:2] + 1
    xs = w * marks[:, :5] + boxes[:, 0:1] - 1
    ys = h * marks[:, 5:] + boxes[:, 1:2] - 1
    return torch.stack([xs, ys], dim=2)


# --- loading --------------------------------------------------------------------------------------------------


def _read_state(path: Path) -> Mapping[str, Tensor]:
    """A state dict file, read by :func:`retina.checkpoint.safe_load`; anything else is a :class:`CheckpointError`."""
    state = safe_load(path)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors ({type(state).__name__})")
    return state


def load_mtcnn_files(
    pnet: str | os.PathLike,
    rnet: str | os.PathLike,
    onet: str | os.PathLike,
    cfg: MtcnnCfg | None = None,
    device: str | torch.device = "cpu",
) -> Mtcnn:
    """An :class:`Mtcnn` with its three networks loaded strictly from these state-dict files."""
    model = Mtcnn(cfg)
    for net, path in ((model.pnet, pnet), (model.rnet, rnet), (model.onet, onet)):
        load_weights(net, _read_state(Path(path)), f"MTCNN weights {path}")
    return model.to(device)


def load_mtcnn(folder: str | os.PathLike, cfg: MtcnnCfg | None = None, device: str | torch.device = "cpu") -> Mtcnn:
    """An :class:`Mtcnn` from a folder holding ``pnet.pt``, ``rnet.pt`` and ``onet.pt`` (facenet-pytorch's data/)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"MTCNN weights folder not found: {folder}")
    missing = [name for name in WEIGHT_FILES if not (folder / name).is_file()]
    if missing:
        needs = ", ".join(WEIGHT_FILES)
        raise CheckpointError(f"MTCNN weights folder {folder} lacks {', '.join(missing)} (it needs {needs})")
    return load_mtcnn_files(*(folder / name for name in WEIGHT_FILES), cfg=cfg, device=device)
