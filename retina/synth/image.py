"""SynthFace: compose one image (a pure function of config, split, index and seed).

Order of work: background and distractors (heads seen from behind, skin blobs); face sprites rendered
(:mod:`retina.synth.face`) and placed largest first, with limited overlap; then painted smallest
(farthest) first, each with its body and maybe an occluder, so nearer people hide farther ones; then
image-wide blur, colour changes, noise and JPEG. The annotations are measured from what was drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from retina.mesh.albedo import BALD
from retina.mesh.morphable import FaceParams, sample_face_params
from retina.mesh.template import FaceTemplate, build_template
from retina.synth.appearance import accessory, hair_mass, illumination, restyle, shadow
from retina.synth.backdrop import dead_leaves
from retina.synth.camera import camera_effects, resolution_sigma
from retina.synth.config import (
    EVENTS,
    FACTORS,
    SPLIT_CODES,
    WIDER_BOX_RAISE,
    SynthCfg,
    difficulty,
    wider_attributes,
)
from retina.synth.face import DISTANCE, FaceSpec, FaceSprite, render_faces
from retina.synth.negatives import hard_negatives
from retina.synth.scene import (
    OCCLUDERS,
    background,
    blur,
    blur_sigma,
    draw_body,
    draw_occluder,
    skin_blob,
    to_jpeg,
)

# Scene kinds: (faces range, size band as fractions of the log face-size range); a crowd's top is
# ``SynthCfg.crowd_faces``.
SCENES = ((1, 3, 0.55, 1.0), (4, 15, 0.25, 0.75), (16, 60, 0.0, 0.45), (1, 10, 0.0, 1.0))
P_ACCESSORY, P_SHADOW, P_UNEVEN_LIGHT = 0.25, 0.35, 0.6


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of one image: independent of how many images or workers there are."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index)]))


def factor_rng(seed: int, split: str, index: int, factor: str) -> np.random.Generator:
    """The random stream of one v3 factor (``FACTORS``) of one image, separate from the image's main stream."""
    entropy = [int(seed), SPLIT_CODES[split], int(index), 1 + FACTORS.index(factor)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def image_name(split: str, index: int, kind: int) -> str:
    """``<event>/<name>.jpg`` in WIDER style, e.g. ``2--Synth_Crowd/2_Synth_Crowd_val_000017.jpg``."""
    event = EVENTS[kind]
    return f"{event}/{event.replace('--', '_')}_{split}_{index:06d}.jpg"


def _template(face_px: float) -> FaceTemplate:
    """Level of detail: coarser grids of the same analytic head for smaller faces (the same landmark
    points; the silhouette differs by well under a pixel at those sizes). Rendering cost is mostly per
    triangle, so this matters: 1,536 triangles under 32 px, 3,072 under 96 px, 6,144 above."""
    if face_px < 32:
        return build_template(24, 32)
    return build_template(32, 48) if face_px < 96 else build_template()


def _spec(face_px: float, params: FaceParams, pose_rad: tuple[float, ...], light: np.ndarray) -> FaceSpec:
    return FaceSpec(_template(face_px), params, pose_rad, face_px, light, _supersample(face_px))  # type: ignore[arg-type]


def _supersample(face_px: float) -> int:
    # Antialiasing where it matters (small faces); large faces are cheap to alias and costly to supersample.
    return 2 if face_px < 48 else 1


def _paste(img: np.ndarray, sprite: FaceSprite, ox: int, oy: int) -> tuple[slice, slice, slice, slice] | None:
    """Alpha-composite a sprite at integer offset (ox, oy); returns (image rows, cols, sprite rows, cols)."""
    h, w = img.shape[:2]
    sh, sw = sprite.alpha.shape
    y0, x0, y1, x1 = max(oy, 0), max(ox, 0), min(oy + sh, h), min(ox + sw, w)
    if y0 >= y1 or x0 >= x1:
        return None
    rows, cols = slice(y0, y1), slice(x0, x1)
    srows, scols = slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox)
    a = sprite.alpha[srows, scols, None]
    img[rows, cols] = sprite.color[srows, scols] + (1.0 - a) * img[rows, cols]
    return rows, cols, srows, scols


