"""Five-point landmark accuracy (paper section 4.5): NME, CED curve, failure rate; pure numpy functions.

The normalised mean error of one face is the mean over its five points of the Euclidean distance between
predicted and true landmark, divided by ``sqrt(w * h)`` of the true face box (the paper's normalisation).
A face whose NME exceeds 10% is a failure (the paper's WIDER FACE val failure rate).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.integrate import trapezoid
from scipy.optimize import linear_sum_assignment

FAILURE_NME = 0.10
CED_GRID = np.round(np.linspace(0.0, 0.2, 81), 6)  # NME thresholds of the CED curve (0 .. 20%)


def nme(pred: np.ndarray, true: np.ndarray, boxes_xywh: np.ndarray) -> np.ndarray:
    """(N,) NME of each face: pred, true (N, 5, 2) pixels; boxes_xywh (N, 4) true boxes x y w h."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    if pred.shape != true.shape or pred.shape[1:] != (5, 2) or len(boxes) != len(pred):
        raise ValueError(f"nme: shapes {pred.shape}, {true.shape}, {boxes.shape} do not describe N faces")
    scale = np.sqrt(boxes[:, 2] * boxes[:, 3])
    if np.any(scale <= 0):
        raise ValueError("nme: every true box needs a positive width and height")
    return np.linalg.norm(pred - true, axis=2).mean(axis=1) / scale


def ced(nmes: np.ndarray, grid: np.ndarray = CED_GRID) -> np.ndarray:
    """Cumulative error distribution: for each threshold of ``grid``, the fraction of faces with NME <= it."""
    nmes = np.sort(np.asarray(nmes, np.float64))
    if len(nmes) == 0:
        return np.full(len(grid), np.nan)
    return np.searchsorted(nmes, grid, side="right") / len(nmes)


def failure_rate(nmes: np.ndarray, threshold: float = FAILURE_NME) -> float:
    """Fraction of faces whose NME exceeds ``threshold`` (NaN without faces)."""
    nmes = np.asarray(nmes, np.float64)
    return float(np.mean(nmes > threshold)) if len(nmes) else float("nan")


def auc(nmes: np.ndarray, limit: float = FAILURE_NME, steps: int = 1000) -> float:
    """Area under the CED curve from 0 to ``limit``, divided by ``limit`` (1 = every face perfect)."""
    grid = np.linspace(0.0, limit, steps + 1)
    return float(trapezoid(ced(nmes, grid), grid) / limit)


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(N, M) IoU between boxes x1 y1 x2 y2 (float64, ``torchvision.ops.box_iou``; 0 where a union is empty)."""
    import torch
    from torchvision.ops import box_iou

    a = torch.as_tensor(np.asarray(a_xyxy, np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(b_xyxy, np.float64).reshape(-1, 4))
    return np.nan_to_num(box_iou(a, b).numpy(), nan=0.0)


def match(true_xyxy: np.ndarray, det_xyxy: np.ndarray, min_iou: float) -> np.ndarray:
    """(N,) index of the detection matched one-to-one to each true face (max total IoU), -1 when none >= min_iou."""
    out = np.full(len(true_xyxy), -1)
    if len(true_xyxy) == 0 or len(det_xyxy) == 0:
        return out
    iou = iou_matrix(true_xyxy, det_xyxy)
    rows, cols = linear_sum_assignment(-iou)
    keep = iou[rows, cols] >= min_iou
    out[rows[keep]] = cols[keep]
    return out


@dataclass(frozen=True)
class Summary:
    """One method's landmark accuracy over a set of faces (NME as fractions of sqrt(w h))."""

    faces: int
    mean_nme: float
    median_nme: float
    failure_rate: float
    auc_10: float

    @classmethod
    def of(cls, nmes: np.ndarray) -> Summary:
        nmes = np.asarray(nmes, np.float64)
        empty = len(nmes) == 0
        return cls(
            len(nmes),
            float("nan") if empty else float(nmes.mean()),
            float("nan") if empty else float(np.median(nmes)),
            failure_rate(nmes),
            float("nan") if empty else auc(nmes),
        )


def normalised_layout(landmarks: np.ndarray, boxes_xywh: np.ndarray) -> np.ndarray:
    """(N, 5, 2) landmarks in box units: (point - box corner) / box size."""
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 1, 4)
    return (np.asarray(landmarks, np.float64) - boxes[..., :2]) / boxes[..., 2:]


def layout_in_boxes(layout: np.ndarray, boxes_xywh: np.ndarray) -> np.ndarray:
    """(N, 5, 2) pixels: one (5, 2) layout in box units placed in each box x y w h."""
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 1, 4)
    return boxes[..., :2] + np.asarray(layout, np.float64)[None] * boxes[..., 2:]


def inter_ocular(landmarks: np.ndarray, boxes_xywh: np.ndarray) -> np.ndarray:
    """(N,) eye-to-eye distance (points 0 and 1) divided by sqrt(w h) of the box."""
    lm = np.asarray(landmarks, np.float64)
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    return np.linalg.norm(lm[:, 0] - lm[:, 1], axis=1) / np.sqrt(boxes[:, 2] * boxes[:, 3])


def binned_means(values: np.ndarray, keys: np.ndarray, edges: tuple[float, ...]) -> list[dict[str, float | int | str]]:
    """Per bin ``[edges[i], edges[i+1])`` of ``keys``: label, count and mean of ``values`` (NaN-free entries)."""
    values, keys = np.asarray(values, np.float64), np.asarray(keys, np.float64)
    out: list[dict[str, float | int | str]] = []
    for lo, hi in itertools.pairwise(edges):
        sel = (keys >= lo) & (keys < hi) & ~np.isnan(values)
        label = f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">={lo:g}"
        out.append({"bin": label, "faces": int(sel.sum()), "mean": float(values[sel].mean()) if sel.any() else None})
    return out
