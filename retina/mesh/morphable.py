"""A small morphable space on the face template: identity shape, expressions and albedo.

- shape: ``vertices = template + sum_k identity[k] * B_id[k] + sum_k expression[k] * B_exp[k]``, linear in
  both; ``B_id`` (``IDENTITY_NAMES``) are smooth displacement fields scaled so that a coefficient of 1 is
  about one standard deviation (coefficients are drawn from N(0, 1), clipped to +-2.5); ``B_exp``
  (``EXPRESSION_NAMES``) are blendshapes used with coefficients in [0, 1].
- albedo: region colours (:class:`retina.mesh.albedo.AlbedoColors`), a hair style, and a per-vertex
  multiplicative tint ``exp(sum_k tint[k] * T[k])`` (``TINT_NAMES``; coefficients from N(0, 1)).

All of it is plain numpy; the per-vertex arrays follow the template's vertex order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retina.mesh.albedo import BALD, AlbedoColors, HairStyle, albedo_at
from retina.mesh.template import FaceTemplate

IDENTITY_NAMES = (
    "width",
    "lower_face_length",
    "jaw_width",
    "nose_protrusion",
    "nose_width",
    "chin",
    "cheeks",
    "forehead_slope",
    "brow_ridge",
    "head_depth",
    "eye_depth",
    "lip_fullness",
)
EXPRESSION_NAMES = ("smile", "jaw_open", "brow_raise")
TINT_NAMES = ("cheek_redness", "lower_face_shadow", "forehead_shine", "asymmetry")

# Anchor colours; samples interpolate between neighbours and add a little jitter.
SKIN_TONES = np.array(
    [
        [0.27, 0.17, 0.12],
        [0.45, 0.30, 0.21],
        [0.62, 0.44, 0.33],
        [0.78, 0.60, 0.48],
        [0.90, 0.74, 0.64],
        [0.96, 0.84, 0.76],
    ]
)
HAIR_TONES = np.array(
    [
        [0.05, 0.04, 0.04],
        [0.16, 0.10, 0.07],
        [0.32, 0.21, 0.13],
        [0.72, 0.58, 0.36],
        [0.55, 0.24, 0.12],
        [0.62, 0.62, 0.62],
    ]
)
IRIS_TONES = np.array([[0.22, 0.13, 0.07], [0.35, 0.24, 0.13], [0.28, 0.42, 0.58], [0.33, 0.45, 0.30]])


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _mirror(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return _gauss(np.abs(x), y, cx, cy, sx, sy)


@dataclass(frozen=True)
class FaceParams:
    """One face of the morphable space (everything the albedo and the shape depend on)."""

    identity: tuple[float, ...] = (0.0,) * len(IDENTITY_NAMES)
    expression: tuple[float, ...] = (0.0,) * len(EXPRESSION_NAMES)
    tint: tuple[float, ...] = (0.0,) * len(TINT_NAMES)
    colors: AlbedoColors = field(default_factory=AlbedoColors)
    hair: HairStyle = field(default_factory=HairStyle)

    def __post_init__(self) -> None:
        for name, values, n in (
            ("identity", self.identity, len(IDENTITY_NAMES)),
            ("expression", self.expression, len(EXPRESSION_NAMES)),
            ("tint", self.tint, len(TINT_NAMES)),
        ):
            if len(values) != n:
                raise ValueError(f"FaceParams.{name} needs {n} values, got {len(values)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and dicts (JSON-ready); ``from_dict`` inverts it."""
        return {
            "identity": list(self.identity),
            "expression": list(self.expression),
            "tint": list(self.tint),
            "colors": {k: list(v) for k, v in vars(self.colors).items()},
            "hair": dict(vars(self.hair)),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaceParams:
        colors = AlbedoColors(**{k: tuple(v) for k, v in d["colors"].items()})
        return cls(tuple(d["identity"]), tuple(d["expression"]), tuple(d["tint"]), colors, HairStyle(**d["hair"]))


@functools.lru_cache(maxsize=4)
def identity_basis(template: FaceTemplate) -> np.ndarray:
    """(K_id, V, 3) float64 displacement per unit identity coefficient (``IDENTITY_NAMES`` order)."""
    p = template.vertices
    x, y, dz = template.coords.T
    front = np.clip((dz - 0.1) / 0.3, 0.0, 1.0)
    z0 = np.zeros_like(x)
    lower = np.clip(-y / 0.8, 0.0, 1.0)
    nose = (_gauss(x, y, 0.0, -0.02, 0.06, 0.14) + _gauss(x, y, 0.0, -0.19, 0.08, 0.07)) * front
    cheeks = _mirror(x, y, 0.42, -0.2, 0.14, 0.15) * front
    fields = [
        (0.05 * p[:, 0], z0, z0),
        (z0, 0.06 * np.minimum(p[:, 1], 0.0), z0),
        (0.08 * p[:, 0] * lower**2, z0, z0),
        (z0, z0, 0.04 * nose),
        (0.35 * x * nose, z0, z0),
        (z0, -0.02 * _gauss(x, y, 0.0, -0.72, 0.15, 0.1), 0.04 * _gauss(x, y, 0.0, -0.72, 0.15, 0.1) * front),
        (0.03 * np.sign(x) * cheeks, z0, 0.015 * cheeks),
        (z0, z0, 0.05 * np.clip(y - 0.2, 0.0, None) * front),
        (z0, z0, 0.02 * _mirror(x, y, 0.28, 0.24, 0.15, 0.05) * front),
        (z0, z0, 0.06 * np.minimum(p[:, 2], 0.0)),
        (z0, z0, -0.02 * _mirror(x, y, 0.29, 0.10, 0.1, 0.07) * front),
        (z0, z0, 0.02 * _gauss(x, y, 0.0, -0.44, 0.14, 0.06) * front),
    ]
    out = np.stack([np.stack(f, -1) for f in fields])
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=4)
def expression_basis(template: FaceTemplate) -> np.ndarray:
    """(K_exp, V, 3) float64 blendshape displacements (``EXPRESSION_NAMES`` order)."""
    x, y, dz = template.coords.T
    front = np.clip((dz - 0.1) / 0.3, 0.0, 1.0)
    z0 = np.zeros_like(x)
    corners = _mirror(x, y, 0.19, -0.44, 0.07, 0.06) * front
    cheeks = _mirror(x, y, 0.3, -0.2, 0.1, 0.1) * front
    # Jaw drop: everything below the mouth line moves down, fading towards the ears.
    jaw = np.clip((-0.445 - y) / 0.02, 0.0, 1.0) * np.clip((dz + 0.2) / 0.6, 0.0, 1.0)
    brows = np.clip(1.0 - np.abs(y - 0.3) / 0.25, 0.0, 1.0) * front
    smile = (0.03 * np.sign(x) * corners, 0.035 * corners + 0.015 * cheeks, 0.01 * cheeks)
    out = np.stack(
        [np.stack(smile, -1), np.stack((z0, -0.09 * jaw, -0.02 * jaw), -1), np.stack((z0, 0.035 * brows, z0), -1)]
    )
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=4)
def tint_basis(template: FaceTemplate) -> np.ndarray:
    """(K_tint, V, 3) float64 log-tint fields (``TINT_NAMES`` order), multiplied by 0.1 per unit."""
    x, y, dz = template.coords.T
    front = np.clip((dz - 0.1) / 0.3, 0.0, 1.0)
    cheeks = _mirror(x, y, 0.38, -0.15, 0.12, 0.12) * front
    lower = np.clip((-0.3 - y) / 0.4, 0.0, 1.0) * front
    forehead = _gauss(x, y, 0.0, 0.4, 0.25, 0.12) * front
    out = 0.1 * np.stack(
        [
            cheeks[:, None] * np.array([0.4, -0.1, -0.1]),
            -lower[:, None] * np.array([1.0, 1.0, 1.0]),
            forehead[:, None] * np.array([0.7, 0.7, 0.7]),
            (x / 0.75)[:, None] * np.array([0.4, 0.4, 0.4]),
        ]
    )
    out.setflags(write=False)
    return out


