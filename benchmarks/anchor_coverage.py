"""Anchor coverage and face sizes by size bin, at test time and at train time (issue 14's diagnostic).

    python benchmarks/anchor_coverage.py [--train-images 300] [--epochs 3] [--recall] [--crop-scales LO HI]

For face-size bins (``sqrt(w h)`` of the box, or its height with ``--measure height``, in pixels of the
network input: <16, 16-32, ..., 256-512, >=512) it measures:

- test time: val faces at the test protocol's resize (``original``: the image as is, as ``retina.evaluate``
  applies it): faces and their share per bin, the share with at least one anchor of IoU >= the recipe's
  positive threshold, best-anchor IoU quantiles and which anchor size is best;
- train time: the recipe's augmentation (``retina.data.transforms.augment``, the very function training
  calls, seeded as ``FaceDataset`` seeds it) over a subset of the train split for several epochs: faces per
  bin after the crop and resize, faces cut or dropped by the crop (binned by their size in the source image),
  the training matcher (``retina.matching.match``, recipe thresholds) per face: matched at IoU >= pos_iou,
  matched only by the best-anchor rule, or not at all; positives per anchor size; faces per batch;
- with ``--recall`` (about 20 s per 200 SynthFace images on 2 cores): the checkpoint's recall per bin on val
  (a face is found at score t when a detection of score >= t has it as its highest-IoU face with IoU >= 0.5),
  the score of its best such detection, the IoU and relative size of the highest-scoring detection overlapping
  it, and per anchor side the best raw score of the anchors that training would not call negative.

Writes ``results/benchmarks/anchor_coverage.json`` (atomically, with provenance) and prints the tables. Defaults
are SynthFace's default train and val splits; ``--val-root`` (or ``--data-root``) takes any WIDER-layout
evaluation split (``retina.evaluate.EvalSplit.from_root``) and ``--train-root`` any RetinaFace train layout
folder. ``--crop-scales``, ``--image-size``, ``--pos-iou`` and ``--neg-iou`` override the recipe, to measure a
proposed change before training with it (issue 14).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_convert, box_iou

from retina.config import AugmentCfg, DetectorCfg, LossCfg, PostCfg, TrainCfg, preset, to_dict, train_preset
from retina.data.dataset import SplitPaths, to_sample
from retina.data.transforms import Sample, augment
from retina.data.widerface import GroundTruth, load_ground_truth, read_retinaface_labels
from retina.errors import RetinaError
from retina.evaluate import EvalSplit, image_path
from retina.images import read_image
from retina.matching import POSITIVE, match
from retina.priors import PriorCache
from retina.protocols import Resize, protocol
from retina.results import REPO_ROOT, provenance, write_json

BIN_EDGES: tuple[float, ...] = (16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
DEFAULT_CHECKPOINT = REPO_ROOT / "retina" / "weights" / "mobilenet0.25_synthface.pth"
SCORE_THRESHOLDS = (0.02, 0.5)  # the evaluation's score threshold (PostCfg default) and a working point
RECALL_IOU = 0.5

Columns = dict[str, np.ndarray]


# --- core functions (tested in tests/test_anchor_coverage.py) ------------------------------------


def bin_labels(edges: Sequence[float] = BIN_EDGES) -> list[str]:
    """Names of the len(edges) + 1 bins: '<16', '16-32', ..., '>=512'."""
    e = [f"{x:g}" for x in edges]
    return [f"<{e[0]}"] + [f"{a}-{b}" for a, b in itertools.pairwise(e)] + [f">={e[-1]}"]


def bin_index(sizes: np.ndarray, edges: Sequence[float] = BIN_EDGES) -> np.ndarray:
    """(N,) sizes -> (N,) int64 bin of each: bin k holds edges[k-1] <= size < edges[k] (lower edge included)."""
    return np.searchsorted(np.asarray(edges, np.float64), np.asarray(sizes, np.float64), side="right").astype(np.int64)


def face_sizes(boxes: np.ndarray, measure: str = "sqrt_area") -> np.ndarray:
    """boxes (N, 4) xyxy px -> (N,) float64: sqrt(w h) ('sqrt_area') or h ('height')."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    if measure == "height":
        return h
    if measure == "sqrt_area":
        return np.sqrt(np.clip(w, 0, None) * np.clip(h, 0, None))
    raise ValueError(f"unknown size measure {measure!r}")


