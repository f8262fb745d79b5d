"""Procedural albedo of the face template: regions (skin, brows, eyes, lips, hair) as soft masks.

Everything here is a function of the *feature coordinates* ``(X, Y, dz)`` of :mod:`retina.mesh.template`
(position on the undeformed head, and how much the point faces forward). A renderer interpolates those
coordinates per pixel and calls :func:`albedo_at`, so eyes and lips stay sharp on a face 400 pixels tall
while the mesh has only a few thousand vertices; :func:`region_labels` gives the per-vertex region ids.
Colours are RGB in [0, 1] (display space).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

REGIONS = ("skin", "brows", "eyes", "lips", "hair")
EYE_X, EYE_Y = 0.29, 0.10  # eye centres (+-X, Y)
MOUTH_Y, MOUTH_HALF_WIDTH = -0.44, 0.19  # the mouth corners are the landmarks at (+-0.19, -0.44)
SCLERA = np.array([0.88, 0.86, 0.82])
PUPIL = np.array([0.03, 0.03, 0.03])
LASH = np.array([0.08, 0.06, 0.05])

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class HairStyle:
    """Hairline heights (feature Y) at the front, the sides and the back; above them is hair."""

    front: float = 0.55
    side: float = 0.2
    back: float = -0.3

    def __post_init__(self) -> None:
        if not self.back <= self.side <= self.front:
            raise ValueError(f"hairline must not rise towards the back of the head: {self}")


DEFAULT_HAIR = HairStyle()
BALD = HairStyle(2.0, 2.0, 2.0)


@dataclass(frozen=True)
class AlbedoColors:
    """Base RGB colour of each region (and of the iris)."""

    skin: RGB = (0.80, 0.62, 0.52)
    brows: RGB = (0.20, 0.14, 0.10)
    iris: RGB = (0.30, 0.20, 0.12)
    lips: RGB = (0.70, 0.38, 0.38)
    hair: RGB = (0.15, 0.10, 0.07)

    def __post_init__(self) -> None:
        for name, rgb in asdict(self).items():
            if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
                raise ValueError(f"AlbedoColors.{name} must be 3 values in [0, 1], got {rgb}")


def _inside(t: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of ``t <= 1`` with a linear ramp of the given width around 1."""
    return np.clip((1.0 - t) / width + 0.5, 0.0, 1.0)


def _front(dz: np.ndarray) -> np.ndarray:
    # Facial features live on the front only (the back of the head has the same X, Y).
    return np.clip((dz - 0.3) / 0.2, 0.0, 1.0)


def hair_weight(coords: np.ndarray, hair: HairStyle) -> np.ndarray:
    """(N,) soft hair mask: above a hairline that blends front -> side -> back with ``dz``."""
    x, y, dz = coords[:, 0], coords[:, 1], coords[:, 2]
    thr = np.interp(dz, [-1.0, 0.0, 0.6, 1.0], [hair.back, hair.side, hair.front, hair.front])
    thr = thr + 0.3 * x**2 * np.clip(dz, 0.0, 1.0)  # receding temples
    return np.clip((y - thr) / 0.02 + 0.5, 0.0, 1.0)


