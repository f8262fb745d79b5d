"""Pre-train the dense branch's mesh decoder on the suite's morphable face space (issue 11; RetinaFace sec. 3.2).

The paper's decoder is pre-trained on 3D faces; ours learns the space of :mod:`retina.mesh.morphable` (identity
shape, expressions, albedo) as an *auto-encoder*:

    retina mesh-pretrain --out runs/mesh_decoder [--package retina/weights]
    decoder, payload = load_mesh_decoder("retina/weights/mesh_decoder.pth")   # code (B, 128) -> (B, 1169, 6)

Data: faces drawn by :func:`retina.mesh.morphable.sample_face_params`; each gives a target (V, 6) at the
hierarchy's finest level (``template_ids``): xyz = ``face_shape`` in the template's *model frame, unchanged*
(origin at the head centre, +y up, +z out of the face, the head about 2 units tall: the frame the hierarchy's
vertices and Laplacians were built in, so the mean template itself needs no re-centring or re-scaling), and
rgb = ``vertex_albedo`` in [0, 1]. Train and held-out faces come from two independent child streams of
``numpy.random.SeedSequence(data_seed)``; drawn once per run (a few seconds).

Model: encoder = an MLP on the flattened target (standardised per vertex and channel with the training-set mean
and std) -> 128-d code -> :class:`retina.models.chebconv.MeshDecoder`. The encoder sees the mesh, not the
FaceParams vector: the code space is then defined by what is visible in the geometry and colour (the thing an
image regressor must later predict), not by generator internals such as hair-style thresholds, and the encoder
is thrown away after training anyway. Only the decoder is saved (< 1 MB).

Metrics on the held-out faces: mean per-vertex Euclidean xyz error in template units and as a fraction of the
mean template's inter-ocular distance (its landmarks 0 and 1, the eye centres), mean absolute rgb error (0..1
and 0..255); the same for the baseline that predicts the training-set mean face for every input.

Files in ``--out``: ``metrics.jsonl`` (one line per logged iteration), ``mesh_decoder.pth`` (decoder config,
state dict, provenance) and ``record.json``; ``--package DIR`` copies them to ``DIR/mesh_decoder.{pth,json,
metrics.jsonl}`` with the sha256 of each. No resume: a default run is a few minutes on two CPU cores.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from retina.config import config_hash, to_dict
from retina.errors import RetinaError
from retina.mesh.hierarchy import MeshHierarchy, default_hierarchy
from retina.mesh.morphable import face_shape, sample_face_params, vertex_albedo
from retina.mesh.template import FaceTemplate, build_template
from retina.models.mesh_decoder import (
    FaceDecoder,
    MeshDecoderConfig,
    save_mesh_decoder,
)
from retina.results import file_id, file_sha256, provenance, write_bytes, write_json, write_text
from retina.schedule import learning_rate


@dataclass(frozen=True)
class PretrainCfg:
    """Everything that decides a run's numbers.

    Loss: ``xyz_weight * L1(xyz) + rgb_weight * L1(rgb)``, means over vertices, channels and the batch of the
    errors divided by :class:`FaceDecoder`'s per-channel ``scale``. Adam with a cosine decay of the learning rate
    to 0 after a linear warm-up over ``warmup_fraction`` of the run.
    """

    recipe: str = "synth-cpu"
    decoder: MeshDecoderConfig = field(default_factory=MeshDecoderConfig)
    encoder_hidden: int = 512
    train_samples: int = 4000
    heldout_samples: int = 500
    iterations: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    warmup_fraction: float = 0.02
    xyz_weight: float = 1.0  # errors are in units of the per-channel spread, so 1 : 1 balances shape and colour
    rgb_weight: float = 1.0
    data_seed: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.train_samples, self.heldout_samples, self.iterations, self.batch_size, self.encoder_hidden) < 1:
            raise ValueError("train_samples, heldout_samples, iterations, batch_size, encoder_hidden must be >= 1")
        if self.lr <= 0 or self.xyz_weight < 0 or self.rgb_weight < 0 or not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError("lr must be positive, loss weights >= 0, warmup_fraction in [0, 1)")
        if self.seed < 0 or self.data_seed < 0:
            raise ValueError("seeds must be >= 0")


PRETRAIN_PRESETS: MappingProxyType[str, PretrainCfg] = MappingProxyType(
    {
        # 1,500 iterations of batch 32 (12 epochs of 4,000 faces): 0.28 s per iteration on one thread of a loaded
        # 2-core machine (7 minutes); wall time in the record.
        "synth-cpu": PretrainCfg(),
    }
)


def pretrain_preset(name: str) -> PretrainCfg:
    try:
        return PRETRAIN_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown pre-training recipe {name!r}; choose one of {sorted(PRETRAIN_PRESETS)}") from None


# --- data ---------------------------------------------------------------------------------------------------


def face_targets(template: FaceTemplate, hierarchy: MeshHierarchy, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, V_finest, 6) float32: xyz (model frame) and rgb albedo in [0, 1] of ``n`` random faces."""
    ids = hierarchy.template_ids
    out = np.empty((n, len(ids), 6), dtype=np.float32)
    for i in range(n):
        params = sample_face_params(rng)
        out[i, :, :3] = face_shape(template, params)[ids]
        out[i, :, 3:] = vertex_albedo(template, params)[ids]
    return out


