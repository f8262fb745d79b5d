"""The pixel loss of the dense branch (arXiv 1905.00641 section 3.2, eq. 5), for training.

For a face chosen by :func:`select_faces`, its best-matching positive anchor's shape-and-texture code is decoded
to a mesh (``FaceDecoder``), posed and lit by the anchor's camera and light, and rendered into the face's square
crop (:mod:`retina.dense.crops`, ``PixelCfg.crop_size`` pixels); the loss is eq. 5 as written: the per-pixel L1
norm (summed over RGB in [0, 1]) between the rendering (black where the mesh does not cover) and the image crop,
averaged over the crop's W x H pixels. By default gradients reach the geometry only inside triangles, as with the
paper's renderer; ``PixelCfg.antialias`` adds gradients through the outline (:mod:`retina.render.antialias`).
The per-face losses are summed; the caller divides by the number of rendered faces over the global batch, as for
the other losses.

What this loss can and cannot do on SynthFace is measured by ``benchmarks/pixel_fit.py`` (fitting single faces by
the pixel loss alone) and the mesh ablation's dense NME column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert, box_iou

from retina.config import PixelCfg
from retina.data.dataset import Target
from retina.dense.crops import crop_camera, face_crops, square_crops
from retina.losses import Assigned
from retina.matching import POSITIVE
from retina.models.detector import MeshPredictions
from retina.render import render_mesh


@dataclass(frozen=True)
class FaceSelection:
    """K faces to render: batch (K,) and anchor (K,) int64 indices, boxes (K, 4) xyxy pixels of the faces."""

    batch: Tensor
    anchor: Tensor
    boxes: Tensor

    def __len__(self) -> int:
        return int(self.batch.numel())


def select_faces(targets: Sequence[Target], priors: Tensor, assigned: Assigned, cfg: PixelCfg) -> FaceSelection:
    """Per image, the ``cfg.max_faces`` tallest faces at least ``cfg.min_face`` tall that own a positive anchor,
    each with its positive anchor of highest IoU. priors (A, 4) cx cy w h pixels."""
    anchors_xyxy = box_convert(priors, "cxcywh", "xyxy")
    batch, anchor, boxes = [], [], []
    for b, t in enumerate(targets):
        gt = t.boxes.to(priors.device, priors.dtype)
        if not len(gt):
            continue
        iou = box_iou(gt, anchors_xyxy)  # (N, A)
        owned = (assigned.labels[b] == POSITIVE)[None] & (
            assigned.face_index[b][None] == torch.arange(len(gt), device=gt.device)[:, None]
        )
        best_iou, best = iou.masked_fill(~owned, -1.0).max(1)
        heights = gt[:, 3] - gt[:, 1]
        eligible = (best_iou >= 0) & (heights >= cfg.min_face)
        order = torch.argsort(torch.where(eligible, heights, -1.0), descending=True, stable=True)
        chosen = order[eligible[order]][: cfg.max_faces]
        batch.append(torch.full_like(chosen, b))
        anchor.append(best[chosen])
        boxes.append(gt[chosen])
    if not batch:
        empty = torch.zeros(0, dtype=torch.int64, device=priors.device)
        return FaceSelection(empty, empty, priors.new_zeros(0, 4))
    return FaceSelection(torch.cat(batch), torch.cat(anchor), torch.cat(boxes))


def photometric_l1(rendered: Tensor, target: Tensor) -> Tensor:
    """Per face (K,): ``|rendered - target|_1`` over channels, averaged over the H x W pixels (eq. 5).

    rendered, target (K, H, W, 3).
    """
    return (rendered - target).abs().sum(-1).flatten(1).mean(1)


def pixel_loss(
    pred: MeshPredictions,
    images: Tensor,
    selection: FaceSelection,
    decoder: nn.Module,
    cfg: PixelCfg,
    backend: str = "torch",
) -> Tensor:
    """Sum over the selected faces of their pixel losses (a scalar; 0 with none).

    images (B, H, W, 3) uint8 BGR, as the training loader gives them (the mesh colours are RGB in [0, 1]);
    decoder: ``FaceDecoder`` (code (K, 128) -> (K, V, 6)). The sum is always connected to every mesh-head output
    (times zero where unused), so distributed training sees every parameter used.
    """
    touch = 0.0 * (pred.mesh_code.sum() + pred.mesh_camera.sum() + pred.mesh_light.sum()).float()
    if not len(selection):
        return touch
    b, a = selection.batch, selection.anchor
    code, camera, light = (t[b, a].float() for t in (pred.mesh_code, pred.mesh_camera, pred.mesh_light))
    mesh = decoder(code)  # (K, V, 6)
    size = cfg.crop_size
    render = render_mesh(
        mesh[..., :3], decoder.triangles, mesh[..., 3:], crop_camera(camera, size), light, (size, size),
        backend_name=backend, antialias=cfg.antialias,
    )  # fmt: skip
    target = face_crops(images, b, square_crops(selection.boxes.float(), cfg.crop_margin), size)  # (K, S, S, 3)
    return photometric_l1(render.image, target).sum() + touch
