"""Per-anchor prediction heads: 1x1 convs for face score (2), box (4) and five landmarks (10).

biubug6 uses one set of convs per pyramid level; the paper shares one set across levels (all levels have
the same channel count). Either way the outputs of all levels are concatenated in the prior order of
``retina.priors.make_priors``: level, then row, then column, then anchor.

``MeshHead`` is the dense branch's optional head (arXiv 1905.00641 section 3.2): per anchor the shape and
texture code P_ST (128, input of ``retina.models.chebconv.MeshDecoder``), the camera P_cam (7) and the
light P_ill (9), in the parameterisation ``retina.render.render_mesh`` takes.
"""

from __future__ import annotations

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


class MeshHead(Head):
    """The dense branch's per-anchor outputs: features per level -> (B, A, 144) = code | camera | light.

    Split the output with :func:`split_mesh`. Values, per anchor:

    - code (128): P_ST, the shape-and-texture code decoded by ``MeshDecoder``.
    - camera (7): P_cam = translation (x, y, z) of the model origin in the camera frame (OpenCV axes: +x
      right, +y down, +z forward; same units as the mesh), pose (pitch, yaw, roll) in radians
      (``retina.render.camera``), focal length in pixels (principal point at the centre of the render).
    - light (9): P_ill = point-light position (x, y, z) in the camera frame, light colour (r, g, b), ambient
      colour (r, g, b) (``retina.render.light``: Lambertian with ambient).

    Initialisation: the camera and light rows of each final conv have zero weights and biases equal to
    ``DEFAULT_CAMERA`` / ``DEFAULT_LIGHT``, so every anchor starts from the same renderable face; the code
    rows keep PyTorch's default initialisation.
    """

    def __init__(self, channels: int, anchors: int, levels: int, shared: bool) -> None:
        super().__init__(channels, anchors, MESH_OUTPUTS, levels, shared)
        default = torch.tensor(DEFAULT_CAMERA + DEFAULT_LIGHT)
        with torch.no_grad():
            for conv in self.convs:
                weight = conv.weight.view(anchors, MESH_OUTPUTS, channels)
                bias = conv.bias.view(anchors, MESH_OUTPUTS)
                weight[:, MESH_CODE:] = 0.0
                bias[:, MESH_CODE:] = default


def split_mesh(mesh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(..., 144) -> views (code (..., 128), camera (..., 7), light (..., 9)), as :class:`MeshHead` orders them."""
    return mesh[..., :MESH_CODE], mesh[..., MESH_CODE : MESH_CODE + MESH_CAMERA], mesh[..., MESH_CODE + MESH_CAMERA :]
