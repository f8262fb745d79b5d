"""Speed tables and plot, built only from the records of benchmarks/speed.py under results/speed/.

    python -m retina.report.speed                      # -> results/speed/speed.md and speed.png

One markdown file: per machine the end-to-end table beside the paper's table 5 (other hardware: the paper
used TVM on a Tesla P40, an i7-6700K and an RK3399), the stage decomposition, GPU throughput and the
fast-path ablation. The plot shows end-to-end latency against input size, with the paper's points.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from retina.results import describe_git, write_text

# arXiv 1905.00641 table 5: inference time in ms (TVM; GPU Tesla P40, CPU i7-6700K, ARM RK3399).
PAPER_TABLE5: dict[str, dict[str, float | None]] = {
    "ResNet-152 (GPU)": {"vga": 75.1, "hd": 443.2, "4k": 1742.0},
    "MobileNet-0.25 (GPU)": {"vga": 1.4, "hd": 6.1, "4k": 25.6},
    "MobileNet-0.25 (CPU, multi-thread)": {"vga": 5.5, "hd": 50.3, "4k": None},
    "MobileNet-0.25 (CPU, 1 thread)": {"vga": 17.2, "hd": 130.4, "4k": None},
    "MobileNet-0.25 (ARM)": {"vga": 61.2, "hd": 434.3, "4k": None},
}
PAPER_ROW = {  # (preset, setting family) -> the paper row it sits beside
    ("resnet152-paper", "gpu"): "ResNet-152 (GPU)",
    ("mobilenet0.25", "gpu"): "MobileNet-0.25 (GPU)",
    ("mobilenet0.25", "cpuN"): "MobileNet-0.25 (CPU, multi-thread)",
    ("mobilenet0.25", "cpu1"): "MobileNet-0.25 (CPU, 1 thread)",
}
SIZES = ("vga", "hd", "4k")
MEGAPIXELS = {"vga": 640 * 480 / 1e6, "hd": 1920 * 1080 / 1e6, "4k": 4096 * 2160 / 1e6}


def load(results: Path, kind: str) -> list[tuple[str, dict[str, Any], pd.DataFrame]]:
    """(machine folder, provenance, rows) for every ``<results>/<machine>/<kind>.json``."""
    out = []
    for path in sorted(results.glob(f"*/{kind}.json")):
        record = json.loads(path.read_text())
        out.append((path.parent.name, record["provenance"], pd.DataFrame(record["rows"])))
    return out


def machine_line(prov: dict[str, Any]) -> str:
    m, v, git = prov["machine"], prov["versions"], prov.get("git", {})
    load = prov.get("load_avg_1_5_15min")
    load_text = f"; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}" if load else ""
    gpu = f", GPU {m['gpu']}" if "gpu" in m else ""
    return (
        f"{m['processor']}, {m['cpu_count']} cores{gpu}; torch {v.get('torch')}, onnxruntime "
        f"{v.get('onnxruntime')}, opencv {v.get('cv2')}; commit {describe_git(git)}; "
        f"{prov['created_utc']}{load_text}"
    )


def _fmt(x: Any, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and pd.isna(x)) else f"{x:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def paper_table(df: pd.DataFrame) -> str:
    """Our end-to-end medians (ms) per preset/setting/backend beside the matching paper row."""
    rows = []
    ok = df[df.get("e2e_ms").notna()] if "e2e_ms" in df else df.iloc[0:0]
    for (name, setting, backend), g in ok.groupby(["preset", "setting", "backend"], sort=False):
        family = "gpu" if setting.startswith("gpu") else setting
        paper = PAPER_ROW.get((name, family))
        ours = {r["size"]: _ours(r, setting) for _, r in g.iterrows()}
        ref = PAPER_TABLE5.get(paper, {}) if paper else {}
        rows.append(
            [f"{name} ({setting}, {backend}, {g['weights'].iloc[0]} weights)"]
            + [ours.get(s, "-") for s in SIZES]
            + [paper or "-"]
            + [_fmt(ref.get(s)) for s in SIZES]
        )
    header = ["ours: model (setting, backend)", "VGA", "HD", "4K", "paper row (other hardware)", "VGA", "HD", "4K"]
    return table(header, rows)


def _ours(r: pd.Series, setting: str) -> str:
    """Wall median; on one CPU thread also the thread's CPU time (what a quiet machine would show)."""
    wall = _fmt(r["e2e_ms"])
    return f"{wall} ({_fmt(r['e2e_cpu_ms'])})" if setting == "cpu1" else wall


