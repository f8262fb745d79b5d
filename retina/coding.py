"""Box and landmark coding relative to priors (Fast R-CNN style, with SSD variances).

Priors are (cx, cy, w, h) pixels; boxes are (x1, y1, x2, y2) pixels (continuous convention: w = x2 - x1);
landmarks are (..., 5, 2) pixels. With variances (v0, v1):
    box:      dcx = (cx - pcx) / (v0 pw), dcy = (cy - pcy) / (v0 ph),
              dw = log(w / pw) / v1,       dh = log(h / ph) / v1
    landmark: dx_k = (x_k - pcx) / (v0 pw), dy_k = (y_k - pcy) / (v0 ph)
All functions broadcast over leading dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def encode_boxes(boxes: Tensor, priors: Tensor, variances: tuple[float, float]) -> Tensor:
    """boxes (..., 4) xyxy, priors (..., 4) cxcywh -> deltas (..., 4)."""
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = boxes[..., 2:] - boxes[..., :2]
    d_centre = (centre - priors[..., :2]) / (variances[0] * priors[..., 2:])
    d_size = torch.log(size / priors[..., 2:]) / variances[1]
    return torch.cat([d_centre, d_size], dim=-1)


def decode_boxes(deltas: Tensor, priors: Tensor, variances: tuple[float, float]) -> Tensor:
    """deltas (..., 4), priors (..., 4) cxcywh -> boxes (..., 4) xyxy pixels."""
    centre = priors[..., :2] + deltas[..., :2] * variances[0] * priors[..., 2:]
    half = priors[..., 2:] * torch.exp(deltas[..., 2:] * variances[1]) / 2
    return torch.cat([centre - half, centre + half], dim=-1)


def encode_landmarks(landmarks: Tensor, priors: Tensor, variances: tuple[float, float]) -> Tensor:
    """landmarks (..., 5, 2) pixels, priors (..., 4) -> deltas (..., 10) ordered x0, y0, ..., x4, y4."""
    d = (landmarks - priors[..., None, :2]) / (variances[0] * priors[..., None, 2:])
    return d.flatten(-2)


def decode_landmarks(deltas: Tensor, priors: Tensor, variances: tuple[float, float]) -> Tensor:
    """deltas (..., 10), priors (..., 4) -> landmarks (..., 5, 2) pixels."""
    d = deltas.unflatten(-1, (5, 2))
    return priors[..., None, :2] + d * variances[0] * priors[..., None, 2:]
