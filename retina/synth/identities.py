"""SynthFace-ID: a face-verification dataset in the LFW layouts, from SynthFace's morphable faces (synthetic data).

A person is the part of :class:`retina.mesh.FaceParams` that stays with them: the 12 identity shape
coefficients, the 4 skin-tint coefficients, the region colours (skin, brows, iris, lips, hair) and the
hair style, drawn once per identity (:func:`sample_identity`, expression neutral). Each image of that
person draws what changes between photographs (:func:`sample_view`): expression, pose, light, a mild
albedo change (tint coefficients and skin colour jittered), the face size and position in the frame,
background, sometimes a stranger near a border, an occluder, face or camera blur, noise and JPEG.

A split folder holds::

    images/<name>/<name>_<k:04d>.jpg    name = id_<identity:05d>, k = 1, 2, ... (LFW naming)
    meta.json                           config, seed, version, identities' parameters, one record per image
    pairs.txt                           test split only: LFW's pairs.txt layout (folds, matched, mismatched)

Images are ``image_size`` squared (250 x 250 by default), one main face whose face-zone box (as in
SynthFace: :func:`retina.mesh.albedo.face_zone`) is centred in the image up to a few pixels. Per image,
``box`` is that tight box ``x1 y1 x2 y2`` in integer pixels (outward-rounded, clipped to the image);
``landmarks`` the five points in RetinaFace order (as SynthFace: :data:`LANDMARK_ORDER`),
continuous pixel coordinates to 0.01 px; ``landmark_visible`` whether each is seen (not hidden by the head
itself, an occluder or the border); ``pose_deg`` (pitch, yaw, roll). Random streams are keyed by (seed,
identity) and (seed, identity, image number), so files are identical for the same config and seed
whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from itertools import combinations
from math import comb
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from retina.errors import DataFormatError, RetinaError
from retina.mesh.albedo import AlbedoColors
from retina.mesh.morphable import EXPRESSION_NAMES, FaceParams, sample_face_params
from retina.results import staged_folder, write_bytes, write_text
from retina.synth.config import SYNTH_VERSION, SynthCfg
from retina.synth.face import render_faces
from retina.synth.identity_config import SPLITS, SYNTH_ID_PRESETS, SYNTH_ID_VERSION, SynthIDCfg
from retina.synth.image import _camera, _light, _paint_face, _spec
from retina.synth.scene import OCCLUDERS, background, to_jpeg
from retina.synth.splits import DEFAULT_SEED, cache_root, parallel_map

__all__ = [
    "SYNTH_ID_PRESETS",
    "SynthIDCfg",
    "generate_id_split",
    "make_pairs",
    "read_id_meta",
    "sample_identity",
    "sample_view",
    "synth_id_split",
]

DATASET = "SynthFace-ID (synthetic data)"
LANDMARK_ORDER = (
    "RetinaFace order, as SynthFace: 0 = the eye with the smaller image x when the face looks at the camera "
    "(the subject's right eye), 1 = the other eye, 2 = nose tip, 3 = mouth corner on the subject's right, 4 = on "
    "the left; continuous pixel coordinates, pixel (i, j) covers x in [j, j+1); landmark_visible: not hidden by "
    "the head itself, an occluder, another person or the border"
)
# Stream tags of the random generators (distinct from SynthFace's [seed, split code, index] streams).
IDENTITY_STREAM, IMAGE_STREAM, PAIRS_STREAM = 7001, 7002, 7003
MatchedPair = tuple[int, int, int]  # identity, image n1, image n2 (n1 < n2, 1-based)
MismatchedPair = tuple[int, int, int, int]  # identity a, image of a, identity b, image of b (a < b)
Fold = tuple[list[MatchedPair], list[MismatchedPair]]


def person_name(identity: int) -> str:
    """LFW-style person folder name, e.g. ``id_00012``."""
    return f"id_{identity:05d}"


def image_file(identity: int, k: int) -> str:
    """Path of image ``k`` (1-based) of an identity inside the split folder: ``images/id_00012/id_00012_0001.jpg``."""
    name = person_name(identity)
    return f"images/{name}/{name}_{k:04d}.jpg"


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def sample_identity(seed: int, identity: int) -> FaceParams:
    """The person ``identity``: a SynthFace face from the identity's own stream, expression neutral."""
    params = sample_face_params(_rng(seed, IDENTITY_STREAM, identity))
    return replace(params, expression=(0.0,) * len(EXPRESSION_NAMES))


