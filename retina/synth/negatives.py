"""Hard negatives for SynthFace v3 (``SynthCfg.hard_negatives``): what real photos are full of and is not a face.

Hands, arms, shaded balls and helmets, and skin-coloured textured patches, all shaded so that they look round:
a detector trained on flat-coloured clutter fires on them in real photos. Images are float32 RGB in [0, 1]; the
shapes are drawn where no face is yet (the generator draws them before the faces).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from retina.synth.backdrop import natural_color, pink_noise
from retina.synth.scene import skin_color

NEGATIVE_KINDS = ("hand", "arm", "ball", "helmet", "skin_patch")


def _shaded(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(h, w) float32 shading of a mask as a rounded object: brighter inside, lit from a random side."""
    dist = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 3)
    bulge = np.sqrt(dist / max(float(dist.max()), 1.0))
    h, w = mask.shape
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    side = ((xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a)) / max(h, w)
    return np.clip(0.45 + 0.55 * bulge + 0.5 * side, 0.15, 1.3).astype(np.float32)


def _blend(img: np.ndarray, mask: np.ndarray, color: np.ndarray, x0: int, y0: int) -> None:
    """Paint ``color (h, w, 3)`` through ``mask (h, w) uint8`` at (x0, y0), clipped to the image."""
    h, w = img.shape[:2]
    mh, mw = mask.shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + mw, w), min(y0 + mh, h)
    if ix0 >= ix1 or iy0 >= iy1:
        return
    m = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0].astype(np.float32)[..., None] / 255.0
    c = color[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    view = img[iy0:iy1, ix0:ix1]
    view[:] = view * (1.0 - m) + m * c


def _hand(rng: np.random.Generator, size: float) -> np.ndarray:
    """Mask of an open or closed hand about ``size`` pixels long."""
    s = math.ceil(size * 1.6) + 4
    mask = np.zeros((s, s), np.uint8)
    c = np.array([s / 2, s / 2 + 0.15 * size])
    a = rng.uniform(0, 2 * math.pi)
    palm = (max(1, int(0.22 * size)), max(1, int(0.27 * size)))
    cv2.ellipse(mask, tuple(np.round(c).astype(int)), palm, math.degrees(a), 0, 360, 255, -1, cv2.LINE_AA)
    spread = rng.uniform(0.05, 0.3)
    length = rng.uniform(0.25, 0.5) * size  # short: a fist
    for k in range(4):
        d = a - math.pi / 2 + (k - 1.5) * spread
        base = c + 0.22 * size * np.array([math.cos(d), math.sin(d)])
        tip = base + length * (1 - 0.1 * abs(k - 1.5)) * np.array([math.cos(d), math.sin(d)])
        cv2.line(mask, tuple(np.round(base).astype(int)), tuple(np.round(tip).astype(int)), 255,
                 max(1, int(0.09 * size)), cv2.LINE_AA)  # fmt: skip
    d = a + rng.choice([-1, 1]) * rng.uniform(0.9, 1.6)
    tip = c + 0.45 * size * np.array([math.cos(d), math.sin(d)])
    cv2.line(mask, tuple(np.round(c).astype(int)), tuple(np.round(tip).astype(int)), 255, max(1, int(0.1 * size)),
             cv2.LINE_AA)  # fmt: skip
    return mask


def _arm(rng: np.random.Generator, size: float) -> np.ndarray:
    """Mask of a forearm: a tapered capsule about ``size`` pixels long."""
    s = math.ceil(size) + 4
    mask = np.zeros((s, s), np.uint8)
    a = rng.uniform(0, 2 * math.pi)
    d = 0.45 * size * np.array([math.cos(a), math.sin(a)])
    c = np.array([s / 2, s / 2])
    width = max(1, int(rng.uniform(0.12, 0.2) * size))
    p0, p1 = tuple(np.round(c - d).astype(int)), tuple(np.round(c + d).astype(int))
    cv2.line(mask, p0, p1, 255, width, cv2.LINE_AA)
    cv2.circle(mask, p1, max(1, int(width * 0.6)), 255, -1, cv2.LINE_AA)
    return mask


def _disc(size: float) -> np.ndarray:
    s = math.ceil(size) + 4
    mask = np.zeros((s, s), np.uint8)
    cv2.circle(mask, (s // 2, s // 2), max(1, int(size / 2)), 255, -1, cv2.LINE_AA)
    return mask


def draw_negative(img: np.ndarray, rng: np.random.Generator, size: float, kind: str) -> None:
    """Draw one hard negative of ``kind`` (see ``NEGATIVE_KINDS``) about ``size`` pixels across."""
    h, w = img.shape[:2]
    if kind == "hand":
        mask, base = _hand(rng, size), np.asarray(skin_color(rng), np.float32)
    elif kind == "arm":
        skin = rng.uniform() < 0.6
        mask, base = _arm(rng, size), np.asarray(skin_color(rng) if skin else natural_color(rng), np.float32)
    elif kind in ("ball", "helmet"):
        mask, base = _disc(size), natural_color(rng) if rng.uniform() < 0.7 else np.asarray(skin_color(rng))
    else:  # a skin-coloured patch with texture: a neck, a knee, a bald head from above
        mask = np.zeros((int(size) + 4, int(size) + 4), np.uint8)
        axes = (max(1, int(size * rng.uniform(0.25, 0.5))), max(1, int(size * rng.uniform(0.25, 0.5))))
        cv2.ellipse(mask, (mask.shape[1] // 2, mask.shape[0] // 2), axes, float(rng.uniform(0, 180)), 0, 360, 255,
                    -1, cv2.LINE_AA)  # fmt: skip
        base = np.asarray(skin_color(rng), np.float32)
    mh, mw = mask.shape
    shade = _shaded(mask, rng)
    texture = 1.0 + rng.uniform(0.0, 0.25) * (pink_noise(rng, mh, mw, 1.2) - 0.5)
    color = base[None, None, :] * (shade * texture)[..., None]
    if kind == "helmet":  # a dark visor band across the middle, with a highlight
        band = slice(int(mh * rng.uniform(0.35, 0.5)), int(mh * rng.uniform(0.55, 0.7)))
        color[band] = color[band] * 0.15
    if kind in ("ball", "helmet"):  # specular highlight
        hx, hy = int(mw * rng.uniform(0.3, 0.7)), int(mh * rng.uniform(0.2, 0.45))
        cv2.circle(color, (hx, hy), max(1, int(0.08 * size)), (1.0, 1.0, 1.0), -1, cv2.LINE_AA)
    x0, y0 = int(rng.integers(-mw // 2, w - mw // 2)), int(rng.integers(-mh // 2, h - mh // 2))
    _blend(img, mask, np.clip(color, 0.0, 1.0).astype(np.float32), x0, y0)


def hard_negatives(img: np.ndarray, rng: np.random.Generator, count: int, size_range: tuple[float, float]) -> None:
    """Draw ``count`` hard negatives with log-uniform sizes in ``size_range`` pixels."""
    lo, hi = math.log(size_range[0]), math.log(size_range[1])
    for _ in range(count):
        kind = NEGATIVE_KINDS[int(rng.integers(len(NEGATIVE_KINDS)))]
        draw_negative(img, rng, math.exp(rng.uniform(lo, hi)), kind)
