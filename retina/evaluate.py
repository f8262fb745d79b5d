"""Detector -> WIDER FACE submission -> official-protocol evaluation, for any split in the WIDER layout.

Used by ``retina evaluate`` / ``nox -s widerface_eval``, the CI regression test and the ablation runner.
A split is an images folder (``<event>/<image>.jpg``) plus the official ground-truth ``.mat`` files.

An evaluation's folder records what was evaluated (``evaluation_key``: weights file and sha256, data, test
protocol, post-processing, IoU, arithmetic, subset); :func:`default_out` names a folder after the same things,
so that evaluating another model or other settings never lands in the folder of an earlier evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from retina.api import Detections, Detector
from retina.config import PostCfg, config_hash, to_dict
from retina.data.widerface import MAT_FILES, GroundTruth, Submission, load_ground_truth, write_predictions
from retina.errors import RetinaError
from retina.eval.report import write_results
from retina.eval.subset import Subset, from_keys, names_sha256
from retina.eval.widerface import EvalResult, evaluate
from retina.images import IMAGE_SUFFIXES, find_image, is_image_file, read_image
from retina.protocols import protocol as get_protocol
from retina.results import file_id, file_sha256, files_sha256, staged_folder

GROUND_TRUTH_FOLDERS = ("ground_truth", "eval_tools/ground_truth", "wider_face_split")


@dataclass(frozen=True)
class EvalSplit:
    """images (folder of ``<event>/<image>`` files) and gt (folder of the four official .mat files)."""

    images: Path
    gt: Path
    label: str  # what the data is, for records (e.g. "WIDER FACE val" or "SynthFace val (synthetic)")

    @staticmethod
    def from_root(root: str | os.PathLike, gt: str | os.PathLike | None = None, label: str | None = None) -> EvalSplit:
        """Find images and ground truth under ``root`` in the layouts people have.

        images: ``root/WIDER_val/images`` or ``root/images``; ground truth: ``gt`` if given, else
        ``root/ground_truth``, ``root/eval_tools/ground_truth`` or ``root/wider_face_split``.
        """
        root = Path(root)
        images = next((p for p in (root / "WIDER_val" / "images", root / "images") if p.is_dir()), None)
        if images is None:
            raise RetinaError(f"{root}: no WIDER_val/images or images folder")
        return EvalSplit(images, find_ground_truth(gt or root), label or f"WIDER-layout split {root}")


def find_ground_truth(folder: str | os.PathLike) -> Path:
    """The folder holding ``wider_face_val.mat``: ``folder`` itself, or its ``ground_truth``,
    ``eval_tools/ground_truth`` or ``wider_face_split`` (a WIDER FACE root or eval_tools folder)."""
    folder = Path(folder)
    candidates = [folder, *(folder / sub for sub in GROUND_TRUTH_FOLDERS)]
    found = next((p for p in candidates if (p / "wider_face_val.mat").is_file()), None)
    if found is None:
        raise RetinaError(
            f"ground truth file not found: no wider_face_val.mat in {', '.join(map(str, candidates))} (pass --gt DIR)"
        )
    return found


def present_images(images: Path, gt: GroundTruth) -> Subset:
    """The subset of ``gt``'s images that have an image file under ``images`` (``<event>/<stem>.<suffix>``)."""
    found = set()
    for event in gt.events:
        folder = images / event
        if folder.is_dir():
            found |= {(event, p.stem) for p in folder.iterdir() if is_image_file(p)}
    keys = [key for key in gt.images if key in found]
    if not keys:
        raise RetinaError(f"none of the {len(gt.images)} ground-truth images is under {images}")
    return from_keys(keys, gt, f"the images present under {images}")


def evaluation_key(
    weights: Path, data: str, protocol: str, post: PostCfg, iou: float, arithmetic: str, subset: Subset | None
) -> dict[str, Any]:
    """What an evaluation folder holds the results of (recorded in its ``results.json``), as JSON data."""
    key = {"weights": file_id(weights), "data": data, "protocol": protocol, "post": to_dict(post), "iou": iou,
           "arithmetic": arithmetic, "subset": subset.sha256 if subset else None}  # fmt: skip
    return json.loads(json.dumps(key))


def default_out(
    data: str,
    protocol: str,
    weights: Path | None,
    post: PostCfg,
    iou: float,
    arithmetic: str,
    subset: Subset | None,
) -> Path:
    """``results/widerface_eval/<data>_<protocol>[_<weights>-<sha256[:8]>][_<settings>][_subset<N>-<sha[:8]>]``:
    the weights part unless they are the committed ones (``weights`` None), settings only where not default."""
    parts = [data, protocol]
    if weights is not None:
        parts.append(f"{weights.stem}-{file_sha256(weights)[:8]}")
    default = PostCfg()
    names = {"score_threshold": "score", "nms_iou": "nms", "pre_nms_top_k": "topk", "max_detections": "maxdet",
             "nms_pixel_offset": "nmsoffset"}  # fmt: skip
    for field, name in names.items():
        value = getattr(post, field)
        if value != getattr(default, field):
            parts.append(f"{name}{'all' if value is None else f'{value:g}'}")
    parts += [f"iou{iou:g}"] if iou != 0.5 else []
    parts += [arithmetic] if arithmetic != "matlab" else []
    parts += [f"subset{len(subset.images)}-{subset.sha256[:8]}"] if subset else []
    return Path("results") / "widerface_eval" / re.sub(r"[^A-Za-z0-9.+-]+", "_", "_".join(parts))


