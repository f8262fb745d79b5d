"""SynthFace: a procedural face dataset written in the WIDER FACE layouts (synthetic data).

Faces are rendered from the suite's own 3D face model (:mod:`retina.mesh`) with the differentiable
renderer (:mod:`retina.render`), so their boxes, five landmarks, pose, occlusion, blur, shape, albedo,
camera and light are exact. A split folder holds::

    images/<event>/<name>.jpg           e.g. images/2--Synth_Crowd/2_Synth_Crowd_val_000017.jpg
    label.txt                           RetinaFace train layout: box, 5 landmarks + flags, quality
    ground_truth/wider_face_val.mat     official evaluation structures (+ wider_{easy,medium,hard}_val.mat)
    meta.jsonl                          one JSON record per image (label.txt order): every face's metadata
    synth.json                          generator config, seed, version, counts, provenance; "synthetic data"

Conventions: boxes ``x y w h`` integer pixels (the tight box of the visible-or-hidden face zone of
:func:`retina.mesh.albedo.face_zone`, clipped to the image, outward-rounded); landmarks (2 decimals)
in continuous pixel coordinates (pixel (i, j) covers ``x in [j, j+1)``, ``y in [i, i+1)``), in
RetinaFace order: landmark 0 is the eye with the smaller image x when the face looks at the camera
(the subject's right eye), 1 the other eye, 2 the nose tip, 3 and 4 the mouth corners (3 on the
subject's right); flag 0 visible, 1 occluded (hidden by the head itself, another person, an object or
the image border); quality = visible fraction of the face zone. Difficulty: see
:mod:`retina.synth.config` (``DIFFICULTY_RULE``). Files are identical for the same config, split,
seed and image count, whatever the number of workers (``synth.json``'s provenance block aside).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import platform
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from retina.data.widerface import (
    ATTRIBUTES,
    SETTINGS,
    LabeledImage,
    ground_truth_from_boxes,
    write_ground_truth,
    write_retinaface_labels,
)
from retina.errors import DataFormatError, RetinaError
from retina.results import provenance, staged_folder, write_bytes, write_json, write_text
from retina.synth.config import (
    DIFFICULTY_RULE,
    EVENTS,
    SPLIT_CODES,
    SYNTH_PRESETS,
    SYNTH_VERSION,
    SynthCfg,
    settings_of,
)
from retina.synth.image import compose_image

__all__ = ["SYNTH_PRESETS", "SynthCfg", "default_split", "generate_split", "read_meta"]

DEFAULT_SEED = 0
MAT_HEADER_TEXT = 116  # bytes of descriptive text at the start of a MATLAB 5 MAT-file
LANDMARK_CONVENTION = (
    "RetinaFace order: 0 = the eye with the smaller image x when the face looks at the camera (the subject's "
    "right eye), 1 = the other eye, 2 = nose tip, 3 = mouth corner on the subject's right, 4 = on the left; "
    "flags 0 visible, 1 occluded; continuous pixel coordinates, pixel (i, j) covers x in [j, j+1)"
)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch and OpenCV single-threaded (bit-identical results whatever the machine's pool)."""
    import cv2
    import torch

    saved = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        cv2.setNumThreads(saved[1])


def _worker_init() -> None:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _compose(job: tuple[SynthCfg, str, int, int]) -> tuple[bytes, dict[str, Any]]:
    return compose_image(*job)


