"""Square face crops: the frame in which the mesh head's camera lives.

Every anchor's camera (``retina.models.heads.MeshHead``) is expressed for a *canonical* crop of
``CANONICAL_CROP`` pixels around its face: the square of side ``margin * max(w, h)`` centred on the face box.
Rendering into a crop of ``size`` pixels scales the focal length by ``size / CANONICAL_CROP`` (principal point
at the crop centre); a point at canonical crop pixel ``p`` is at image pixel ``corner + p * side / CANONICAL_CROP``.
Pixel convention as in :mod:`retina.render`: pixel (i, j) covers ``x in [j, j + 1)``, ``y in [i, i + 1)``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align

from retina.render.camera import model_to_camera, project

CANONICAL_CROP = 112  # pixels; DEFAULT_CAMERA of retina.models.heads renders the mean face centred in it


def square_crops(boxes: Tensor, margin: float) -> Tensor:
    """Square crops (K, 4) xyxy pixels around boxes (K, 4) xyxy pixels: side ``margin * max(w, h)``, same centre."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = margin * (boxes[:, 2:] - boxes[:, :2]).amax(-1, keepdim=True) / 2
    return torch.cat([centre - half, centre + half], -1)


def crop_images(images: Tensor, batch_index: Tensor, crops: Tensor, size: int) -> Tensor:
    """Resample crops of images: images (B, C, H, W) float, batch_index (K,) int64, crops (K, 4) xyxy pixels
    -> (K, C, size, size), bilinear with area averaging (``torchvision.ops.roi_align``, pixel centres at +0.5);
    parts of a crop outside the image are zero."""
    rois = torch.cat([batch_index.to(crops.dtype)[:, None], crops], 1).to(images.dtype)
    return roi_align(images, rois, (size, size), spatial_scale=1.0, sampling_ratio=2, aligned=True)


def face_crops(images: Tensor, batch_index: Tensor, crops: Tensor, size: int) -> Tensor:
    """What a face's rendering is compared with: images (B, H, W, 3) uint8 BGR, as loaded -> crops (K, size,
    size, 3) RGB in [0, 1] of the square ``crops`` (K, 4) xyxy of images ``batch_index`` (K,)."""
    rgb = images.permute(0, 3, 1, 2).flip(1).float() / 255.0
    return crop_images(rgb, batch_index, crops, size).permute(0, 2, 3, 1)


def posed_uv(vertices: Tensor, camera: Tensor, crops: Tensor) -> Tensor:
    """Image pixel coordinates (K, V, 2) of meshes (K, V, 3) model frame posed by cameras (K, 7) of the canonical
    crops (K, 4) xyxy."""
    pts = model_to_camera(vertices, camera[:, 3:6], camera[:, 0:3])
    centre = pts.new_full((len(pts), 2), CANONICAL_CROP / 2)
    return crop_to_image(project(pts, camera[:, 6], centre), crops)


def crop_camera(camera: Tensor, size: int) -> Tensor:
    """Cameras (K, 7) of the canonical crop -> the same cameras for a crop rendered at ``size`` pixels."""
    scale = camera.new_ones(7)
    scale[6] = size / CANONICAL_CROP
    return camera * scale


def crop_to_image(points: Tensor, crops: Tensor) -> Tensor:
    """Canonical-crop pixel coordinates (K, N, 2) of crops (K, 4) xyxy -> image pixel coordinates (K, N, 2)."""
    side = (crops[:, 2] - crops[:, 0])[:, None, None]
    return crops[:, None, :2] + points * side / CANONICAL_CROP
