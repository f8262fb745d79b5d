"""CPU training step time with and without the dense branch's pixel loss, interleaved in one run.

    python benchmarks/pixel_step.py [--blocks 5] [--steps 6] [--warmup 2] [--threads 1] [--publish]

Builds two training sessions with the engine's own internals (``retina.engine._context``, ``_session``,
``_step``; their run folders are temporary and discarded): model preset ``mobilenet0.25-mesh`` with the ablation
CPU training settings (``ablations.variants.ABLATIONS["landmarks"].cpu.train``: batch 8 at 256 px), backbone from
``retina.weights.DEFAULT_WEIGHTS``, the committed mesh decoder, the same seed and the same batches of the
ablation SynthFace pair (SYNTHETIC data), differing only in ``LossCfg.w_pixel`` (0 and ``--w-pixel``). The batches
are loaded once before timing, so a step is the optimiser step alone (forward, losses, backward, update), without
data loading. After ``--warmup`` steps of each, ``--blocks`` blocks alternate ``--steps`` steps of each session
(which one goes first alternates too), since the machine is noisy and only ratios measured side by side are
compared. The forward of the pixel part (``select_faces`` + ``pixel_loss``, inside the real step) is timed alone
as well; its backward is only in the difference of the two step times.

Writes ``results/dense/pixel_step.json`` (``--publish``: ``reports/records/dense/pixel_step.json``, shown by the
report's dense section): settings, per-step times, per-block ratios, a ``table`` of rows and provenance.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

import torch

from benchmarks.publishing import add_allow_dirty, require_clean
from retina.results import REPO_ROOT, provenance, write_json

PRESET = "mobilenet0.25-mesh"
RECORD = Path("dense") / "pixel_step.json"


@dataclasses.dataclass(frozen=True)
class Timings:
    """Per-step wall seconds of each session, block by block (``blocks`` lists of ``steps`` floats), the pixel
    forward's seconds per step of the pixel session, and the rendered faces per step."""

    without: list[list[float]]
    with_pixel: list[list[float]]
    pixel_forward: list[float]
    faces: list[float]


def block_ratios(t: Timings) -> list[float]:
    """Per block: mean step time with the pixel loss over mean step time without."""
    return [statistics.fmean(w) / statistics.fmean(o) for w, o in zip(t.with_pixel, t.without, strict=True)]


def _row(label: str, times: list[float], batch: int, faces: float, vs: float) -> dict[str, Any]:
    median = statistics.median(times)
    return {
        "training step": label,
        "median s": round(median, 4),
        "mean s": round(statistics.fmean(times), 4),
        "images/s": round(batch / median, 2),
        "rendered faces/step": round(faces, 2),
        "x without": round(vs, 3),
    }


def summary(t: Timings, batch: int, w_pixel: float) -> dict[str, Any]:
    """Statistics of the timings and the report's ``table`` rows (median/mean seconds, images/s, ratios).

    The ratio of the pixel session is the median of the per-block ratios (robust to load that changes between
    blocks); the pixel forward's is its median over the median step without the pixel loss.
    """
    without = [s for b in t.without for s in b]
    with_pixel = [s for b in t.with_pixel for s in b]
    ratios = block_ratios(t)
    ratio = statistics.median(ratios)
    faces = statistics.fmean(t.faces) if t.faces else 0.0
    base = statistics.median(without)
    table = [
        _row("without Lpixel (w_pixel 0)", without, batch, 0.0, 1.0),
        _row(f"with Lpixel (w_pixel {w_pixel:g})", with_pixel, batch, faces, ratio),
    ]
    if t.pixel_forward:
        forward = _row("pixel forward alone (select_faces + pixel_loss)", t.pixel_forward, batch, faces, 0.0)
        forward.pop("images/s")
        forward["x without"] = round(statistics.median(t.pixel_forward) / base, 3)
        table.append(forward)
    return {
        "ratio_with_over_without": ratio,
        "block_ratios": ratios,
        "extra_s_per_step": statistics.median(with_pixel) - base,
        "rendered_faces_per_step": faces,
        "table": table,
    }


@contextmanager
def _timed_pixel_part(sink: list[float]) -> Iterator[None]:
    """Wrap the engine's ``select_faces`` and ``pixel_loss`` to add their wall seconds to ``sink[-1]``."""
    import retina.engine as engine

    originals = engine.select_faces, engine.pixel_loss

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sink[-1] += time.perf_counter() - t0
            return out

        return timed

    engine.select_faces, engine.pixel_loss = (wrap(f) for f in originals)
    try:
        yield
    finally:
        engine.select_faces, engine.pixel_loss = originals


def _sessions(w_pixel: float, tmp: Path, steps: int) -> tuple[list[Any], list[Any], int]:
    """(sessions without and with the pixel loss, the batches to step on, batch size)."""
    from ablations.run import synth_pair
    from ablations.variants import ABLATIONS, SYNTH_ABLATION, SynthData
    from retina.config import preset
    from retina.data.dataset import SplitPaths
    from retina.engine import RunSpec, _context, _session
    from retina.weights import DEFAULT_WEIGHTS

    train_dir, _ = synth_pair(SynthData(SYNTH_ABLATION))
    base = ABLATIONS["landmarks"].cpu.train
    sessions = []
    for name, w in (("without", 0.0), ("with", w_pixel)):
        cfg = dataclasses.replace(base, loss=dataclasses.replace(base.loss, w_pixel=w))
        spec = RunSpec(
            out_dir=tmp / name,
            data=SplitPaths.from_root(train_dir),
            workers=0,
            progress=False,
            pretrained_backbone=DEFAULT_WEIGHTS,
            data_label="SynthFace ablation train split (synthetic)",
        )
        sessions.append(_session(_context(preset(PRESET), cfg, spec), None))
    batches = [b for _, b in zip(range(steps), sessions[0].loader, strict=False)]
    return sessions, batches, base.batch_size


