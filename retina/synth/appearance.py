"""Face appearance and lighting randomisation of SynthFace v3 (``SynthCfg.face_appearance``, ``.lighting``).

The rendered head is a smooth morphable surface with procedural albedo; real faces carry skin texture, colour
casts, hair volume beyond the skull, glasses and hats, and shadows cast by other things. These functions change a
rendered :class:`~retina.synth.face.FaceSprite` (colour premultiplied by alpha, float32 RGB in [0, 1]) or paint
around it; none of them moves the face box or the landmarks.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from retina.synth.backdrop import natural_color, pink_noise
from retina.synth.face import FaceSprite


def restyle(sprite: FaceSprite, rng: np.random.Generator) -> FaceSprite:
    """Skin texture (1/f and fine grain), a colour cast and a brightness change of one face."""
    h, w = sprite.alpha.shape
    gains = np.clip(rng.normal(1.0, 0.08, 3) * rng.uniform(0.7, 1.25), 0.3, 1.8).astype(np.float32)
    texture = 1.0 + rng.uniform(0.0, 0.3) * (pink_noise(rng, h, w, rng.uniform(0.8, 1.5)) - 0.5)
    grain = 1.0 + rng.uniform(0.0, 0.06) * rng.standard_normal((h, w)).astype(np.float32)
    color = sprite.color * gains * (texture * grain)[..., None]
    return replace(sprite, color=np.clip(color, 0.0, sprite.alpha[..., None]).astype(np.float32))


def shadow(sprite: FaceSprite, rng: np.random.Generator) -> FaceSprite:
    """A shadow cast across the face (soft straight edge), or the whole face in back light."""
    h, w = sprite.alpha.shape
    if rng.uniform() < 0.3:
        factor = np.full((h, w), rng.uniform(0.25, 0.6), np.float32)
    else:
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        signed = ((xx - cx) * math.cos(a) + (yy - cy) * math.sin(a)) / (rng.uniform(0.02, 0.1) * max(h, w))
        dark = rng.uniform(0.3, 0.75)
        factor = (dark + (1.0 - dark) / (1.0 + np.exp(-signed))).astype(np.float32)
    return replace(sprite, color=(sprite.color * factor[..., None]).astype(np.float32))


def hair_mass(
    img: np.ndarray, owner: np.ndarray, k: int, box: np.ndarray, color: tuple[float, ...], rng: np.random.Generator
) -> None:
    """Hair volume around the top and sides of a head (face box x0 y0 x1 y1), painted behind the head."""
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    cx, top = (x0 + x1) / 2, y0 + rng.uniform(0.1, 0.35) * fh
    axes = (fw * rng.uniform(0.6, 0.85), fh * rng.uniform(0.55, 0.8))
    length = fh * rng.uniform(0.0, 1.6) if rng.uniform() < 0.4 else 0.0  # long hair down the sides
    pad = int(max(axes) + length) + 2
    rx0, ry0 = int(cx) - pad, int(top) - pad
    mask = np.zeros((2 * pad + 1, 2 * pad + 1), np.uint8)
    centre = (int(cx) - rx0, int(top) - ry0)
    cv2.ellipse(mask, centre, (max(1, int(axes[0])), max(1, int(axes[1]))), 0, 180, 360, 255, -1, cv2.LINE_AA)
    cv2.ellipse(mask, centre, (max(1, int(axes[0])), max(1, int(0.5 * axes[1] + length))), 0, 0, 180, 255, -1,
                cv2.LINE_AA)  # fmt: skip
    base = np.clip(np.asarray(color, np.float32) * rng.uniform(0.7, 1.2), 0.0, 1.0)
    streaks = pink_noise(rng, mask.shape[0], mask.shape[1], rng.uniform(0.8, 1.6))
    fill = base * (0.6 + 0.8 * streaks)[..., None]
    _paint(img, owner, k, mask, np.clip(fill, 0.0, 1.0), rx0, ry0)


def accessory(
    img: np.ndarray, owner: np.ndarray, box: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator
) -> None:
    """Clear glasses (thin frames around the eyes) or a hat over the top of the head (it hides what it covers)."""
    x0, y0, x1, y1 = box
    fw, fh = x1 - x0, y1 - y0
    if rng.uniform() < 0.5:
        r = max(1, int(0.14 * fw))
        thick = max(1, int(0.025 * fw))
        color = tuple(float(c) for c in natural_color(rng) * 0.5)
        for e in (0, 1):
            c = tuple(np.round(landmarks[e]).astype(int))
            cv2.ellipse(img, c, (r, max(1, int(0.75 * r))), 0, 0, 360, color, thick, cv2.LINE_AA)
        cv2.line(img, tuple(np.round(landmarks[0]).astype(int)), tuple(np.round(landmarks[1]).astype(int)), color,
                 thick, cv2.LINE_AA)  # fmt: skip
        return
    brim_y = y0 + rng.uniform(-0.1, 0.15) * fh
    width = fw * rng.uniform(1.1, 1.6)
    pad = int(width + fh) + 2
    rx0, ry0 = int((x0 + x1) / 2) - pad, int(brim_y) - pad
    mask = np.zeros((2 * pad + 1, 2 * pad + 1), np.uint8)
    c = (pad, pad)
    crown = (max(1, int(0.42 * width)), max(1, int(fh * rng.uniform(0.35, 0.7))))
    cv2.ellipse(mask, c, crown, 0, 180, 360, 255, -1, cv2.LINE_AA)
    cv2.ellipse(mask, c, (max(1, int(width / 2)), max(1, int(0.06 * fh))), 0, 0, 360, 255, -1, cv2.LINE_AA)
    fill = natural_color(rng) * (0.8 + 0.4 * pink_noise(rng, mask.shape[0], mask.shape[1], 1.3))[..., None]
    _paint(img, owner, -1, mask, np.clip(fill, 0.0, 1.0), rx0, ry0)


def illumination(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uneven light over the whole image: a smooth multiplicative field in [0.55, 1.35]."""
    h, w = img.shape[:2]
    field = pink_noise(rng, max(2, h // 8), max(2, w // 8), 2.5)
    lo, hi = rng.uniform(0.55, 0.9), rng.uniform(1.0, 1.35)
    field = cv2.resize(lo + (hi - lo) * field, (w, h), interpolation=cv2.INTER_LINEAR)
    return img * field[..., None]


def _paint(img: np.ndarray, owner: np.ndarray, k: int, mask: np.ndarray, fill: np.ndarray, x0: int, y0: int) -> None:
    """Blend ``fill (h, w, 3)`` through ``mask (h, w) uint8`` at (x0, y0); its opaque pixels become ``k``'s."""
    h, w = img.shape[:2]
    mh, mw = mask.shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + mw, w), min(y0 + mh, h)
    if ix0 >= ix1 or iy0 >= iy1:
        return
    m = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    a = m.astype(np.float32)[..., None] / 255.0
    view = img[iy0:iy1, ix0:ix1]
    view[:] = view * (1.0 - a) + a * fill[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    owner[iy0:iy1, ix0:ix1][m > 127] = k