def feature_weights(coords: np.ndarray, mouth_open: float = 0.0) -> dict[str, np.ndarray]:
    """Soft masks (N,) in [0, 1] of the facial features at feature coordinates ``coords`` (N, 3)."""
    x, y, dz = coords[:, 0], coords[:, 1], coords[:, 2]
    front = _front(dz)
    ax = np.abs(x)  # the face is mirror-symmetric
    ex, ey = (ax - EYE_X) / 0.10, (y - EYE_Y) / 0.042
    r_eye = np.sqrt(ex**2 + ey**2)
    sclera = _inside(r_eye, 0.15) * front
    r_iris = np.hypot(ax - EYE_X, y - EYE_Y)
    iris = _inside(r_iris / 0.036, 0.15) * sclera
    pupil = _inside(r_iris / 0.015, 0.3) * sclera
    lash = np.clip(1.0 - np.abs(r_eye - 1.0) / 0.2, 0.0, 1.0) * (y > EYE_Y) * front
    bx = (ax - 0.27) / 0.14
    brow_centre = 0.25 + 0.025 * (1.0 - bx**2)
    brow_half = 0.024 * (1.0 - 0.5 * np.clip(bx, 0.0, 1.0))  # thinner towards the temples
    brows = _inside(np.abs(y - brow_centre) / brow_half, 0.4) * _inside(np.abs(bx), 0.2) * front
    lens = np.clip(1.0 - (x / MOUTH_HALF_WIDTH) ** 2, 0.0, 1.0)  # lip outline: pointed at the corners
    dy = np.abs(y - MOUTH_Y)
    lips = _inside(dy / (0.06 * lens + 1e-6), 0.2) * front
    gap = (0.005 + 0.03 * mouth_open) * lens
    mouth = _inside(dy / (gap + 1e-6), 0.4) * front
    nostrils = _inside(np.hypot((ax - 0.045) / 0.022, (y + 0.235) / 0.011), 0.3) * front
    return {
        "sclera": sclera,
        "iris": iris,
        "pupil": pupil,
        "lash": lash,
        "brows": brows,
        "lips": lips,
        "mouth": mouth,
        "nostrils": nostrils,
    }


def albedo_at(
    coords: np.ndarray,
    colors: AlbedoColors,
    hair: HairStyle,
    tint: np.ndarray | None = None,
    mouth_open: float = 0.0,
) -> np.ndarray:
    """Albedo (N, 3) float64 at feature coordinates ``coords`` (N, 3).

    tint (ndarray[N, 3] or None): multiplicative skin variation (see ``retina.mesh.morphable``).
    mouth_open: the jaw-open expression coefficient, which widens the dark gap between the lips.
    """
    coords = np.asarray(coords, dtype=np.float64)
    skin = np.asarray(colors.skin)
    out = np.broadcast_to(skin, coords.shape).copy()
    if tint is not None:
        out *= tint
    # Facial features exist only where _front > 0: evaluate them on those points alone.
    front = np.flatnonzero(coords[:, 2] > 0.3)
    w = feature_weights(coords[front], mouth_open)
    sub = out[front]

    def paint(target: np.ndarray, weight: np.ndarray, rgb: np.ndarray) -> None:
        target += weight[:, None] * (np.asarray(rgb) - target)

    paint(sub, w["lips"], np.asarray(colors.lips))
    paint(sub, w["mouth"], 0.3 * np.asarray(colors.lips))
    paint(sub, w["nostrils"], 0.35 * skin)
    paint(sub, w["brows"], np.asarray(colors.brows))
    paint(sub, w["sclera"], SCLERA)
    paint(sub, w["iris"], np.asarray(colors.iris))
    paint(sub, w["pupil"], PUPIL)
    paint(sub, w["lash"], LASH)
    out[front] = sub
    paint(out, hair_weight(coords, hair), np.asarray(colors.hair))
    return np.clip(out, 0.0, 1.0)


def face_zone(coords: np.ndarray, hair: HairStyle) -> np.ndarray:
    """(N,) bool: the part of the head that a WIDER FACE box encloses.

    Front-facing (``dz > 0.25``, i.e. within ~75 degrees of straight ahead), between the cheeks
    (``|X| < 0.55``, ears excluded), below mid forehead (``Y < 0.45``) and not hair. The suite's face box
    is the tight box of this zone's pixels.
    """
    x, y, dz = coords[:, 0], coords[:, 1], coords[:, 2]
    return (dz > 0.25) & (np.abs(x) < 0.55) & (y < 0.45) & (hair_weight(coords, hair) < 0.5)


def region_labels(coords: np.ndarray, hair: HairStyle) -> np.ndarray:
    """(N,) int64 index into ``REGIONS`` (hair over brows over eyes over lips over skin)."""
    w = feature_weights(coords)
    out = np.zeros(len(coords), dtype=np.int64)
    out[w["lips"] > 0.5] = REGIONS.index("lips")
    out[w["sclera"] > 0.5] = REGIONS.index("eyes")
    out[w["brows"] > 0.5] = REGIONS.index("brows")
    out[hair_weight(coords, hair) > 0.5] = REGIONS.index("hair")
    return out