def _run_steps(session: Any, batches: list[Any], pixel: list[float] | None, faces: list[float]) -> list[float]:
    """One timed step per batch; returns the wall seconds of each (``pixel``: the pixel forward's, appended)."""
    from retina.engine import _step
    from retina.losses import losses

    lr = session.ctx.train_cfg.warmup_lr  # constant and small: the timing does not depend on it
    times = []
    for batch in batches:
        if pixel is not None:
            pixel.append(0.0)
        t0 = time.perf_counter()
        _, counts = _step(session, batch, lr, losses, 0, None)
        times.append(time.perf_counter() - t0)
        if pixel is not None:
            faces.append(float(counts[2]))
    return times


def measure(w_pixel: float, blocks: int, steps: int, warmup: int) -> tuple[Timings, dict[str, Any]]:
    """Interleaved timings of the two sessions and the settings they ran with."""
    with tempfile.TemporaryDirectory() as tmp:
        (without, with_pixel), batches, batch_size = _sessions(w_pixel, Path(tmp), steps)
        t = Timings([], [], [], [])
        pixel: list[float] = []
        with _timed_pixel_part(pixel):
            warm = [batches[i % len(batches)] for i in range(max(1, warmup))]
            _run_steps(without, warm, None, [])
            _run_steps(with_pixel, warm, pixel, [])
            pixel.clear()
            for k in range(blocks):
                order = ((without, t.without), (with_pixel, t.with_pixel))
                for s, sink in order if k % 2 == 0 else order[::-1]:
                    timed_pixel = pixel if s is with_pixel else None
                    sink.append(_run_steps(s, batches, timed_pixel, t.faces))
        t.pixel_forward.extend(pixel)
        ctx = with_pixel.ctx
        settings = {
            "preset": PRESET,
            "train_cfg_with": dataclasses.asdict(ctx.train_cfg),
            "batch_size": batch_size,
            "image_size": ctx.train_cfg.augment.image_size,
            "w_pixel": w_pixel,
            "pixel_cfg": dataclasses.asdict(ctx.train_cfg.pixel),
            "renderer": ctx.run.renderer,
            "pretrained_backbone": Path(ctx.run.pretrained_backbone).name,
            "mesh_decoder": Path(ctx.run.mesh_decoder).name,
            "data": f"{ctx.run.data_label}: {len(ctx.dataset)} images, {len(batches)} batches reused per block",
            "lr": ctx.train_cfg.warmup_lr,
        }
    return t, settings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=5, help="timing blocks of each session, interleaved")
    p.add_argument("--steps", type=int, default=6, help="steps per block (distinct batches, reused per block)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each session first (at least 1)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--w-pixel", type=float, default=0.01, help="pixel loss weight of the session with it")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "results" / RECORD)
    p.add_argument("--publish", action="store_true", help=f"write reports/records/{RECORD} (committed) instead")
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.blocks < 1 or args.steps < 1 or args.w_pixel <= 0:
        p.error("--blocks and --steps must be >= 1 and --w-pixel > 0")
    if args.publish:
        require_clean(p, "benchmarks/pixel_step.py --publish", args.allow_dirty)
        args.out = REPO_ROOT / "reports" / "records" / RECORD
    torch.set_num_threads(args.threads)
    prov = provenance(device="cpu", threads=args.threads, load_avg_before=list(os.getloadavg()))  # the code that ran
    t, settings = measure(args.w_pixel, args.blocks, args.steps, args.warmup)
    stats = summary(t, settings["batch_size"], args.w_pixel)
    pixel = settings["pixel_cfg"]
    record = {
        "benchmark": "pixel_step",
        "what": "CPU training step time with and without the pixel loss (interleaved blocks, data loading excluded)",
        "data": "SynthFace ablation pair, train split (SYNTHETIC data)",
        "settings": {
            **settings,
            "blocks": args.blocks,
            "steps_per_block": args.steps,
            "warmup_steps": args.warmup,
            "threads": args.threads,
        },
        "crop_size": pixel["crop_size"],
        "max_faces": pixel["max_faces"],
        **stats,
        "step_s": {"without": t.without, "with": t.with_pixel, "pixel_forward": t.pixel_forward},
        "provenance": {**prov, "load_avg_after": list(os.getloadavg())},
    }
    write_json(args.out, record)
    rows = stats["table"]
    print(
        f"step without Lpixel {rows[0]['median s']:.3f} s, with {rows[1]['median s']:.3f} s "
        f"(x{stats['ratio_with_over_without']:.3f} by blocks, "
        f"{stats['rendered_faces_per_step']:.1f} faces of {pixel['crop_size']} px per step) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
