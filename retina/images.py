"""Image input: files or arrays -> HxWx3 uint8 BGR (the OpenCV convention the API uses)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from retina.errors import RetinaError

ImageLike = np.ndarray | str | os.PathLike


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR; a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise RetinaError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise RetinaError(f"cannot decode image (corrupt or not an image): {path}")
    return to_bgr(image, str(path))


def to_bgr(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Grayscale (H, W) / (H, W, 1), BGR (H, W, 3) or BGRA (H, W, 4) -> contiguous (H, W, 3) uint8 BGR.

    16-bit images are scaled to 8 bits; float images are expected in [0, 255].
    """
    if not isinstance(image, np.ndarray):
        raise RetinaError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise RetinaError(f"{name}: expected HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise RetinaError(f"{name}: empty image (shape {image.shape})")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        if not np.isfinite(image).all():
            raise RetinaError(f"{name}: image has NaN or infinite values")
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image)


def load(image: ImageLike, index: int = 0) -> tuple[np.ndarray, str]:
    """An array or a path -> (BGR uint8 image, a name for messages and outputs)."""
    if isinstance(image, np.ndarray):
        return to_bgr(image, f"image {index}"), f"image_{index}"
    return read_image(image), str(image)