def kernels_without_avx2() -> list[str]:
    """The libraries that run their pre-AVX2 CPU kernels in this process, on an x86 machine (else empty).

    SynthFace and SynthFace-ID files are the same on x86-64 machines where torch and OpenCV use their AVX2 or
    AVX-512 kernels (both round alike: fused multiply-adds). Without AVX2 and FMA (CPUs before 2013, virtual
    machines that hide them, ``ATEN_CPU_CAPABILITY=default``, ``OPENCV_CPU_DISABLE``) the shading, blurs and so
    the JPEG bytes of a few images in a hundred differ.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    import cv2
    import torch

    out = []
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        out.append("torch")
    if "*AVX2?" in cv2.getCPUFeaturesLine().split():  # dispatched kernels marked "?" are not used here
        out.append("OpenCV")
    return out


def parallel_map(fn: Callable[[Any], Any], jobs: list[Any], workers: int, chunksize: int = 1) -> Iterator[Any]:
    """``fn`` over ``jobs``, results in order: here with one thread, or in ``workers`` processes of one thread each.

    Results do not depend on ``workers`` (each job seeds itself). "spawn": a clean interpreter per worker
    (forking a process whose OpenMP pool has run can hang). Warns when :func:`kernels_without_avx2` names any.
    """
    slow = kernels_without_avx2()
    if slow:
        warnings.warn(
            f"{' and '.join(slow)} run without AVX2/FMA kernels here: some generated images will differ from those "
            "made on AVX2 or AVX-512 x86 machines",
            stacklevel=2,
        )
    if workers <= 1:
        with _one_thread():
            yield from map(fn, jobs)
        return
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    try:
        yield from pool.map(fn, jobs, chunksize=chunksize)
    finally:  # stopped early (an error, Ctrl-C, SIGTERM): the jobs not yet started are dropped, not waited for
        pool.shutdown(wait=True, cancel_futures=True)


def _images(cfg: SynthCfg, split: str, n: int, seed: int, workers: int) -> Iterator[tuple[bytes, dict[str, Any]]]:
    return parallel_map(_compose, [(cfg, split, i, seed) for i in range(n)], workers, chunksize=4)


def _labeled(meta: dict[str, Any]) -> LabeledImage:
    faces = meta["faces"]
    n = len(faces)
    return LabeledImage(
        meta["path"],
        np.array([f["box"] for f in faces], dtype=np.float64).reshape(n, 4),
        np.array([f["landmarks"] for f in faces], dtype=np.float64).reshape(n, 5, 2),
        np.array([f["landmark_flags"] for f in faces], dtype=np.float64).reshape(n, 5),
        np.array([f["quality"] for f in faces], dtype=np.float64).reshape(n),
    )


def generate_split(
    out_dir: str | os.PathLike[str],
    cfg: SynthCfg,
    split: str,
    n_images: int,
    seed: int = DEFAULT_SEED,
    workers: int = 1,
    overwrite: bool = False,
) -> Path:
    """Generate a split into ``out_dir`` (layout in the module docstring); returns ``out_dir``.

    The folder appears complete or not at all: everything is written into a temporary sibling folder
    that is renamed at the end. An existing ``out_dir`` is an error unless ``overwrite``.
    """
    if split not in SPLIT_CODES:
        raise RetinaError(f"unknown split {split!r} (expected one of {sorted(SPLIT_CODES)})")
    if n_images < 1:
        raise RetinaError(f"--images must be >= 1, got {n_images}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise RetinaError(f"output folder already exists: {out} (pass overwrite / --overwrite to replace it)")
    with staged_folder(out) as tmp:
        metas = []
        for jpeg, meta in _images(cfg, split, n_images, seed, max(1, int(workers))):
            path = tmp / "images" / meta["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg)
            metas.append(meta)
        _write_annotations(tmp, cfg, split, n_images, seed, metas)
    return out


def _write_annotations(root: Path, cfg: SynthCfg, split: str, n: int, seed: int, metas: list[dict]) -> None:
    metas = sorted(metas, key=lambda m: (EVENTS.index(m["event"]), m["index"]))
    write_retinaface_labels(root / "label.txt", [_labeled(m) for m in metas], with_landmarks=True)
    keep = {
        s: [
            np.array([k for k, f in enumerate(m["faces"]) if s in settings_of(f["difficulty"])], np.int64)
            for m in metas
        ]
        for s in SETTINGS
    }
    gt = ground_truth_from_boxes([(m["path"], _labeled(m).boxes) for m in metas], keep)
    attrs = {a: tuple(np.array([f["attributes"][a] for f in m["faces"]], np.uint8) for m in metas) for a in ATTRIBUTES}
    gt = type(gt)(gt.events, gt.images, gt.boxes, gt.keep, attrs)
    write_ground_truth(root / "ground_truth", gt)
    for mat in sorted((root / "ground_truth").glob("*.mat")):
        _fix_mat_header(mat)
    write_text(root / "meta.jsonl", "".join(json.dumps(m, sort_keys=True) + "\n" for m in metas))
    faces = [f for m in metas for f in m["faces"]]
    counts = {s: gt.count(s) for s in SETTINGS}
    write_json(
        root / "synth.json",
        {
            "dataset": "SynthFace",
            "synthetic": True,
            "description": "synthetic data: procedurally rendered faces (retina.synth.splits), not photographs",
            "version": SYNTH_VERSION,
            "split": split,
            "seed": seed,
            "n_images": n,
            "n_faces": len(faces),
            "counts": {**counts, "ignored": sum(f["difficulty"] is None for f in faces)},
            "config": cfg.to_dict(),
            "difficulty_rule": DIFFICULTY_RULE,
            "landmarks": LANDMARK_CONVENTION,
            "provenance": provenance(generator="retina.synth.splits.generate_split"),
        },
    )


def _fix_mat_header(path: Path) -> None:
    """Replace the creation time that scipy writes into a MAT-file's 116-byte text header by fixed text,
    so that the same seed gives the same bytes (the header is descriptive only; readers skip it)."""
    data = path.read_bytes()
    if not data.startswith(b"MATLAB 5.0 MAT-file"):
        raise RetinaError(f"{path}: not a MATLAB 5 MAT-file")
    header = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: retina SynthFace (synthetic data)"
    write_bytes(path, header.ljust(MAT_HEADER_TEXT, b"\x00") + data[MAT_HEADER_TEXT:])


def read_meta(split_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-image metadata records of a split (``meta.jsonl``), in ``label.txt`` order."""
    path = Path(split_dir) / "meta.jsonl"
    if not path.is_file():
        raise RetinaError(f"not a SynthFace split (no meta.jsonl): {split_dir}")
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}:{lineno}: not a JSON record ({exc.msg})") from None
    return records