def stage_table(df: pd.DataFrame) -> str:
    rows = []
    for _, r in df.iterrows():
        if pd.isna(r.get("e2e_ms")):
            rows.append([r["preset"], r["size"], r["setting"], r["backend"]] + ["-"] * 9 + [str(r.get("error", ""))])
            continue
        memory = r.get("peak_gpu_mib") if r["setting"].startswith("gpu") else r.get("peak_rss_mib")
        rows.append(
            [r["preset"], r["size"], r["setting"], r["backend"]]
            + [_fmt(r[f"{k}_ms"], 2) for k in ("pre", "forward", "priors", "decode_nms")]
            + [f"{_fmt(r['e2e_ms'])} / {_fmt(r['e2e_p90_ms'])}", _fmt(r.get("e2e_cpu_ms"))]
            + [_fmt(memory, 0), f"{r['candidates']} / {r['detections']}", f"{r['weights']}, {r['score_threshold']:.3g}"]
            + [f"{r['repeats']}, {r['e2e_method']}"]
        )
    header = ["preset", "size", "setting", "backend", "pre", "forward", "priors", "decode+NMS", "e2e median / p90",
              "e2e CPU time", "peak MiB", "candidates / dets", "weights, threshold", "reps, e2e"]  # fmt: skip
    return table(header, rows)


def throughput_table(df: pd.DataFrame) -> str | None:
    if "throughput" not in df:
        return None
    rows = []
    for _, r in df[df["throughput"].notna()].iterrows():
        for t in r["throughput"]:
            rate = _fmt(t.get("images_per_s")) if "error" not in t else t["error"]
            rows.append([r["preset"], r["size"], r["setting"], str(t["batch"]), _fmt(t.get("batch_ms"), 2), rate])
    return table(["preset", "size", "setting", "batch", "batch ms", "images/s"], rows) if rows else None


def fastpath_table(df: pd.DataFrame) -> str:
    rows = []
    for _, r in df[df["section"] != "meta"].iterrows():
        detections = str(int(r["detections"])) if "detections" in r and not pd.isna(r["detections"]) else ""
        name = r["variant"] + (" **(fast path)**" if r["fast_path"] else "")
        rows.append(
            [r["section"], name, *(_fmt(r[k], 2) for k in ("median_ms", "p90_ms", "cpu_median_ms")), detections]
        )
    text = table(["stage", "variant", "median ms", "p90 ms", "CPU ms", "detections"], rows)
    e2e = df[df["section"] == "e2e"].set_index("variant")
    if "biubug6-style" in e2e.index and e2e["fast_path"].any():
        best = e2e[e2e["fast_path"]].iloc[0]
        base = e2e.loc["biubug6-style"]
        text += (
            f"\n\nFast path vs the biubug6-style pipeline, same run, interleaved: "
            f"{base['median_ms'] / best['median_ms']:.2f}x (wall medians), "
            f"{base['cpu_median_ms'] / best['cpu_median_ms']:.2f}x (thread CPU time)."
        )
    for _, r in df[df["section"] == "meta"].iterrows():
        value = r.get("count") if not pd.isna(r.get("count", float("nan"))) else r.get("seconds")
        text += f"\n\n{r['variant']}: {value:.4g}"
    return text


def plot(grids: list[tuple[str, dict, pd.DataFrame]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for _, _, df in grids:
        if "e2e_ms" not in df:
            continue
        for (name, setting, backend), g in df[df["e2e_ms"].notna()].groupby(["preset", "setting", "backend"]):
            g = g.sort_values("gflop")
            ax.plot(g["height"] * g["width"] / 1e6, g["e2e_ms"], "o-", label=f"{name} {setting} {backend}")
    for label, row in PAPER_TABLE5.items():  # the paper's numbers, dashed: other hardware
        points = [(MEGAPIXELS[s], v) for s, v in row.items() if v is not None]
        ax.plot(*zip(*points, strict=True), "x--", alpha=0.5, label=f"paper: {label}")
    ax.set(xscale="log", yscale="log", xlabel="input megapixels (VGA, HD, 4K)", ylabel="end to end, median ms")
    ax.set_title("RetinaFace latency: ours (this suite's records) vs paper table 5 (other hardware)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results") / "speed", help="default results/speed")
    parser.add_argument("--out", type=Path, default=None, help="folder for speed.md and speed.png (default --results)")
    args = parser.parse_args(argv)
    out = args.out or args.results
    grids, fastpaths = load(args.results, "grid"), load(args.results, "fastpath")
    if not grids and not fastpaths:
        print(f"no records under {args.results}: run benchmarks/speed.py first", file=sys.stderr)
        return 2
    parts = ["# Speed (generated by retina/report/speed.py from results/speed/*/*.json)"]
    for machine, prov, df in grids:
        parts += [f"## {machine}", machine_line(prov), "### End to end (image in, detections out), median ms"]
        parts += [
            "Wall-clock medians; for one thread, in brackets, the thread's CPU time (excludes time the scheduler "
            "gave other processes). Paper: TVM on other hardware (Tesla P40, i7-6700K), for orientation only."
        ]
        parts += [paper_table(df), "### Stages (ms), memory and counts", stage_table(df)]
        through = throughput_table(df)
        if through:
            parts += ["### GPU throughput", through]
    for machine, prov, df in fastpaths:
        parts += [f"## Fast-path ablation: {machine}", machine_line(prov), fastpath_table(df)]
    write_text(out / "speed.md", "\n\n".join(parts) + "\n")
    if grids:
        plot(grids, out / "speed.png")
    print(f"wrote {out / 'speed.md'}" + (f" and {out / 'speed.png'}" if grids else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
