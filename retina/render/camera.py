"""Camera: the paper's 7 parameters (location 3, pose 3, focal 1) as pure, differentiable functions.

Frames: the model frame of :mod:`retina.mesh.template` (+x viewer's right, +y up, +z towards the
viewer) and an OpenCV-style camera frame (+x right, +y down, +z forward). A face with zero pose looks
straight at the camera. Pose angles (radians) ``(pitch, yaw, roll)``: yaw > 0 turns the face towards
image right, pitch > 0 tilts it to look down, roll > 0 turns it counter-clockwise in the image.
``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` acts in the model frame.
"""

from __future__ import annotations

import torch

# Model frame -> camera frame at zero pose: a half turn about x (a proper rotation, det +1).
_FLIP = (1.0, -1.0, -1.0)


def euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (B, 3, 3) from angles (B, 3) = (pitch, yaw, roll) radians (model frame)."""
    p, y, r = angles.unbind(-1)
    one, zero = torch.ones_like(p), torch.zeros_like(p)
    rx = torch.stack([one, zero, zero, zero, p.cos(), -p.sin(), zero, p.sin(), p.cos()], -1)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1)
    rz = torch.stack([r.cos(), -r.sin(), zero, r.sin(), r.cos(), zero, zero, zero, one], -1)
    shape = (*angles.shape[:-1], 3, 3)
    return rz.view(shape) @ ry.view(shape) @ rx.view(shape)


def model_to_camera(vertices: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Camera-frame points (B, V, 3): rotate model points (B, V, 3) by the pose (B, 3), then translate.

    translation (Tensor[B, 3]) is the camera-frame position of the model origin (z > 0 is in front).
    """
    rotated = vertices @ euler_rotation(rotation).transpose(-1, -2)
    return rotated * rotated.new_tensor(_FLIP) + translation[:, None, :]


def perspective(
    points: torch.Tensor,
    focal: torch.Tensor,
    resolution: tuple[int, int],
    principal: torch.Tensor | None = None,
    near: float = 0.1,
    far: float = 100.0,
) -> torch.Tensor:
    """Clip coordinates (B, V, 4) of camera-frame points (B, V, 3) for a pinhole camera.

    focal (Tensor[B]) pixels; principal (Tensor[B, 2] or None = image centre) pixels, with pixel (i, j)
    covering x in [j, j + 1), y in [i, i + 1). Row 0 of the raster is the top of the image. Depth maps
    [near, far] to NDC [-1, 1] (OpenGL convention); points outside are clipped by the rasterizer.
    """
    h, w = resolution
    if principal is None:
        principal = points.new_tensor([[w / 2.0, h / 2.0]]).expand(points.shape[0], 2)
    x, y, z = points.unbind(-1)
    f = focal[:, None]
    cx, cy = principal[:, 0:1], principal[:, 1:2]
    x_clip = (2.0 * f / w) * x + (2.0 * cx / w - 1.0) * z
    y_clip = (2.0 * f / h) * y + (2.0 * cy / h - 1.0) * z
    z_clip = z * ((far + near) / (far - near)) - 2.0 * far * near / (far - near)
    return torch.stack([x_clip, y_clip, z_clip, z], -1)


def project(points: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates (B, V, 2) of camera-frame points (B, V, 3): ``f * (x, y) / z + principal``."""
    return focal[:, None, None] * points[..., :2] / points[..., 2:3] + principal[:, None, :]
