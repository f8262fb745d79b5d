"""What the speed benchmarks share: timing summaries, threads, memory high-water marks, the photo and real
weights they time (from ``../shared`` when present, else labelled stand-ins), and writing records."""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from retina.build import build_detector
from retina.checkpoint import load_weights, read_checkpoint
from retina.config import preset
from retina.results import REPO_ROOT, provenance, write_json, write_text

SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_IMAGE = SHARED / "samples" / "biubug6_Pytorch_Retinaface_test.jpg"  # the biubug6 repo's test photo
DEFAULT_WEIGHTS = SHARED / "weights" / "retinaface_mobilenet0.25_Final.pth"


def summary(values: list[float]) -> dict[str, float]:
    """median and 90th percentile (ms)."""
    return {"median": statistics.median(values), "p90": float(np.percentile(values, 90))}


def interleaved(
    variants: dict[str, Callable[[], Any]],
    rounds: int,
    warmup: int,
    cpu_clock: Callable[[], float] = time.thread_time,
) -> dict[str, dict[str, float]]:
    """Median/p90 wall and CPU ms of each variant, timed round-robin (load from other processes falls on every
    variant alike). ``cpu_clock``: this thread's CPU time (one-thread timings) or ``time.process_time`` (every
    thread of the process, for multi-threaded work)."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            w, c = time.perf_counter(), cpu_clock()
            fn()
            cpu[name].append((cpu_clock() - c) * 1e3)
            wall[name].append((time.perf_counter() - w) * 1e3)
    out = {}
    for name in variants:
        s, sc = summary(wall[name]), summary(cpu[name])
        out[name] = {"median_ms": s["median"], "p90_ms": s["p90"]}
        out[name].update(cpu_median_ms=sc["median"], cpu_p90_ms=sc["p90"])
    return out


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process (Linux >= 4.0); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def all_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_model(name: str, weights: Path | None, seed: int = 0) -> tuple[nn.Module, str]:
    """(model in eval mode, "real" or "random"); real weights only for the preset they belong to."""
    if weights is not None and weights.is_file():
        cfg, state, _ = read_checkpoint(weights)
        if cfg.name == name:
            model = build_detector(cfg)
            load_weights(model, state, str(weights))
            return model.eval(), "real"
    torch.manual_seed(seed)
    return build_detector(preset(name)).eval(), "random"


def photo_at(path: Path | None, hw: tuple[int, int]) -> tuple[np.ndarray, str]:
    """The photo stretched to (H, W), or a labelled synthetic image when no photo is available."""
    if path is not None and path.is_file():
        return cv2.resize(cv2.imread(str(path)), (hw[1], hw[0]), interpolation=cv2.INTER_AREA), str(path.name)
    rng = np.random.default_rng(0)  # synthetic: smooth random blobs (no faces; few candidates)
    small = rng.integers(0, 256, (hw[0] // 32 + 1, hw[1] // 32 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC), "synthetic"


def machine_tag() -> str:
    """A folder name for this machine: CPU model (+ GPU), so records of several machines sit side by side."""
    from retina.results import machine

    info = machine()
    tag = info["processor"] + ("-" + info["gpu"] if "gpu" in info else "")
    return re.sub(r"[^A-Za-z0-9]+", "-", tag).strip("-").lower()[:60] + "-" + info["hostname_hash"][:6]


def write_records(out: Path, kind: str, rows: list[dict[str, Any]], args) -> None:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    prov = provenance(benchmark=kind, settings=settings, load_avg_1_5_15min=list(os.getloadavg()))
    write_json(out / f"{kind}.json", {"provenance": prov, "rows": rows})
    flat = [{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    lines = [",".join(columns)]
    lines += [",".join(_csv(r.get(c)) for c in columns) for r in flat]
    write_text(out / f"{kind}.csv", "\n".join(lines) + "\n")


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return f'"{text}"' if any(c in text for c in ',"\n') else text