def split_content(split: EvalSplit, gt: GroundTruth) -> dict[str, Any]:
    """What the split holds, byte for byte: sha256 of the four ground-truth files and of every image the ground
    truth names (``retina.results.files_sha256``), and the image count."""
    images = files_sha256(split.images, [image_path(split.images, e, s) for e, s in gt.images])
    mats = files_sha256(split.gt, [split.gt / name for name in MAT_FILES.values()])
    both = hashlib.sha256((mats["sha256"] + images["sha256"]).encode()).hexdigest()
    return {"sha256": both, "images": images["files"]}


def image_path(images: Path, event: str, stem: str) -> Path:
    """``images/<event>/<stem>.<suffix>`` for any suffix of ``IMAGE_SUFFIXES`` in any case."""
    path = find_image(images / event, stem)
    if path is None:
        suffixes = "/".join(sorted(s[1:] for s in IMAGE_SUFFIXES))
        raise RetinaError(
            f"image {event}/{stem}.({suffixes}) of the ground truth not found under {images} "
            "(--subset images evaluates the images present, as a subset)"
        )
    return path


def _batches(gt: GroundTruth, images: Path, size: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    batch: list[tuple[int, np.ndarray]] = []
    for k, (event, stem) in enumerate(gt.images):
        batch.append((k, read_image(image_path(images, event, stem))))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def to_submission(dets: Detections) -> np.ndarray:
    """Detections -> (N, 5) float64 ``x y w h score`` (w = x2 - x1)."""
    boxes = dets.boxes.astype(np.float64)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2], dets.scores[:, None].astype(np.float64)], 1)


def predict_split(
    detector: Detector,
    split: EvalSplit,
    gt: GroundTruth,
    pred_dir: Path,
    protocol: str,
    post: PostCfg,
    progress: bool = True,
) -> Submission:
    """Run the detector over every ground-truth image, writing ``pred_dir/<event>/<image>.txt``.

    Images are read ``detector.batch_size`` at a time; the detector batches the network inputs of equal size.
    """
    proto = get_protocol(protocol)
    out: list[np.ndarray] = [np.zeros((0, 5))] * len(gt.images)
    bar = tqdm(total=len(gt.images), disable=not progress, unit="img", desc=f"detect ({protocol})")
    for batch in _batches(gt, split.images, detector.batch_size):
        results = detector.detect_arrays([image for _, image in batch], proto, post)
        for (k, _), dets in zip(batch, results, strict=True):
            event, stem = gt.images[k]
            out[k] = to_submission(dets)
            write_predictions(pred_dir, event, stem, out[k][:, :4], out[k][:, 4])
        bar.update(len(batch))
    bar.close()
    return Submission(tuple(out), source=str(pred_dir))


def evaluate_detector(
    detector: Detector,
    split: EvalSplit,
    out_dir: str | os.PathLike,
    protocol: str = "original",
    post: PostCfg | None = None,
    iou: float = 0.5,
    *,
    progress: bool = True,
    arithmetic: str = "matlab",
    gt: GroundTruth | None = None,
    subset: Subset | None = None,
    key: dict[str, Any] | None = None,
    **extra: Any,
) -> tuple[EvalResult, dict[str, Path]]:
    """Predict, write the submission under ``out_dir/predictions`` and the evaluation results in ``out_dir``.

    ``arithmetic``: that of ``retina.eval.widerface.evaluate`` ('matlab' or 'float64'). The network batch is
    ``detector.batch_size``. ``gt``: the split's ground truth when the caller has read it; ``subset``: evaluate
    these images only (recorded as a subset); ``key``: :func:`evaluation_key`, recorded. The predictions
    folder is replaced as a whole when complete (no file of an earlier evaluation is left in it).
    """
    out_dir = Path(out_dir)
    post = post or detector.post
    gt = gt or load_ground_truth(split.gt)
    gt = subset.restrict(gt) if subset else gt
    t0 = time.perf_counter()
    with staged_folder(out_dir / "predictions") as staging:
        predictions = predict_split(detector, split, gt, staging, protocol, post, progress)
    seconds = time.perf_counter() - t0
    result = evaluate(predictions, gt, iou, arithmetic=arithmetic)
    record = {
        "data": split.label,
        "images": str(split.images),
        "test_protocol": protocol,
        "post": to_dict(post),
        "model": detector.cfg.name,
        "model_cfg_hash": config_hash(detector.cfg),
        "data_content": split_content(split, gt),
        "batch_size": detector.batch_size,
        "detect_seconds": seconds,
        **extra,
    }
    sections = {"images_sha256": names_sha256(gt.images), **({"subset": subset.record()} if subset else {}),
                **({"evaluation_key": key} if key else {})}  # fmt: skip
    return result, write_results(out_dir, result, out_dir / "predictions", split.gt, sections=sections, **record)