def iou_to_priors(boxes: np.ndarray, priors: torch.Tensor) -> np.ndarray:
    """boxes (N, 4) xyxy, priors (A, 4) cxcywh -> (N, A) float64 continuous IoU (as ``retina.matching``)."""
    gt = torch.as_tensor(np.asarray(boxes, np.float64).reshape(-1, 4))
    return box_iou(gt, box_convert(priors.to(torch.float64), "cxcywh", "xyxy")).numpy()


def anchor_coverage(boxes: np.ndarray, priors: torch.Tensor, pos_iou: float) -> Columns:
    """Per face: best anchor IoU, number of anchors with IoU >= pos_iou, side of the best anchor.

    boxes (N, 4) xyxy, priors (A, 4) cxcywh -> columns of (N,) arrays.
    """
    iou = iou_to_priors(boxes, priors)
    if iou.shape[1] == 0:
        n = iou.shape[0]
        return {"best_iou": np.zeros(n), "n_above": np.zeros(n, np.int64), "best_anchor": np.zeros(n)}
    best = iou.argmax(axis=1)
    return {
        "best_iou": iou.max(axis=1),
        "n_above": (iou >= pos_iou).sum(axis=1).astype(np.int64),
        "best_anchor": priors[best, 2].double().numpy(),
    }


def train_assignment(boxes: np.ndarray, priors: torch.Tensor, cfg: LossCfg) -> tuple[Columns, np.ndarray]:
    """The training matcher's view of each face (``retina.matching.match`` with the recipe's ``cfg``).

    boxes (N, 4) xyxy, priors (A, 4) cxcywh -> per-face columns (N,): ``positives`` (anchors labelled positive
    and matched to the face), ``by_threshold`` (at least one of them has IoU >= pos_iou), ``forced_only``
    (positive only through the best-anchor rule), ``unmatched`` (no positive anchor); and the (P,) sides of
    the positive anchors.
    """
    gt = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4))
    labels, matched = match(gt, priors, cfg)
    pos = labels == POSITIVE
    n = gt.shape[0]
    positives = torch.bincount(matched[pos], minlength=n).numpy()[:n] if n else np.zeros(0, np.int64)
    iou = iou_to_priors(boxes, priors)
    above = np.zeros(n, bool)
    if n:
        owner = matched[pos].numpy()
        hit = iou[owner, np.flatnonzero(pos.numpy())] >= cfg.pos_iou
        above[owner[hit]] = True
    cols = {
        "positives": positives.astype(np.int64),
        "by_threshold": above,
        "forced_only": (positives > 0) & ~above,
        "unmatched": positives == 0,
    }
    return cols, priors[pos, 2].double().numpy()


def tracked_sample(sample: Sample) -> Sample:
    """A copy whose landmarks are the box corners and centre, and whose ``has_landmarks`` is the face index.

    ``augment`` moves landmarks like boxes but never clips them, and selects ``has_landmarks`` with the faces,
    so after it the landmarks give each kept face's unclipped box and ``has_landmarks`` its source index.
    """
    b = sample.boxes.astype(np.float32)
    x1, y1, x2, y2 = b.T
    pts = np.stack([[x1, y1], [x2, y2], [(x1 + x2) / 2, (y1 + y2) / 2], [x1, y2], [x2, y1]], axis=0)  # (5, 2, N)
    landmarks = np.ascontiguousarray(pts.transpose(2, 0, 1))  # (N, 5, 2)
    return Sample(sample.image, b, landmarks, np.arange(len(b)))


def augment_tracked(sample: Sample, cfg: AugmentCfg, rng: np.random.Generator) -> tuple[Sample, np.ndarray, np.ndarray]:
    """``augment`` on a tracked sample -> (augmented sample, source index (K,) of each kept face,
    unclipped boxes (K, 4) xyxy in output pixels)."""
    out = augment(tracked_sample(sample), cfg, rng)
    pts = out.landmarks.astype(np.float64)
    unclipped = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1).reshape(-1, 4)
    return out, np.asarray(out.has_landmarks, np.int64), unclipped


def spread(total: int, n: int) -> list[int]:
    """``min(n, total)`` indices evenly spread over ``range(total)`` (label files are sorted by event)."""
    if n >= total:
        return list(range(total))
    return sorted({int(i) for i in np.floor(np.arange(n) * total / n)})


