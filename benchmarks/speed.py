"""Speed of the detector, decomposed by stage: the grid (issue 6) and the fast-path ablation.

    python benchmarks/speed.py grid               # presets x VGA/HD/4K x CPU 1 thread / all threads (+ GPU)
    python benchmarks/speed.py grid --full        # also the slow CPU cells (ResNet-152 at 4K: minutes each)
    python benchmarks/speed.py fastpath           # each fast-path step, mobilenet0.25 at VGA, one CPU thread

Method. The input is a photo stretched to the size (VGA 640x480, HD 1920x1080, 4K 4096x2160), detected at
that size ("original" protocol). After warm-up, every repetition times the stages in sequence: pre-processing
(uint8 image -> normalised tensor), forward, priors (a cache lookup), decode + NMS (-> numpy detections),
then one public ``Detector.__call__`` (image in, detections out) as the end-to-end time; for slow cells
(forward over 0.25 s) end-to-end is the sum of the stages instead, and the record says which. GPU stages
are bracketed by ``torch.cuda.synchronize``. Wall times are medians and 90th percentiles; on one CPU thread
the thread's CPU time is recorded too: it excludes time the scheduler gave to other processes, so it is the
better estimate of quiet-machine latency on a shared machine. Peak memory: process RSS high-water mark
(reset per cell through /proc/self/clear_refs) on CPU, ``max_memory_allocated`` on GPU.

Weights. mobilenet0.25 uses the released weights when found; other presets have random weights: latency
does not depend on weight values, except post-processing, which depends on how many anchors pass the score
threshold. Random-weight cells therefore use the threshold that lets through as many candidates as the real
mobilenet0.25 weights give at 0.02 on the same image and size; records hold the threshold, the candidate
and detection counts and ``weights``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from retina.api import Detector, _to_numpy
from retina.build import build_detector
from retina.checkpoint import load_weights, read_checkpoint
from retina.config import DetectorCfg, PostCfg, preset
from retina.models.detector import Predictions
from retina.models.fuse import fuse_batchnorm
from retina.postprocess import face_scores, postprocess
from retina.protocols import Resize
from retina.results import REPO_ROOT, provenance, write_json, write_text

SIZES = {"vga": (480, 640), "hd": (1080, 1920), "4k": (2160, 4096)}  # (H, W), the paper's table 5 sizes
GRID_PRESETS = ("mobilenet0.25", "resnet50", "resnet152-paper")
CPU_SETTINGS = ("cpu1", "cpuN")
GPU_SETTINGS = ("gpu-fp32", "gpu-bf16", "gpu-fp16")
SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_IMAGE = SHARED / "samples" / "biubug6_Pytorch_Retinaface_test.jpg"  # the biubug6 repo's test photo
DEFAULT_WEIGHTS = SHARED / "weights" / "retinaface_mobilenet0.25_Final.pth"
SLOW_STAGE_S = 0.25  # above this forward time, end-to-end is the sum of the stages (saves a second pass)


# --- measuring ----------------------------------------------------------------------------------------


@dataclass
class Clock:
    """Wall and thread-CPU time of a call; ``sync`` (CUDA) runs before reading the clocks."""

    sync: Callable[[], None] = lambda: None

    def __call__(self, fn: Callable[[], Any]) -> tuple[Any, float, float]:
        self.sync()
        wall, cpu = time.perf_counter(), time.thread_time()
        out = fn()
        self.sync()
        return out, (time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3


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


def parse_size(name: str) -> tuple[int, int]:
    """ "vga" / "hd" / "4k", or "WxH" (e.g. "160x120", for quick checks) -> (H, W)."""
    if name in SIZES:
        return SIZES[name]
    match = re.fullmatch(r"(\d+)x(\d+)", name)
    if not match:
        raise SystemExit(f"unknown size {name!r}: use {', '.join(SIZES)} or WxH")
    return int(match.group(2)), int(match.group(1))


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def all_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- models and inputs ----------------------------------------------------------------------------------


class Autocast(nn.Module):
    """Forward under autocast (GPU bf16/fp16); predictions returned in float32 so decoding stays exact."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: Tensor) -> Predictions:
        with torch.autocast(x.device.type, dtype=self.dtype):
            pred = self.model(x)
        return Predictions(*(t.float() for t in pred))


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