def make_data(cfg: PretrainCfg, template: FaceTemplate, hierarchy: MeshHierarchy) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) targets from two independent child streams of ``SeedSequence(cfg.data_seed)``."""
    train_ss, held_ss = np.random.SeedSequence(cfg.data_seed).spawn(2)
    train = face_targets(template, hierarchy, np.random.default_rng(train_ss), cfg.train_samples)
    held = face_targets(template, hierarchy, np.random.default_rng(held_ss), cfg.heldout_samples)
    return train, held


def inter_ocular(hierarchy: MeshHierarchy) -> float:
    """Distance between the eye landmarks (0 and 1) of the finest level of the mean template, model units."""
    level = hierarchy.levels[0]
    a, b = level.vertices[level.landmark_ids[:2]]
    return float(np.linalg.norm(a - b))


# --- metrics ------------------------------------------------------------------------------------------------


def mesh_errors(pred: np.ndarray, target: np.ndarray, iod: float) -> dict[str, float]:
    """Errors of predictions (N, V, 6) against targets (N, V, 6), float64 accumulation.

    shape: mean over faces and vertices of the Euclidean xyz distance (model units, and divided by ``iod``);
    colour: mean absolute rgb difference over faces, vertices and channels (0..1 and 0..255).
    """
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    shape = float(np.linalg.norm(p[..., :3] - t[..., :3], axis=-1).mean())
    colour = float(np.abs(p[..., 3:] - t[..., 3:]).mean())
    return {
        "shape_error": shape,
        "shape_error_iod": shape / iod,
        "colour_error": colour,
        "colour_error_255": 255.0 * colour,
    }


# --- model --------------------------------------------------------------------------------------------------


class MeshEncoder(nn.Module):
    """Flattened standardised target (B, V * 6) -> code (B, code_dim): Linear, ELU, Linear."""

    def __init__(self, num_vertices: int, hidden: int, code_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_vertices * 6, hidden), nn.ELU(), nn.Linear(hidden, code_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


def _loss(cfg: PretrainCfg, pred: Tensor, target: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(weighted loss on errors divided by ``scale``, L1 xyz error, L1 rgb error in data units)."""
    err = (pred - target).abs()
    xyz, rgb = err[..., :3].mean(), err[..., 3:].mean()
    std = err / scale
    return cfg.xyz_weight * std[..., :3].mean() + cfg.rgb_weight * std[..., 3:].mean(), xyz, rgb