def _pose(cfg: SynthCfg, rng: np.random.Generator) -> tuple[float, float, float]:
    """(pitch, yaw, roll) degrees: mostly near frontal, a fifth uniform over the whole yaw range."""
    yaw = rng.uniform(-1, 1) * cfg.max_yaw_deg if rng.uniform() < 0.2 else rng.normal(0, 30)
    pitch, roll = rng.normal(0, 10), rng.normal(0, 9)
    return (
        float(np.clip(pitch, -cfg.max_pitch_deg, cfg.max_pitch_deg)),
        float(np.clip(yaw, -cfg.max_yaw_deg, cfg.max_yaw_deg)),
        float(np.clip(roll, -cfg.max_roll_deg, cfg.max_roll_deg)),
    )


def _fma_square(x: float, s: float) -> float:
    """``x * x + s`` rounded once (a fused multiply-add): exact integer arithmetic, then Python's correctly
    rounded int / int division (the ratios' denominators are powers of two)."""
    n, d = x.as_integer_ratio()
    m, e = s.as_integer_ratio()
    return (n * n * e + m * d * d) / (d * d * e)


def _unit(v: np.ndarray) -> np.ndarray:
    """``v / |v|`` for a 3-vector, the same on every machine.

    ``np.linalg.norm`` goes through the BLAS ``ddot``, whose kernel OpenBLAS picks by CPU: the AVX-512 one sums
    ``x0 x0 + x1 x1 + x2 x2`` with fused multiply-adds (one rounding each), the AVX2 one without, so the last
    bit (kept in meta.jsonl) depended on the machine. Here the fused chain is computed exactly, which gives the
    AVX-512 kernel's values (those of the files made so far on such machines)."""
    x0, x1, x2 = (float(x) for x in v)
    return v / math.sqrt(_fma_square(x2, _fma_square(x1, x0 * x0)))


def _light(rng: np.random.Generator, scene_dir: np.ndarray) -> np.ndarray:
    """Light (9,) in a face's camera frame: the scene's direction, jittered; ~10% extreme."""
    d = _unit(scene_dir + rng.normal(0, 0.15, 3))
    intensity, ambient = rng.uniform(0.45, 0.95), rng.uniform(0.2, 0.55)
    if rng.uniform() < 0.1:
        intensity, ambient = (0.2, 0.12) if rng.uniform() < 0.5 else (1.4, 0.1)
    tint = 1.0 + rng.normal(0, 0.06, 3)
    return np.concatenate([np.array([0.0, 0.0, DISTANCE]) + 10.0 * d, intensity * tint, ambient * tint])


def _face_blur(cfg: SynthCfg, rng: np.random.Generator, face_px: float) -> tuple[float, float, float]:
    if rng.uniform() >= cfg.p_face_blur:
        return 0.0, 0.0, 0.0
    if rng.uniform() < 0.5:
        return float(face_px * rng.uniform(0.01, 0.08)), 0.0, 0.0
    return 0.0, float(face_px * rng.uniform(0.05, 0.3)), float(rng.uniform(0, math.pi))


def _covered(box: np.ndarray, regions: list[np.ndarray]) -> float:
    """Fraction of box (x0 y0 x1 y1) area under the union bound of regions (sum of intersections)."""
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    total = 0.0
    for r in regions:
        iw = min(box[2], r[2]) - max(box[0], r[0])
        ih = min(box[3], r[3]) - max(box[1], r[1])
        total += max(iw, 0.0) * max(ih, 0.0)
    return total / area


@dataclass(frozen=True)
class _Scene:
    """The size and kind of one image: ``band`` is the range of log face sizes (pixels) its faces take."""

    h: int
    w: int
    kind: int
    n_faces: int
    band: tuple[float, float]


def _scene(cfg: SynthCfg, rng: np.random.Generator) -> _Scene:
    h, w = int(rng.integers(cfg.height_range[0], cfg.height_range[1] + 1)), cfg.width
    kind = int(rng.choice(len(EVENTS), p=np.asarray(cfg.scene_weights) / sum(cfg.scene_weights)))
    n_lo, n_hi, b_lo, b_hi = SCENES[kind]
    n_hi = cfg.crowd_faces if kind == 2 else n_hi
    n_faces = int(np.clip(rng.integers(n_lo, n_hi + 1), *cfg.faces_range))
    log_lo, log_hi = (math.log(v) for v in cfg.face_px_range)
    return _Scene(h, w, kind, n_faces, (log_lo + b_lo * (log_hi - log_lo), log_lo + b_hi * (log_hi - log_lo)))


