"""A stand-in for the detector network whose output is known exactly: faces at fixed fractions of the input.

``MirrorFaces`` returns raw predictions (as a :class:`~retina.models.detector.Predictions`) that decode to
the given faces, placed at fractions of the network input's width and height. An input whose right half is
brighter than its left half is taken as the mirror image of the scene: the faces are then mirrored too (x ->
1 - x, left and right landmarks swapped, as a real face's would be). Test images are therefore drawn brighter
on the left. After a correct resize and flip mapping, every pass of every protocol gives the same faces in
original-image pixels: the fractions times the image's width and height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from retina.coding import encode_boxes, encode_landmarks
from retina.config import DetectorCfg, preset
from retina.models.detector import Predictions
from retina.priors import make_priors

MIRROR = [1, 0, 2, 4, 3]  # left/right landmark swap of a mirrored face


@dataclass(frozen=True)
class Face:
    """box: x1 y1 x2 y2 and marks: (5, 2) x y, as fractions of the image width and height; score in (0, 1)."""

    box: tuple[float, float, float, float]
    marks: tuple[tuple[float, float], ...]
    score: float

    def pixels(self, width: float, height: float, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(box (4,), marks (5, 2)) in pixels of a width x height image (mirrored if asked)."""
        box = np.array(self.box, np.float64)
        marks = np.array(self.marks, np.float64)
        if mirrored:
            box = np.array([1 - box[2], box[1], 1 - box[0], box[3]])
            marks = marks[MIRROR]
            marks[:, 0] = 1 - marks[:, 0]
        return box * [width, height, width, height], marks * [width, height]


FACES = (
    Face((0.1, 0.2, 0.4, 0.6), ((0.18, 0.33), (0.32, 0.34), (0.25, 0.42), (0.2, 0.5), (0.3, 0.51)), 0.9),
    Face((0.55, 0.45, 0.75, 0.75), ((0.6, 0.55), (0.7, 0.54), (0.66, 0.62), (0.61, 0.68), (0.69, 0.69)), 0.75),
)


class MirrorFaces:
    """Callable like a detector network: images (B, 3, H, W) -> Predictions (float64) of ``faces``."""

    def __init__(self, faces: tuple[Face, ...] = FACES, cfg: DetectorCfg | None = None) -> None:
        self.faces = faces
        self.cfg = cfg or preset("mobilenet0.25")

    def __call__(self, x: Tensor) -> Predictions:
        b, _, h, w = x.shape
        priors = make_priors((h, w), self.cfg.priors.strides, self.cfg.priors.sizes, torch.float64)
        v = self.cfg.priors.variances
        logits = torch.zeros(b, len(priors), 2, dtype=torch.float64)
        logits[..., 1] = -30.0  # background everywhere but at the faces' anchors
        boxes = torch.zeros(b, len(priors), 4, dtype=torch.float64)
        marks = torch.zeros(b, len(priors), 10, dtype=torch.float64)
        for i in range(b):
            mirrored = bool(x[i, :, :, : w // 2].mean() < x[i, :, :, w - w // 2 :].mean())
            for k, face in enumerate(self.faces):
                box, pts = (torch.from_numpy(a) for a in face.pixels(w, h, mirrored))
                a = k * (len(priors) // len(self.faces))  # any anchor decodes exactly; one per face
                logits[i, a, 1] = math.log(face.score / (1 - face.score))
                boxes[i, a] = encode_boxes(box, priors[a], v)
                marks[i, a] = encode_landmarks(pts, priors[a], v)
        return Predictions(logits, boxes, marks)


def scene(height: int, width: int) -> np.ndarray:
    """A BGR test image, brighter on the left (what ``MirrorFaces`` takes as unmirrored)."""
    image = np.full((height, width, 3), 40, np.uint8)
    image[:, : width // 2] = 200
    return image