def _pose(cfg: SynthIDCfg, rng: np.random.Generator) -> tuple[float, float, float]:
    """(pitch, yaw, roll) degrees: yaw mostly N(0, 20), a sixth uniform over the range; LFW-like near-frontal."""
    yaw = rng.uniform(-1, 1) * cfg.max_yaw_deg if rng.uniform() < 1 / 6 else rng.normal(0, 20)
    pitch, roll = rng.normal(0, 8), rng.normal(0, 6)
    return (
        float(np.clip(pitch, -cfg.max_pitch_deg, cfg.max_pitch_deg)),
        float(np.clip(yaw, -cfg.max_yaw_deg, cfg.max_yaw_deg)),
        float(np.clip(roll, -cfg.max_roll_deg, cfg.max_roll_deg)),
    )


def _face_blur(p: float, rng: np.random.Generator, face_px: float) -> tuple[float, float, float]:
    """(Gaussian sigma, motion length, motion angle): mild defocus or shake, with probability ``p``."""
    if rng.uniform() >= p:
        return 0.0, 0.0, 0.0
    if rng.uniform() < 0.5:
        return float(face_px * rng.uniform(0.005, 0.02)), 0.0, 0.0
    return 0.0, float(rng.uniform(2.0, 8.0)), float(rng.uniform(0, math.pi))


def _look(cfg: SynthIDCfg, person: FaceParams, rng: np.random.Generator) -> FaceParams:
    """The person in one photograph: an expression, and mildly changed skin tint and colour."""
    n = len(EXPRESSION_NAMES)
    expression = rng.uniform(0.0, 1.0, n) * (rng.uniform(size=n) < 0.4)
    tint = np.asarray(person.tint) + rng.normal(0.0, cfg.tint_jitter, len(person.tint))
    skin = np.clip(np.asarray(person.colors.skin) * (1.0 + rng.normal(0.0, cfg.skin_jitter, 3)), 0.0, 1.0)
    colors: AlbedoColors = replace(person.colors, skin=tuple(map(float, skin)))
    return replace(person, expression=tuple(map(float, expression)), tint=tuple(map(float, tint)), colors=colors)


def sample_view(cfg: SynthIDCfg, person: FaceParams, rng: np.random.Generator) -> dict[str, Any]:
    """Everything drawn for one image of ``person`` before rendering (``rng`` is then used for painting).

    Keys: ``background`` (S, S, 3) float32; ``faces``: the main face last, each a dict with
    ``target_px``, ``pose`` (pitch, yaw, roll) degrees, ``params``, ``light`` (9,), ``blur``,
    ``occluder``, ``body`` and ``centre`` (x, y) image pixels where its face box centre goes.
    """
    s = cfg.image_size
    img = background(rng, s, s)
    scene_dir = np.array([rng.uniform(-1, 1), rng.uniform(-1, -0.1), rng.uniform(-1, -0.2)])
    face_px = float(rng.uniform(*cfg.face_px_range))
    jitter = np.clip(rng.normal(0.0, cfg.centre_jitter_px, 2), -2.5 * cfg.centre_jitter_px, 2.5 * cfg.centre_jitter_px)
    main = {
        "target_px": face_px,
        "pose": _pose(cfg, rng),
        "params": _look(cfg, person, rng),
        "light": _light(rng, scene_dir),
        "blur": _face_blur(cfg.p_face_blur, rng, face_px),
        "occluder": OCCLUDERS[int(rng.integers(len(OCCLUDERS)))] if rng.uniform() < cfg.p_occluder else None,
        "body": bool(rng.uniform() < cfg.p_body),
        "centre": (s / 2 + float(jitter[0]), s / 2 + float(jitter[1])),
    }
    faces = [main]
    if rng.uniform() < cfg.p_background_person:  # a stranger at the left or right border, partly out of frame
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        centre = (s / 2 + side * s * rng.uniform(0.42, 0.55), s / 2 + s * rng.uniform(-0.1, 0.15))
        stranger = {
            "target_px": face_px * float(rng.uniform(0.75, 1.05)),
            "pose": _pose(cfg, rng),
            "params": sample_face_params(rng),
            "light": _light(rng, scene_dir),
            "blur": (float(rng.uniform(0.0, 1.5)), 0.0, 0.0),
            "occluder": None,
            "body": bool(rng.uniform() < cfg.p_body),
            "centre": (float(centre[0]), float(centre[1])),
        }
        faces.insert(0, stranger)  # painted first: behind the main face
    return {"background": img, "faces": faces}


