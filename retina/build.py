"""The one place that turns a config into modules."""

from __future__ import annotations

from torch import nn

from retina.config import DetectorCfg
from retina.models.backbones import build_backbone
from retina.models.context import ContextModule
from retina.models.detector import RetinaFace
from retina.models.fpn import FPN


def build_detector(cfg: DetectorCfg) -> RetinaFace:
    """A randomly initialised detector for ``cfg`` (load weights with ``retina.checkpoint``)."""
    if cfg.neck.dcn:
        raise NotImplementedError("deformable convolution (neck.dcn=True) is not wired up yet (issue 7)")
    backbone = build_backbone(cfg.backbone.name, cfg.backbone.stages)
    levels = len(cfg.priors.strides)
    fpn = FPN(backbone.channels, cfg.neck.channels, cfg.neck.leaky, cfg.neck.extra_levels)
    contexts = nn.ModuleList(
        ContextModule(cfg.neck.channels, cfg.neck.leaky) if cfg.neck.context else nn.Identity() for _ in range(levels)
    )
    return RetinaFace(backbone, fpn, contexts, cfg.neck.channels, cfg.priors.anchors_per_location, cfg.head.shared)
