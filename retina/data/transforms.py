"""Joint image / box / landmark augmentation for training (arXiv 1905.00641 section 4.1, S3FD style).

A training sample is an image (H, W, 3) uint8 BGR with faces: boxes (N, 4) float32 x1 y1 x2 y2 pixels,
landmarks (N, 5, 2) float32 pixels and has_landmarks (N,) bool. Steps, in order:
1. random square crop with side in ``crop_scales`` x the short side; faces whose centre lies inside are
   kept (boxes clipped to the crop), others dropped; up to 50 tries to keep at least one face, else the
   whole image padded to a square (no face is lost);
2. photometric distortion (brightness, contrast, saturation, hue; each with probability 1/2);
3. resize to ``image_size`` x ``image_size``; faces below ``min_face`` pixels are dropped;
4. horizontal flip with probability 1/2, swapping left/right landmarks.
Every random draw comes from the ``numpy.random.Generator`` passed in, so a sample is a pure function of
(image, faces, seed): that is what makes training resumable bit for bit, whatever the worker count.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retina.config import AugmentCfg

FLIP_LANDMARKS = np.array([1, 0, 2, 4, 3])  # left eye <-> right eye, left mouth <-> right mouth
_CROP_TRIES = 50


@dataclass(frozen=True)
class Sample:
    """image (H, W, 3) uint8 BGR; boxes (N, 4) xyxy px; landmarks (N, 5, 2) px; has_landmarks (N,) bool."""

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    has_landmarks: np.ndarray

    def select(self, keep: np.ndarray) -> Sample:
        return Sample(self.image, self.boxes[keep], self.landmarks[keep], self.has_landmarks[keep])


def random_square_crop(s: Sample, scales: tuple[float, float], rng: np.random.Generator) -> Sample:
    """Crop a random square (side = U(scales) x short side) keeping faces whose centre is inside."""
    h, w = s.image.shape[:2]
    centres = (s.boxes[:, :2] + s.boxes[:, 2:]) / 2
    for _ in range(_CROP_TRIES):
        side = max(1, int(rng.uniform(*scales) * min(h, w)))
        x0 = int(rng.integers(0, w - side + 1))
        y0 = int(rng.integers(0, h - side + 1))
        inside = (centres[:, 0] > x0) & (centres[:, 0] < x0 + side) & (centres[:, 1] > y0) & (centres[:, 1] < y0 + side)
        if inside.any() or len(s.boxes) == 0:
            kept = s.select(inside)
            offset = np.array([x0, y0], np.float32)
            boxes = kept.boxes - np.tile(offset, 2)
            boxes = np.clip(boxes, 0, side).astype(np.float32)
            image = s.image[y0 : y0 + side, x0 : x0 + side]
            return Sample(image, boxes, (kept.landmarks - offset).astype(np.float32), kept.has_landmarks)
    # No crop kept a face: pad the whole image to a square instead, so that no face is lost.
    side = max(h, w)
    image = np.zeros((side, side, 3), np.uint8)
    image[:h, :w] = s.image
    return Sample(image, s.boxes, s.landmarks, s.has_landmarks)


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness (+-32), contrast (x0.5-1.5), saturation (x0.5-1.5) and hue (+-18 degrees).

    The arithmetic is float32 per pixel, clipped and truncated to uint8 where the image is converted (before the
    HSV round trip, and at the end). Every step is a function of one 8-bit value (a channel, or an HSV channel),
    so it is applied through 256-entry look-up tables computed with those same float32 operations: equal to the
    bit to converting the whole image to float32, at a fraction of the cost.
    """
    level = np.arange(256, dtype=np.float32)  # what each uint8 level becomes, as the float32 image would hold it
    lut, changed = level.copy(), False
    if rng.random() < 0.5:
        lut += rng.uniform(-32, 32)
        changed = True
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        lut *= rng.uniform(0.5, 1.5)
        changed = True
    do_sat, do_hue = rng.random() < 0.5, rng.random() < 0.5
    if do_sat or do_hue:
        if changed:
            image = cv2.LUT(image, _to_uint8(lut))
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        hue, sat = level.copy(), level.copy()
        if do_sat:
            sat = np.clip(sat * rng.uniform(0.5, 1.5), 0, 255)
        if do_hue:
            hue = (hue + rng.uniform(-9, 9)) % 180  # OpenCV hue units are 2 degrees
        tables = np.stack([hue, sat, level], axis=-1).astype(np.uint8).reshape(256, 1, 3)
        image = cv2.cvtColor(cv2.LUT(hsv, tables), cv2.COLOR_HSV2BGR)
        lut, changed = level.copy(), False
    if not contrast_first and rng.random() < 0.5:
        lut *= rng.uniform(0.5, 1.5)
        changed = True
    return cv2.LUT(image, _to_uint8(lut)) if changed else np.ascontiguousarray(image)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """float32 levels -> uint8 as ``np.clip(x, 0, 255).astype(np.uint8)`` converts an image."""
    return np.clip(values, 0, 255).astype(np.uint8)


def resize(s: Sample, size: int, min_face: float) -> Sample:
    """Resize to size x size; drop faces whose width or height falls below ``min_face`` pixels."""
    h, w = s.image.shape[:2]
    sx, sy = size / w, size / h
    image = cv2.resize(s.image, (size, size), interpolation=cv2.INTER_LINEAR)
    boxes = (s.boxes * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)
    landmarks = (s.landmarks * np.array([sx, sy], np.float32)).astype(np.float32)
    keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= min_face
    return Sample(image, boxes, landmarks, s.has_landmarks).select(keep)


def hflip(s: Sample) -> Sample:
    """Mirror the image; x -> W - x for boxes and landmarks, left/right landmarks swapped."""
    w = s.image.shape[1]
    boxes = s.boxes.copy()
    boxes[:, [0, 2]] = w - s.boxes[:, [2, 0]]
    landmarks = s.landmarks[:, FLIP_LANDMARKS].copy()
    landmarks[..., 0] = w - landmarks[..., 0]
    return Sample(cv2.flip(s.image, 1), boxes, landmarks, s.has_landmarks)  # = a contiguous [:, ::-1], faster


def augment(s: Sample, cfg: AugmentCfg, rng: np.random.Generator) -> Sample:
    """The whole training augmentation (module docstring); output image is image_size x image_size."""
    s = random_square_crop(s, cfg.crop_scales, rng)
    if cfg.photometric:
        s = Sample(photometric(s.image, rng), s.boxes, s.landmarks, s.has_landmarks)
    s = resize(s, cfg.image_size, cfg.min_face)
    if cfg.flip and rng.random() < 0.5:
        s = hflip(s)
    return s
