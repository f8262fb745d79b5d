"""Synthetic-to-real transfer: the small real development set and what a detector does on real images.

The development set is built from a folder of WIDER FACE val images that were squeezed to a fixed size (e.g.
416 x 416) plus a JSON of their original sizes (``{"sizes": {"<event>/<name>.jpg": [width, height]}}``):
resizing each image back to its original size restores its geometry (not its detail), so the official ground
truth applies unchanged once cut down to these images. Images and the cut ground truth are written to a cache
folder outside the repository; nothing of them is ever committed.

:func:`transfer_metrics` gives, beside the official APs, what a researcher asks of a proxy-trained detector on
real photos: recall per face-size bin and false positives per image at an operating score (default 0.5).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from retina.data.widerface import GroundTruth, load_ground_truth, write_ground_truth
from retina.errors import DataFormatError, RetinaError
from retina.eval.widerface import EvalResult
from retina.evaluate import EvalSplit
from retina.results import staged_folder

SIZE_BINS = (0, 10, 20, 40, 80, 160, 1_000_000)  # face height bins (pixels of the original image)
OPERATING_SCORE = 0.5


def read_sizes(path: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """``{"sizes": {"<event>/<name>.jpg": [width, height]}}`` -> {relative path: (width, height)}."""
    path = Path(path)
    try:
        sizes = json.loads(path.read_text())["sizes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{path}: expected a JSON object with 'sizes' ({exc})") from None
    out = {}
    for name, wh in sizes.items():
        if not (isinstance(wh, list) and len(wh) == 2 and all(isinstance(v, int) and v > 0 for v in wh)):
            raise DataFormatError(f"{path}: size of {name} must be [width, height] in pixels, got {wh!r}")
        out[name] = (wh[0], wh[1])
    return out


def subset_ground_truth(gt: GroundTruth, keep: Sequence[tuple[str, str]]) -> GroundTruth:
    """``gt`` cut down to the images ``keep`` ((event, stem) pairs), in ``gt``'s order; events without images go."""
    wanted = set(keep)
    missing = wanted - set(gt.images)
    if missing:
        event, stem = sorted(missing)[0]
        raise RetinaError(f"{len(missing)} images are not in the ground truth, e.g. {event}/{stem}")
    idx = [k for k, key in enumerate(gt.images) if key in wanted]
    events = tuple(e for e in gt.events if any(gt.images[k][0] == e for k in idx))
    pick = lambda lists: tuple(lists[k] for k in idx)  # noqa: E731
    return GroundTruth(
        events,
        pick(gt.images),
        pick(gt.boxes),
        {s: pick(v) for s, v in gt.keep.items()},
        {a: pick(v) for a, v in gt.attributes.items()},
    )


def dev_set(resized_images: Path, sizes_json: Path, gt_dir: Path, cache: Path) -> EvalSplit:
    """The development set in the WIDER layout under ``cache`` (built once; keyed by the inputs' content).

    ``resized_images``: ``<event>/<name>.jpg`` squeezed copies; ``sizes_json``: original sizes of the images to
    use (only those); ``gt_dir``: the official val ``.mat`` files.
    """
    sizes = read_sizes(sizes_json)
    key = hashlib.sha256(Path(sizes_json).read_bytes() + Path(gt_dir, "wider_face_val.mat").read_bytes())
    folder = Path(cache) / f"wider_dev-{key.hexdigest()[:12]}"
    if (folder / "ground_truth" / "wider_hard_val.mat").is_file():
        return EvalSplit(folder / "images", folder / "ground_truth", _label(len(sizes)))
    gt = load_ground_truth(gt_dir)
    keep = [(name.split("/")[0], Path(name).stem) for name in sizes]
    cut = subset_ground_truth(gt, keep)
    try:
        with staged_folder(folder) as tmp:
            for name, (w, h) in sizes.items():
                src = Path(resized_images) / name
                image = cv2.imread(str(src))
                if image is None:
                    raise RetinaError(f"cannot read image {src}")
                dst = tmp / "images" / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                # back to the original size: bilinear up (the detail is that of the squeezed copy)
                cv2.imwrite(
                    str(dst), cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR), [cv2.IMWRITE_JPEG_QUALITY, 95]
                )
            write_ground_truth(tmp / "ground_truth", cut)
    except (RetinaError, OSError):
        if not (folder / "ground_truth" / "wider_hard_val.mat").is_file():  # not another process winning the race
            raise
    return EvalSplit(folder / "images", folder / "ground_truth", _label(len(sizes)))


