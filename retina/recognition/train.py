"""Train a face-embedding network with the ArcFace loss on aligned crops; embed crops for verification.

    data = read_synthface_id("~/.cache/retina/synthface/<v...-id-...>/train")   # or id_data([...IdItem])
    record = train_id(train_id_preset("synth-cpu"), data, IdRunSpec(out_dir=Path("runs/arcface")))
    model, _ = load_embedder("runs/arcface/final.pth")
    features = embed_images(model, crops, flip=True)                             # (N, D) float32, unit rows

Command line (not wired into ``retina``): ``python -m retina.recognition.train --data SPLIT --out RUN``.

Data: a list of (image file, identity label 0..C-1, five landmarks (5, 2) x y pixels in the order left eye, right
eye, nose, left and right mouth corner). Each image is warped onto the ArcFace 112x112 template with
``align_face`` (from its ground-truth landmarks), turned into RGB, then augmented: a horizontal flip of the
aligned crop (the template is nearly mirror-symmetric, so the flipped landmarks land on the template's points
with left and right swapped: a consistent face) and a mild colour jitter (brightness, contrast, saturation).
Each sample's augmentation is drawn from ``(seed, epoch, index)`` and the batches from ``ResumableSampler``,
so a resumed run sees exactly the data of an uninterrupted one, for any number of loader workers.

Files in ``out_dir`` (names as the detector engine's): ``last.pth`` (atomic, every ``checkpoint_every``
iterations: backbone, head, optimiser, iteration, config, data fingerprint, history; ``resume=True`` continues
it exactly), ``metrics.jsonl`` (one line per logged iteration: loss, accuracy of the margin logits and of the
plain cosines, lr, images/s since the previous line), ``final.pth`` (the backbone only: its config, weights and
provenance; about 0.7 MB for ``mobilefacenet-s``, 4 MB for ``mobilefacenet``) and ``train_record.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from retina.checkpoint import load_weights, safe_load
from retina.config import config_hash, from_dict, to_dict
from retina.data.dataset import ResumableSampler, iterations_for
from retina.engine import TrainingDiverged
from retina.errors import CheckpointError, DataFormatError, RetinaError
from retina.images import read_image
from retina.models.face_embed import EMBED_PRESETS, FaceEmbedCfg, FaceEmbedNet, normalize_crops
from retina.recognition.arcface import ArcFaceCfg, ArcFaceHead, arcface_loss, margin_logits
from retina.results import file_sha256, git_commit, provenance, utc_now, write_bytes, write_json, write_text
from retina.schedule import learning_rate
from retina.verify.align import align_face

TRAIN_STATE_FORMAT = "retina-face-id-train"  # last.pth: everything needed to resume
EMBEDDER_FORMAT = "retina-face-embed"  # final.pth: the backbone for verification
VERSION = 1

History = dict[str, list[dict[str, Any]]]  # {"invocations": [...], "saves": [...]}, as the detector engine's

# --- configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainIdCfg:
    """Everything that decides a run's numbers: network, margin head, schedule, augmentation, seed.

    Schedule: linear warm-up from ``lr / warmup iterations`` to ``lr`` over ``warmup_fraction`` of the run, then
    a cosine decay to 0 (``schedule="cosine"``) or steps of 1/10 at ``step_fractions`` of the run (``"step"``).
    Weight decay applies to every parameter (as insightface's SGD recipes). The defaults are ``synth-cpu``.
    """

    recipe: str = "synth-cpu"
    model: FaceEmbedCfg = field(default_factory=lambda: EMBED_PRESETS["mobilefacenet-s"])
    arcface: ArcFaceCfg = field(default_factory=ArcFaceCfg)
    batch_size: int = 64
    epochs: float = 8.0
    max_iterations: int | None = None  # overrides epochs when set
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.05  # AdamW's decoupled decay; SGD's L2 term (insightface: 5e-4)
    schedule: Literal["cosine", "step"] = "cosine"
    warmup_fraction: float = 0.05
    step_fractions: tuple[float, ...] = (0.5, 0.75)  # "step" only
    flip: bool = True  # horizontal flip of the aligned crop with probability 1/2
    color_jitter: float = 0.2  # brightness, contrast and saturation factors drawn from [1 - j, 1 + j]
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.epochs <= 0 or self.lr <= 0:
            raise ValueError("batch_size must be >= 2 (BatchNorm), epochs and lr positive")
        if self.max_iterations is not None and self.max_iterations < 1:
            raise ValueError(f"max_iterations must be positive, got {self.max_iterations}")
        if self.optimizer not in ("sgd", "adamw") or self.schedule not in ("cosine", "step"):
            raise ValueError(
                f"optimizer must be sgd or adamw and schedule cosine or step, got {self.optimizer}, {self.schedule}"
            )
        if not 0.0 <= self.warmup_fraction < 1.0 or any(not 0.0 < f <= 1.0 for f in self.step_fractions):
            raise ValueError("warmup_fraction must be in [0, 1) and step fractions in (0, 1]")
        if self.momentum < 0 or self.weight_decay < 0 or not 0.0 <= self.color_jitter < 1.0 or self.seed < 0:
            raise ValueError("momentum, weight_decay and seed must be >= 0 and color_jitter in [0, 1)")


TRAIN_ID_PRESETS: MappingProxyType[str, TrainIdCfg] = MappingProxyType(
    {
        # SynthFace-ID default train split (200 identities x 20 images) on 2 CPU cores in about 10 minutes:
        # mobilefacenet-s, batch 64, 8 epochs (496 iterations), AdamW 3e-3 (weight decay 0.05) with 5% warm-up and
        # cosine decay, ArcFace s = 64, m = 0.5 (the paper's values). Measured on a 40-identity SynthFace-ID train
        # split, 96 iterations, one thread of a loaded CPU (57 images/s): training accuracy 0.91 with AdamW against
        # 0.42 with SGD 0.1 (momentum 0.9, decay 5e-4), and 0.53 with SGD and s = 32, m = 0.3; at 57 images/s the
        # 32000 images of this recipe take 9.4 minutes.
        "synth-cpu": TrainIdCfg(),
        # The paper-size network (about 1 M parameters) for a GPU or a long CPU run.
        "mobilefacenet": TrainIdCfg(
            recipe="mobilefacenet", model=EMBED_PRESETS["mobilefacenet"], batch_size=128, epochs=20.0
        ),
    }
)


def train_id_preset(name: str) -> TrainIdCfg:
    try:
        return TRAIN_ID_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown training recipe {name!r}; choose one of {sorted(TRAIN_ID_PRESETS)}") from None


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- data -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdItem:
    """One training image: its file, identity label (0..C-1) and five landmarks ((x, y) pixels, 5 pairs)."""

    path: Path
    label: int
    landmarks: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class IdData:
    """A training set: items, the number of classes C, what identifies it (``{"kind", "sha256", "source"}``),
    and the original identity of each label (``identities[label]``)."""

    items: tuple[IdItem, ...]
    num_classes: int
    fingerprint: dict[str, str]
    identities: tuple[int, ...]


def _landmarks(value: Any, where: str) -> tuple[tuple[float, float], ...]:
    try:
        points = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        points = np.zeros(0)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise DataFormatError(f"{where}: landmarks must be 5 finite [x, y] pairs, got {value!r}")
    return tuple((float(x), float(y)) for x, y in points)


def id_data(items: Iterable[tuple[str | Path, int, Any]], source: str = "item list") -> IdData:
    """An :class:`IdData` from (image path, label, landmarks (5, 2)) triples; labels must cover 0..C-1.

    The fingerprint is the sha256 of the triples as JSON (paths as given).
    """
    built = tuple(
        IdItem(Path(p), int(label), _landmarks(pts, f"{source} item {i}")) for i, (p, label, pts) in enumerate(items)
    )
    if not built:
        raise RetinaError(f"{source}: no images")
    labels = sorted({item.label for item in built})
    if labels != list(range(len(labels))):
        raise RetinaError(f"{source}: labels must be 0..C-1 with every label used, got {labels[:5]}...")
    blob = json.dumps([[str(it.path), it.label, it.landmarks] for it in built]).encode()
    fingerprint = {"kind": "item list", "sha256": hashlib.sha256(blob).hexdigest(), "source": source}
    return IdData(built, len(labels), fingerprint, tuple(labels))


def read_synthface_id(split_dir: str | Path) -> IdData:
    """The items of a SynthFace-ID split folder (``<split>/meta.json`` and ``<split>/images/...``).

    ``meta.json``: ``{"images": [{"file": "images/id_00012/id_00012_0001.jpg", "identity": 12, "landmarks":
    [[x, y] x 5], ...}, ...]}``, files relative to the split folder. Labels are the identities re-indexed
    0..C-1 in increasing order (``identities[label]`` is the original). Fingerprint: sha256 of ``meta.json``.
    """
    root = Path(split_dir).expanduser()
    meta = root / "meta.json"
    if not meta.is_file():
        raise RetinaError(f"{root}: not a SynthFace-ID split (no meta.json)")
    try:
        entries = json.loads(meta.read_text(encoding="utf-8"))["images"]
        triples = [(root / e["file"], int(e["identity"]), e["landmarks"]) for e in entries]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{meta}: not a SynthFace-ID description ({type(exc).__name__}: {exc})") from None
    missing = [str(p) for p, _, _ in triples if not p.is_file()]
    if missing:
        raise DataFormatError(f"{meta}: {len(missing)} listed images are missing, e.g. {missing[0]}")
    identities = sorted({identity for _, identity, _ in triples})
    relabel = {identity: label for label, identity in enumerate(identities)}
    data = id_data(((p, relabel[i], pts) for p, i, pts in triples), source=str(meta))
    fingerprint = {"kind": "SynthFace-ID meta.json", "sha256": file_sha256(meta), "source": str(meta)}
    return dataclasses.replace(data, fingerprint=fingerprint, identities=tuple(identities))


def aligned_crop(item: IdItem, size: int = 112) -> np.ndarray:
    """The item's image aligned onto the ArcFace template: (size, size, 3) uint8 RGB."""
    bgr = align_face(read_image(item.path), np.asarray(item.landmarks), size)
    return np.ascontiguousarray(bgr[..., ::-1])


def augment_crop(crop: np.ndarray, rng: np.random.Generator, flip: bool, jitter: float) -> np.ndarray:
    """A flipped (probability 1/2 when ``flip``) and colour-jittered copy of an (S, S, 3) uint8 RGB crop.

    Jitter: brightness (scale), contrast (blend with the mean grey) and saturation (blend with the pixel's grey),
    each factor uniform in [1 - jitter, 1 + jitter], applied in that order.
    """
    out = crop[:, ::-1] if flip and rng.random() < 0.5 else crop
    if jitter <= 0:
        return np.ascontiguousarray(out)
    brightness, contrast, saturation = rng.uniform(1.0 - jitter, 1.0 + jitter, 3)
    x = out.astype(np.float32) * brightness
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # RGB luma weights (ITU-R BT.601)
    x = (x - grey.mean()) * contrast + grey.mean()
    grey = grey[..., None] * contrast + grey.mean() * (1.0 - contrast)
    x = (x - grey) * saturation + grey
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class AlignedFaces(Dataset):
    """Items ``(crop (S, S, 3) uint8 RGB tensor, label int)``; keys ``(epoch, index)`` pairs or plain indices.

    ``augment=False`` gives the plain aligned crops (the same for every epoch).
    """

    def __init__(
        self, data: IdData, size: int = 112, augment: bool = True, flip: bool = True, jitter: float = 0.0, seed: int = 0
    ) -> None:
        self.data, self.size, self.augment = data, size, augment
        self.flip, self.jitter, self.seed = flip, jitter, seed

    def __len__(self) -> int:
        return len(self.data.items)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = self.data.items[index]
        crop = aligned_crop(item, self.size)
        if self.augment:
            crop = augment_crop(crop, np.random.default_rng([self.seed, epoch, index]), self.flip, self.jitter)
        return torch.from_numpy(crop), item.label


# --- embedding --------------------------------------------------------------------------------------------


def embed_images(
    model: FaceEmbedNet,
    crops: np.ndarray,
    batch_size: int = 128,
    flip: bool = False,
    normalize: bool = True,
    channels: Literal["rgb", "bgr"] = "rgb",
) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB aligned crops -> (N, D) float32 embeddings, in eval mode without gradients.

    ``flip``: the sum of the embeddings of each crop and of its mirror image (insightface's verification
    evaluation). ``normalize``: rows scaled to unit length (after the flip sum). ``channels="bgr"``: the crops
    are in OpenCV's order (as ``align_face`` returns images read with OpenCV) and are reversed to RGB here. The
    model's train/eval mode is restored afterwards.
    """
    if channels not in ("rgb", "bgr"):
        raise RetinaError(f"channels must be 'rgb' or 'bgr', got {channels!r}")
    size, dim = model.cfg.input_size, model.cfg.embedding_dim
    ok = isinstance(crops, np.ndarray) and crops.dtype == np.uint8 and crops.ndim == 4
    if not ok or crops.shape[1:] != (size, size, 3):
        got = f"{crops.dtype} {crops.shape}" if isinstance(crops, np.ndarray) else type(crops).__name__
        raise RetinaError(f"expected (N, {size}, {size}, 3) uint8 RGB crops, got {got}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.zeros((len(crops), dim), dtype=np.float32)
    try:
        with torch.no_grad():
            for start in range(0, len(crops), batch_size):
                batch = torch.from_numpy(crops[start : start + batch_size]).to(device)
                x = normalize_crops(batch.flip(3) if channels == "bgr" else batch)
                emb = model(x)
                if flip:
                    emb = emb + model(x.flip(3))
                out[start : start + len(x)] = emb.float().cpu().numpy()
    finally:
        model.train(was_training)
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


# --- checkpoints ------------------------------------------------------------------------------------------


def _save_payload(path: Path, payload: Mapping[str, Any]) -> Path:
    """``torch.save`` into memory, then an atomic write (``retina.results.write_bytes``)."""
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    return write_bytes(path, buffer.getvalue())


def _state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_embedder(path: str | Path, model: FaceEmbedNet, prov: Mapping[str, Any] | None = None) -> Path:
    """Write the backbone alone (config, weights, provenance) atomically: the file verification needs."""
    payload = {
        "format": EMBEDDER_FORMAT,
        "version": VERSION,
        "config": to_dict(model.cfg),
        "state_dict": _state(model),
        "provenance": _jsonable(dict(prov or {})),
    }
    return _save_payload(Path(path), payload)


def load_embedder(path: str | Path, device: str | torch.device = "cpu") -> tuple[FaceEmbedNet, dict[str, Any]]:
    """(network in eval mode, the whole payload) from a ``final.pth`` or a training ``last.pth``."""
    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") not in (EMBEDDER_FORMAT, TRAIN_STATE_FORMAT):
        raise CheckpointError(f"{path}: not a face-embedding checkpoint (final.pth or last.pth of train_id)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: face-embedding checkpoint version {payload.get('version')} is not supported")
    try:
        if payload["format"] == EMBEDDER_FORMAT:
            cfg, state = from_dict(FaceEmbedCfg, payload["config"]), payload["state_dict"]
        else:
            cfg, state = from_dict(TrainIdCfg, payload["train_cfg"]).model, payload["backbone"]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: a face-embedding checkpoint without a valid config ({exc})") from None
    model = FaceEmbedNet(cfg)
    load_weights(model, state, str(path))
    return model.to(device).eval(), payload


def _jsonable(obj: Any) -> Any:
    """Plain JSON data (paths and other objects as strings): loadable with ``weights_only=True``."""
    return json.loads(json.dumps(obj, default=str))


# --- training ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdRunSpec:
    """Where and how to run (does not change the numbers, so not part of the config)."""

    out_dir: Path
    device: str = "cpu"
    workers: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    resume: bool = False
    stop_after: int | None = None  # leave after this iteration, resumable (interruption tests)
    progress: bool = True
    data_label: str = "unspecified"  # what the data is, for the records


@dataclass
class _Run:
    """A run being trained (mutable: ``history`` and ``elapsed_s`` grow)."""

    cfg: TrainIdCfg
    data: IdData
    spec: IdRunSpec
    total: int
    device: torch.device
    model: FaceEmbedNet
    head: ArcFaceHead
    optimizer: torch.optim.Optimizer
    start: int
    history: History
    elapsed_s: float  # training time of the earlier invocations

    @property
    def out(self) -> Path:
        return Path(self.spec.out_dir)

    def meta(self) -> dict[str, Any]:
        """What the run is, for every checkpoint's provenance and the train record."""
        return {
            "train_cfg": to_dict(self.cfg),
            "train_cfg_hash": config_hash(self.cfg),
            "seed": self.cfg.seed,
            "data": {
                "label": self.spec.data_label,
                "fingerprint": self.data.fingerprint,
                "images": len(self.data.items),
                "identities": self.data.num_classes,
            },
            "device": str(self.device),
        }


def total_iterations(cfg: TrainIdCfg, n_images: int) -> int:
    return cfg.max_iterations or iterations_for(cfg.epochs, n_images, cfg.batch_size)


def train_id(cfg: TrainIdCfg, data: IdData, spec: IdRunSpec) -> dict[str, Any]:
    """Train (or resume) an embedding network with the ArcFace loss; returns the record (``train_record.json``).

    Resuming a finished run prints one line, writes nothing and returns the stored record with
    ``"nothing_to_do": True``.
    """
    out = Path(spec.out_dir)
    total = total_iterations(cfg, len(data.items))
    saved = _resume_point(cfg, data, spec)
    if saved is not None and saved["iteration"] >= total and _finished(out):
        print(f"{out}: already finished at iteration {saved['iteration']}/{total}; nothing to do")
        return {**json.loads((out / "train_record.json").read_text()), "nothing_to_do": True}
    run = _build(cfg, data, spec, total, saved)
    wall0 = time.perf_counter()
    done, last = _loop(run)
    return _finish(run, done, last, time.perf_counter() - wall0)


def _finished(out: Path) -> bool:
    return (out / "final.pth").is_file() and (out / "train_record.json").is_file()


def _resume_point(cfg: TrainIdCfg, data: IdData, spec: IdRunSpec) -> dict[str, Any] | None:
    """The payload of ``last.pth`` (None: none yet), checked to be this run (config, data)."""
    out = Path(spec.out_dir)
    last = out / "last.pth"
    if not last.exists():
        if spec.resume:
            print(f"no checkpoint in {out}: starting from scratch")
        return None
    if not spec.resume:
        raise RetinaError(f"{out} already holds a run (last.pth): pass --resume to continue it, or another --out")
    payload = safe_load(last)
    if not isinstance(payload, dict) or payload.get("format") != TRAIN_STATE_FORMAT:
        raise CheckpointError(f"{last}: not a train_id training state")
    try:
        saved_cfg = from_dict(TrainIdCfg, payload["train_cfg"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{last}: a training state without a valid config ({exc})") from None
    if saved_cfg != cfg:
        raise RetinaError(
            f"{last} was written with other settings (recipe {config_hash(saved_cfg)}, now "
            f"{config_hash(cfg)}); cannot resume it with these"
        )
    fp = payload.get("data_fingerprint") or {}
    if fp.get("sha256") != data.fingerprint["sha256"]:
        raise RetinaError(
            f"{last} was trained on other data ({fp.get('kind')} {str(fp.get('sha256'))[:16]}, now "
            f"{data.fingerprint['kind']} {data.fingerprint['sha256'][:16]}); use another --out"
        )
    return payload


def _build(cfg: TrainIdCfg, data: IdData, spec: IdRunSpec, total: int, saved: dict[str, Any] | None) -> _Run:
    """Seed, build the network, head and optimiser (from ``saved`` when resuming), open the records."""
    seed_everything(cfg.seed)
    device = torch.device(spec.device)
    model = FaceEmbedNet(cfg.model)
    head = ArcFaceHead(cfg.model.embedding_dim, data.num_classes, cfg.arcface)
    if saved is not None:
        load_weights(model, saved["backbone"], f"{spec.out_dir}/last.pth (backbone)")
        load_weights(head, saved["head"], f"{spec.out_dir}/last.pth (head)")
    model.to(device)
    head.to(device)
    params = [*model.parameters(), *head.parameters()]
    if cfg.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])  # moves the state to the parameters' device
    start = int(saved["iteration"]) if saved is not None else 0
    prior: History = saved["history"] if saved is not None else {"invocations": [], "saves": []}
    invocation = {
        "argv": list(sys.argv),
        "git": git_commit(),
        "started_utc": utc_now(),
        "start_iteration": start,
        "device": str(device),
    }
    history = {"invocations": [*prior["invocations"], invocation], "saves": list(prior["saves"])}
    elapsed = float(saved.get("elapsed_s", 0.0)) if saved is not None else 0.0
    run = _Run(cfg, data, spec, total, device, model, head, optimizer, start, history, elapsed)
    _trim_metrics(run)
    return run


def _trim_metrics(run: _Run) -> None:
    """Create ``out_dir``; keep the metric lines up to the starting iteration (a killed run may have logged
    past its last checkpoint)."""
    path = run.out / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line and json.loads(line)["iteration"] <= run.start]
    run.out.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(line + "\n" for line in kept))


