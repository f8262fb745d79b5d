"""A contact sheet of a SynthFace split: images with their boxes and landmarks drawn (for eyeballing).

Box colour gives the difficulty (green easy, yellow medium, orange hard, grey ignored); landmark dots
are blue (0, the eye with the smaller image x on a frontal face), red (1), green (2, nose), magenta (3),
cyan (4), and hollow when flagged occluded.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from retina.errors import RetinaError
from retina.results import write_bytes
from retina.synth.splits import read_meta

BOX_BGR = {"easy": (60, 200, 60), "medium": (0, 220, 255), "hard": (0, 140, 255), None: (150, 150, 150)}
LANDMARK_BGR = ((255, 80, 0), (0, 0, 255), (0, 200, 0), (255, 0, 255), (255, 255, 0))


def draw_annotations(img: np.ndarray, faces: list[dict], scale: float = 1.0) -> np.ndarray:
    """Draw boxes and landmarks of metadata ``faces`` on a copy of a BGR uint8 image that shows the
    original image resized by ``scale``."""
    out = img.copy()
    for f in faces:
        x, y, w, h = (v * scale for v in f["box"])
        cv2.rectangle(out, (round(x), round(y)), (round(x + w), round(y + h)), BOX_BGR[f["difficulty"]], 1)
        r = 1 if h < 30 else 2
        for (lx, ly), flag, color in zip(f["landmarks"], f["landmark_flags"], LANDMARK_BGR, strict=True):
            cv2.circle(out, (round(lx * scale), round(ly * scale)), r, color, -1 if flag == 0 else 1)
    return out


def contact_sheet(
    split_dir: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    n: int = 8,
    cols: int = 4,
    tile: int = 320,
    levels: int = 256,
) -> Path:
    """Write a PNG grid of the first ``n`` images of a split (each fitted into ``tile`` x ``tile``).

    levels < 256 posterises the images (not the drawings) to that many values per channel, for a
    much smaller file (the documentation's sheet uses 16).
    """
    if not 2 <= levels <= 256:
        raise RetinaError(f"contact sheet levels must be in [2, 256], got {levels}")
    metas = read_meta(split_dir)[:n]
    if not metas:
        raise RetinaError(f"no images in {split_dir}")
    rows = math.ceil(len(metas) / cols)
    sheet = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    for k, meta in enumerate(metas):
        img = cv2.imread(str(Path(split_dir) / "images" / meta["path"]), cv2.IMREAD_COLOR)
        if img is None:
            raise RetinaError(f"cannot read image {meta['path']} of {split_dir}")
        scale = tile / max(img.shape[:2])
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if levels < 256:
            step = 256 // levels
            img = (img // step * step + step // 2).astype(np.uint8)
        drawn = draw_annotations(img, meta["faces"], scale)
        r, c = divmod(k, cols)
        sheet[r * tile : r * tile + drawn.shape[0], c * tile : c * tile + drawn.shape[1]] = drawn
    ok, buf = cv2.imencode(".png", sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RetinaError("PNG encoding failed")
    return write_bytes(out_png, buf.tobytes())