def _camera_cfg(cfg: SynthIDCfg) -> SynthCfg:
    """The SynthFace settings that its image-wide camera effects read (blur, noise, JPEG)."""
    return replace(
        SynthCfg(),
        p_image_blur=cfg.p_image_blur,
        noise_sigma_range=cfg.noise_sigma_range,
        jpeg_quality_range=cfg.jpeg_quality_range,
    )


def _identity_images(job: tuple[SynthIDCfg, str, int, int]) -> list[tuple[bytes, dict[str, Any]]]:
    """JPEG bytes and records of all images of one identity; their faces rendered in one batch."""
    cfg, split, seed, identity = job
    person = sample_identity(seed, identity)
    rngs = [_rng(seed, IMAGE_STREAM, identity, k) for k in range(1, cfg.images_per_identity(split) + 1)]
    views = [sample_view(cfg, person, rng) for rng in rngs]
    faces = [f for v in views for f in v["faces"]]
    specs = [_spec(f["target_px"], f["params"], tuple(math.radians(a) for a in f["pose"]), f["light"]) for f in faces]
    for f, sprite in zip(faces, render_faces(specs), strict=True):
        f["sprite"] = sprite
    camera = _camera_cfg(cfg)
    return [_compose(camera, v, rng, identity, k) for k, (v, rng) in enumerate(zip(views, rngs, strict=True), 1)]


def _compose(
    camera: SynthCfg, view: dict[str, Any], rng: np.random.Generator, identity: int, k: int
) -> tuple[bytes, dict]:
    img = view["background"]
    owner = np.full(img.shape[:2], -1, np.int32)
    faces = view["faces"]
    for i, f in enumerate(faces):
        box = f["sprite"].box
        if not np.all(np.isfinite(box)):  # a stranger turned too far to show any face zone: still paint
            box = np.array([0.0, 0.0, *f["sprite"].alpha.shape[::-1]])
        f["offset"] = np.round(np.asarray(f["centre"]) - (box[:2] + box[2:]) / 2).astype(int)
        _paint_face(img, owner, i, f, rng)
    img, fx = _camera(camera, rng, img)
    record = {"file": image_file(identity, k), "identity": identity, **_annotations(faces[-1], len(faces) - 1, owner)}
    record.update(
        background_person=len(faces) > 1,
        jpeg_quality=fx["quality"],
        image_blur=[round(v, 4) for v in fx["blur"]],
        noise_sigma=round(fx["noise"], 4),
    )
    return to_jpeg(img, fx["quality"]), record


def _annotations(f: dict[str, Any], k: int, owner: np.ndarray) -> dict[str, Any]:
    """Box, landmarks, visibility and drawn values of the main face (painted as owner ``k``)."""
    sprite, (ox, oy) = f["sprite"], f["offset"]
    h, w = owner.shape
    if not np.all(np.isfinite(sprite.box)):
        raise RuntimeError("SynthFace-ID: the main face shows no face zone (pose outside the config's range?)")
    x1, y1, x2, y2 = sprite.box + np.array([ox, oy, ox, oy])
    box = [math.floor(max(x1, 0.0)), math.floor(max(y1, 0.0)), math.ceil(min(x2, w)), math.ceil(min(y2, h))]
    lms = np.round(sprite.landmarks + np.array([ox, oy]), 2)
    visible = []
    for (lx, ly), self_visible in zip(lms, sprite.landmark_visible, strict=True):
        i, j = math.floor(ly), math.floor(lx)
        visible.append(bool(self_visible) and 0 <= i < h and 0 <= j < w and bool(owner[i, j] == k))
    zone = sprite.face_alpha > 0.5
    ys, xs = np.nonzero(zone)
    ys, xs = ys + oy, xs + ox
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    seen = int(np.sum(owner[ys[inside], xs[inside]] == k))
    return {
        "box": box,
        "landmarks": lms.tolist(),
        "landmark_visible": visible,
        "pose_deg": [round(a, 3) for a in f["pose"]],
        "face_px": round(f["target_px"], 3),
        "expression": [round(e, 4) for e in f["params"].expression],
        "occluder": f["occluder"],
        "occlusion": round(1.0 - seen / max(len(ys), 1), 4),
        "face_blur": [round(v, 4) for v in f["blur"]],
    }