def development_set(dev_root: Path, cache: Path | None = None) -> EvalSplit:
    """The development set from ``dev_root`` (``val_resized416/`` with ``original_sizes_dev.json``, and
    ``ground_truth/``), built into ``cache`` (default: beside the SynthFace cache, ``$RETINA_CACHE/real``)."""
    from retina.synth.splits import cache_root

    resized = Path(dev_root) / "val_resized416"
    sizes = resized / "original_sizes_dev.json"
    if not sizes.is_file():
        raise RetinaError(f"no development set at {dev_root} ({sizes} missing)")
    return dev_set(resized / "images", sizes, Path(dev_root) / "ground_truth", cache or cache_root().parent / "real")


def _label(n: int) -> str:
    return f"WIDER FACE val development set ({n} real images restored from 416 px copies to their original size)"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (A, B) of x y w h boxes ``a (A, 4)`` and ``b (B, 4)``, continuous pixels."""
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2) - np.maximum(a[:, None, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2) - np.maximum(a[:, None, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def operating_point(
    detections: Sequence[np.ndarray], gt: GroundTruth, score: float = OPERATING_SCORE, iou: float = 0.5
) -> dict[str, Any]:
    """Recall per face-height bin (faces that count in 'hard') and false positives per image at ``score``.

    ``detections[k] (N, 5)`` x y w h score of ``gt.images[k]``. Predictions are taken in score order; each
    takes its best face (IoU >= ``iou``) if that face is still free, else it is a false positive (the
    protocol's rule, in float64 IoU). Predictions on faces that do not count in 'hard' are neither.
    """
    found_by_bin = np.zeros(len(SIZE_BINS) - 1, np.int64)
    faces_by_bin = np.zeros(len(SIZE_BINS) - 1, np.int64)
    false_pos = 0
    for k, boxes in enumerate(gt.boxes):
        counted = np.zeros(len(boxes), bool)
        counted[gt.keep["hard"][k]] = True
        dets = detections[k]
        dets = dets[dets[:, 4] >= score]
        dets = dets[np.argsort(-dets[:, 4], kind="stable")]
        free = np.ones(len(boxes), bool)
        if len(boxes) and len(dets):
            overlap = _iou(dets[:, :4], boxes)
            for row in overlap:
                j = int(np.argmax(row))
                if row[j] >= iou and not counted[j]:
                    continue  # a hit on a face that does not count: dropped
                if row[j] >= iou and free[j]:
                    free[j] = False
                else:
                    false_pos += 1
        else:
            false_pos += len(dets)
        bins = np.digitize(boxes[counted, 3], SIZE_BINS) - 1
        np.add.at(faces_by_bin, bins, 1)
        np.add.at(found_by_bin, bins[~free[counted]], 1)
    labels = [f"{lo}-{hi}" if hi < SIZE_BINS[-1] else f">={lo}" for lo, hi in itertools.pairwise(SIZE_BINS)]
    recall = {
        lab: {"faces": int(n), "found": int(f), "recall": (float(f / n) if n else None)}
        for lab, n, f in zip(labels, faces_by_bin, found_by_bin, strict=True)
    }
    found = int(found_by_bin.sum())
    return {
        "score": score,
        "iou": iou,
        "recall_by_height_px": recall,
        "recall": found / max(1, int(faces_by_bin.sum())),
        "false_positives": false_pos,
        "false_positives_per_image": false_pos / max(1, len(gt.images)),
    }


def summary(result: EvalResult) -> dict[str, Any]:
    """APs (official arithmetic), the float64 ones and the hard mAP 0.5:0.95 of one evaluation."""
    return {
        **{s: float(v) for s, v in result.ap.items()},
        "hard_map_50_95": result.hard_map_50_95,
        "ap_float64": {s: c.ap for s, c in result.float64_curves.items()},
        "predictions": int(result.counts["predictions"]),
    }
