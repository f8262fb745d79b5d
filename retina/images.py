"""Image input: files or arrays -> HxWx3 uint8 BGR (the OpenCV convention the API uses)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import cv2
import numpy as np

from retina.errors import RetinaError

ImageLike = np.ndarray | str | os.PathLike

# File suffixes taken for images when searching folders and matching ground-truth names (compared lower-cased).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def is_image_file(path: Path) -> bool:
    """A file whose suffix, in any case, is one of ``IMAGE_SUFFIXES``."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def find_image(folder: Path, stem: str) -> Path | None:
    """The image file ``folder/<stem>.<suffix>`` (suffix in any case); None if there is none.

    More than one (``a.jpg`` and ``a.png``) is an error: which one was meant is not ours to guess.
    """
    found = [p for p in folder.glob(glob.escape(stem) + ".*") if p.stem == stem and is_image_file(p)]
    if len(found) > 1:
        names = ", ".join(sorted(p.name for p in found))
        raise RetinaError(f"{folder}: several image files for {stem!r} ({names}); keep one")
    return found[0] if found else None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR, the same array as ``cv2.imread(path)``.

    Like ``cv2.imread``: EXIF orientation applied, alpha dropped, 16-bit reduced to its high byte. The bytes
    are read by numpy so that non-ASCII paths work everywhere. A missing or undecodable file is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise RetinaError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise RetinaError(f"cannot decode image (corrupt or not an image): {path}")
    return image


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
