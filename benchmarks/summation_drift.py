"""How far floating-point summation order alone moves an ablation's AP: the noise floor of a control row.

    python benchmarks/summation_drift.py [--ablation dcn] [--seeds 0 1 2] [--threads 1 2] [--publish]

Trains and evaluates the baseline row of an ablation's CPU setting (``ablations.run``'s own ``train_one`` and
``evaluate_one``: same data, schedule, seeds, protocol; SYNTHETIC data) once per torch thread count. The runs
compute the same function from the same weights on the same batches; only the order in which the CPU kernels
sum differs, and SGD amplifies that rounding over the run. The per-seed AP differences between the thread
counts are what a row that computes the baseline's function (the DCN ablation's frozen-offset control) can
differ by without any effect of its own. The record puts the published control row's differences (from
``reports/records/ablations/<ablation>/table.csv``, when present) beside them, and says whether the first thread
count reproduced the published baseline's AP seed for seed (the ablation runner trains with one thread per run).

Writes ``results/summation_drift/<ablation>.json`` (``--publish``: ``reports/records/summation_drift/``, only from
a clean tree); the runs under ``results/summation_drift/runs/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

import numpy as np

from retina.errors import RetinaError
from retina.report.ablation_table import METRICS as SETS
from retina.results import REPO_ROOT, provenance, require_clean_tree, write_json

PUBLISHED = REPO_ROOT / "reports" / "records" / "ablations"


def measure(ablation: str, seeds: list[int], threads: int, folder: Path) -> dict[int, dict[str, float]]:
    """AP (fractions) of the ablation's baseline row per seed, trained and evaluated with ``threads`` threads."""
    import torch

    from ablations.run import evaluate_one, make_plan, parser, record_path, train_one

    torch.set_num_threads(threads)
    args = parser().parse_args([ablation, "--out", str(folder / f"threads{threads}"), "--no-progress"])
    plan = dataclasses.replace(make_plan(args), workers=0)  # as the runner's --jobs processes train
    base = plan.variants[0]
    metrics = {}
    for seed in seeds:
        path = record_path(plan, base, seed)
        if not path.is_file():
            evaluate_one(plan, base, seed, train_one(plan, base, seed))
        metrics[seed] = json.loads(path.read_text())["metrics"]
    return metrics


def published_rows(ablation: str) -> dict[str, dict[str, Any]]:
    """The published table's measured rows by variant key: per-set Δ mean and std (AP points)."""
    import pandas as pd

    path = PUBLISHED / ablation / "table.csv"
    if not path.is_file():
        return {}
    table = pd.read_csv(path)
    table = table[table["source"].str.startswith("measured")]
    cols = [f"{s}_{k}" for s in SETS for k in ("mean", "diff", "diff_std")]
    return {r["variant"]: {c: float(r[c]) for c in cols if c in r and r[c] == r[c]} for _, r in table.iterrows()}


def reproduces_published(ablation: str, metrics: dict[int, dict[str, float]]) -> bool | None:
    """Whether every seed's AP equals that of the published baseline record of the same seed (None: no such
    record for some seed)."""
    from ablations.variants import ABLATIONS

    base_key = ABLATIONS[ablation].rows[0][0]  # the runner's record name: <variant>__seed<k>.json
    paths = {seed: PUBLISHED / ablation / "records" / f"{base_key}__seed{seed}.json" for seed in metrics}
    if not all(p.is_file() for p in paths.values()):
        return None
    published = {seed: json.loads(p.read_text())["metrics"] for seed, p in paths.items()}
    return all(metrics[seed][k] == published[seed][k] for seed in metrics for k in SETS)


def summarise(runs: dict[int, dict[int, dict[str, float]]]) -> dict[str, Any]:
    """Per set: the per-seed differences (AP points) of the second thread count minus the first, mean, std."""
    (t1, a), (t2, b) = runs.items()
    out = {}
    for s in SETS:
        diffs = [100 * (b[seed][s] - a[seed][s]) for seed in a]
        out[s] = {"per_seed": diffs, "mean": float(np.mean(diffs)), "std": float(np.std(diffs, ddof=1)),
                  "mean_abs": float(np.mean(np.abs(diffs)))}  # fmt: skip
    return {"difference": f"threads {t2} - threads {t1}", "sets": out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from ablations.variants import ABLATIONS

    p.add_argument("--ablation", default="dcn", choices=sorted(ABLATIONS), help="whose baseline row (default: dcn)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, nargs=2, default=[1, 2], help="the two torch thread counts")
    p.add_argument("--out", type=Path, help="record path (default: results/summation_drift/<ablation>.json)")
    p.add_argument("--publish", action="store_true", help="write reports/records/summation_drift/ (committed)")
    p.add_argument("--allow-dirty", action="store_true", help="publish from a dirty tree (records name the diff)")
    args = p.parse_args(argv)
    if len(args.seeds) < 2 or min(args.threads) < 1 or args.threads[0] == args.threads[1]:
        p.error("--seeds needs two or more seeds, --threads two different counts >= 1")
    name = f"{args.ablation}.json"
    try:
        if args.publish:
            require_clean_tree("benchmarks/summation_drift.py --publish", args.allow_dirty)
            args.out = REPO_ROOT / "reports" / "records" / "summation_drift" / name
        out = args.out or REPO_ROOT / "results" / "summation_drift" / name
        prov = provenance(load_avg_before=list(os.getloadavg()))  # the code that ran, before the runs
        t0 = time.perf_counter()
        folder = REPO_ROOT / "results" / "summation_drift" / "runs" / args.ablation
        runs = {t: measure(args.ablation, args.seeds, t, folder) for t in args.threads}
    except RetinaError as exc:
        p.error(str(exc))
    published = published_rows(args.ablation)
    reproduced = reproduces_published(args.ablation, runs[args.threads[0]])
    record = {
        "benchmark": "summation_drift",
        "what": "AP differences of one ablation's baseline row between two torch thread counts (same function, "
        "weights and batches; only the kernels' summation order differs)",
        "data": "the ablation's CPU setting: SynthFace ablation pair (SYNTHETIC data)",
        "ablation": args.ablation,
        "seeds": args.seeds,
        "threads": args.threads,
        "ap": {str(t): {str(s): m for s, m in r.items()} for t, r in runs.items()},
        "drift": summarise(runs),
        "published_rows": published,
        "first_thread_count_reproduces_published_baseline": reproduced,
        "seconds": time.perf_counter() - t0,
        "provenance": {**prov, "load_avg_after": list(os.getloadavg())},
    }
    write_json(out, record)
    for s, d in record["drift"]["sets"].items():
        cells = ", ".join(f"{v:+.2f}" for v in d["per_seed"])
        print(f"{s}: {record['drift']['difference']}: {cells} (mean {d['mean']:+.2f} ± {d['std']:.2f})")
    print(f"published baseline reproduced at {args.threads[0]} thread(s): {reproduced}")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