def _loader(run: _Run) -> DataLoader:
    cfg = run.cfg
    dataset = AlignedFaces(run.data, cfg.model.input_size, True, cfg.flip, cfg.color_jitter, cfg.seed)
    sampler = ResumableSampler(len(dataset), cfg.batch_size, cfg.seed, run.start, run.total)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=run.spec.workers)


def _loop(run: _Run) -> tuple[int, dict[str, float]]:
    """Train from ``run.start`` to the end (or ``stop_after``); returns (iterations done, last step's values)."""
    spec, cfg = run.spec, run.cfg
    bar = tqdm(total=run.total, initial=run.start, disable=not spec.progress, unit="it", dynamic_ncols=True)
    per_epoch = max(1, len(run.data.items) // cfg.batch_size)
    done, values = run.start, {}
    t0, seen, tick = time.perf_counter(), 0, time.perf_counter()
    for iteration, (images, labels) in enumerate(_loader(run), start=run.start):
        lr = learning_rate(
            iteration, run.total, cfg.lr, warmup_fraction=cfg.warmup_fraction, decay=cfg.schedule,
            step_fractions=cfg.step_fractions,
        )  # fmt: skip
        values = _step(run, images, labels, lr, iteration)
        done, seen = iteration + 1, seen + len(labels)
        if done % spec.log_every == 0 or done == run.total:
            now = time.perf_counter()
            record = {
                "iteration": done,
                "epoch": done / per_epoch,
                "lr": lr,
                **values,
                "images_per_s": seen / (now - t0),
            }
            with (run.out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{values['loss']:.3f}", acc=f"{values['accuracy']:.2f}")
            t0, seen = now, 0
        bar.update(1)
        if done % spec.checkpoint_every == 0 or done == run.total:
            now = time.perf_counter()
            run.elapsed_s, tick = run.elapsed_s + now - tick, now
            _save_state(run, done)
        if spec.stop_after is not None and done >= spec.stop_after:
            break
    bar.close()
    return done, values


def _step(run: _Run, images: Tensor, labels: Tensor, lr: float, iteration: int) -> dict[str, float]:
    """One optimiser step; returns the loss and the training accuracies (margin logits, plain cosines)."""
    run.model.train()
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    labels = labels.to(run.device)
    embeddings = run.model(normalize_crops(images.to(run.device)))
    cos = run.head.cosine(embeddings)
    logits = margin_logits(cos, labels, run.head.cfg)
    loss = arcface_loss(logits, labels)
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"non-finite loss at iteration {iteration + 1}; training stopped, the last good "
            f"checkpoint is kept in {run.out}"
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    with torch.no_grad():
        accuracy = (logits.argmax(1) == labels).float().mean()
        accuracy_cos = (cos.argmax(1) == labels).float().mean()
    return {"loss": float(loss.detach()), "accuracy": float(accuracy), "accuracy_cos": float(accuracy_cos)}


def _record_save(run: _Run, name: str, iteration: int) -> dict[str, Any]:
    """Append the save to the history; returns the provenance of the file being written."""
    made = _jsonable(provenance(**run.meta(), iteration=iteration))
    run.history["saves"].append(
        {
            "iteration": iteration,
            "file": name,
            "saved_utc": made["created_utc"],
            "git": made["git"],
            "invocation": len(run.history["invocations"]) - 1,
        }
    )
    return made


def _save_state(run: _Run, iteration: int) -> None:
    """Write ``last.pth`` atomically: everything needed to continue exactly."""
    made = _record_save(run, "last.pth", iteration)
    payload = {
        "format": TRAIN_STATE_FORMAT,
        "version": VERSION,
        "iteration": iteration,
        "train_cfg": to_dict(run.cfg),
        "num_classes": run.data.num_classes,
        "backbone": _state(run.model),
        "head": _state(run.head),
        "optimizer": run.optimizer.state_dict(),
        "data_fingerprint": dict(run.data.fingerprint),
        "history": _jsonable(run.history),
        "elapsed_s": run.elapsed_s,
        "provenance": made,
    }
    _save_payload(run.out / "last.pth", payload)


def _finish(run: _Run, done: int, last: dict[str, float], wall_s: float) -> dict[str, Any]:
    """Write ``final.pth`` (backbone only) and ``train_record.json`` when the run is complete; returns the record."""
    complete = done >= run.total
    if complete:
        save_embedder(run.out / "final.pth", run.model, _record_save(run, "final.pth", done))
    record = {
        **run.meta(),
        "iterations": run.total,
        "completed_iterations": done,
        "finished": complete,
        "resumed_from": run.start,
        "wall_time_s_this_process": wall_s,
        "train_time_s_all_invocations": run.elapsed_s,
        "final": last,
        "identities": list(run.data.identities),
        "history": _jsonable(run.history),
        "provenance": provenance(),
    }
    if complete:
        write_json(run.out / "train_record.json", _jsonable(record))
    return record