def gflops(cfg: DetectorCfg, hw: tuple[int, int]) -> float:
    """Forward GFLOP (2 per multiply-add) at (H, W), counted on the meta device (no memory, no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_detector(cfg).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, *hw))
    return counter.get_total_flops() / 1e9


def spread_random_scores(model: nn.Module, image: np.ndarray, cfg: DetectorCfg) -> None:
    """Rescale a random model's score head so that its face-minus-background logits have mean 0, std 3.

    Random heads on random features give huge logits, so softmax scores saturate at exactly 0 or 1 and no
    threshold can pick a given number of candidates. This changes values only, not the computation.
    """
    det = Detector(model, cfg, fuse=False)
    with torch.inference_mode():
        logits = det.forward(det.to_tensor([image])).logits
    diff = (logits[..., 1] - logits[..., 0]).double()
    scale, shift = 3.0 / max(float(diff.std()), 1e-6), float(diff.mean())
    with torch.no_grad():
        for conv in model.cls_head.convs:  # output channels: (background, face) per anchor
            conv.weight.mul_(scale)
            conv.bias.mul_(scale)
            conv.bias[1::2] -= scale * shift


def threshold_for_count(det: Detector, image: np.ndarray, count: int) -> float:
    """A score threshold that lets ``count`` anchors of this image through (random-weight cells)."""
    with torch.inference_mode():
        scores = face_scores(det.forward(det.to_tensor([image])).logits[0]).float().sort(descending=True).values
    if count <= 0:
        return float(min(1.0, scores[0].item() + 1e-6))
    if count >= len(scores):
        return 0.0
    return float((scores[count - 1] + scores[count]) / 2)


def candidate_count(det: Detector, image: np.ndarray, threshold: float) -> int:
    with torch.inference_mode():
        logits = det.forward(det.to_tensor([image])).logits
        return int((face_scores(logits) > threshold).sum())


# --- the grid -------------------------------------------------------------------------------------------


def make_detector(model: nn.Module, cfg, setting: str, backend: str, onnx_path: Path | None, args) -> Detector:
    post = PostCfg()
    if setting in CPU_SETTINGS:
        threads = 1 if setting == "cpu1" else all_cores()
        set_threads(threads)
        if backend == "onnx":
            assert onnx_path is not None
            return Detector.from_onnx(onnx_path, threads=threads, post=post)
        return Detector(model, cfg, post=post, channels_last=args.channels_last)
    set_threads(all_cores())
    torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels (warm-up)
    dtype = {"gpu-fp32": None, "gpu-bf16": torch.bfloat16, "gpu-fp16": torch.float16}[setting]
    fused = fuse_batchnorm(model)
    wrapped = fused if dtype is None else Autocast(fused, dtype)
    return Detector(wrapped, cfg, post=post, device="cuda", fuse=False, channels_last=args.channels_last)


def time_cell(det: Detector, image: np.ndarray, threshold: float, args, cuda: bool) -> dict[str, Any]:
    """Stage and end-to-end timings of one detector on one image (see the module docstring)."""
    clock = Clock(torch.cuda.synchronize if cuda else lambda: None)
    post = replace(det.post, score_threshold=threshold)
    hw = image.shape[:2]

    def stages() -> tuple[dict[str, tuple[float, float]], Any]:
        out: dict[str, tuple[float, float]] = {}
        x, *out["pre"] = clock(lambda: det.to_tensor([det.prepare(image, Resize())], reuse=True))  # as __call__
        with torch.inference_mode():
            pred, *out["forward"] = clock(lambda: det.forward(x))
            priors, *out["priors"] = clock(lambda: det.priors(hw, pred.boxes.dtype, pred.boxes.device))
            dets, *out["decode_nms"] = clock(
                lambda: _to_numpy(
                    det._to_image(postprocess(pred, priors, det.cfg.priors.variances, post)[0], hw, hw, False)
                )
            )
        return out, dets

    for _ in range(args.warmup):
        first, dets = stages()
    api = first["forward"][0] / 1e3 < SLOW_STAGE_S
    if api:
        det(image, score_threshold=threshold)
    walls: dict[str, list[float]] = {k: [] for k in ("pre", "forward", "priors", "decode_nms", "e2e")}
    cpus: dict[str, list[float]] = {k: [] for k in walls}
    start = time.perf_counter()
    while len(walls["e2e"]) < args.repeats and (
        len(walls["e2e"]) < args.min_repeats or time.perf_counter() - start < args.budget_s
    ):
        times, dets = stages()
        for k, (w, c) in times.items():
            walls[k].append(w)
            cpus[k].append(c)
        if api:
            _, w, c = clock(lambda: det(image, score_threshold=threshold))
        else:
            w, c = sum(t[0] for t in times.values()), sum(t[1] for t in times.values())
        walls["e2e"].append(w)
        cpus["e2e"].append(c)
    row: dict[str, Any] = {"repeats": len(walls["e2e"]), "e2e_method": "api call" if api else "sum of stages"}
    for k in walls:
        s = summary(walls[k])
        row[f"{k}_ms"], row[f"{k}_p90_ms"] = s["median"], s["p90"]
        row[f"{k}_cpu_ms"] = statistics.median(cpus[k])
    row["detections"] = len(dets)
    return row


def throughput(det: Detector, image: np.ndarray, batch: int, threshold: float, args) -> dict[str, Any]:
    """GPU images per second at a batch size: forward + decode + NMS of ``batch`` copies of the image."""
    clock = Clock(torch.cuda.synchronize)
    post = replace(det.post, score_threshold=threshold)
    x = det.to_tensor([image] * batch)

    def once() -> None:
        with torch.inference_mode():
            det.decode(det.forward(x), image.shape[:2], post)

    for _ in range(args.warmup):
        once()
    times = [clock(once)[1] for _ in range(max(args.min_repeats, 10))]
    median = statistics.median(times)
    return {"batch": batch, "batch_ms": median, "images_per_s": batch / median * 1e3}


def run_grid(args) -> int:
    cuda = torch.cuda.is_available()
    settings = [s for s in args.settings.split(",") if s]
    if not cuda and any(s in GPU_SETTINGS for s in settings):
        print("no CUDA device: GPU settings skipped")
        settings = [s for s in settings if s not in GPU_SETTINGS]
    rows: list[dict[str, Any]] = []
    ref_counts: dict[str, int] = {}  # size -> real-weights candidate count at 0.02
    reference = load_model("mobilenet0.25", args.weights)
    tmp = tempfile.TemporaryDirectory(prefix="retina-speed-")
    onnx_paths: dict[str, Path] = {}
    for name in args.presets.split(","):
        model, weights = load_model(name, args.weights)
        cfg = preset(name)
        sizes = args.sizes.split(",")
        if weights == "random":
            spread_random_scores(model, photo_at(args.image, parse_size(sizes[0]))[0], cfg)
        for size in sizes:
            hw = parse_size(size)
            image, image_name = photo_at(args.image, hw)
            flop = gflops(cfg, hw)
            if size not in ref_counts and reference[1] == "real":
                ref_counts[size] = candidate_count(Detector(reference[0], preset("mobilenet0.25")), image, 0.02)
            for setting in settings:
                if setting in CPU_SETTINGS and flop > args.max_cpu_gflop:
                    print(f"skip {name} {size} {setting}: {flop:.0f} GFLOP > --max-cpu-gflop {args.max_cpu_gflop}")
                    continue
                backends = args.backends.split(",") if setting in CPU_SETTINGS else ["torch"]
                for backend in backends:
                    if backend == "onnx" and name not in onnx_paths:
                        from retina.onnx import export_onnx

                        onnx_paths[name] = export_onnx(model, cfg, Path(tmp.name) / f"{name}.onnx")
                    cell = Cell(name, cfg, model, weights, size, setting, backend, onnx_paths.get(name), image,
                                image_name, flop, ref_counts.get(size))  # fmt: skip
                    rows.append(grid_cell(cell, args))
                    write_records(args.out, "grid", rows, args)  # after every cell: a crash keeps the rest
    tmp.cleanup()
    print(f"wrote {len(rows)} rows to {args.out}/grid.json and grid.csv")
    return 0


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: a preset at a size under a device setting and backend."""

    preset: str
    cfg: DetectorCfg
    model: nn.Module
    weights: str  # "real" or "random"
    size: str
    setting: str
    backend: str  # "torch" or "onnx"
    onnx_path: Path | None
    image: np.ndarray
    image_name: str
    gflop: float
    ref_count: int | None  # real-weights candidates at 0.02 on this image and size


