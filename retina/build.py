"""The one place that turns a config into modules."""

from __future__ import annotations

from torch import nn

from retina.config import DetectorCfg
from retina.mesh.hierarchy import default_hierarchy
from retina.models.backbones import build_backbone
from retina.models.context import ContextModule
from retina.models.detector import RetinaFace
from retina.models.fpn import FPN
from retina.models.mesh_decoder import FaceDecoder
from retina.models.rng import isolated_rng


def build_detector(cfg: DetectorCfg) -> RetinaFace:
    """A randomly initialised detector for ``cfg`` (load weights with ``retina.checkpoint``).

    ``cfg.neck.dcn``: the FPN merge convs and the five context-module convs become DCNv2, starting as the
    plain convs (see ``retina.models.dcn``); with it False the modules and parameter names are the plain ones.
    ``cfg.head.mesh``: adds the dense branch's ``mesh_head`` (``retina.models.heads.MeshHead``) and its mesh
    decoder (``retina.models.chebconv.FaceDecoder`` on the default mesh hierarchy, randomly initialised: training
    loads the pre-trained one, ``retina.engine``), and the model returns ``MeshPredictions``; with it False the
    model is exactly the detector.
    """
    backbone = build_backbone(cfg.backbone.name, cfg.backbone.stages)
    levels = len(cfg.priors.strides)
    neck = cfg.neck
    fpn = FPN(backbone.channels, neck.channels, neck.leaky, neck.extra_levels, dcn=neck.dcn)
    contexts = nn.ModuleList(
        ContextModule(neck.channels, neck.leaky, dcn=neck.dcn) if neck.context else nn.Identity() for _ in range(levels)
    )
    anchors = cfg.priors.anchors_per_location
    decoder = None
    if cfg.head.mesh:  # its random init must not shift the heads' (same seed, same detector weights as without)
        with isolated_rng():
            decoder = FaceDecoder(default_hierarchy())
    return RetinaFace(backbone, fpn, contexts, neck.channels, anchors, cfg.head.shared, mesh_decoder=decoder)
