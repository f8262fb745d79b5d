"""Per-anchor prediction heads: 1x1 convs for face score (2), box (4) and five landmarks (10).

biubug6 uses one set of convs per pyramid level; the paper shares one set across levels (all levels have
the same channel count). Either way the outputs of all levels are concatenated in the prior order of
``retina.priors.make_priors``: level, then row, then column, then anchor.

``MeshHead`` is the dense branch's optional head (arXiv 1905.00641 section 3.2): per anchor the shape and
texture code P_ST (128, input of ``retina.models.chebconv.MeshDecoder``), the camera P_cam (7) and the
light P_ill (9), in the parameterisation ``retina.render.render_mesh`` takes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Head(nn.Module):
    """A 1x1 conv per level (or one shared) producing ``outputs`` values per anchor."""

    def __init__(self, channels: int, anchors: int, outputs: int, levels: int, shared: bool) -> None:
        super().__init__()
        self.outputs = outputs
        count = 1 if shared else levels
        self.convs = nn.ModuleList(nn.Conv2d(channels, anchors * outputs, 1) for _ in range(count))

    def forward(self, features: list[Tensor]) -> Tensor:
        """features: per level (B, C, H_l, W_l) -> (B, sum_l H_l * W_l * anchors, outputs)."""
        out = []
        for i, f in enumerate(features):
            y = self.convs[i % len(self.convs)](f)  # (B, A*K, H, W)
            out.append(y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, self.outputs))  # -> (B, H*W*A, K)
        return torch.cat(out, dim=1)


MESH_CODE, MESH_CAMERA, MESH_LIGHT = 128, 7, 9
MESH_OUTPUTS = MESH_CODE + MESH_CAMERA + MESH_LIGHT  # 144 values per anchor: code, then camera, then light
# The camera and light every anchor predicts at initialisation (render_mesh itself has no defaults). Camera:
# the template's model origin 10 units in front of the camera and 0.2 units up (camera +y is down), zero pose,
# focal 700 px: the face region of ``retina.mesh.hierarchy.face_region`` (1.27 x 1.09 model units, forehead
# to chin, centred at model y = -0.2) renders centred in a 112 x 112 crop, about 94 x 80 px (rows 7-100,
# columns 16-95; tests/test_mesh_head.py). Light: a white point light at the camera centre (colour 0.6) plus
# ambient 0.4, so a surface facing the camera shows its albedo unchanged (0.6 + 0.4 = 1).
DEFAULT_CAMERA = (0.0, -0.2, 10.0, 0.0, 0.0, 0.0, 700.0)
DEFAULT_LIGHT = (0.0, 0.0, 0.0, 0.6, 0.6, 0.6, 0.4, 0.4, 0.4)
# How far a camera may move from the default: the crop already frames the face (retina.dense.crops), so the camera
# makes bounded corrections. Without bounds the pixel loss, which only sees covered pixels, drifts faces out of
# their crops (measured: a 300-iteration run at w_pixel 1 moved them by up to 2 units, 150 px, and the dense NME
# rose from 23% to 162%). Translation x, y +-0.3 units (~21 px of 112), depth +-2 units (faces 0.83-1.25x the
# default size), each angle +-90 degrees, focal +-20%.
CAMERA_RANGE = (0.3, 0.3, 2.0, math.pi / 2, math.pi / 2, math.pi / 2, 0.2 * DEFAULT_CAMERA[6])
LIGHT_POSITION_SCALE = 10.0  # model units per unit of raw output (the head is ~2 units tall)
LIGHT_LOG_RANGE = 2.0  # light and ambient colours within e^-2 .. e^2 times their defaults (never negative)


def mesh_parameters(raw_camera: Tensor, raw_light: Tensor) -> tuple[Tensor, Tensor]:
    """The head's raw camera (..., 7) and light (..., 9) outputs -> P_cam and P_ill as ``render_mesh`` takes them.

    camera = DEFAULT_CAMERA + CAMERA_RANGE * tanh(raw); light position = LIGHT_POSITION_SCALE * raw (default the
    camera centre); light and ambient colours = default * exp(LIGHT_LOG_RANGE * tanh(raw)). Raw zeros give exactly
    the defaults.
    """
    default_cam = raw_camera.new_tensor(DEFAULT_CAMERA)
    camera = default_cam + raw_camera.new_tensor(CAMERA_RANGE) * torch.tanh(raw_camera)
    default_light = raw_light.new_tensor(DEFAULT_LIGHT)
    position = default_light[:3] + LIGHT_POSITION_SCALE * raw_light[..., :3]
    colours = default_light[3:] * torch.exp(LIGHT_LOG_RANGE * torch.tanh(raw_light[..., 3:]))
    return camera, torch.cat([position, colours], -1)


class MeshHead(Head):
    """The dense branch's per-anchor outputs: features per level -> (B, A, 144) = code | camera | light.

    Split the output with :func:`split_mesh`. Values, per anchor:

    - code (128): P_ST, the shape-and-texture code decoded by ``MeshDecoder``.
    - camera (7): P_cam = translation (x, y, z) of the model origin in the camera frame (OpenCV axes: +x
      right, +y down, +z forward; same units as the mesh), pose (pitch, yaw, roll) in radians
      (``retina.render.camera``), focal length in pixels (principal point at the centre of the render).
    - light (9): P_ill = point-light position (x, y, z) in the camera frame, light colour (r, g, b), ambient
      colour (r, g, b) (``retina.render.light``: Lambertian with ambient).

    The camera and light values are *raw*: :func:`mesh_parameters` maps them to bounded, valid parameters (the
    model's ``forward`` does). Initialisation: the camera and light rows of each final conv are zero, so every
    anchor starts from the defaults ``DEFAULT_CAMERA`` / ``DEFAULT_LIGHT``, the same renderable face; the code
    rows keep PyTorch's default initialisation.
    """

    def __init__(self, channels: int, anchors: int, levels: int, shared: bool) -> None:
        super().__init__(channels, anchors, MESH_OUTPUTS, levels, shared)
        with torch.no_grad():
            for conv in self.convs:
                conv.weight.view(anchors, MESH_OUTPUTS, channels)[:, MESH_CODE:] = 0.0
                conv.bias.view(anchors, MESH_OUTPUTS)[:, MESH_CODE:] = 0.0


def split_mesh(mesh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(..., 144) -> views (code (..., 128), camera (..., 7), light (..., 9)), as :class:`MeshHead` orders them."""
    return mesh[..., :MESH_CODE], mesh[..., MESH_CODE : MESH_CODE + MESH_CAMERA], mesh[..., MESH_CODE + MESH_CAMERA :]
