"""RetinaFace: backbone -> FPN -> context module per level -> shared-shape heads.

``forward`` returns raw per-anchor predictions (a :class:`Predictions`), the same in training and
inference: no loss, no decoding, no NMS inside (those live in ``retina.losses`` and
``retina.postprocess``).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from retina.models.heads import Head, MeshHead, mesh_parameters, split_mesh
from retina.models.rng import isolated_rng


class Predictions(NamedTuple):
    """Raw outputs for A anchors (ordered as ``retina.priors.make_priors``).

    logits (B, A, 2): background / face logits (softmax gives the face score);
    boxes (B, A, 4): encoded box offsets (dcx, dcy, dw, dh), see ``retina.coding``;
    landmarks (B, A, 10): encoded landmark offsets (x0, y0, ..., x4, y4).
    """

    logits: Tensor
    boxes: Tensor
    landmarks: Tensor


class MeshPredictions(NamedTuple):
    """:class:`Predictions` plus the dense branch's per-anchor outputs (``HeadCfg.mesh``), for A anchors.

    logits, boxes, landmarks: as in :class:`Predictions`;
    mesh_code (B, A, 128): shape-and-texture code P_ST (input of ``retina.models.chebconv.MeshDecoder``);
    mesh_camera (B, A, 7): P_cam = translation (3, camera frame), pose (pitch, yaw, roll radians), focal (px);
    mesh_light (B, A, 9): P_ill = point-light position (3, camera frame), light colour (3), ambient colour (3).
    Camera and light are what ``retina.render.render_mesh`` takes: the head's raw outputs mapped by
    ``retina.models.heads.mesh_parameters`` (bounded around the defaults).

    A separate type (not an optional field of :class:`Predictions`) so that code iterating or rebuilding a
    ``Predictions`` (e.g. ``Predictions(*(t[i] for t in pred))``) keeps working; every consumer that reads
    ``.logits`` / ``.boxes`` / ``.landmarks`` accepts either, and :meth:`detection` gives the plain tuple.
    """

    logits: Tensor
    boxes: Tensor
    landmarks: Tensor
    mesh_code: Tensor
    mesh_camera: Tensor
    mesh_light: Tensor

    def detection(self) -> Predictions:
        """The detection outputs alone."""
        return Predictions(self.logits, self.boxes, self.landmarks)


class RetinaFace(nn.Module):
    """input (B, 3, H, W) float, normalised as ``InputCfg`` says -> :class:`Predictions`, or
    :class:`MeshPredictions` when built with a ``mesh_decoder`` (then ``self.mesh_head`` and
    ``self.mesh_decoder`` exist). The decoder (``retina.models.chebconv.FaceDecoder``) is not run by
    ``forward``: the pixel loss and dense evaluation decode the codes of the anchors they select."""

    def __init__(
        self,
        backbone: nn.Module,
        fpn: nn.Module,
        contexts: nn.ModuleList,
        channels: int,
        anchors: int,
        shared_heads: bool,
        mesh_decoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.fpn = fpn
        self.contexts = contexts
        levels = len(contexts)
        self.cls_head = Head(channels, anchors, 2, levels, shared_heads)
        self.box_head = Head(channels, anchors, 4, levels, shared_heads)
        self.landmark_head = Head(channels, anchors, 10, levels, shared_heads)
        if mesh_decoder is not None:  # no attributes at all otherwise: the state dict keys stay the detector's
            with isolated_rng():  # optional: built beside the random stream, like every optional module
                self.mesh_head = MeshHead(channels, anchors, levels, shared_heads)
            self.mesh_decoder = mesh_decoder

    def forward(self, images: Tensor) -> Predictions | MeshPredictions:
        pyramid = self.fpn(self.backbone(images))
        features = [ctx(p) for ctx, p in zip(self.contexts, pyramid, strict=True)]
        detection = (self.cls_head(features), self.box_head(features), self.landmark_head(features))
        if not hasattr(self, "mesh_head"):
            return Predictions(*detection)
        code, raw_camera, raw_light = split_mesh(self.mesh_head(features))
        return MeshPredictions(*detection, code, *mesh_parameters(raw_camera, raw_light))