def face_shape(template: FaceTemplate, params: FaceParams) -> np.ndarray:
    """(V, 3) float64 vertices of a face in the model frame."""
    return (
        template.vertices
        + np.tensordot(np.asarray(params.identity), identity_basis(template), 1)
        + np.tensordot(np.asarray(params.expression), expression_basis(template), 1)
    )


def vertex_tint(template: FaceTemplate, params: FaceParams) -> np.ndarray:
    """(V, 3) float64 multiplicative skin tint per vertex (1 = no change)."""
    return np.exp(np.tensordot(np.asarray(params.tint), tint_basis(template), 1))


def vertex_albedo(template: FaceTemplate, params: FaceParams) -> np.ndarray:
    """(V, 3) float64 per-vertex albedo (what a per-vertex-colour mesh decoder would predict)."""
    mouth_open = params.expression[EXPRESSION_NAMES.index("jaw_open")]
    return albedo_at(template.coords, params.colors, params.hair, vertex_tint(template, params), mouth_open)


def _tone(rng: np.random.Generator, anchors: np.ndarray, jitter: float) -> tuple[float, float, float]:
    t = rng.uniform(0.0, len(anchors) - 1)
    i = min(int(t), len(anchors) - 2)
    rgb = anchors[i] + (t - i) * (anchors[i + 1] - anchors[i]) + rng.normal(0.0, jitter, 3)
    return tuple(float(c) for c in np.clip(rgb, 0.0, 1.0))  # type: ignore[return-value]


def sample_face_params(rng: np.random.Generator) -> FaceParams:
    """A random face: identity and tint N(0, 1) clipped to +-2.5, expressions in [0, 1], colours."""
    identity = np.clip(rng.normal(size=len(IDENTITY_NAMES)), -2.5, 2.5)
    expression = rng.uniform(0.0, 1.0, len(EXPRESSION_NAMES)) * (rng.uniform(size=len(EXPRESSION_NAMES)) < 0.4)
    tint = np.clip(rng.normal(size=len(TINT_NAMES)), -2.5, 2.5)
    skin = _tone(rng, SKIN_TONES, 0.02)
    hair = _tone(rng, HAIR_TONES, 0.03)
    brows = tuple(float(c) for c in np.clip(0.6 * np.asarray(hair) + 0.2 * np.asarray(skin) - 0.03, 0, 1))
    lips = tuple(float(c) for c in np.clip(np.asarray(skin) * [0.9, 0.62, 0.62] + rng.normal(0, 0.03, 3), 0, 1))
    colors = AlbedoColors(skin, brows, _tone(rng, IRIS_TONES, 0.02), lips, hair)  # type: ignore[arg-type]
    if rng.uniform() < 0.07:
        style = BALD
    else:
        back = rng.uniform(-0.6, 0.0)
        side = rng.uniform(max(back, 0.05), 0.35)
        style = HairStyle(float(rng.uniform(max(side, 0.45), 0.75)), float(side), float(back))
    return FaceParams(
        tuple(map(float, identity)), tuple(map(float, expression)), tuple(map(float, tint)), colors, style
    )
