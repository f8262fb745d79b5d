"""The dense branch's mesh decoder (RetinaFace sec. 3.2) and its checkpoint file.

:class:`MeshDecoder` is the Chebyshev graph-convolution decoder (:mod:`retina.models.chebconv`) over the
mesh hierarchy of :mod:`retina.mesh.hierarchy`; :class:`FaceDecoder` wraps it as ``mean + scale * decoder``.
The committed decoder (``retina/weights/mesh_decoder.pth``, :data:`retina.weights.DEFAULT_DECODER`) is pre-trained by
``retina mesh-pretrain`` (:mod:`retina.mesh.pretrain`) and loaded by :func:`load_mesh_decoder`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from retina.checkpoint import load_weights, safe_load
from retina.config import from_dict, to_dict
from retina.errors import CheckpointError
from retina.mesh.hierarchy import MeshHierarchy, default_hierarchy
from retina.models.chebconv import ChebConv, sparse_apply, sparse_tensor
from retina.results import write_bytes

DECODER_FORMAT = "retina-mesh-decoder"
VERSION = 1


@dataclass(frozen=True)
class MeshDecoderConfig:
    """code_dim: input code size; channels[0]: features per coarsest vertex, channels[i]: the width after
    the i-th up-sampling (len(channels) == number of levels); K: Chebyshev order; out_channels: xyz + rgb."""

    code_dim: int = 128
    channels: tuple[int, ...] = (64, 64, 32, 32)
    K: int = 6
    out_channels: int = 6


class MeshDecoder(nn.Module):
    """Graph-convolution decoder of the dense branch: code (B, code_dim) -> (B, V_finest, out_channels).

    Linear -> (B, V_coarsest, channels[0]); then per level, coarse to fine: up-sample (sparse U),
    ChebConv(K), ELU; a last ChebConv to ``out_channels`` at the finest level.
    """

    def __init__(self, hierarchy: MeshHierarchy, config: MeshDecoderConfig = MeshDecoderConfig()) -> None:
        super().__init__()
        n = len(hierarchy.levels)
        if len(config.channels) != n:
            raise ValueError(f"MeshDecoderConfig.channels needs {n} widths (one per level), got {config.channels}")
        self.config = config
        self.num_coarse = hierarchy.levels[-1].num_vertices
        self.fc = nn.Linear(config.code_dim, self.num_coarse * config.channels[0])
        convs = []
        for i, level in enumerate(range(n - 2, -1, -1)):  # coarse to fine
            self.register_buffer(f"up{i}", sparse_tensor(hierarchy.up[level], torch.float64), persistent=False)
            lap = hierarchy.levels[level].laplacian
            convs.append(ChebConv(config.channels[i], config.channels[i + 1], config.K, lap))
        self.convs = nn.ModuleList(convs)
        self.out = ChebConv(config.channels[-1], config.out_channels, config.K, hierarchy.levels[0].laplacian)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """code (B, code_dim) -> (B, V_finest, out_channels)."""
        x = self.fc(code).reshape(code.shape[0], self.num_coarse, self.config.channels[0])
        for i, conv in enumerate(self.convs):
            x = nn.functional.elu(conv(sparse_apply(getattr(self, f"up{i}"), x)))
        return self.out(x)


class FaceDecoder(nn.Module):
    """The dense branch's decoder: ``mean + scale * MeshDecoder(code)``, code (B, code_dim) -> (B, V_finest, 6)
    xyz (model frame of :mod:`retina.mesh.template`) + rgb albedo in [0, 1] (``retina.mesh.pretrain``).

    mean (V, 6): the pre-training set's mean face; scale (6,): its standard deviation over faces, per vertex and
    channel, averaged over the vertices. The graph decoder thus learns standardised residuals from the mean face
    (a morphable model's mean + offsets), which trains far faster than absolute coordinates; both are persistent
    buffers, saved with the weights. ``triangles`` (T, 3) int64: the finest level's triangles (a non-persistent
    buffer, derived from the mesh), what a renderer needs with the decoded vertices.
    """

    def __init__(self, hierarchy: MeshHierarchy, config: MeshDecoderConfig | None = None) -> None:
        super().__init__()
        config = config or MeshDecoderConfig()
        self.config = config
        self.decoder = MeshDecoder(hierarchy, config)
        v = hierarchy.levels[0].num_vertices
        self.register_buffer("mean", torch.zeros(v, config.out_channels))
        self.register_buffer("scale", torch.ones(config.out_channels))
        tris = torch.from_numpy(np.array(hierarchy.levels[0].triangles, dtype=np.int64))
        self.register_buffer("triangles", tris, persistent=False)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """code (B, code_dim) -> (B, V_finest, out_channels)."""
        return self.mean + self.scale * self.decoder(code)


def save_mesh_decoder(path: str | Path, decoder: FaceDecoder, prov: Mapping[str, Any] | None = None) -> Path:
    """Write the decoder alone (config, state dict, finest-level vertex counts, provenance) atomically."""
    payload = {
        "format": DECODER_FORMAT,
        "version": VERSION,
        "config": to_dict(decoder.config),
        "num_vertices": list(default_hierarchy().num_vertices),
        "state_dict": {k: v.detach().cpu().clone() for k, v in decoder.state_dict().items()},
        "provenance": json.loads(json.dumps(dict(prov or {}), default=str)),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes(path, buffer.getvalue())


def load_mesh_decoder(path: str | Path) -> tuple[FaceDecoder, dict[str, Any]]:
    """(decoder on the default hierarchy in eval mode, the whole payload); errors are :class:`CheckpointError`."""
    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") != DECODER_FORMAT:
        raise CheckpointError(f"{path}: not a mesh-decoder checkpoint (written by retina.mesh.pretrain)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: mesh-decoder checkpoint version {payload.get('version')} is not supported")
    hierarchy = default_hierarchy()
    if tuple(payload.get("num_vertices", ())) != hierarchy.num_vertices:
        raise CheckpointError(
            f"{path}: decoder for mesh levels {payload.get('num_vertices')}, this suite has {hierarchy.num_vertices}"
        )
    try:
        cfg = from_dict(MeshDecoderConfig, payload["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: a mesh-decoder checkpoint without a valid config ({exc})") from None
    decoder = FaceDecoder(hierarchy, cfg)
    load_weights(decoder, payload["state_dict"], str(path))
    return decoder.eval(), payload
