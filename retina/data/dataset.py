"""Training data: a RetinaFace ``label.txt`` split -> augmented samples, a resumable sampler, collation.

A split is an images folder plus a label file in the RetinaFace layout (``retina.data.widerface``); faces
whose landmarks are all -1 count for the score and box losses only. The sampler yields ``(epoch, index)``
pairs and the dataset seeds each sample's augmentation from ``(seed, epoch, index)``, so a run's data
depends on nothing but the seed and its position: resuming at iteration k replays exactly what an
uninterrupted run would have seen, for any number of workers or processes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from retina.config import AugmentCfg
from retina.data.transforms import Sample, augment
from retina.data.widerface import LabeledImage, read_retinaface_labels
from retina.errors import DataFormatError, RetinaError
from retina.images import read_image
from retina.results import file_sha256, files_sha256

SYNTH_KEYS = ("version", "config", "split", "seed", "n_images")  # what decides a SynthFace split's content


@dataclass(frozen=True)
class SplitPaths:
    """Where a training split lives: ``images`` folder and RetinaFace ``labels`` file."""

    images: Path
    labels: Path

    @staticmethod
    def from_root(root: str | os.PathLike) -> SplitPaths:
        """``root/images`` + ``root/label.txt`` (SynthFace and the RetinaFace ``train/`` layout)."""
        root = Path(root)
        paths = SplitPaths(root / "images", root / "label.txt")
        for p in (paths.images, paths.labels):
            if not p.exists():
                raise RetinaError(f"training split {root}: {p.name} not found (expected images/ and label.txt)")
        return paths


def content_id(paths: SplitPaths) -> dict[str, Any]:
    """What the split holds, byte for byte: sha256 of the label file's and every listed image's content (and of the
    images' paths relative to ``images``), and the image count. Equal on two machines iff their data are equal."""
    entries = read_retinaface_labels(paths.labels)
    images = files_sha256(paths.images, [Path(paths.images) / e.path for e in entries])
    both = hashlib.sha256((file_sha256(paths.labels) + images["sha256"]).encode()).hexdigest()
    return {"sha256": both, "images": images["files"]}


def data_fingerprint(paths: SplitPaths) -> dict[str, str]:
    """What identifies a training split's content: ``{"kind", "sha256", "source"}``.

    A SynthFace split (``synth.json`` beside the label file): sha256 of the sorted-key JSON of its generator
    version, config (``SynthCfg``), split, seed and image count. Any other split: sha256 of the label file.
    """
    synth = Path(paths.labels).parent / "synth.json"
    if not synth.is_file():
        return {"kind": "label file", "sha256": file_sha256(paths.labels), "source": str(paths.labels)}
    try:
        info = json.loads(synth.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{synth}: not a SynthFace description ({exc})") from None
    key = json.dumps({k: info.get(k) for k in SYNTH_KEYS}, sort_keys=True)
    return {"kind": "SynthFace config", "sha256": hashlib.sha256(key.encode()).hexdigest(), "source": str(synth)}


@dataclass(frozen=True)
class Target:
    """One image's faces as tensors: boxes (N, 4) xyxy px, landmarks (N, 5, 2) px, has_landmarks (N,) bool."""

    boxes: torch.Tensor
    landmarks: torch.Tensor
    has_landmarks: torch.Tensor


def to_sample(image: np.ndarray, entry: LabeledImage) -> Sample:
    """A label entry (x y w h boxes) -> a :class:`Sample` (xyxy boxes); degenerate boxes are dropped."""
    boxes = entry.boxes.astype(np.float32).copy()
    boxes[:, 2:] += boxes[:, :2]
    landmarks = entry.landmarks.astype(np.float32)
    has = ~np.all(landmarks == -1, axis=(1, 2))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Sample(image, boxes, landmarks, has).select(keep)


class FaceDataset(Dataset):
    """Items are (image (S, S, 3) uint8 tensor, :class:`Target`); index with ``(epoch, index)`` pairs."""

    def __init__(self, paths: SplitPaths, augment_cfg: AugmentCfg, seed: int) -> None:
        self.paths = paths
        self.warnings: list[str] = []  # about the label file: faces kept as written but not trained on
        self.entries = read_retinaface_labels(paths.labels, self.warnings)
        if not self.entries:
            raise RetinaError(f"{paths.labels}: no images listed")
        n_faces = sum(len(e.boxes) for e in self.entries)
        dropped = sum(int(np.sum((e.boxes[:, 2] <= 0) | (e.boxes[:, 3] <= 0))) for e in self.entries)
        if dropped:
            self.warnings.append(
                f"{paths.labels}: {dropped} of {n_faces} faces have zero or negative width or height; "
                "they are not trained on"
            )
        self.augment_cfg = augment_cfg
        self.seed = seed

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, Target]:
        epoch, index = key
        entry = self.entries[index]
        image = read_image(self.paths.images / entry.path)
        rng = np.random.default_rng([self.seed, epoch, index])
        s = augment(to_sample(image, entry), self.augment_cfg, rng)
        target = Target(torch.from_numpy(s.boxes), torch.from_numpy(s.landmarks), torch.from_numpy(s.has_landmarks))
        return torch.from_numpy(s.image), target


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """-> images (B, S, S, 3) uint8, per-image targets."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


class ResumableSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, index)`` for one process, starting at a given global iteration.

    Each epoch is a permutation of the dataset drawn from ``(seed, epoch)``; the global batch of iteration
    i is cut into ``world_size`` equal parts and this process takes part ``rank``. Incomplete last batches
    are dropped, so every iteration has exactly ``batch_size`` images in all.
    """

    def __init__(
        self, size: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size % world_size:
            raise RetinaError(f"global batch {batch_size} is not divisible by {world_size} processes")
        if size < batch_size:
            raise RetinaError(f"the split has {size} images, fewer than one batch of {batch_size}")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size
        self.per_epoch = size // batch_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        local = self.batch_size // self.world_size
        perm, perm_epoch = None, -1
        for it in range(self.start, self.stop):
            epoch, pos = divmod(it, self.per_epoch)
            if epoch != perm_epoch:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                perm, perm_epoch = torch.randperm(self.size, generator=g).tolist(), epoch
            assert perm is not None
            chunk = perm[pos * self.batch_size : (pos + 1) * self.batch_size]
            yield [(epoch, i) for i in chunk[self.rank * local : (self.rank + 1) * local]]


def iterations_for(epochs: float, size: int, batch_size: int) -> int:
    """Number of iterations of ``epochs`` passes over ``size`` images at a global batch size."""
    return max(1, math.ceil(epochs * (size // batch_size)))