def box_area(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def per_bin(bins: np.ndarray, n_bins: int, **stats: tuple[str, np.ndarray]) -> list[dict[str, Any]]:
    """Summaries per bin: ``faces``, ``share`` and, for each ``name=(kind, values)``, the per-bin
    'mean' of the values, or their 'quantiles' (0.1, 0.5, 0.9). Empty bins give None."""
    total = max(len(bins), 1)
    rows = []
    for k in range(n_bins):
        sel = bins == k
        row: dict[str, Any] = {"faces": int(sel.sum()), "share": float(sel.sum() / total)}
        for name, (kind, values) in stats.items():
            v = np.asarray(values, np.float64)[sel]
            if not len(v):
                row[name] = None
            elif kind == "mean":
                row[name] = float(v.mean())
            else:
                row[name] = [float(q) for q in np.quantile(v, (0.1, 0.5, 0.9))]
        rows.append(row)
    return rows


def label_rows(rows: list[dict[str, Any]], edges: Sequence[float]) -> list[dict[str, Any]]:
    return [{"bin": name, **row} for name, row in zip(bin_labels(edges), rows, strict=True)]


def concat(parts: Iterable[Columns]) -> Columns:
    parts = list(parts)
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --- test time ------------------------------------------------------------------------------------


def gt_boxes_xyxy(gt: GroundTruth, k: int) -> np.ndarray:
    b = gt.boxes[k].astype(np.float64).copy()
    b[:, 2:] += b[:, :2]
    return b


def resized_boxes(boxes: np.ndarray, resize: Resize, hw: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Boxes in network-input pixels after the protocol's resize of an (H, W) image (as ``Detector`` does)."""
    out_hw = resize.output_size(*hw)
    sy, sx = out_hw[0] / hw[0], out_hw[1] / hw[1]
    return boxes * np.array([sx, sy, sx, sy]), out_hw


def test_time(
    split: EvalSplit, gt: GroundTruth, cfg: DetectorCfg, proto: str, pos_iou: float, n: int, measure: str
) -> Columns:
    """Per val face (once per resize of the protocol): size at the network input and anchor coverage."""
    priors = PriorCache(cfg.priors.strides, cfg.priors.sizes)
    parts = []
    for k, (event, stem) in enumerate(gt.images[:n]):
        hw = read_image(image_path(split.images, event, stem)).shape[:2]
        boxes = gt_boxes_xyxy(gt, k)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        for resize in protocol(proto).resizes:
            net, out_hw = resized_boxes(boxes[valid], resize, hw)
            cols = anchor_coverage(net, priors(out_hw, torch.float64, torch.device("cpu")), pos_iou)
            cols["size"] = face_sizes(net, measure)
            for setting, keep in gt.keep.items():
                member = np.zeros(len(boxes), bool)
                member[keep[k]] = True
                cols[setting] = member[valid]
            parts.append(cols)
    return concat(parts)


def summarize_test(
    cols: Columns, edges: Sequence[float], pos_iou: float, anchor_sides: Sequence[float]
) -> dict[str, Any]:
    bins = bin_index(cols["size"], edges)
    rows = per_bin(
        bins,
        len(edges) + 1,
        covered_share=("mean", cols["n_above"] > 0),
        anchors_above_mean=("mean", cols["n_above"]),
        best_iou_q10_50_90=("quantiles", cols["best_iou"]),
    )
    for k, row in enumerate(rows):
        sel = bins == k
        row["best_anchor_side"] = {f"{a:g}": int(np.sum(cols["best_anchor"][sel] == a)) for a in anchor_sides}
        for setting in ("easy", "medium", "hard"):
            if setting in cols:
                row[f"faces_{setting}"] = int(np.sum(cols[setting][sel]))
    return {
        "faces": len(bins),
        "pos_iou": pos_iou,
        "covered_share": float(np.mean(cols["n_above"] > 0)) if len(bins) else None,
        "size_quantiles_0_10_50_90_100": quantiles(cols["size"]),
        "easy_size_quantiles_0_10_50_90_100": quantiles(cols["size"][cols["easy"]]) if "easy" in cols else None,
        "bins": label_rows(rows, edges),
    }


def quantiles(values: np.ndarray) -> list[float] | None:
    return [float(q) for q in np.quantile(values, (0, 0.1, 0.5, 0.9, 1.0))] if len(values) else None


# --- train time -----------------------------------------------------------------------------------


def augmented_faces(
    sample: Sample, train: TrainCfg, priors: torch.Tensor, rng: np.random.Generator, measure: str
) -> tuple[Columns, np.ndarray, Columns]:
    """One augmented sample: per kept face (matcher columns, ``size``, ``scale`` = output / source width,
    ``kept_area`` = clipped / unclipped box area), the sides of its positive anchors, and per source face
    ``kept`` and ``cut`` (kept but clipped by the crop)."""
    out, ids, unclipped = augment_tracked(sample, train.augment, rng)
    cols, sides = train_assignment(out.boxes, priors, train.loss)
    cols["size"] = face_sizes(out.boxes, measure)
    src_w = np.maximum(sample.boxes[ids, 2] - sample.boxes[ids, 0], 1e-9)
    cols["scale"] = (unclipped[:, 2] - unclipped[:, 0]) / src_w
    cols["kept_area"] = box_area(out.boxes) / np.maximum(box_area(unclipped), 1e-12)
    cols["cut"] = cols["kept_area"] < 1 - 1e-6
    kept, cut = np.zeros(len(sample.boxes), bool), np.zeros(len(sample.boxes), bool)
    kept[ids], cut[ids] = True, cols["cut"]
    return cols, sides, {"kept": kept, "cut": cut}


def train_time(
    paths: SplitPaths, train: TrainCfg, cfg: DetectorCfg, n: int, epochs: int, measure: str
) -> dict[str, Any]:
    """The recipe's augmentation on ``n`` train images spread over the split, ``epochs`` times each (seeded as
    ``FaceDataset`` seeds them), kept faces matched by the recipe's matcher. Returns per kept face columns
    (``kept``), per source face columns (``source``), the sides of all positive anchors and, per sample, the
    (sizes, cut) of its faces."""
    entries = read_retinaface_labels(paths.labels)
    size = train.augment.image_size
    priors = PriorCache(cfg.priors.strides, cfg.priors.sizes)((size, size), torch.float32, torch.device("cpu"))
    kept, source, sides = [], [], []
    for index in spread(len(entries), n):
        sample = to_sample(read_image(paths.images / entries[index].path), entries[index])
        for epoch in range(epochs):
            rng = np.random.default_rng([train.seed, epoch, index])  # as FaceDataset.__getitem__
            cols, pos_sides, src = augmented_faces(sample, train, priors, rng, measure)
            kept.append(cols)
            sides.append(pos_sides)
            source.append({"size": face_sizes(sample.boxes, measure), **src})
    return {
        "kept": concat(kept),
        "source": concat(source),
        "positive_sides": np.concatenate(sides),
        "per_sample": [(c["size"], c["cut"]) for c in kept],
    }


def batch_stats(
    per_sample: list[tuple[np.ndarray, np.ndarray]], edges: Sequence[float], batch: int, seed: int
) -> list[dict[str, float]]:
    """Per bin: mean faces and whole (uncut) faces per batch, and the share of batches with at least one face.

    per_sample: (sizes (K,), cut (K,) bool) per augmented sample. Batches: the samples shuffled and cut into
    groups of ``batch`` (incomplete last group dropped), as the training sampler draws them.
    """
    n_bins = len(edges) + 1
    order = np.random.default_rng(seed).permutation(len(per_sample))
    groups = [order[i : i + batch] for i in range(0, len(order) - batch + 1, batch)]
    if not groups:
        return [{"faces_per_batch": float("nan"), "whole_per_batch": float("nan"), "batches_with_face": float("nan")}
                for _ in range(n_bins)]  # fmt: skip
    faces, whole = np.zeros((len(groups), n_bins)), np.zeros((len(groups), n_bins))
    for g, members in enumerate(groups):
        sizes = np.concatenate([per_sample[j][0] for j in members])
        cut = np.concatenate([per_sample[j][1] for j in members])
        faces[g] = np.bincount(bin_index(sizes, edges), minlength=n_bins)
        whole[g] = np.bincount(bin_index(sizes[~cut], edges), minlength=n_bins)
    return [
        {
            "faces_per_batch": float(faces[:, k].mean()),
            "whole_per_batch": float(whole[:, k].mean()),
            "batches_with_face": float(np.mean(faces[:, k] > 0)),
        }
        for k in range(n_bins)
    ]


def summarize_train(res: dict[str, Any], edges: Sequence[float], train: TrainCfg, cfg: DetectorCfg) -> dict[str, Any]:
    kept, source = res["kept"], res["source"]
    bins = bin_index(kept["size"], edges)
    rows = per_bin(
        bins,
        len(edges) + 1,
        matched_share=("mean", kept["by_threshold"]),
        forced_only_share=("mean", kept["forced_only"]),
        unmatched_share=("mean", kept["unmatched"]),
        positives_per_face=("mean", kept["positives"]),
        cut_share=("mean", kept["cut"]),
        kept_area_mean=("mean", kept["kept_area"]),
        scale_q10_50_90=("quantiles", kept["scale"]),
    )
    total_pos = max(int(kept["positives"].sum()), 1)
    for k, (row, b) in enumerate(
        zip(rows, batch_stats(res["per_sample"], edges, train.batch_size, train.seed), strict=True)
    ):
        row["positives_share"] = float(kept["positives"][bins == k].sum() / total_pos)
        row.update(b)
    src_bins = bin_index(source["size"], edges)
    src_rows = per_bin(src_bins, len(edges) + 1, kept_share=("mean", source["kept"]), cut_share=("mean", source["cut"]))
    sides = [a for level in cfg.priors.sizes for a in level]
    return {
        "samples": len(res["per_sample"]),
        "faces_source": len(source["size"]),
        "faces_after_augment": len(bins),
        "kept_share": float(np.mean(source["kept"])) if len(source["size"]) else None,
        "size_quantiles_0_10_50_90_100": quantiles(kept["size"]),
        "scale_quantiles_0_10_50_90_100": quantiles(kept["scale"]),
        "positives_by_anchor_side": {f"{a:g}": int(np.sum(res["positive_sides"] == a)) for a in sides},
        "bins": label_rows(rows, edges),
        "bins_by_source_size": label_rows(src_rows, edges),
    }


# --- detector recall ------------------------------------------------------------------------------


def face_scores(boxes: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray, iou_thr: float) -> np.ndarray:
    """(N,) highest score of a detection whose highest-IoU face is this one with IoU >= iou_thr; 0 if none.

    boxes (N, 4), det_boxes (D, 4) xyxy; det_scores (D,).
    """
    out = np.zeros(len(boxes))
    if not len(boxes) or not len(det_boxes):
        return out
    iou = box_iou(torch.as_tensor(det_boxes, dtype=torch.float64), torch.as_tensor(boxes, dtype=torch.float64)).numpy()
    face = iou.argmax(axis=1)
    ok = iou[np.arange(len(det_boxes)), face] >= iou_thr
    np.maximum.at(out, face[ok], np.asarray(det_scores, np.float64)[ok])
    return out


def top_detection(boxes: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray) -> Columns:
    """Per face, the highest-scoring detection overlapping it (IoU >= 0.1): its IoU with the face and its size
    relative to the face, sqrt(area ratio); nan where none overlaps. boxes (N, 4), det_boxes (D, 4) xyxy."""
    n = len(boxes)
    iou_out, ratio = np.full(n, np.nan), np.full(n, np.nan)
    if n and len(det_boxes):
        iou = box_iou(torch.as_tensor(boxes, dtype=torch.float64), torch.as_tensor(det_boxes, dtype=torch.float64))
        iou = iou.numpy()
        ranked = np.where(iou >= 0.1, np.asarray(det_scores, np.float64)[None, :], -np.inf)
        top = ranked.argmax(axis=1)
        has = np.isfinite(ranked[np.arange(n), top])
        iou_out[has] = iou[np.arange(n), top][has]
        ratio[has] = np.sqrt(box_area(det_boxes[top[has]]) / np.maximum(box_area(boxes[has]), 1e-12))
    return {"top_iou": iou_out, "top_size_ratio": ratio}


def anchor_scores(boxes: np.ndarray, priors: torch.Tensor, scores: np.ndarray, min_iou: float) -> np.ndarray:
    """(N, S): per face and anchor side (sorted), the highest face score of the anchors of that side with
    IoU >= min_iou to the face (those training does not call negative); nan where there is none.

    boxes (N, 4) xyxy in network-input pixels, priors (A, 4) cxcywh, scores (A,)."""
    iou = iou_to_priors(boxes, priors)
    sides = priors[:, 2].double().numpy()
    out = np.full((len(boxes), len(np.unique(sides))), np.nan)
    for c, side in enumerate(np.unique(sides)):
        cand = np.where((iou >= min_iou) & (sides == side)[None, :], scores[None, :], -np.inf)
        best = cand.max(axis=1) if cand.size else np.full(len(boxes), -np.inf)
        out[np.isfinite(best), c] = best[np.isfinite(best)]
    return out


def detector_recall(
    checkpoint: Path, split: EvalSplit, gt: GroundTruth, proto: str, n: int, measure: str, min_iou: float
) -> tuple[Columns, list[float]]:
    """Per val face: size at the network input, its score (``face_scores``), the top overlapping detection,
    and per anchor side the best raw anchor score (first resize of the protocol, no flip)."""
    from retina.api import Detector

    detector = Detector.from_checkpoint(checkpoint)
    post, p = PostCfg(), protocol(proto)
    parts = []
    for k, (event, stem) in enumerate(gt.images[:n]):
        image = read_image(image_path(split.images, event, stem))
        dets = detector.detect_arrays([image], p, post)[0]
        boxes = gt_boxes_xyxy(gt, k)
        net, out_hw = resized_boxes(boxes, p.resizes[0], image.shape[:2])
        pred = detector.forward(detector.to_tensor([detector.prepare(image, p.resizes[0])]))
        priors = detector.priors(out_hw, torch.float32, torch.device("cpu"))
        raw = pred.logits[0].float().softmax(-1)[:, 1].numpy()
        cols = {"size": face_sizes(net, measure), "score": face_scores(boxes, dets.boxes, dets.scores, RECALL_IOU)}
        cols.update(top_detection(boxes, dets.boxes, dets.scores))
        cols["anchor_scores"] = anchor_scores(net, priors, raw, min_iou)
        parts.append(cols)
    sides = sorted({a for level in detector.cfg.priors.sizes for a in level})
    return concat(parts), sides


def summarize_recall(cols: Columns, sides: list[float], edges: Sequence[float], checkpoint: Path) -> dict[str, Any]:
    bins = bin_index(cols["size"], edges)
    stats: dict[str, tuple[str, np.ndarray]] = {
        f"recall_at_score_{t:g}": ("mean", cols["score"] >= t) for t in SCORE_THRESHOLDS
    }
    rows = per_bin(bins, len(edges) + 1, **stats, score_q10_50_90=("quantiles", cols["score"]))
    for k, row in enumerate(rows):
        sel = bins == k
        top, ratio = cols["top_iou"][sel], cols["top_size_ratio"][sel]
        row["top_detection_iou_median"] = nanmedian(top)
        row["top_detection_iou_below_0.5"] = float(np.mean(~(top >= RECALL_IOU))) if sel.any() else None
        row["top_detection_size_ratio_median"] = nanmedian(ratio)
        row["anchor_score_median_by_side"] = {
            f"{a:g}": nanmedian(cols["anchor_scores"][sel, c]) for c, a in enumerate(sides)
        }
    return {
        "checkpoint": str(checkpoint),
        "iou": RECALL_IOU,
        "faces": len(bins),
        "anchor_scores": "per face and anchor side: the best raw face score of the anchors of that side with IoU "
        ">= the recipe's neg_iou to the face; the bins give their median",
        "bins": label_rows(rows, edges),
    }


def nanmedian(values: np.ndarray) -> float | None:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else None


# --- command line -------------------------------------------------------------------------------


def configs(args: argparse.Namespace) -> tuple[DetectorCfg, TrainCfg]:
    """The detector preset and the recipe with the command line's augmentation overrides."""
    try:
        cfg, train = preset(args.preset), train_preset(args.recipe)
        aug = train.augment
        if args.crop_scales is not None:
            aug = dataclasses.replace(aug, crop_scales=tuple(args.crop_scales))
        if args.image_size is not None:
            aug = dataclasses.replace(aug, image_size=args.image_size)
        thresholds = {k: v for k, v in (("pos_iou", args.pos_iou), ("neg_iou", args.neg_iou)) if v is not None}
        loss = dataclasses.replace(train.loss, **thresholds)
    except ValueError as exc:  # config lookups and validation
        raise RetinaError(str(exc)) from None
    return cfg, dataclasses.replace(train, augment=aug, loss=loss)


def resolve_splits(args: argparse.Namespace) -> tuple[EvalSplit, SplitPaths, dict[str, str]]:
    from retina.synth.splits import default_split

    if args.val_root is not None:
        val = EvalSplit.from_root(args.val_root, args.gt)
    else:
        root = default_split("val")
        val = EvalSplit(root / "images", root / "ground_truth", "SynthFace default val split (synthetic)")
    if args.train_root is not None:
        train = SplitPaths.from_root(args.train_root)
        label = f"RetinaFace train layout {args.train_root}"
    else:
        train = SplitPaths.from_root(default_split("train"))
        label = "SynthFace default train split (synthetic)"
    return (
        val,
        train,
        {"val": val.label, "val_images": str(val.images), "train": label, "train_labels": str(train.labels)},
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="mobilenet0.25", help="detector preset (anchors)")
    p.add_argument("--recipe", default="synth-cpu", help="training recipe (augmentation and matching thresholds)")
    p.add_argument("--crop-scales", type=float, nargs=2, metavar=("LO", "HI"), help="override the recipe's crop scales")
    p.add_argument("--image-size", type=int, help="override the recipe's training input size")
    p.add_argument("--pos-iou", type=float, help="override the recipe's positive matching IoU")
    p.add_argument("--neg-iou", type=float, help="override the recipe's negative matching IoU")
    p.add_argument("--protocol", default="original", help="test protocol (retina.protocols)")
    p.add_argument("--measure", default="sqrt_area", choices=("sqrt_area", "height"), help="face size measure")
    p.add_argument(
        "--val-root",
        "--data-root",
        dest="val_root",
        type=Path,
        help="WIDER-layout evaluation split (default: SynthFace val)",
    )
    p.add_argument("--gt", type=Path, help="ground-truth folder for --val-root")
    p.add_argument("--train-root", type=Path, help="RetinaFace train layout folder (default: SynthFace train)")
    p.add_argument("--val-images", type=int, default=200, help="first N val images (default 200)")
    p.add_argument("--train-images", type=int, default=300, help="N train images spread over the split (default 300)")
    p.add_argument("--epochs", type=int, default=3, help="augmentation epochs per train image (default 3)")
    p.add_argument("--recall", action="store_true", help="also measure the checkpoint's recall per bin")
    p.add_argument("--recall-images", type=int, default=200, help="first N val images for --recall (default 200)")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "benchmarks" / "anchor_coverage.json")
    args = p.parse_args(argv)
    for name in ("val_images", "train_images", "epochs", "recall_images"):
        if getattr(args, name) < 1:
            raise RetinaError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg, train = configs(args)
    protocol(args.protocol)  # validate early
    val, train_paths, data = resolve_splits(args)
    gt = load_ground_truth(val.gt)
    edges, sides = BIN_EDGES, [a for level in cfg.priors.sizes for a in level]
    t0 = time.perf_counter()
    test = summarize_test(test_time(val, gt, cfg, args.protocol, train.loss.pos_iou, args.val_images, args.measure),
                          edges, train.loss.pos_iou, sides)  # fmt: skip
    res = train_time(train_paths, train, cfg, args.train_images, args.epochs, args.measure)
    record: dict[str, Any] = {
        "benchmark": "anchor_coverage",
        "data": data,
        "settings": {
            "preset": args.preset,
            "priors": to_dict(cfg.priors),
            "recipe": train.recipe,
            "loss": to_dict(train.loss),
            "augment": to_dict(train.augment),
            "batch_size": train.batch_size,
            "protocol": args.protocol,
            "measure": args.measure,
            "bin_edges": list(edges),
            "val_images": min(args.val_images, len(gt.images)),
            "train_images": args.train_images,
            "epochs": args.epochs,
        },
        "test_time": test,
        "train_time": summarize_train(res, edges, train, cfg),
    }
    record["comparison"] = compare(record["test_time"], record["train_time"])
    if args.recall:
        cols, anchor_sides = detector_recall(
            args.checkpoint, val, gt, args.protocol, args.recall_images, args.measure, train.loss.neg_iou
        )
        record["recall"] = summarize_recall(cols, anchor_sides, edges, args.checkpoint)
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return record


def compare(test: dict[str, Any], train: dict[str, Any]) -> list[dict[str, Any]]:
    """Per bin: share of faces at test time and after augmentation, their ratio, and whole faces per batch."""
    rows = []
    for te, tr in zip(test["bins"], train["bins"], strict=True):
        ratio = tr["share"] / te["share"] if te["share"] > 0 else None
        rows.append({"bin": te["bin"], "test_share": te["share"], "train_share": tr["share"],
                     "train_over_test": ratio, "train_whole_per_batch": tr["whole_per_batch"]})  # fmt: skip
    return rows


def fmt(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec)


def print_test(record: dict[str, Any]) -> None:
    s, t = record["settings"], record["test_time"]
    print(f"test time: {s['protocol']} protocol, {t['faces']} faces; size = {s['measure']} px at the network input; "
          f"covered = an anchor with IoU >= {t['pos_iou']}")  # fmt: skip
    print(f"{'bin':>9} {'faces':>6} {'share':>6} {'covered':>7} {'bestIoU50':>9} {'easy':>5}  best anchor side")
    for r in t["bins"]:
        q = r["best_iou_q10_50_90"]
        best = " ".join(f"{a}:{c}" for a, c in r["best_anchor_side"].items() if c)
        print(f"{r['bin']:>9} {r['faces']:>6} {r['share']:>6.3f} {fmt(r['covered_share']):>7} "
              f"{fmt(q[1] if q else None):>9} {r.get('faces_easy', 0):>5}  {best}")  # fmt: skip


def print_train(record: dict[str, Any]) -> None:
    s, t = record["settings"], record["train_time"]
    a = s["augment"]
    print(f"\ntrain time: recipe {s['recipe']}, {a['image_size']} px input, crop scales {a['crop_scales']}; "
          f"{t['samples']} samples, {t['faces_after_augment']} of {t['faces_source']} faces kept; scale factor "
          f"quantiles 0/10/50/90/100% {[round(x, 2) for x in t['scale_quantiles_0_10_50_90_100'] or []]}")  # fmt: skip
    print(f"matched = an anchor of IoU >= {s['loss']['pos_iou']}; forced = positive by the best-anchor rule only; "
          f"pos% = share of all positive anchors; cut = box clipped by the crop")  # fmt: skip
    print(f"{'bin':>9} {'faces':>6} {'share':>6} {'/batch':>7} {'whole/b':>7} {'matched':>7} {'forced':>6} "
          f"{'none':>5} {'pos/face':>8} {'pos%':>5} {'cut':>5}")  # fmt: skip
    for r in t["bins"]:
        print(f"{r['bin']:>9} {r['faces']:>6} {r['share']:>6.3f} {r['faces_per_batch']:>7.2f} "
              f"{r['whole_per_batch']:>7.2f} {fmt(r['matched_share']):>7} {fmt(r['forced_only_share']):>6} "
              f"{fmt(r['unmatched_share']):>5} {fmt(r['positives_per_face'], '.1f'):>8} "
              f"{100 * r['positives_share']:>5.1f} {fmt(r['cut_share']):>5}")  # fmt: skip
    print("by size in the source image (kept = centre in the crop and not too small; cut = kept but clipped):")
    print("  " + "  ".join(f"{r['bin']}: n {r['faces']} kept {fmt(r['kept_share'])} cut {fmt(r['cut_share'])}"
                           for r in t["bins_by_source_size"] if r["faces"]))  # fmt: skip
    print(f"positive anchors by anchor side: {t['positives_by_anchor_side']}")


def print_recall(record: dict[str, Any]) -> None:
    r_ = record["recall"]
    print(f"\nrecall of {Path(r_['checkpoint']).name} on {r_['faces']} faces (IoU {r_['iou']}); top det = highest-"
          f"scoring detection overlapping the face; anchor score = median best raw score per anchor side")  # fmt: skip
    print(f"{'bin':>9} {'faces':>6} " + " ".join(f"{'rec@' + format(t, 'g'):>8}" for t in SCORE_THRESHOLDS)
          + f" {'score50':>7} {'topIoU':>6} {'<0.5':>5} {'size':>5}  anchor score by side")  # fmt: skip
    for r in r_["bins"]:
        if not r["faces"]:
            continue
        q = r["score_q10_50_90"]
        sides = " ".join(f"{a}:{fmt(v)}" for a, v in r["anchor_score_median_by_side"].items() if v is not None)
        recalls = " ".join(f"{fmt(r[f'recall_at_score_{t:g}']):>8}" for t in SCORE_THRESHOLDS)
        print(f"{r['bin']:>9} {r['faces']:>6} {recalls} {fmt(q[1] if q else None):>7} "
              f"{fmt(r['top_detection_iou_median']):>6} {fmt(r['top_detection_iou_below_0.5']):>5} "
              f"{fmt(r['top_detection_size_ratio_median']):>5}  {sides}")  # fmt: skip


def print_tables(record: dict[str, Any]) -> None:
    print_test(record)
    print_train(record)
    print("\ntrain/test share of faces per bin: " + "  ".join(
        f"{c['bin']}: {fmt(c['train_over_test'])}" for c in record["comparison"] if c["test_share"]))  # fmt: skip
    if "recall" in record:
        print_recall(record)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        prov = provenance()  # before the run: the code that ran
        record = run(args)
    except RetinaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record["provenance"] = prov
    write_json(args.out, record)
    print_tables(record)
    print(f"\n{record['seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