def _backdrop(
    cfg: SynthCfg, rng: np.random.Generator, scene: _Scene, natural: np.random.Generator
) -> tuple[np.ndarray, int, np.ndarray]:
    """(H, W, 3) float32 background with skin-coloured blobs, the blob count, and the scene's light direction.

    The v2 clutter is always drawn (from the main stream, so that it stays the same); with probability
    ``cfg.natural_backdrop`` dead leaves (from the ``natural`` stream) replace it."""
    img = background(rng, scene.h, scene.w)
    if cfg.natural_backdrop > 0 and natural.uniform() < cfg.natural_backdrop:
        img = dead_leaves(natural, scene.h, scene.w)
    n_blobs = int(rng.integers(cfg.distractors_range[0], cfg.distractors_range[1] + 1))
    for _ in range(n_blobs):
        skin_blob(img, rng)
    scene_dir = np.array([rng.uniform(-1, 1), rng.uniform(-1, -0.1), rng.uniform(-1, -0.2)])
    return img, n_blobs, scene_dir


def _back_heads(
    cfg: SynthCfg, rng: np.random.Generator, scene: _Scene, scene_dir: np.ndarray
) -> tuple[list[FaceSpec], list[tuple[int, int]]]:
    """Heads of people facing away (not faces): their render specs and top-left corners (x, y)."""
    n_back = int(rng.integers(cfg.back_heads_range[0], cfg.back_heads_range[1] + 1))
    specs = []
    for _ in range(n_back):
        px = math.exp(rng.uniform(*scene.band))
        pose = (rng.normal(0, 0.15), math.pi + rng.uniform(-0.35, 0.35), rng.normal(0, 0.15))
        specs.append(_spec(px, sample_face_params(rng), pose, _light(rng, scene_dir)))
    return specs, [(int(rng.integers(-20, scene.w)), int(rng.integers(-20, scene.h))) for _ in range(n_back)]


def _sample_faces(cfg: SynthCfg, rng: np.random.Generator, scene: _Scene, scene_dir: np.ndarray) -> list[dict]:
    """The faces' drawn properties, largest first."""
    faces = []
    for _ in range(scene.n_faces):
        face_px = math.exp(rng.uniform(*scene.band))
        faces.append(
            {
                "target_px": face_px,
                "pose": _pose(cfg, rng),
                "params": sample_face_params(rng),
                "light": _light(rng, scene_dir),
                "blur": _face_blur(cfg, rng, face_px),
                "occluder": OCCLUDERS[int(rng.integers(len(OCCLUDERS)))] if rng.uniform() < cfg.p_occluder else None,
                "body": bool(rng.uniform() < cfg.p_body),
            }
        )
    faces.sort(key=lambda f: -f["target_px"])
    return faces


def _try_spot(f: dict, sprite: FaceSprite, rng: np.random.Generator, scene: _Scene, regions: list) -> np.ndarray | None:
    """An integer (dx, dy) offset putting the face >= 70 % inside the image and <= 40 % covered (30 tries)."""
    h, w, band = scene.h, scene.w, scene.band
    centre = (sprite.box[:2] + sprite.box[2:]) / 2
    for _ in range(30):
        if scene.kind == 2:  # crowds: smaller (farther) faces higher up in the picture
            depth = (math.log(f["target_px"]) - band[0]) / max(band[1] - band[0], 1e-9)
            target = np.array([rng.uniform(0, w), h * np.clip(0.1 + 0.8 * depth + rng.normal(0, 0.08), 0, 1)])
        else:
            target = np.array([rng.uniform(0, w), rng.uniform(0.05 * h, 0.95 * h)])
        offset = np.round(target - centre).astype(int)
        box = sprite.box + np.tile(offset, 2)
        inside = np.clip(box, 0, [w, h, w, h])
        in_frac = (inside[2] - inside[0]) * (inside[3] - inside[1]) / max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
        if in_frac >= 0.7 and _covered(box, regions) <= 0.4:
            return offset
    return None