def cache_root() -> Path:
    """``$RETINA_CACHE/synthface`` or ``~/.cache/retina/synthface``: outside any git checkout."""
    base = os.environ.get("RETINA_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "retina") / "synthface"


def default_split(split: str, preset: str = "default", workers: int | None = None) -> Path:
    """The suite's default SynthFace split (``train`` or ``val``), generated on first use and cached.

    The cache folder is named by the generator version, the preset and a hash of its config and seed,
    so a change to any of them generates afresh. Concurrent callers are safe: each generates into a
    temporary folder and the first rename wins.
    """
    if split not in ("train", "val"):
        raise RetinaError(f"default_split: split must be 'train' or 'val', got {split!r}")
    if preset not in SYNTH_PRESETS:
        raise RetinaError(f"unknown SynthFace preset {preset!r} (available: {', '.join(SYNTH_PRESETS)})")
    cfg = SYNTH_PRESETS[preset]
    key = json.dumps({"version": SYNTH_VERSION, "config": cfg.to_dict(), "seed": DEFAULT_SEED}, sort_keys=True)
    folder = cache_root() / f"v{SYNTH_VERSION}-{preset}-{hashlib.sha256(key.encode()).hexdigest()[:12]}" / split
    if (folder / "synth.json").is_file():
        return folder
    n = cfg.train_images if split == "train" else cfg.val_images
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    try:
        generate_split(folder, cfg, split, n, DEFAULT_SEED, workers=workers if n >= 16 else 1)
    except (RetinaError, OSError):
        if not (folder / "synth.json").is_file():  # not another process winning the race
            raise
    return folder