def generate_id_split(
    out_dir: str | os.PathLike[str],
    cfg: SynthIDCfg,
    split: str,
    seed: int = DEFAULT_SEED,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    preset: str | None = None,
) -> Path:
    """Generate a SynthFace-ID split (``train`` or ``test``) into ``out_dir``; returns ``out_dir``.

    Written into a temporary sibling folder renamed at the end, so the folder appears complete or not at
    all. One job per identity (its images share one batched rendering), so the files do not depend on
    ``workers``. An existing ``out_dir`` is an error unless ``overwrite``. ``preset``: the preset name that
    ``meta.json`` records (None when ``cfg`` is not a named preset).
    """
    if split not in SPLITS:
        raise RetinaError(f"SynthFace-ID: unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    train, test = cfg.identities("train"), cfg.identities("test")
    if not train.stop <= test.start:  # separate random streams only if the identity numbers differ
        raise RetinaError(f"SynthFace-ID: train identities {train} overlap test identities {test}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise RetinaError(f"output folder already exists: {out} (pass overwrite to replace it)")
    with staged_folder(out) as tmp:
        jobs = [(cfg, split, seed, identity) for identity in cfg.identities(split)]
        records = []
        total = len(jobs) * cfg.images_per_identity(split)
        with tqdm(total=total, desc=f"SynthFace-ID {split}", unit="img", disable=not progress) as bar:
            for images in parallel_map(_identity_images, jobs, max(1, int(workers))):
                for jpeg, record in images:
                    path = tmp / record["file"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(jpeg)
                    records.append(record)
                bar.update(len(images))
        _write_meta(tmp / "meta.json", cfg, preset, split, seed, records)
        if split == "test":
            write_text(tmp / "pairs.txt", pairs_text(make_pairs(cfg, seed), cfg.pairs_per_fold))
    return out


def _write_meta(
    path: Path, cfg: SynthIDCfg, preset: str | None, split: str, seed: int, records: list[dict[str, Any]]
) -> None:
    """meta.json: one line per header key, per identity and per image (compact, valid JSON)."""
    head = {
        "dataset": DATASET,
        "synthetic": True,
        "description": "synthetic data: procedurally rendered faces (retina.synth.identities), not photographs",
        "version": SYNTH_ID_VERSION,
        "synthface_version": SYNTH_VERSION,
        "preset": preset,
        "config": cfg.to_dict(),
        "seed": seed,
        "split": split,
        "n_identities": len(cfg.identities(split)),
        "n_images": len(records),
        "box_format": "x1 y1 x2 y2 integer pixels: tight box of the face zone, outward-rounded, clipped",
        "landmarks": LANDMARK_ORDER,
        "pose_deg": "pitch, yaw, roll (retina.render.camera conventions)",
    }
    identities = [
        {"identity": i, "name": person_name(i), "params": sample_identity(seed, i).to_dict()}
        for i in cfg.identities(split)
    ]
    items = [f" {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in head.items()]
    for key, rows in (("identities", identities), ("images", records)):
        body = ",\n".join("  " + json.dumps(r, allow_nan=False) for r in rows)
        items.append(f' "{key}": [\n{body}\n ]')
    write_bytes(path, ("{\n" + ",\n".join(items) + "\n}\n").encode("utf-8"))


def make_pairs(cfg: SynthIDCfg, seed: int = DEFAULT_SEED) -> list[Fold]:
    """The test split's verification pairs: ``cfg.folds`` folds of ``cfg.pairs_per_fold`` matched and as
    many mismatched pairs, each sorted. The test identities are shuffled and cut into identity-disjoint
    folds (as LFW's View 2 folds are); within a fold, pairs are drawn without replacement from all its
    distinct pairs (``SynthIDCfg`` checks there are enough)."""
    rng = _rng(seed, PAIRS_STREAM)
    n, p = cfg.test_images_per_identity, cfg.pairs_per_fold
    image_pairs = list(combinations(range(1, n + 1), 2))
    folds = []
    for members in np.array_split(rng.permutation(np.asarray(cfg.identities("test"))), cfg.folds):
        ids = sorted(int(i) for i in members)
        matched = [
            (ids[m // len(image_pairs)], *image_pairs[m % len(image_pairs)])
            for m in rng.choice(len(ids) * len(image_pairs), p, replace=False).tolist()
        ]
        id_pairs = list(combinations(ids, 2))
        mismatched = [
            (id_pairs[m // (n * n)][0], m % (n * n) // n + 1, id_pairs[m // (n * n)][1], m % n + 1)
            for m in rng.choice(comb(len(ids), 2) * n * n, p, replace=False).tolist()
        ]
        folds.append((sorted(matched), sorted(mismatched)))
    return folds


def pairs_text(folds: Sequence[Fold], pairs_per_fold: int) -> str:
    """LFW's pairs.txt: ``"<folds>\\t<pairs>"``, then per fold the matched lines ``name n1 n2`` and the
    mismatched lines ``name1 n1 name2 n2`` (tab-separated, image numbers 1-based)."""
    lines = [f"{len(folds)}\t{pairs_per_fold}"]
    for matched, mismatched in folds:
        lines += [f"{person_name(i)}\t{a}\t{b}" for i, a, b in matched]
        lines += [f"{person_name(i)}\t{a}\t{person_name(j)}\t{b}" for i, a, j, b in mismatched]
    return "\n".join(lines) + "\n"


def read_id_meta(split_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A split's ``meta.json`` (see the module docstring)."""
    path = Path(split_dir) / "meta.json"
    if not path.is_file():
        raise RetinaError(f"not a SynthFace-ID split (no meta.json): {split_dir}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def synth_id_split(
    split: str,
    preset: str = "default",
    workers: int | None = None,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """The suite's SynthFace-ID split (``train`` or ``test``), generated on first use and cached.

    Folder: ``<root>/v<version>-id-<preset>-<hash>/<split>`` with ``root`` defaulting to
    :func:`retina.synth.splits.cache_root` (``$RETINA_CACHE/synthface``); the hash covers both generator
    versions, the config and the seed. Concurrent callers are safe: each generates into a temporary
    folder and the first rename wins.
    """
    if split not in SPLITS:
        raise RetinaError(f"synth_id_split: split must be one of {', '.join(SPLITS)}, got {split!r}")
    if preset not in SYNTH_ID_PRESETS:
        raise RetinaError(f"unknown SynthFace-ID preset {preset!r} (available: {', '.join(SYNTH_ID_PRESETS)})")
    cfg = SYNTH_ID_PRESETS[preset]
    key = json.dumps(
        {"version": SYNTH_ID_VERSION, "synthface": SYNTH_VERSION, "config": cfg.to_dict(), "seed": DEFAULT_SEED},
        sort_keys=True,
    )
    base = Path(root) if root is not None else cache_root()
    folder = base / f"v{SYNTH_ID_VERSION}-id-{preset}-{hashlib.sha256(key.encode()).hexdigest()[:12]}" / split
    if (folder / "meta.json").is_file():
        return folder
    n_jobs = len(cfg.identities(split))
    workers = (workers if workers is not None else min(os.cpu_count() or 1, 8)) if n_jobs >= 8 else 1
    try:
        generate_id_split(folder, cfg, split, DEFAULT_SEED, workers, progress=progress, preset=preset)
    except (RetinaError, OSError):
        if not (folder / "meta.json").is_file():  # not another process winning the race
            raise
    return folder
