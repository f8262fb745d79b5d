"""``boxoverlap.m`` for every (prediction, face) pair of an image, then each prediction's best face.

Work is done on flat pair arrays over many images at once (no per-image Python loop), in chunks of
``chunk_pairs`` pairs. In each arithmetic, a pair whose intersection width or height is <= 0 has overlap 0
(``boxoverlap.m`` sets it so), so those pairs are dropped before the rest is computed: on WIDER FACE that
leaves a few percent of the pairs.

Arithmetics (see ``retina.eval.widerface``):

* ``"float64"``: ``boxoverlap.m``'s formulas in float64 (the textbook IoU with +1 pixel areas).
* ``"matlab"``: what MATLAB (and GNU Octave) compute with int32 faces and double predictions, bit for bit:

  - an int32 operation with a double (``max``, ``min``, ``+``, ``-``) converts the double result to int32:
    NaN -> 0, rounded half away from zero, saturated to [INT32_MIN, INT32_MAX] (:func:`to_int32`);
  - int32 with int32 is exact, then saturated (:func:`saturate`);
  - ``int32 ./ int32`` rounds the exact quotient half away from zero; x / 0 is INT32_MAX for x > 0,
    INT32_MIN for x < 0 and 0 for x = 0 (:func:`int32_divide`).

  So in ``boxoverlap(face int32, pred double)``: the intersection corners ``max/min(face, pred)`` are int32
  (the prediction's corner rounded), ``w``, ``h`` and ``inter = w .* h`` are int32, the face area is int32,
  the prediction's area ``(x2 - x1 + 1) * (y2 - y1 + 1)`` is a double from its unrounded corners, the union
  is ``int32(face area + prediction area) - inter``, and the overlap ``inter ./ union`` an int32 division:
  an integer, possibly > 1 (sub-pixel predictions) or INT32_MAX (a union of 0).

All int32 values are held exactly in float64 arrays (every int32 is a double; sums and differences of two
int32 are exact in float64; a product beyond int32 stays beyond it after float64 rounding, so saturation
gives MATLAB's value), and the double operations are the same IEEE operations MATLAB performs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

INT32_MIN = -(2.0**31)
INT32_MAX = 2.0**31 - 1


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
        """Double boxes as MATLAB computes them: corners and area in float64 (a prediction's in either
        arithmetic; may be inf or NaN for absurd sizes, as in MATLAB)."""
        x1, y1 = boxes[:, 0].copy(), boxes[:, 1].copy()
        with np.errstate(over="ignore", invalid="ignore"):
            x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
            return cls(x1, y1, x2, y2, (x2 - x1 + 1) * (y2 - y1 + 1))

    @classmethod
    def int32_from_xywh(cls, boxes: np.ndarray) -> Boxes:
        """int32 boxes (the faces of the official .mat, integral values in int32 range): corners
        ``x + w`` and area ``(x2 - x1 + 1) .* (y2 - y1 + 1)`` in saturating int32 arithmetic."""
        x1, y1 = boxes[:, 0].copy(), boxes[:, 1].copy()
        x2, y2 = saturate(x1 + boxes[:, 2]), saturate(y1 + boxes[:, 3])
        width, height = saturate(saturate(x2 - x1) + 1), saturate(saturate(y2 - y1) + 1)
        return cls(x1, y1, x2, y2, saturate(width * height))

    def as_int32_corners(self) -> Boxes:
        """The corners as MATLAB converts them to int32 in ``max/min(int32, double)``; the area stays the
        double one. (``max(a, int32(b)) == int32(max(a, b))`` for int32 ``a``: conversion is monotone.)"""
        return Boxes(*(to_int32(c) for c in (self.x1, self.y1, self.x2, self.y2)), self.area)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: half away from zero, any sign (numpy's ``rint`` rounds half to even). Exact:
    ``x - trunc(x)`` is the exact fractional part. inf stays inf, NaN stays NaN."""
    t = np.trunc(x)
    with np.errstate(invalid="ignore"):
        return t + np.where(np.abs(x - t) >= 0.5, np.sign(x), 0.0)


def saturate(x: np.ndarray) -> np.ndarray:
    """Clamp exact integer results to int32's range (MATLAB's saturating int32 arithmetic)."""
    return np.clip(x, INT32_MIN, INT32_MAX)


def to_int32(x: np.ndarray) -> np.ndarray:
    """MATLAB/Octave double -> int32 conversion: NaN -> 0, round half away from zero, saturate."""
    return saturate(np.nan_to_num(round_half_away(x), nan=0.0, posinf=INT32_MAX, neginf=INT32_MIN))


