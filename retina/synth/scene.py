"""SynthFace 2D scene parts: cluttered backgrounds, distractors, bodies, occluders and image degradations.

Images here are float32 RGB in [0, 1], (H, W, 3). Drawing that hides faces also writes an ``owner``
map (H, W) int32 (face index, or -1 for an occluding object), from which the generator measures how
much of each face stays visible. Every random choice comes from the ``numpy.random.Generator`` passed
in, so a scene is a pure function of its seed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from retina.mesh.morphable import SKIN_TONES

OCCLUDERS = ("hand", "mask", "sunglasses", "object")


def _color(rng: np.random.Generator, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(lo, hi, 3))  # type: ignore[return-value]


def skin_color(rng: np.random.Generator) -> tuple[float, float, float]:
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    rgb = SKIN_TONES[i] + (t - i) * (SKIN_TONES[i + 1] - SKIN_TONES[i])
    return tuple(float(c) for c in np.clip(rgb + rng.normal(0, 0.03, 3), 0, 1))  # type: ignore[return-value]


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A cluttered procedural background (H, W, 3): gradient, low-frequency colour, shapes, textures."""
    c0, c1 = rng.uniform(0.05, 0.95, (2, 3))
    angle = rng.uniform(0, 2 * math.pi)
    t = np.add.outer(np.arange(h, dtype=np.float32) * math.sin(angle), np.arange(w, dtype=np.float32) * math.cos(angle))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0.astype(np.float32) + t[..., None] * (c1 - c0).astype(np.float32)
    low = rng.uniform(-0.15, 0.15, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3)).astype(np.float32)
    img += cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(8, 40))):
        _shape(img, rng, skin_prob=0.1)
    for _ in range(int(rng.integers(0, 4))):
        _texture_patch(img, rng)
    return np.clip(img, 0.0, 1.0)


