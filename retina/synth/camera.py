"""Camera randomisation of SynthFace v3 (``SynthCfg.camera``): what a phone or an old web photo does to a scene.

White balance, exposure (a gamma), vignetting, loss of resolution (down-sampled, then up-sampled back: web
copies of photos), grey-scale photos and signal-dependent sensor noise. Applied to the whole image before the
v2 camera steps (contrast, Gaussian noise, JPEG). Images are float32 RGB in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np


def resolution_sigma(scale: float) -> float:
    """Blur (Gaussian sigma, pixels of the image) equivalent to area down-sampling by ``scale`` and back up."""
    return 0.0 if scale >= 1.0 else 0.5 * math.sqrt(1.0 / scale**2 - 1.0)


def camera_effects(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """The image through a random camera, and the settings drawn."""
    h, w = img.shape[:2]
    gains = np.clip(rng.normal(1.0, 0.08, 3), 0.7, 1.3).astype(np.float32)
    gamma = float(np.exp(rng.normal(0.0, 0.25)))
    out = np.clip(img * gains, 0.0, 1.0) ** gamma
    vignette = float(rng.uniform(0.0, 0.4)) if rng.uniform() < 0.4 else 0.0
    if vignette:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        out = out * (1.0 - vignette * np.clip(r2 / 2, 0, 1))[..., None]
    scale = float(rng.uniform(0.3, 1.0)) if rng.uniform() < 0.5 else 1.0
    if scale < 1.0:
        small = cv2.resize(out, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    grey = bool(rng.uniform() < 0.08)
    if grey:
        luma = 0.299 * out[..., 0] + 0.587 * out[..., 1] + 0.114 * out[..., 2]  # elementwise: no BLAS rounding
        out = np.repeat(luma[..., None], 3, axis=2)
    shot = float(rng.uniform(0.0, 0.02))  # photon noise: variance proportional to the signal
    out = out + np.sqrt(np.clip(out, 0, 1) * shot**2) * rng.standard_normal(out.shape, dtype=np.float32)
    settings = {"gains": gains.round(4).tolist(), "gamma": round(gamma, 4), "vignette": round(vignette, 4),
                "resolution_scale": round(scale, 4), "grey": grey, "shot_noise": round(shot, 5)}  # fmt: skip
    return out.astype(np.float32), settings