def int32_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``int32 ./ int32``: the exact quotient rounded half away from zero, saturated; x / 0 is INT32_MAX,
    INT32_MIN or 0 for x > 0, < 0, = 0. ``a``, ``b`` int32 values in float64 arrays.

    Rounding the float64 quotient is exact: a quotient of int32 values that is not a half-integer is at
    least 1 / (2 |b|) >= 2**-32 from one, farther than float64 rounding moves a value below 2**31."""
    with np.errstate(invalid="ignore", divide="ignore"):
        q = saturate(round_half_away(a / b))
    return np.where(b != 0, q, np.where(a > 0, INT32_MAX, np.where(a < 0, INT32_MIN, 0.0)))


def best_faces(
    preds: np.ndarray,
    pred_face_start: np.ndarray,
    pred_face_count: np.ndarray,
    faces: np.ndarray,
    arithmetics: Sequence[str],
    chunk_pairs: int = 1 << 20,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each prediction, the highest overlap with the faces of its image and the first face reaching it.

    ``preds (ndarray[P, 4])`` x y w h pixels, finite (any sign); ``faces (ndarray[F, 4])`` x y w h pixels
    (integral and in int32 range for 'matlab'); prediction p is compared with faces
    ``pred_face_start[p] : pred_face_start[p] + pred_face_count[p]`` (count >= 1). Returns, per arithmetic,
    ``(overlap (P,) float64, face (P,) int64)``. A prediction whose best overlap is 0 gets overlap 0 and its
    image's first face: MATLAB's ``max`` of an all-zero list. (Overlaps are never negative: a pair with
    ``w, h > 0`` has a positive intersection and a union >= 0, see ``tests/test_eval_matlab_cases.py``.)
    """
    P = len(preds)
    pb = Boxes.from_xywh(preds)
    boxes = {"float64": (pb, Boxes.from_xywh(faces))}
    if "matlab" in arithmetics:
        boxes["matlab"] = (pb.as_int32_corners(), Boxes.int32_from_xywh(faces))
    out = {a: (np.zeros(P), pred_face_start.astype(np.int64).copy()) for a in arithmetics}
    if P:
        cum = np.cumsum(pred_face_count)
        cuts = np.searchsorted(cum, np.arange(chunk_pairs, cum[-1], chunk_pairs), side="right")
        edges = np.unique(np.r_[0, cuts, P])
        for start, stop in pairwise(edges.tolist()):
            pred, face = _pairs(start, stop, pred_face_start, pred_face_count)
            for arithmetic in arithmetics:
                _best_of_chunk(pred, face, *boxes[arithmetic], arithmetic, out[arithmetic])
    return out


def _pairs(a: int, b: int, pred_face_start: np.ndarray, pred_face_count: np.ndarray) -> tuple[np.ndarray, ...]:
    """(prediction, face) index pairs of predictions a..b-1, grouped by prediction."""
    counts = pred_face_count[a:b]
    seg = np.cumsum(counts) - counts
    pred = np.repeat(np.arange(a, b), counts)
    face = np.arange(int(counts.sum())) - np.repeat(seg, counts) + np.repeat(pred_face_start[a:b], counts)
    return pred, face


def _best_of_chunk(pred, face, p: Boxes, f: Boxes, arithmetic: str, out: tuple[np.ndarray, np.ndarray]) -> None:
    """Overlap of the pairs with w > 0 and h > 0 (the others are 0), then each prediction's first best face."""
    w = _extent(p.x1, p.x2, f.x1, f.x2, pred, face, arithmetic)
    keep = w > 0
    pred, face, w = pred[keep], face[keep], w[keep]
    h = _extent(p.y1, p.y2, f.y1, f.y2, pred, face, arithmetic)
    keep = h > 0
    pred, face, w, h = pred[keep], face[keep], w[keep], h[keep]
    if len(pred) == 0:
        return
    o = (_overlap_matlab if arithmetic == "matlab" else _overlap_float64)(w, h, p.area[pred], f.area[face])
    starts = np.flatnonzero(np.r_[True, pred[1:] != pred[:-1]])
    owners = pred[starts]
    best = np.maximum.reduceat(o, starts)
    lengths = np.diff(np.r_[starts, len(o)])
    first = np.minimum.reduceat(np.where(o == np.repeat(best, lengths), np.arange(len(o)), len(o)), starts)
    overlap, best_face = out
    positive = best > 0  # otherwise keep MATLAB's first face (overlap 0)
    overlap[owners[positive]] = best[positive]
    best_face[owners[positive]] = face[first[positive]]


def _extent(p1, p2, f1, f2, pred, face, arithmetic: str) -> np.ndarray:
    """``min(f2, p2) - max(f1, p1) + 1`` of each pair: float64, or int32 (saturating; corners int32)."""
    with np.errstate(invalid="ignore"):
        e = np.minimum(f2[face], p2[pred]) - np.maximum(f1[face], p1[pred])
    return saturate(saturate(e) + 1) if arithmetic == "matlab" else e + 1


def _overlap_float64(w, h, pred_area, face_area) -> np.ndarray:
    # w, h > 0 here, so inter <= both areas (each side +1 >= w or h) and the union >= max(areas) > 0.
    inter = w * h
    with np.errstate(invalid="ignore", over="ignore"):
        return inter / ((face_area + pred_area) - inter)


def _overlap_matlab(w, h, pred_area, face_area) -> np.ndarray:
    # w, h int32 > 0; face_area int32; pred_area double (unrounded corners): aarea + barea - inter.
    inter = saturate(w * h)
    with np.errstate(invalid="ignore", over="ignore"):
        union = saturate(to_int32(face_area + pred_area) - inter)
    return int32_divide(inter, union)
