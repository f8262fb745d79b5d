"""``boxoverlap.m`` for every (prediction, face) pair of an image, then each prediction's best face.

Work is done on flat pair arrays over many images at once (no per-image Python loop), in chunks of
``chunk_pairs`` pairs. Pairs whose boxes are at least one pixel apart (overlap 0 in both arithmetics) are
dropped before the exact overlap is computed: on WIDER FACE that leaves a few percent of the pairs.

Arithmetics (see ``retina.eval.widerface``): ``"float64"`` computes the protocol's IoU in float64;
``"matlab"`` reproduces MATLAB with int32 faces and double predictions: corners of the prediction rounded
half away from zero, int32 sums and products (saturating), and the overlap an int32 division (rounded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

INT32_MAX = 2.0**31 - 1
COORD_LIMIT = 2.0**29  # keeps every int32 difference exact; products saturate as in MATLAB


@dataclass(frozen=True, eq=False)
class Boxes:
    """Corners of N boxes (x2 = x + w, as ``evaluation.m``) and their +1-pixel areas, float64 (N,) each."""

    x1: np.ndarray
    y1: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    area: np.ndarray

    @classmethod
    def from_xywh(cls, boxes: np.ndarray) -> Boxes:
        x1, y1 = boxes[:, 0].copy(), boxes[:, 1].copy()
        x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
        return cls(x1, y1, x2, y2, (x2 - x1 + 1) * (y2 - y1 + 1))

    def rounded(self) -> Boxes:
        """The corners as MATLAB converts them to int32 (the area stays the double one)."""
        return Boxes(*(round_half_away(c) for c in (self.x1, self.y1, self.x2, self.y2)), self.area)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round`` and double -> int conversion (numpy's ``rint`` rounds half to even)."""
    t = np.trunc(x)
    return t + np.where(np.abs(x - t) >= 0.5, np.sign(x), 0.0)


def _round_positive(x: np.ndarray) -> np.ndarray:
    # round half away from zero for x >= 0; exact, since x - floor(x) is exact in floating point
    f = np.floor(x)
    return f + (x - f >= 0.5)


def best_faces(
    preds: np.ndarray,
    pred_face_start: np.ndarray,
    pred_face_count: np.ndarray,
    faces: np.ndarray,
    arithmetics: Sequence[str],
    chunk_pairs: int = 1 << 20,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each prediction, the highest overlap with the faces of its image and the first face reaching it.

    ``preds (ndarray[P, 4])`` and ``faces (ndarray[F, 4])`` x y w h pixels; prediction p is compared with
    faces ``pred_face_start[p] : pred_face_start[p] + pred_face_count[p]`` (count >= 1). Returns, per
    arithmetic, ``(overlap (P,) float64, face (P,) int64)``; a prediction touching no face gets overlap 0
    and its image's first face (MATLAB's ``max`` of zeros).
    """
    P = len(preds)
    pb, fb = Boxes.from_xywh(preds), Boxes.from_xywh(faces)
    boxes = {"float64": (pb, fb)}
    if "matlab" in arithmetics:
        if max(np.abs(pb.x1).max(initial=0), np.abs(pb.x2).max(initial=0), np.abs(pb.y1).max(initial=0),
               np.abs(pb.y2).max(initial=0)) > COORD_LIMIT:  # fmt: skip
            raise ValueError("prediction coordinates beyond +-2**29 pixels cannot be evaluated in matlab arithmetic")
        face_area = np.minimum(fb.area, INT32_MAX)  # int32 product (faces are int32)
        boxes["matlab"] = (pb.rounded(), Boxes(fb.x1, fb.y1, fb.x2, fb.y2, face_area))
    out = {a: (np.zeros(P), pred_face_start.astype(np.int64).copy()) for a in arithmetics}
    if P:
        cum = np.cumsum(pred_face_count)
        cuts = np.searchsorted(cum, np.arange(chunk_pairs, cum[-1], chunk_pairs), side="right")
        edges = np.unique(np.r_[0, cuts, P])
        for start, stop in pairwise(edges.tolist()):
            _chunk(start, stop, pred_face_start, pred_face_count, boxes, arithmetics, out)
    return out


def _chunk(a, b, pred_face_start, pred_face_count, boxes, arithmetics, out) -> None:
    counts = pred_face_count[a:b]
    total = int(counts.sum())
    seg = np.cumsum(counts) - counts
    pred = np.repeat(np.arange(a, b), counts)
    face = np.arange(total) - np.repeat(seg, counts) + np.repeat(pred_face_start[a:b], counts)
    pb, fb = boxes["float64"]
    # Pairs at least a pixel apart cannot overlap in either arithmetic (rounding moves a corner by <= 0.5).
    w = np.minimum(fb.x2[face], pb.x2[pred]) - np.maximum(fb.x1[face], pb.x1[pred]) + 1
    near = w > -1
    pred, face = pred[near], face[near]
    h = np.minimum(fb.y2[face], pb.y2[pred]) - np.maximum(fb.y1[face], pb.y1[pred]) + 1
    near = h > -1
    pred, face = pred[near], face[near]
    if len(pred) == 0:
        return
    starts = np.flatnonzero(np.r_[True, pred[1:] != pred[:-1]])
    owners = pred[starts]
    for arithmetic in arithmetics:
        p, f = boxes[arithmetic]
        o = (_overlap_matlab if arithmetic == "matlab" else _overlap_float64)(p, f, pred, face)
        best = np.maximum.reduceat(o, starts)
        lengths = np.diff(np.r_[starts, len(o)])
        first = np.minimum.reduceat(np.where(o == np.repeat(best, lengths), np.arange(len(o)), len(o)), starts)
        overlap, best_face = out[arithmetic]
        positive = best > 0  # otherwise keep MATLAB's first face (overlap 0)
        overlap[owners[positive]] = best[positive]
        best_face[owners[positive]] = face[first[positive]]


def _overlap_float64(p: Boxes, f: Boxes, pred: np.ndarray, face: np.ndarray) -> np.ndarray:
    w = np.minimum(f.x2[face], p.x2[pred]) - np.maximum(f.x1[face], p.x1[pred]) + 1
    h = np.minimum(f.y2[face], p.y2[pred]) - np.maximum(f.y1[face], p.y1[pred]) + 1
    inter = w * h
    with np.errstate(invalid="ignore", divide="ignore"):
        o = inter / ((f.area[face] + p.area[pred]) - inter)
    return np.where((w > 0) & (h > 0), o, 0.0)


def _overlap_matlab(p: Boxes, f: Boxes, pred: np.ndarray, face: np.ndarray) -> np.ndarray:
    # p holds rounded corners (int32 after max/min with the int32 face) and the double area.
    w = np.minimum(f.x2[face], p.x2[pred]) - np.maximum(f.x1[face], p.x1[pred]) + 1
    h = np.minimum(f.y2[face], p.y2[pred]) - np.maximum(f.y1[face], p.y1[pred]) + 1
    valid = (w > 0) & (h > 0)  # elsewhere MATLAB sets 0; here areas are >= 1, so the sums below are positive
    inter = np.minimum(w * h, INT32_MAX)
    union = np.minimum(_round_positive(f.area[face] + p.area[pred]), INT32_MAX) - inter  # int32 + double
    with np.errstate(invalid="ignore", divide="ignore"):
        o = _round_positive(inter / union)  # int32 ./ int32
    return np.where(valid, o, 0.0)
