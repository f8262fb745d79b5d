"""retina: a reproducible benchmark and ablation suite for RetinaFace (arXiv 1905.00641).

The public inference API is :class:`retina.Detector`; everything else is reachable through
``build_detector`` and the ``retina`` command line.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Detections", "Detector", "__version__"]


def __getattr__(name: str):  # lazy: `import retina` must not import torch
    if name in ("Detector", "Detections"):
        from retina import api

        return getattr(api, name)
    raise AttributeError(name)
