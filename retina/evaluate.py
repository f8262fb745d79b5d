"""Detector -> WIDER FACE submission -> official-protocol evaluation, for any split in the WIDER layout.

Used by ``retina evaluate`` / ``nox -s widerface_eval``, the CI regression test and the ablation runner.
A split is an images folder (``<event>/<image>.jpg``) plus the official ground-truth ``.mat`` files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from retina.api import Detections, Detector
from retina.config import PostCfg, config_hash, to_dict
from retina.data.widerface import GroundTruth, Submission, load_ground_truth, write_predictions
from retina.errors import RetinaError
from retina.eval.report import write_results
from retina.eval.widerface import EvalResult, evaluate
from retina.images import IMAGE_SUFFIXES, find_image, read_image
from retina.protocols import protocol as get_protocol


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
        candidates = [Path(gt)] if gt else [root / "ground_truth", root / "eval_tools" / "ground_truth",
                                            root / "wider_face_split"]  # fmt: skip
        gt_dir = next((p for p in candidates if (p / "wider_face_val.mat").is_file()), None)
        if gt_dir is None:
            raise RetinaError(f"no wider_face_val.mat in {', '.join(map(str, candidates))} (pass --gt DIR)")
        return EvalSplit(images, gt_dir, label or f"WIDER-layout split {root}")


def image_path(images: Path, event: str, stem: str) -> Path:
    """``images/<event>/<stem>.<suffix>`` for any suffix of ``IMAGE_SUFFIXES`` in any case."""
    path = find_image(images / event, stem)
    if path is None:
        suffixes = "/".join(sorted(s[1:] for s in IMAGE_SUFFIXES))
        raise RetinaError(f"image {event}/{stem}.({suffixes}) of the ground truth not found under {images}")
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
    **extra: Any,
) -> tuple[EvalResult, dict[str, Path]]:
    """Predict, write the submission under ``out_dir/predictions`` and the evaluation results in ``out_dir``.

    ``arithmetic``: that of ``retina.eval.widerface.evaluate`` ('matlab' or 'float64'). The network batch is
    ``detector.batch_size``.
    """
    out_dir = Path(out_dir)
    post = post or detector.post
    gt = load_ground_truth(split.gt)
    t0 = time.perf_counter()
    predictions = predict_split(detector, split, gt, out_dir / "predictions", protocol, post, progress)
    seconds = time.perf_counter() - t0
    result = evaluate(predictions, gt, iou, arithmetic=arithmetic)
    record = {
        "data": split.label,
        "images": str(split.images),
        "test_protocol": protocol,
        "post": to_dict(post),
        "model": detector.cfg.name,
        "model_cfg_hash": config_hash(detector.cfg),
        "batch_size": detector.batch_size,
        "detect_seconds": seconds,
        **extra,
    }
    return result, write_results(out_dir, result, out_dir / "predictions", split.gt, **record)
