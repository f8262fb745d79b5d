"""What the DCN offsets do in the first iterations of the CPU DCN ablation, per offset learning-rate multiplier.

    python benchmarks/dcn_offsets.py [--iterations 100] [--multipliers 1 0.1 0.01 0] [--seed 0] [--jobs 2]

Trains, with the engine itself (``retina.engine.train``, run folders under ``--out``), the first ``--iterations``
of the DCN ablation's CPU setting (``ablations.variants.ABLATIONS["dcn"].cpu``: mobilenet0.25 from the committed
checkpoint's backbone, batch 8 at 256 px on the ablation SynthFace pair, SYNTHETIC data, the 320-iteration
schedule): the plain model (``no_dcn``) and one DCN model per multiplier (``TrainCfg.dcn_offset_lr``; 0: offsets
frozen at zero), all from one seed, so every run starts from the same shared weights and sees the same batches.
Every iteration is logged: the loss, and for DCN runs the largest and mean |offset| (feature pixels) and the
mask's range. The summary per multiplier: the largest offset at a few iterations and over the run, the final
mask range, and the loss gap to the plain model (mean of the per-iteration difference over the first 10
iterations and over the second half). The suggested default (``TrainCfg.dcn_offset_lr`` is chosen from this
record) is the largest multiplier > 0 whose second-half gap is at most two standard errors above zero: the offsets
as free to learn as they can be without a measurable cost in loss. (Not the multiplier with the smallest gap: as the
multiplier goes to 0 the DCN model goes to the plain one, so that rule prefers the least deformation.)

Writes ``results/dcn_offsets/dcn_offsets.json`` (``--publish``: ``reports/records/dcn_offsets/dcn_offsets.json``,
only from a clean tree).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

import numpy as np

from retina.errors import RetinaError
from retina.results import REPO_ROOT, provenance, require_clean_tree, write_json

RECORD = Path("dcn_offsets") / "dcn_offsets.json"
AT = (1, 13, 27, 50)  # iterations at which the largest offset is reported (and the last)
KEYS = ("loss", "dcn_offset_max", "dcn_offset_mean", "dcn_mask_min", "dcn_mask_max")


def _run(name: str, multiplier: float | None, iterations: int, seed: int, folder: str, threads: int) -> list[dict]:
    """Train one run (``multiplier`` None: the plain model) for ``iterations``; its per-iteration metric lines."""
    import torch

    from ablations.run import synth_pair
    from ablations.variants import ABLATIONS
    from retina.data.dataset import SplitPaths
    from retina.engine import RunSpec, train

    torch.set_num_threads(threads)
    ablation = ABLATIONS["dcn"]
    setting = ablation.cpu
    base, dcn = ablation.variants(setting)[:2]
    variant = base if multiplier is None else dcn
    train_cfg = dataclasses.replace(variant.train, seed=seed)
    if multiplier is not None:
        train_cfg = dataclasses.replace(train_cfg, dcn_offset_lr=multiplier)
    (train_dir,) = synth_pair(setting.data, workers=1, splits=("train",))
    out = Path(folder) / name
    shutil.rmtree(out, ignore_errors=True)  # a fresh run each time (the engine refuses an existing one)
    spec = RunSpec(out_dir=out, data=SplitPaths.from_root(train_dir), workers=0, checkpoint_every=10**9, log_every=1,
                   pretrained_backbone=setting.backbone_init, stop_after=iterations, progress=False,
                   data_label=setting.data.label)  # fmt: skip
    train(variant.model, train_cfg, spec)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    return [{"iteration": m["iteration"], "lr": m["lr"], **{k: m[k] for k in KEYS if k in m}} for m in lines]


def summary(plain: list[dict], runs: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """Per multiplier: offsets at ``AT`` and overall, the final mask range, and the loss gap to the plain run."""
    base = np.array([m["loss"] for m in plain])
    n = len(base)
    rows = []
    for multiplier, lines in runs.items():
        loss = np.array([m["loss"] for m in lines])
        gap = loss - base
        big = [m["dcn_offset_max"] for m in lines]
        rows.append({
            "dcn_offset_lr": float(multiplier),
            **{f"offset_max_at_{i}": big[i - 1] for i in AT if i <= n},
            "offset_max_last": big[-1],
            "offset_max_run": max(big),
            "offset_mean_last": lines[-1]["dcn_offset_mean"],
            "mask_min_last": lines[-1]["dcn_mask_min"],
            "mask_max_last": lines[-1]["dcn_mask_max"],
            "loss_gap_first10": float(gap[:10].mean()),
            "loss_gap_second_half": float(gap[n // 2 :].mean()),
            "loss_gap_second_half_std": float(gap[n // 2 :].std(ddof=1)),
            "loss_gap_second_half_sem": float(gap[n // 2 :].std(ddof=1) / np.sqrt(n - n // 2)),
            "loss_plain_second_half": float(base[n // 2 :].mean()),
        })  # fmt: skip
    return rows


RULE = (
    "the largest multiplier > 0 whose mean loss gap to the plain model over the second half is at most two "
    "standard errors above zero"
)


def suggest(rows: list[dict[str, Any]]) -> float | None:
    """The multiplier :data:`RULE` picks from :func:`summary` rows (None when no multiplier > 0 qualifies)."""
    fine = [r["dcn_offset_lr"] for r in rows
            if r["dcn_offset_lr"] > 0 and r["loss_gap_second_half"] <= 2 * r["loss_gap_second_half_sem"]]  # fmt: skip
    return max(fine, default=None)


def measure(multipliers: list[float], iterations: int, seed: int, folder: Path, jobs: int) -> dict[str, list[dict]]:
    """Metric lines of the plain run (key "plain") and of each multiplier's DCN run (key: the multiplier)."""
    from ablations.run import synth_pair
    from ablations.variants import ABLATIONS

    synth_pair(ABLATIONS["dcn"].cpu.data, splits=("train",))  # generated once here, not by every run at once
    names = {"plain": None, **{f"{m:g}": m for m in multipliers}}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    args = [(f"dcn_lr{n}" if m is not None else n, m, iterations, seed, str(folder), threads) for n, m in names.items()]
    if jobs == 1:
        return {n: _run(*a) for n, a in zip(names, args, strict=True)}
    import multiprocessing as mp

    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {n: pool.submit(_run, *a) for n, a in zip(names, args, strict=True)}
        return {n: f.result() for n, f in futures.items()}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| offset lr x | max abs offset @1 | @13 | @27 | @50 | last | run max | mask last | loss gap 1-10 | "
             "loss gap 2nd half (± s.e.) |", "|" + "---|" * 10]  # fmt: skip
    for r in rows:
        at = [f"{r.get(f'offset_max_at_{i}', float('nan')):.2f}" for i in AT]
        lines.append(
            f"| {r['dcn_offset_lr']:g} | {' | '.join(at)} | {r['offset_max_last']:.2f} | {r['offset_max_run']:.2f} | "
            f"{r['mask_min_last']:.3f}-{r['mask_max_last']:.3f} | {r['loss_gap_first10']:+.4f} | "
            f"{r['loss_gap_second_half']:+.4f} ± {r['loss_gap_second_half_sem']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=100, help="iterations of each run (of the 320 schedule)")
    p.add_argument("--multipliers", type=float, nargs="+", default=[1.0, 0.1, 0.01, 0.0], help="offset lr multiples")
    p.add_argument("--seed", type=int, default=0, help="the seed of every run (initialisation and data order)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once (each with cpu_count / jobs threads)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "results" / RECORD)
    p.add_argument("--publish", action="store_true", help=f"write reports/records/{RECORD} (committed) instead")
    p.add_argument("--allow-dirty", action="store_true", help="publish from a dirty tree (records name the diff)")
    args = p.parse_args(argv)
    if not 10 <= args.iterations <= 320 or args.jobs < 1 or any(m < 0 for m in args.multipliers):
        p.error("--iterations must be in 10..320, --jobs >= 1 and the multipliers >= 0")
    try:
        if args.publish:
            require_clean_tree("benchmarks/dcn_offsets.py --publish", args.allow_dirty)
            args.out = REPO_ROOT / "reports" / "records" / RECORD
    except RetinaError as exc:
        p.error(str(exc))
    prov = provenance(load_avg_before=list(os.getloadavg()))  # the code that ran, before the runs
    runs_folder = REPO_ROOT / "results" / "dcn_offsets" / "runs"
    measured = measure(args.multipliers, args.iterations, args.seed, runs_folder, args.jobs)
    plain = measured.pop("plain")
    rows = summary(plain, measured)
    best = suggest(rows)
    record = {
        "benchmark": "dcn_offsets",
        "what": "DCN offsets and the loss gap to the plain model over the first iterations, per offset lr multiple",
        "data": "SynthFace ablation pair, train split (SYNTHETIC data)",
        "settings": {
            "iterations": args.iterations,
            "seed": args.seed,
            "schedule_iterations": 320,
            "setting": "ablations.variants.ABLATIONS['dcn'].cpu",
            "multipliers": args.multipliers,
        },
        "rows": rows,
        "suggested_dcn_offset_lr": best,
        "rule": RULE,
        "per_iteration": {"plain": plain, **measured},
        "provenance": {**prov, "load_avg_after": list(os.getloadavg())},
    }
    write_json(args.out, record)
    print(table(rows))
    print(f"suggested dcn_offset_lr: {best:g} ({RULE})" if best is not None else "no multiplier > 0 qualifies")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