def _place_faces(faces: list[dict], sprites: list[FaceSprite], rng: np.random.Generator, scene: _Scene) -> list[dict]:
    """Faces with their sprite and offset, largest first; faces without room are dropped (never the first)."""
    placed: list[dict[str, Any]] = []
    regions: list[np.ndarray] = []  # (x0, y0, x1, y1) taken by sprites and bodies
    for f, sprite in zip(faces, sprites, strict=True):
        if not np.all(np.isfinite(sprite.box)):
            continue
        offset = _try_spot(f, sprite, rng, scene, regions)
        if offset is None:
            if placed:  # no room: drop this face
                continue
            centre = (sprite.box[:2] + sprite.box[2:]) / 2
            offset = np.round(np.array([scene.w / 2, scene.h / 2]) - centre).astype(int)  # the first goes mid-image
        box = sprite.box + np.tile(offset, 2)
        placed.append({**f, "sprite": sprite, "offset": offset})
        sh, sw = sprite.alpha.shape
        regions.append(np.array([offset[0], offset[1], offset[0] + sw, offset[1] + sh], float))
        if f["body"]:
            size = sprite.box[3] - sprite.box[1]
            regions.append(np.array([box[0] - 0.8 * size, box[3] + 0.2 * size, box[2] + 0.8 * size, box[3] + 3 * size]))
    return placed


def _paint_face(img: np.ndarray, owner: np.ndarray, k: int, f: dict, rng: np.random.Generator) -> None:
    """Paint face ``k`` (body first, blurred sprite, then its occluder) and mark the pixels it owns."""
    sprite, (ox, oy) = f["sprite"], f["offset"]
    box = sprite.box + np.array([ox, oy, ox, oy])
    if f["body"]:
        draw_body(img, owner, k, box, math.radians(f["pose"][2]), rng, f["params"].colors.skin)
    gs, ml, ma = f["blur"]
    if gs > 0 or ml > 0:
        pad = math.ceil(3 * gs + ml) + 1
        color = blur(np.pad(sprite.color, ((pad, pad), (pad, pad), (0, 0))), gs, ml, ma)
        alpha = blur(np.pad(sprite.alpha, pad), gs, ml, ma)
        _paste(img, replace(sprite, color=color, alpha=alpha), ox - pad, oy - pad)
    else:
        _paste(img, sprite, ox, oy)
    _own(owner, sprite.alpha > 0.5, ox, oy, k)
    if f["occluder"] is not None:
        draw_occluder(img, owner, f["occluder"], box, sprite.landmarks + np.array([ox, oy]), rng)