def grid_cell(c: Cell, args) -> dict[str, Any]:
    on_gpu = c.setting in GPU_SETTINGS
    det = make_detector(c.model, c.cfg, c.setting, c.backend, c.onnx_path, args)
    image = c.image
    if c.weights == "real" or c.ref_count is None:
        threshold, source = 0.02, "PostCfg default"
    else:
        threshold, source = threshold_for_count(det, image, c.ref_count), "matches real mobilenet0.25 count"
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rss_reset = reset_peak_rss()
    row: dict[str, Any] = {
        "preset": c.preset, "weights": c.weights, "size": c.size, "height": image.shape[0], "width": image.shape[1],
        "image": c.image_name, "setting": c.setting, "backend": c.backend,
        "dtype": {"gpu-bf16": "bfloat16", "gpu-fp16": "float16"}.get(c.setting, "float32"),
        "threads": 1 if c.setting == "cpu1" else all_cores(),
        "channels_last": bool(args.channels_last and c.backend == "torch"), "gflop": c.gflop, "batch": 1,
        # PyTorch runs "fp32" convolutions in TF32 on Ampere and newer GPUs while this flag is on (its default)
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32) if on_gpu else None,
        "score_threshold": threshold, "threshold_source": source,
        "candidates": candidate_count(det, image, threshold),
    }  # fmt: skip
    row["load_avg_1min_before"] = os.getloadavg()[0]  # other processes' load: > cores means contended timings
    try:
        row.update(time_cell(det, image, threshold, args, on_gpu))
        if on_gpu:
            row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
            batches = args.batch_sizes.get(c.size, [1])
            row["throughput"] = [safe_throughput(det, image, b, threshold, args) for b in batches]
        else:
            row["peak_rss_mib"] = peak_rss_mib() if rss_reset else None
            row["peak_rss_note"] = "since cell start" if rss_reset else "unavailable"
    except torch.cuda.OutOfMemoryError:
        row["error"] = "out of GPU memory"
    row["load_avg_1min_after"] = os.getloadavg()[0]
    label = f"{c.preset:16s} {c.size:4s} {c.setting:9s} {c.backend:6s}"
    print(f"{label} e2e {row.get('e2e_ms', float('nan')):9.1f} ms (cpu {row.get('e2e_cpu_ms', float('nan')):.1f})")
    return row


