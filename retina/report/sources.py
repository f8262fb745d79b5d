"""Where the report's records live and how they are read: one :class:`Source` per record file, checked.

A report is built from one or more *roots*, each laid out like ``results/`` (what the jobs write) or
``reports/records/`` (the small published copies, committed). Under a root, each kind of record has its
glob patterns (:data:`PATTERNS`); the committed checkpoints' records (``retina/weights/*.json``) are
always read. Every record is a JSON object with a ``provenance`` (creation time, git commit, machine):
a record without one is an error naming the file, never a silent gap in a caption.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from retina.errors import RetinaError
from retina.results import REPO_ROOT, describe_git

# kind -> glob patterns under a root (results/ or reports/records/)
PATTERNS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "evaluation": ("widerface_eval/*/results.json",),
        "main_job": ("main_job/*.json",),
        "ablation": ("ablations/*/records/*.json",),
        "summation_drift": ("summation_drift/*.json",),
        "speed_grid": ("speed/*/grid.json",),
        "speed_fastpath": ("speed/*/fastpath.json",),
        "eval_speed": ("eval_speed/*.json", "benchmarks/eval_speed*.json"),
        "synth_speed": ("synth_speed/*.json", "benchmarks/synth_speed*.json"),
        "train_speed": ("train_speed/*.json", "benchmarks/train_speed.json"),
        "gallery": ("gallery/*.json",),
        "landmarks": ("landmarks/landmarks.json",),
        "verification": ("verification/*.json",),
        "dense": ("dense/*.json",),
        "dense_gallery": ("dense_gallery/*.json",),
        "real_transfer": ("real_transfer/*.json",),
        "mutation": ("mutation/mutation.json",),
    }
)
WEIGHTS_DIR = REPO_ROOT / "retina" / "weights"
PROVENANCE_KEYS = ("created_utc", "git", "machine")


@dataclass(frozen=True)
class Source:
    """One record: its file, its JSON content and the files beside it that the report also reads."""

    kind: str
    path: Path
    record: dict[str, Any]
    extra_files: tuple[Path, ...] = ()

    @property
    def provenance(self) -> dict[str, Any]:
        return self.record["provenance"]

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path, *self.extra_files)


@dataclass(frozen=True)
class RecordSet:
    """Every record found, by kind (in a stable order: root order, then path)."""

    roots: tuple[Path, ...]
    by_kind: dict[str, list[Source]] = field(default_factory=dict)

    def of(self, kind: str) -> list[Source]:
        return self.by_kind.get(kind, [])


def read_record(path: Path, kind: str) -> dict[str, Any]:
    """A record's JSON object, with its provenance checked; a clear :class:`RetinaError` otherwise."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise RetinaError(f"{path}: cannot read record ({exc.__class__.__name__})") from None
    except json.JSONDecodeError as exc:
        raise RetinaError(f"{path}:{exc.lineno}: not a JSON record ({exc.msg})") from None
    if not isinstance(record, dict):
        raise RetinaError(f"{path}: a {kind} record must be a JSON object")
    prov = record.get("provenance")
    missing = [k for k in PROVENANCE_KEYS if not isinstance(prov, dict) or k not in prov]
    if missing:
        raise RetinaError(f"{path}: {kind} record without provenance ({', '.join(missing)} missing)")
    return record


def _beside(kind: str, path: Path) -> tuple[Path, ...]:
    """Files a record points to that the report reads too (PR-curve CSVs, metrics, gallery images)."""
    if kind == "evaluation":
        csv = path.with_name("pr_curves.csv")
        if not csv.is_file():
            raise RetinaError(f"{path}: no pr_curves.csv beside it")
        return (csv,)
    return ()


def _checkpoint_sources() -> list[Source]:
    """The committed checkpoints' records (``retina/weights/*.json``) with their metrics files."""
    out = []
    for path in sorted(WEIGHTS_DIR.glob("*.json")):
        record = read_record(path, "checkpoint")
        metrics = WEIGHTS_DIR / record["metrics"]["file"]
        if not metrics.is_file():
            raise RetinaError(f"{path}: its metrics file {metrics.name} is missing")
        out.append(Source("checkpoint", path, record, (metrics,)))
    return out


def _gallery_image(path: Path, record: dict[str, Any]) -> tuple[Path, ...]:
    images = tuple(path.parent / item["image"] for item in record.get("images", []))
    absent = [p.name for p in images if not p.is_file()]
    if absent:
        raise RetinaError(f"{path}: gallery images missing beside it: {', '.join(absent)}")
    return images


def collect(roots: Sequence[Path], kinds: Iterable[str] = PATTERNS) -> RecordSet:
    """Every record of ``kinds`` under ``roots``, plus the committed checkpoints' records.

    A record found at the same relative path under two roots is read from the first (``results/`` before the
    published ``reports/records/``): a rerun replaces its published copy in the local report.
    """
    found: dict[str, list[Source]] = {"checkpoint": _checkpoint_sources()}
    for kind in kinds:
        sources = []
        seen: set[Path] = set()  # a record at the same place under an earlier root shadows a later root's copy
        for root in roots:
            for pattern in PATTERNS[kind]:
                for path in sorted(root.glob(pattern)):
                    if path.relative_to(root) in seen:
                        continue
                    seen.add(path.relative_to(root))
                    record = read_record(path, kind)
                    galleries = ("gallery", "dense_gallery")
                    extra = _gallery_image(path, record) if kind in galleries else _beside(kind, path)
                    sources.append(Source(kind, path, record, extra))
        found[kind] = sources
    return RecordSet(tuple(roots), found)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inputs_hash(sources: Iterable[Source]) -> str:
    """One sha256 over the content of every file the sources read (order-independent), 16 hex digits."""
    digests = sorted(file_hash(p) for s in sources for p in s.files)
    return hashlib.sha256("".join(digests).encode()).hexdigest()[:16]


def shown_path(path: Path) -> str:
    """A path relative to the repository when inside it (stable across clones), else to the current folder
    (``retina report`` run elsewhere), else as given."""
    for base in (REPO_ROOT, Path.cwd()):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def caption(source: Source, what: str = "") -> str:
    """The provenance line under a figure or table: code commit, machine and date of the record."""
    prov = source.provenance
    commit = describe_git(prov.get("git"))
    m = prov["machine"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    where = f"{m.get('processor', 'unknown CPU')}, {m.get('cpu_count', '?')} CPUs{gpu}"
    lead = f"{what}; " if what else ""
    return f"{lead}commit {commit}; {where}; {str(prov['created_utc'])[:10]}; record `{shown_path(source.path)}`"