def _camera(
    cfg: SynthCfg, rng: np.random.Generator, img: np.ndarray, camera: np.random.Generator | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Image-wide camera blur, (v3: the ``camera`` stream's effects,) exposure and colour, sensor noise; the image
    and the effects drawn."""
    image_blur = (0.0, 0.0, 0.0)
    if rng.uniform() < cfg.p_image_blur:
        image_blur = (
            (float(rng.uniform(0.5, 1.8)), 0.0, 0.0)
            if rng.uniform() < 0.5
            else (0.0, float(rng.uniform(3, 10)), float(rng.uniform(0, math.pi)))
        )
        img = blur(img, *image_blur)
    v3: dict[str, Any] = {}
    if cfg.camera and camera is not None:
        img, v3 = camera_effects(img, camera)
    contrast, bright = rng.uniform(0.8, 1.15), rng.uniform(-0.08, 0.08)
    img = (img - 0.5) * contrast + 0.5 + bright + rng.normal(0, 0.02, 3).astype(np.float32)
    noise = float(rng.uniform(*cfg.noise_sigma_range))
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise / 255.0)
    quality = int(rng.integers(cfg.jpeg_quality_range[0], cfg.jpeg_quality_range[1] + 1))
    effects = {"blur": image_blur, "contrast": contrast, "brightness": bright, "noise": noise, "quality": quality}
    return img, {**effects, **({"camera": v3} if v3 else {})}


def compose_image(cfg: SynthCfg, split: str, index: int, seed: int) -> tuple[bytes, dict[str, Any]]:
    """JPEG bytes and the metadata record of image ``index`` of a split (see ``retina.synth.splits``)."""
    rng = image_rng(seed, split, index)
    streams = {name: factor_rng(seed, split, index, name) for name in FACTORS}
    scene = _scene(cfg, rng)
    img, n_blobs, scene_dir = _backdrop(cfg, rng, scene, streams["backdrop"])
    n_negatives = _negatives(cfg, streams["negatives"], img, scene)
    back_specs, back_at = _back_heads(cfg, rng, scene, scene_dir)
    faces = _sample_faces(cfg, rng, scene, scene_dir)
    specs = back_specs + [
        _spec(f["target_px"], f["params"], tuple(math.radians(a) for a in f["pose"]), f["light"]) for f in faces
    ]
    sprites = render_faces(specs)  # one batched rendering for the whole image
    for sprite, at in zip(sprites[: len(back_at)], back_at, strict=True):
        _paste(img, sprite, *at)
    placed = _place_faces(faces, sprites[len(back_at) :], rng, scene)
    owner = np.full((scene.h, scene.w), -1, np.int32)  # index of the face (in ``placed``) each pixel shows
    placed.reverse()  # smallest (farthest) first
    for k, f in enumerate(placed):
        f = _restyled(cfg, f, img, owner, k, streams)
        _paint_face(img, owner, k, f, rng)
        if cfg.face_appearance and streams["appearance"].uniform() < P_ACCESSORY:
            box = f["sprite"].box + np.tile(f["offset"], 2)
            accessory(img, owner, box, f["sprite"].landmarks + f["offset"], streams["appearance"])
    if cfg.lighting and streams["lighting"].uniform() < P_UNEVEN_LIGHT:
        img = illumination(img, streams["lighting"])
    img, fx = _camera(cfg, rng, img, streams["camera"])
    res_sigma = resolution_sigma(fx["camera"]["resolution_scale"]) if "camera" in fx else 0.0
    meta = {
        "path": image_name(split, index, scene.kind),
        "event": EVENTS[scene.kind],
        "index": index,
        "width": scene.w,
        "height": scene.h,
        "seed": [int(seed), SPLIT_CODES[split], index],
        "scene": {
            "distractor_blobs": n_blobs,
            "back_heads": len(back_at),
            "noise_sigma": round(fx["noise"], 4),
            "jpeg_quality": fx["quality"],
            "image_blur": _blur_dict(*fx["blur"]),
            "contrast": round(float(fx["contrast"]), 4),
            "brightness": round(float(fx["brightness"]), 4),
            **({"hard_negatives": n_negatives} if cfg.hard_negatives_range[1] else {}),
            **({"camera": fx["camera"]} if "camera" in fx else {}),
        },
        "faces": [_face_record(cfg, f, k, owner, fx["blur"], res_sigma) for k, f in enumerate(placed)],
    }
    return to_jpeg(img, fx["quality"]), meta


def _negatives(cfg: SynthCfg, rng: np.random.Generator, img: np.ndarray, scene: _Scene) -> int:
    """Hard negatives over the backdrop, sized like the scene's faces (0.8x to 2.5x); returns their count."""
    lo, hi = cfg.hard_negatives_range
    if hi == 0:
        return 0
    n = int(rng.integers(lo, hi + 1))
    hard_negatives(img, rng, n, (0.8 * math.exp(scene.band[0]), 2.5 * math.exp(scene.band[1])))
    return n


def _restyled(cfg: SynthCfg, f: dict, img: np.ndarray, owner: np.ndarray, k: int, streams: dict) -> dict:
    """Face ``k`` with its v3 appearance and lighting (its hair volume painted behind it): a new sprite colour."""
    sprite = f["sprite"]
    if cfg.face_appearance:
        if f["params"].hair != BALD and streams["appearance"].uniform() < 0.7:
            box = sprite.box + np.tile(f["offset"], 2)
            hair_mass(img, owner, k, box, f["params"].colors.hair, streams["appearance"])
        sprite = restyle(sprite, streams["appearance"])
    if cfg.lighting and streams["lighting"].uniform() < P_SHADOW:
        sprite = shadow(sprite, streams["lighting"])
    return f if sprite is f["sprite"] else {**f, "sprite": sprite}


def _own(owner: np.ndarray, mask: np.ndarray, ox: int, oy: int, k: int) -> None:
    h, w = owner.shape
    sh, sw = mask.shape
    y0, x0, y1, x1 = max(oy, 0), max(ox, 0), min(oy + sh, h), min(ox + sw, w)
    if y0 < y1 and x0 < x1:
        view = owner[y0:y1, x0:x1]
        view[mask[y0 - oy : y1 - oy, x0 - ox : x1 - ox]] = k


def _blur_dict(gaussian: float, motion: float, angle: float) -> dict[str, float]:
    return {
        "gaussian_sigma": round(gaussian, 4),
        "motion_length": round(motion, 4),
        "motion_angle_deg": round(math.degrees(angle), 2),
    }


def _face_record(
    cfg: SynthCfg, f: dict[str, Any], k: int, owner: np.ndarray, image_blur: tuple[float, float, float], res: float
) -> dict:
    """Annotations of a painted face, measured on the final owner map (``res``: resolution-loss blur sigma)."""
    sprite, (ox, oy) = f["sprite"], f["offset"]
    h, w = owner.shape
    zone = sprite.face_alpha > 0.5
    ys, xs = np.nonzero(zone)
    ys, xs = ys + oy, xs + ox
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    total = max(len(ys), 1)
    visible = int(np.sum(owner[ys[inside], xs[inside]] == k))
    occlusion, truncation = 1.0 - visible / total, 1.0 - int(inside.sum()) / total
    x0, y0, x1, y1 = sprite.box + np.array([ox, oy, ox, oy])
    if cfg.box_convention == "wider":
        top, bottom = WIDER_BOX_RAISE
        y0, y1 = y0 - top * (y1 - y0), y1 - bottom * (y1 - y0)
    bx0, by0 = math.floor(max(x0, 0.0)), math.floor(max(y0, 0.0))
    bx1, by1 = math.ceil(min(x1, w)), math.ceil(min(y1, h))
    box = [bx0, by0, bx1 - bx0, by1 - by0]
    lms = np.round(sprite.landmarks + np.array([ox, oy]), 2)
    flags = []
    for (lx, ly), self_visible in zip(lms, sprite.landmark_visible, strict=True):
        i, j = math.floor(ly), math.floor(lx)
        seen = bool(self_visible) and 0 <= i < h and 0 <= j < w and owner[i, j] == k
        flags.append(0.0 if seen else 1.0)
    sigma = math.hypot(blur_sigma(*f["blur"][:2]), blur_sigma(*image_blur[:2]), res)
    blur_rel = sigma / max(box[3], 1)
    pitch, yaw, roll = f["pose"]
    level = difficulty(box[3], occlusion, blur_rel, yaw, pitch)
    light = f["light"]
    params = f["params"]
    return {
        "box": box,
        "landmarks": lms.tolist(),
        "landmark_flags": flags,
        "quality": round(1.0 - occlusion, 3),
        "difficulty": level,
        "size_px": box[3],
        "target_px": round(f["target_px"], 3),
        "occlusion": round(occlusion, 4),
        "truncation": round(truncation, 4),
        "occluder": f["occluder"],
        "pose_deg": {"pitch": round(pitch, 3), "yaw": round(yaw, 3), "roll": round(roll, 3)},
        "blur": {**_blur_dict(*f["blur"]), "effective_sigma": round(sigma, 4), "relative": round(blur_rel, 5)},
        "attributes": wider_attributes(
            level,
            occlusion,
            blur_rel,
            max(params.expression),
            (pitch, yaw, roll),
            (float(np.mean(light[3:6])), float(np.mean(light[6:9]))),
        ),
        "model": params.to_dict(),
        "template_grid": list(_template(f["target_px"]).grid),
        "camera": {
            "translation": [0.0, 0.0, DISTANCE],
            "rotation_rad": [math.radians(a) for a in f["pose"]],
            "focal_px": sprite.focal,
            "principal_px": (sprite.principal + np.array([ox, oy])).tolist(),
        },
        "light": {"position": light[0:3].tolist(), "color": light[3:6].tolist(), "ambient": light[6:9].tolist()},
    }