def safe_throughput(det, image, batch, threshold, args) -> dict[str, Any]:
    try:
        return throughput(det, image, batch, threshold, args)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"batch": batch, "error": "out of GPU memory"}


# --- records ----------------------------------------------------------------------------------------------


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


def missing_onnx_modules() -> list[str]:
    """The modules of the ``onnx`` extra that cannot be imported (empty when the ONNX backend can run)."""
    return [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    grid = sub.add_parser("grid", help="presets x sizes x settings, stage by stage")
    fast = sub.add_parser("fastpath", help="the fast-path ablation (mobilenet0.25, VGA, one thread)")
    for p in (grid, fast):
        p.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="photo to stretch to each size")
        p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="real mobilenet0.25 weights")
        p.add_argument("--out", type=Path, default=None, help="records folder (default results/speed/<machine>)")
        p.add_argument("--warmup", type=int, default=2)
        p.add_argument("--publish", action="store_true", help="records into reports/records/speed/<machine>/")
    grid.add_argument("--presets", default=",".join(GRID_PRESETS))
    grid.add_argument("--sizes", default=",".join(SIZES), help="vga, hd, 4k or WxH")
    grid.add_argument("--settings", default=",".join(CPU_SETTINGS + GPU_SETTINGS))
    grid.add_argument("--backends", default="onnx,torch", help="CPU backends (GPU cells always use torch)")
    grid.add_argument("--repeats", type=int, default=30, help="at most this many timed repetitions per cell")
    grid.add_argument("--min-repeats", type=int, default=3)
    grid.add_argument("--budget-s", type=float, default=3.0, help="stop repeating a cell after this (>= min)")
    grid.add_argument("--max-cpu-gflop", type=float, default=80.0, help="skip slower CPU cells (--full: none)")
    grid.add_argument("--full", action="store_true", help="no CPU cell skipped; 10 repetitions minimum")
    grid.add_argument("--channels-last", action="store_true", help="PyTorch cells: channels-last memory format")
    grid.add_argument("--batches", default="vga:1,8,32;hd:1,8;4k:1,4", help="GPU throughput batch sizes")
    fast.add_argument("--rounds", type=int, default=30, help="interleaved rounds (each times every variant)")
    fast.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compiling)")
    args = parser.parse_args(argv)
    needs_onnx = args.command == "fastpath" or "onnx" in args.backends.split(",")
    if needs_onnx and (missing := missing_onnx_modules()):
        what = "the fast-path ablation" if args.command == "fastpath" else "the ONNX cells (or pass --backends torch)"
        print(f"speed: {' and '.join(missing)} not installed; {what} need it: pip install -e .[onnx]", file=sys.stderr)
        return 2
    if args.publish and args.out is not None:
        parser.error("--out and --publish exclude each other")
    base = REPO_ROOT / ("reports/records" if args.publish else "results") / "speed"
    args.out = args.out or base / machine_tag()
    if args.image is not None and not args.image.is_file():
        print(f"no photo at {args.image}: using a synthetic image (labelled so in the records)")
    if args.command == "grid":
        if args.full:
            args.max_cpu_gflop, args.min_repeats = math.inf, max(args.min_repeats, 10)
        pairs = (item.split(":") for item in args.batches.split(";"))
        args.batch_sizes = {size: [int(b) for b in batches.split(",")] for size, batches in pairs}
        return run_grid(args)
    from benchmarks.speed_fastpath import run_fastpath

    return run_fastpath(args)


if __name__ == "__main__":
    sys.exit(main())