@torch.no_grad()
def _predict(encoder: MeshEncoder, decoder: FaceDecoder, x: Tensor, batch: int = 250) -> np.ndarray:
    return np.concatenate([decoder(encoder(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])


# --- training -----------------------------------------------------------------------------------------------


def pretrain(cfg: PretrainCfg, out_dir: Path, log_every: int = 50, eval_every: int = 500) -> dict[str, Any]:
    """Train the auto-encoder, write ``metrics.jsonl``, ``mesh_decoder.pth`` and ``record.json``; returns the record."""
    out_dir = Path(out_dir)
    if (out_dir / "record.json").exists() or (out_dir / "metrics.jsonl").exists():
        raise RetinaError(f"{out_dir} already holds a run; use another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    template, hierarchy = build_template(), default_hierarchy()
    iod = inter_ocular(hierarchy)
    train_np, held_np = make_data(cfg, template, hierarchy)
    data_s = time.perf_counter() - t0
    mean, std = train_np.mean(0), train_np.std(0) + 1e-6
    train, held = torch.from_numpy(train_np), torch.from_numpy(held_np)
    norm = lambda x: (x - torch.from_numpy(mean)) / torch.from_numpy(std)  # noqa: E731

    torch.manual_seed(cfg.seed)
    decoder = FaceDecoder(hierarchy, cfg.decoder)
    decoder.mean.copy_(torch.from_numpy(mean))
    decoder.scale.copy_(torch.from_numpy(std.mean(0)))
    encoder = MeshEncoder(hierarchy.levels[0].num_vertices, cfg.encoder_hidden, cfg.decoder.code_dim)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=cfg.lr)
    order = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    metrics = out_dir / "metrics.jsonl"
    metrics.write_text("")
    t_train, last_log, n_seen = time.perf_counter(), time.perf_counter(), 0
    perm, pos = order.permutation(len(train)), 0
    for it in range(cfg.iterations):
        if pos + cfg.batch_size > len(perm):
            perm, pos = order.permutation(len(train)), 0
        idx = torch.from_numpy(perm[pos : pos + min(cfg.batch_size, len(perm))])
        pos += len(idx)
        lr = learning_rate(it, cfg.iterations, cfg.lr, warmup_fraction=cfg.warmup_fraction, decay="cosine")
        for group in optimizer.param_groups:
            group["lr"] = lr
        target = train[idx]
        loss, xyz, rgb = _loss(cfg, decoder(encoder(norm(target))), target, decoder.scale)
        if not torch.isfinite(loss):
            raise RetinaError(f"training diverged at iteration {it} (loss {loss.item()}); lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n_seen += len(idx)
        if (it + 1) % log_every == 0 or it + 1 == cfg.iterations:
            now = time.perf_counter()
            line: dict[str, Any] = {
                "iteration": it + 1,
                "loss": loss.item(),
                "xyz_l1": xyz.item(),
                "rgb_l1": rgb.item(),
                "lr": lr,
                "samples_per_s": n_seen / max(now - last_log, 1e-9),
            }
            if (it + 1) % eval_every == 0 or it + 1 == cfg.iterations:
                decoder.eval()
                line["heldout"] = mesh_errors(_predict(encoder, decoder, norm(held)), held_np, iod)
                decoder.train()
                print(f"it {it + 1}/{cfg.iterations} loss {loss.item():.4f} heldout {line['heldout']}", flush=True)
            with metrics.open("a") as f:
                f.write(json.dumps(line) + "\n")
            last_log, n_seen = time.perf_counter(), 0
    train_s = time.perf_counter() - t_train
    decoder.eval()
    heldout = mesh_errors(_predict(encoder, decoder, norm(held)), held_np, iod)
    baseline = mesh_errors(np.broadcast_to(mean, held_np.shape), held_np, iod)
    meta = {
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "seed": cfg.seed,
        "data": {
            "kind": "retina.mesh.morphable samples (sample_face_params)",
            "train_samples": cfg.train_samples,
            "heldout_samples": cfg.heldout_samples,
            "data_seed": cfg.data_seed,
            "streams": "train, held-out = SeedSequence(data_seed).spawn(2)",
            "target": "(V_finest, 6): xyz face_shape (template model frame, unchanged), rgb vertex_albedo in [0, 1]",
            "num_vertices": list(hierarchy.num_vertices),
            "inter_ocular": iod,
        },
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
    }
    save_mesh_decoder(out_dir / "mesh_decoder.pth", decoder, provenance(**meta))
    record = {
        "kind": "mesh decoder (auto-encoder pre-training on the morphable face space)",
        "checkpoint": "mesh_decoder.pth",
        "sha256": file_sha256(out_dir / "mesh_decoder.pth"),
        "metrics": file_id(metrics),
        "parameters": {
            "decoder": sum(p.numel() for p in decoder.parameters()),
            "encoder (not saved)": sum(p.numel() for p in encoder.parameters()),
        },
        "heldout": heldout,
        "baseline_mean_face": baseline,
        "wall_s": {"data": data_s, "train": train_s, "total": time.perf_counter() - t0},
        "provenance": provenance(**meta),
    }
    write_json(out_dir / "record.json", record)
    return record


def package(out_dir: Path, dest: Path, command: str) -> Path:
    """Copy a finished run to ``dest/mesh_decoder.{pth,metrics.jsonl,json}``; the record names the new files."""
    record = json.loads((Path(out_dir) / "record.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    write_bytes(dest / "mesh_decoder.pth", (Path(out_dir) / "mesh_decoder.pth").read_bytes())
    write_text(dest / "mesh_decoder.metrics.jsonl", (Path(out_dir) / "metrics.jsonl").read_text())
    record["checkpoint"] = "mesh_decoder.pth"
    record["sha256"] = file_sha256(dest / "mesh_decoder.pth")
    metrics = dest / "mesh_decoder.metrics.jsonl"
    record["metrics"] = file_id(metrics)
    record = {"command": command, **record}
    return write_json(dest / "mesh_decoder.json", record)
