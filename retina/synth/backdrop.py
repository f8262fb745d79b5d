"""Backdrops with natural-image statistics (SynthFace v3, ``SynthCfg.natural_backdrop``).

Real photos are not flat colours: they are occlusions of objects at every scale, each textured, some out of
focus. The dead-leaves model (Lee, Mumford and Huang 2001) reproduces the scale invariance and the roughly 1/f
amplitude spectrum of natural images by stacking opaque random shapes whose sizes follow a power law; Baradad
et al. 2021 found such procedural images useful training data. Here each leaf is filled with a flat colour, a
colour gradient, 1/f noise, stripes or a checkerboard; leaves drawn early (far) are blurred more (depth of field).

Images are float32 RGB in [0, 1], (H, W, 3); every random choice comes from the generator passed in.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Natural scenes are mostly desaturated: colours are drawn as a grey level plus a modest chroma.
SMALL_LEAF = 24  # leaves smaller than this (pixels) are flat: texture would not show
LEAF_SIZE_EXPONENT = 3.0  # p(r) ~ r^-3 for the leaves' radii: scale-invariant occlusions (dead leaves)


def natural_color(rng: np.random.Generator) -> np.ndarray:
    """(3,) RGB: a grey level, a hue direction and a chroma that is usually small."""
    grey = rng.beta(2.0, 2.0)
    chroma = rng.exponential(0.12)
    hue = rng.normal(0.0, 1.0, 3)
    hue -= hue.mean()
    hue /= max(math.sqrt(sum(float(h) * float(h) for h in hue)), 1e-6)  # not np.linalg.norm: BLAS rounds by CPU
    return np.clip(grey + chroma * hue, 0.0, 1.0).astype(np.float32)


def pink_noise(rng: np.random.Generator, h: int, w: int, exponent: float = 1.0) -> np.ndarray:
    """(H, W) float32 noise with a 1/f^exponent amplitude spectrum, scaled to [0, 1]."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    radius = np.hypot(fy, fx)
    radius[0, 0] = 1.0
    spectrum = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) / radius**exponent
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(h, w))
    lo, hi = field.min(), field.max()
    return ((field - lo) / max(hi - lo, 1e-9)).astype(np.float32)


def _fill(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) content of one leaf: flat, gradient, 1/f noise, stripes or checkerboard."""
    c0 = natural_color(rng)
    if max(h, w) < SMALL_LEAF:
        return np.broadcast_to(c0, (h, w, 3))
    c1 = natural_color(rng)
    kind = rng.choice(5, p=(0.35, 0.2, 0.25, 0.1, 0.1))
    if kind == 0:
        return np.broadcast_to(c0, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    u, v = xx * math.cos(a) + yy * math.sin(a), -xx * math.sin(a) + yy * math.cos(a)
    if kind == 1:
        t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    elif kind == 2:
        t = pink_noise(rng, h, w, rng.uniform(0.8, 1.6))
    else:
        period = rng.uniform(3.0, 30.0)
        t = np.floor(u / period) % 2 if kind == 3 else (np.floor(u / period) + np.floor(v / period)) % 2
    return c0 + t[..., None] * (c1 - c0)


def _leaf_mask(rng: np.random.Generator, h: int, w: int, radius: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A random shape of about ``radius`` pixels: (mask (bh, bw) uint8, its window x0 y0 x1 y1 in the image)."""
    cx, cy = rng.uniform(-radius, w + radius), rng.uniform(-radius, h + radius)
    x0, y0 = max(int(cx - 1.5 * radius), 0), max(int(cy - 1.5 * radius), 0)
    x1, y1 = min(int(cx + 1.5 * radius) + 1, w), min(int(cy + 1.5 * radius) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return np.zeros((0, 0), np.uint8), (0, 0, 0, 0)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    centre = (round(cx - x0), round(cy - y0))
    kind = rng.integers(0, 3)
    if kind == 0:
        axes = (max(1, int(radius)), max(1, int(radius * rng.uniform(0.3, 1.0))))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    elif kind == 1:
        half = np.array([radius, radius * rng.uniform(0.2, 1.0)])
        a = rng.uniform(0, math.pi)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        corners = local[:, :1] * rot[:, 0] + local[:, 1:] * rot[:, 1] + centre  # elementwise: no BLAS rounding
        cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 255, cv2.LINE_AA)
    else:
        n = int(rng.integers(3, 8))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = radius * rng.uniform(0.4, 1.0, n)
        pts = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255, cv2.LINE_AA)
    return mask, (x0, y0, x1, y1)


def dead_leaves(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(H, W, 3) float32: random textured shapes with power-law sizes, far (early) ones out of focus."""
    c0, c1 = natural_color(rng), natural_color(rng)
    img = c0 + pink_noise(rng, h, w, rng.uniform(1.0, 2.0))[..., None] * (c1 - c0)  # what no leaf covers
    r_min, r_max = 4.0, 0.5 * max(h, w)
    n = int(rng.integers(300, 1200) * h * w / 640**2)
    # inverse CDF of p(r) ~ r^-k on [r_min, r_max]
    k = LEAF_SIZE_EXPONENT - 1.0
    u = rng.uniform(size=n)
    radii = (r_min**-k - u * (r_min**-k - r_max**-k)) ** (-1.0 / k)
    focus = rng.uniform(0.0, 1.0)  # the depth (leaf order) that is in focus
    defocus = rng.uniform(0.0, 4.0) if rng.uniform() < 0.6 else 0.0
    for i, radius in enumerate(radii):
        mask, (x0, y0, x1, y1) = _leaf_mask(rng, h, w, float(radius))
        if mask.size == 0 or not mask.any():
            continue
        view = img[y0:y1, x0:x1]
        alpha = mask.astype(np.float32)[..., None] / 255.0
        view[:] = view * (1.0 - alpha) + alpha * _fill(rng, y1 - y0, x1 - x0)
        sigma = defocus * abs(i / n - focus)
        if sigma > 0.5 and i % 100 == 99:  # blur what is drawn so far: far layers end up blurrier
            img = cv2.GaussianBlur(img, (0, 0), sigma)
    return np.clip(img, 0.0, 1.0)