def _shape(img: np.ndarray, rng: np.random.Generator, skin_prob: float) -> None:
    h, w = img.shape[:2]
    color = skin_color(rng) if rng.uniform() < skin_prob else _color(rng)
    cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
    size = int(max(4, math.exp(rng.uniform(math.log(6), math.log(max(h, w) / 2)))))
    kind = rng.integers(0, 4)
    if kind == 0:
        cv2.rectangle(img, (cx - size // 2, cy - size // 3), (cx + size // 2, cy + size // 3), color, -1)
    elif kind == 1:
        axes = (size // 2, max(1, int(size * rng.uniform(0.2, 0.7))))
        cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
    elif kind == 2:
        pts = (np.array([cx, cy]) + rng.normal(0, size / 2, (int(rng.integers(3, 7)), 2))).astype(np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
    else:
        end = (cx + int(rng.integers(-size, size + 1)), cy + int(rng.integers(-size, size + 1)))
        cv2.line(img, (cx, cy), end, color, int(rng.integers(1, 6)), cv2.LINE_AA)


def _texture_patch(img: np.ndarray, rng: np.random.Generator) -> None:
    """Stripes, a checkerboard (windows, tiles) or blurred noise (foliage) in a random rectangle."""
    h, w = img.shape[:2]
    ph, pw = int(rng.integers(h // 8, h // 2 + 1)), int(rng.integers(w // 8, w // 2 + 1))
    y0, x0 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    c0, c1 = np.asarray(_color(rng), np.float32), np.asarray(_color(rng), np.float32)
    yy, xx = np.mgrid[0:ph, 0:pw]
    period = int(rng.integers(4, 24))
    kind = rng.integers(0, 3)
    if kind == 0:
        t = ((xx if rng.uniform() < 0.5 else yy) // period) % 2
    elif kind == 1:
        t = (xx // period + yy // period) % 2
    else:
        noise = rng.uniform(0, 1, (max(1, ph // 3), max(1, pw // 3))).astype(np.float32)
        t = cv2.resize(noise, (pw, ph), interpolation=cv2.INTER_LINEAR)
    img[y0 : y0 + ph, x0 : x0 + pw] = c0 + t[..., None].astype(np.float32) * (c1 - c0)


def skin_blob(img: np.ndarray, rng: np.random.Generator) -> None:
    """A face-like distractor: a skin-coloured oval with at most two dark spots (no nose, no mouth)."""
    h, w = img.shape[:2]
    size = math.exp(rng.uniform(math.log(8), math.log(max(16, min(h, w) / 3))))
    cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
    axes = (max(2, int(size * rng.uniform(0.3, 0.5))), max(2, int(size * rng.uniform(0.4, 0.6))))
    cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(-30, 30)), 0, 360, skin_color(rng), -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):
        dx, dy = rng.uniform(-0.5, 0.5) * axes[0], rng.uniform(-0.5, 0.5) * axes[1]
        r = max(1, int(size * rng.uniform(0.03, 0.08)))
        cv2.circle(img, (int(cx + dx), int(cy + dy)), r, _color(rng, 0.0, 0.25), -1, cv2.LINE_AA)


def _roi(shape: tuple[int, ...], x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice, int, int] | None:
    """Clipped integer window (rows, cols) of an image around a float rectangle, and its origin."""
    h, w = shape[:2]
    c0, r0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
    c1, r1 = min(math.ceil(x1) + 1, w), min(math.ceil(y1) + 1, h)
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0, r1), slice(c0, c1), c0, r0


def _pt(p: np.ndarray, ox: int, oy: int) -> tuple[int, int]:
    return round(p[0] - ox), round(p[1] - oy)


def draw_body(
    img: np.ndarray,
    owner: np.ndarray,
    face_id: int,
    box: np.ndarray,
    roll_rad: float,
    rng: np.random.Generator,
    skin: tuple[float, float, float],
) -> None:
    """Neck and shoulders below a face box (x0 y0 x1 y1 image pixels), painted before the head."""
    x0, y0, x1, y1 = box
    fh, fw = y1 - y0, x1 - x0
    down = np.array([math.sin(roll_rad), math.cos(roll_rad)])
    side = np.array([down[1], -down[0]])
    chin = np.array([(x0 + x1) / 2, y1])
    # Shoulders: a polygon from the neck base out to the shoulder tips and down.
    # (along "down" in face heights, along "side" in face heights) of the outline, clockwise.
    outline = ((0.35, 0.2), (0.6, 1.3), (2.6, 1.5), (2.6, -1.5), (0.6, -1.3), (0.35, -0.2))
    torso = np.array([chin + down * a * fh + side * b * fh for a, b in outline])
    neck_top, neck_end = chin - down * 0.2 * fh, chin + down * 0.5 * fh
    lo, hi = torso.min(0), torso.max(0)
    roi = _roi(img.shape, min(lo[0], x0), min(lo[1], y0), max(hi[0], x1), max(hi[1], y1))
    if roi is None:
        return
    rows, cols, ox, oy = roi
    layer = np.zeros(img[rows, cols].shape[:2], np.uint8)
    cv2.line(layer, _pt(neck_top, ox, oy), _pt(neck_end, ox, oy), 1, max(1, int(0.45 * fw)))
    cv2.fillPoly(layer, [np.round(torso - np.array([ox, oy])).astype(np.int32)], 2)
    view = img[rows, cols]
    view[layer == 1] = np.asarray(skin, np.float32) * 0.8
    view[layer == 2] = _color(rng, 0.05, 0.9)
    owner[rows, cols][layer > 0] = face_id


def draw_occluder(
    img: np.ndarray,
    owner: np.ndarray,
    kind: str,
    box: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Paint an occluding object over a face (box x0 y0 x1 y1, landmarks (5, 2) image pixels)."""
    x0, y0, x1, y1 = box
    fh, fw = y1 - y0, x1 - x0
    roi = _roi(img.shape, x0 - fh, y0 - fh, x1 + fh, y1 + fh)
    if roi is None:
        return
    rows, cols, ox, oy = roi
    layer = np.zeros(img[rows, cols].shape[:2], np.uint8)
    lm = landmarks - np.array([ox, oy])
    x0, x1, y0, y1 = x0 - ox, x1 - ox, y0 - oy, y1 - oy
    if kind == "mask":  # a face mask from below the nose to the chin
        top = lm[2, 1] + 0.05 * fh
        poly = np.array(
            [
                [x0 + 0.08 * fw, top],
                [x1 - 0.08 * fw, top],
                [x1 - 0.15 * fw, y1 - 0.02 * fh],
                [(x0 + x1) / 2, y1 + 0.02 * fh],
                [x0 + 0.15 * fw, y1 - 0.02 * fh],
            ]
        )
        cv2.fillPoly(layer, [np.round(poly).astype(np.int32)], 255, cv2.LINE_AA)
        color = _color(rng, 0.5, 1.0) if rng.uniform() < 0.7 else _color(rng, 0.0, 0.3)
    elif kind == "sunglasses":
        r = max(1, int(0.13 * fw))
        for k in (0, 1):
            cv2.ellipse(layer, _pt(lm[k], 0, 0), (r, max(1, int(0.75 * r))), 0, 0, 360, 255, -1, cv2.LINE_AA)
        cv2.line(layer, _pt(lm[0], 0, 0), _pt(lm[1], 0, 0), 255, max(1, int(0.03 * fw)))
        color = _color(rng, 0.0, 0.15)
    elif kind == "hand":  # palm with fingers over part of the face
        c = np.array([rng.uniform(x0, x1), rng.uniform((y0 + y1) / 2, y1 + 0.2 * fh)])
        r = 0.28 * fh
        cv2.ellipse(
            layer,
            _pt(c, 0, 0),
            (max(1, int(r)), max(1, int(0.8 * r))),
            float(rng.uniform(0, 180)),
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
        )
        ang = rng.uniform(-math.pi, 0)
        for k in range(4):
            a = ang + (k - 1.5) * 0.3
            tip = c + 1.9 * r * np.array([math.cos(a), math.sin(a)])
            cv2.line(layer, _pt(c, 0, 0), _pt(tip, 0, 0), 255, max(1, int(0.22 * r)), cv2.LINE_AA)
        color = skin_color(rng)
    else:  # "object": a sign, a cup, a microphone: a random box or disc entering the face box
        c = np.array([rng.uniform(x0 - 0.3 * fw, x1 + 0.3 * fw), rng.uniform(y0, y1 + 0.3 * fh)])
        size = rng.uniform(0.3, 0.8) * fh
        if rng.uniform() < 0.5:
            cv2.rectangle(layer, _pt(c - size / 2, 0, 0), _pt(c + size / 2, 0, 0), 255, -1)
        else:
            cv2.circle(layer, _pt(c, 0, 0), max(1, int(size / 2)), 255, -1, cv2.LINE_AA)
        color = _color(rng)
    cover = layer.astype(np.float32)[..., None] / 255.0
    shade = 0.85 + 0.15 * rng.uniform()
    view = img[rows, cols]
    view[:] = view * (1.0 - cover) + cover * (np.asarray(color, np.float32) * shade)
    owner[rows, cols][layer > 127] = -1


def motion_kernel(length: float, angle_rad: float) -> np.ndarray:
    """A normalised line kernel (k, k) float32 of the given length (pixels) and direction."""
    k = max(3, math.ceil(length) | 1)
    kernel = np.zeros((k, k), np.float32)
    c = (k - 1) / 2
    d = np.array([math.cos(angle_rad), math.sin(angle_rad)]) * (length - 1) / 2
    cv2.line(
        kernel,
        tuple(np.round((c - d[0], c - d[1])).astype(int)),
        tuple(np.round((c + d[0], c + d[1])).astype(int)),
        1.0,
        1,
        cv2.LINE_AA,
    )
    return kernel / kernel.sum()


def blur(img: np.ndarray, gaussian_sigma: float, motion_length: float, motion_angle: float) -> np.ndarray:
    """Gaussian then motion blur (either may be 0), on an (H, W, C) or (H, W) float32 array."""
    out = img
    if gaussian_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), gaussian_sigma, borderType=cv2.BORDER_CONSTANT)
    if motion_length > 1:
        kernel = motion_kernel(motion_length, motion_angle)
        out = cv2.filter2D(out, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    return out


def blur_sigma(gaussian_sigma: float, motion_length: float) -> float:
    """Effective standard deviation (pixels) of a Gaussian plus a line kernel (std length / sqrt 12)."""
    return math.sqrt(gaussian_sigma**2 + (motion_length**2 / 12.0 if motion_length > 1 else 0.0))


def to_jpeg(img: np.ndarray, quality: int) -> bytes:
    """Encode a float32 RGB [0, 1] image as JPEG bytes (baseline, deterministic libjpeg settings)."""
    bgr = cv2.cvtColor(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
