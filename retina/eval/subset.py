"""Evaluating part of a ground truth: the official protocol on a chosen set of its images.

A subset is a list of ``<event>/<name>`` lines (``name`` with or without its extension), or the images that
have prediction files, or (``retina evaluate``) the images present under a split's images folder. The
protocol is unchanged, applied to those images only: scores are normalised over their predictions and recall
counts their faces. The numbers are therefore not comparable with numbers on the whole set, and every output
says so (``SUBSET_NOTE``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retina.data.widerface import GroundTruth
from retina.errors import DataFormatError, RetinaError
from retina.images import IMAGE_SUFFIXES

SUBSET_NOTE = (
    "the official protocol on these images only (scores normalised and recall counted over them); not comparable "
    "with numbers on the whole set"
)


@dataclass(frozen=True)
class Subset:
    """The chosen images, ``(event, stem)`` in ground-truth order, and where the choice came from."""

    images: tuple[tuple[str, str], ...]
    source: str  # the list file, or how the images were chosen (e.g. "images with a prediction file")
    of: int  # images in the whole ground truth

    @property
    def names(self) -> list[str]:
        return [f"{event}/{stem}" for event, stem in self.images]

    @property
    def sha256(self) -> str:
        return names_sha256(self.images)

    def record(self) -> dict[str, Any]:
        """What ``results.json`` says of the subset: counts, source, hash, the note and the image list."""
        return {"images": len(self.images), "of": self.of, "source": self.source, "sha256": self.sha256,
                "note": SUBSET_NOTE, "list": self.names}  # fmt: skip

    def describe(self) -> str:
        return f"SUBSET: {len(self.images)} of {self.of} images ({self.source}); {SUBSET_NOTE}"

    def restrict(self, gt: GroundTruth) -> GroundTruth:
        """``gt`` with only the chosen images (events without any left out; order, faces and settings kept)."""
        index = [gt.index[key] for key in self.images]
        events = tuple(e for e in gt.events if any(event == e for event, _ in self.images))
        return GroundTruth(
            events,
            tuple(gt.images[k] for k in index),
            tuple(gt.boxes[k] for k in index),
            {s: tuple(lists[k] for k in index) for s, lists in gt.keep.items()},
            {a: tuple(lists[k] for k in index) for a, lists in gt.attributes.items()},
        )


def names_sha256(images: Iterable[tuple[str, str]]) -> str:
    """Identifies a set of images: sha256 of their sorted ``<event>/<stem>`` names, one per line."""
    return hashlib.sha256("\n".join(sorted(f"{event}/{stem}" for event, stem in images)).encode()).hexdigest()


def from_keys(keys: Iterable[tuple[str, str]], gt: GroundTruth, source: str) -> Subset:
    """A subset of the ``keys`` (all in ``gt``), in ground-truth order; an empty one is an error."""
    chosen = set(keys)
    if not chosen:
        raise RetinaError(f"subset ({source}): no images")
    outside = sorted(chosen - set(gt.index))
    if outside:
        raise RetinaError(f"subset ({source}): {len(outside)} images not in the ground truth, e.g. {outside[0]}")
    return Subset(tuple(key for key in gt.images if key in chosen), source, len(gt.images))


def read_subset_file(path: str | os.PathLike[str], gt: GroundTruth) -> Subset:
    """A subset from a list file: one ``<event>/<name>`` per line (``name`` with or without extension; blank
    lines and lines starting with ``#`` skipped). A line naming no image of ``gt``, or one named twice, is an
    error naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RetinaError(f"subset file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    seen: dict[tuple[str, str], int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        event, _, name = line.removeprefix("./").partition("/")
        key = (event, _stem(name))
        if key not in gt.index:
            raise DataFormatError(f"{path}:{lineno}: {line!r} is not an image of the ground truth ('<event>/<name>')")
        if key in seen:
            raise DataFormatError(f"{path}:{lineno}: {line!r} is listed twice (first on line {seen[key]})")
        seen[key] = lineno
    if not seen:
        raise DataFormatError(f"{path}: no images listed (one '<event>/<name>' per line)")
    return from_keys(seen, gt, str(path))


def _stem(name: str) -> str:
    """``name`` without an image or prediction-file extension (``a.jpg`` -> ``a``; ``a`` stays)."""
    suffix = Path(name).suffix.lower()
    return name[: -len(suffix)] if suffix in IMAGE_SUFFIXES | {".txt"} else name
