"""The ablation table in the shape of the paper's Table 3, built from the runner's records alone.

    python -m retina.report.ablation_table results/ablations/landmarks

Reads ``<folder>/records/*.json`` (one per variant and seed, written by :mod:`ablations.run`) and writes
``table.md``, ``table.csv``, ``table.json`` (the summary with provenance) and ``pr_curves.png`` (every
seed's PR curve, overlaid by variant) into ``<folder>``. AP is shown in percent as in the paper: per variant
the mean and sample standard deviation (n-1) over seeds, and the difference to the baseline as the mean and
standard deviation of the per-seed paired differences (variant minus baseline trained with the same seed),
with two-sided p-values (Welch's t-test over seeds, and the paired t-test) saying whether a difference is real.
Where the records carry it (the runner computes it), the paired image-bootstrap interval of each seed's
difference (test-set uncertainty) is shown beside the seed statistics, and DCN records' offset statistics below.
The paper's own rows are printed beside it, labelled as WIDER FACE numbers. pandas + matplotlib only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retina.errors import RetinaError
from retina.eval.plots import figure_png, style_pr_axes
from retina.paper import PAPER_SOURCE, PAPER_TABLE3
from retina.results import describe_git, provenance, write_bytes, write_json, write_text

METRICS = ("easy", "medium", "hard", "hard_map")  # AP, percent
DENSE = "dense_nme"  # the dense branch's mesh NME on SynthFace (percent of sqrt(w h); lower is better), when recorded
REAL = tuple(f"real_{m}" for m in METRICS)  # AP on a real split (the runner's --real-dev / --real-root), when recorded
HEADERS = {"easy": "easy", "medium": "medium", "hard": "hard", "hard_map": "mAP (hard)", DENSE: "dense NME"}
HEADERS |= {f"real_{m}": f"real {HEADERS[m]}" for m in METRICS}
SETTINGS = ("easy", "medium", "hard")
REQUIRED = ("ablation", "setting", "variant", "label", "order", "baseline", "seed", "metrics", "curves", "train")


def load_records(folder: str | Path) -> list[dict[str, Any]]:
    """Every ``records/*.json`` under ``folder``, sorted by (variant order, seed)."""
    paths = sorted((Path(folder) / "records").glob("*.json"))
    if not paths:
        raise RetinaError(f"no records in {Path(folder) / 'records'} (run python -m ablations.run first)")
    records = []
    for path in paths:
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RetinaError(f"{path}: not a JSON record ({exc})") from None
        missing = [k for k in REQUIRED if k not in record]
        if missing:
            raise RetinaError(f"{path}: not an ablation record (missing {', '.join(missing)})")
        records.append(record)
    if len({(r["ablation"], r["setting"]) for r in records}) != 1:
        raise RetinaError(f"{folder}: records of several ablations or settings are mixed")
    return sorted(records, key=lambda r: (r["order"], r["seed"]))


def frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per (variant, seed): variant, label, order, baseline, seed and the metrics in percent."""
    rows = [
        {"variant": r["variant"], "label": r["label"], "order": r["order"], "baseline": r["baseline"],
         "seed": r["seed"], **{m: 100.0 * r["metrics"][m] for m in METRICS}, **_dense(r), **_real(r),
         **_bounds(r.get("bootstrap"), ""), **_bounds((r.get("real") or {}).get("bootstrap"), "real_")}
        for r in records
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    if df.duplicated(["variant", "seed"]).any():
        raise RetinaError("two records for the same (variant, seed)")
    if df["baseline"].sum() == 0 or df.loc[df["baseline"], "variant"].nunique() != 1:
        raise RetinaError("the records need exactly one baseline variant")
    return df


def _dense(record: dict[str, Any]) -> dict[str, float]:
    nme = (record.get("dense") or {}).get("nme")
    return {} if nme is None else {DENSE: 100.0 * nme}


def _real(record: dict[str, Any]) -> dict[str, float]:
    real = (record.get("real") or {}).get("metrics")
    return {} if real is None else {f"real_{m}": 100.0 * real[m] for m in METRICS}


def _bounds(boot: dict[str, Any] | None, prefix: str) -> dict[str, float]:
    """A record's paired image-bootstrap interval of each AP difference to its baseline, in percent."""
    if not boot:
        return {}
    diff = boot["difference"]
    return {f"{prefix}{s}_{end}": 100.0 * diff[s][end] for s in SETTINGS if s in diff for end in ("low", "high")}


def metrics_of(df: pd.DataFrame) -> tuple[str, ...]:
    """The AP metrics (after the real ones when every record has them), plus the dense NME when every record has
    one."""
    real = REAL if all(m in df and df[m].notna().all() for m in REAL) else ()
    return real + METRICS + ((DENSE,) if DENSE in df and df[DENSE].notna().all() else ())


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant (in table order): n seeds, ``<m>_mean``, ``<m>_std``, ``<m>_diff``, ``<m>_diff_std``.

    Differences are paired by seed (seeds present in both the variant and the baseline); std is the sample
    standard deviation (ddof=1), NaN with one seed. The baseline's differences are 0 by definition.
    """
    metrics = metrics_of(df)
    base = df.loc[df["baseline"], ["seed", *metrics]]
    out = []
    for (_, variant), g in df.groupby(["order", "variant"], sort=True):
        row: dict[str, Any] = {"variant": variant, "label": g["label"].iloc[0], "baseline": bool(g["baseline"].iloc[0]),
                               "n": len(g), "seeds": " ".join(map(str, sorted(g["seed"])))}  # fmt: skip
        paired = g.merge(base, on="seed", suffixes=("", "_base"))  # inner join: seeds in both
        row["n_paired"] = len(paired)
        for m in metrics:
            row[f"{m}_mean"] = g[m].mean()
            row[f"{m}_std"] = g[m].std(ddof=1)
            diffs = paired[m] - paired[f"{m}_base"]
            row[f"{m}_diff"] = diffs.mean() if len(diffs) else np.nan
            row[f"{m}_diff_std"] = diffs.std(ddof=1)
            row[f"{m}_p_welch"], row[f"{m}_p_paired"] = (
                (np.nan, np.nan) if row["baseline"] else p_values(g[m], base[m], diffs)
            )
            for end in ("low", "high"):  # the image bootstrap's interval: mean over seeds of each seed's bounds
                if f"{m}_{end}" in g and g[f"{m}_{end}"].notna().all() and not row["baseline"]:
                    row[f"{m}_ci_{end}"] = g[f"{m}_{end}"].mean()
        out.append(row)
    return pd.DataFrame(out)


def p_values(variant: pd.Series, baseline: pd.Series, paired_diffs: pd.Series) -> tuple[float, float]:
    """Two-sided p-values that the variant's mean equals the baseline's: Welch's t-test over seeds (unpaired,
    unequal variances) and the paired t-test on same-seed differences. NaN with under 2 values a side or no
    spread at all; :func:`summarize` gives the baseline's own row NaN."""
    from scipy import stats

    welch = paired = np.nan
    if min(len(variant), len(baseline)) >= 2 and (variant.std(ddof=1) > 0 or baseline.std(ddof=1) > 0):
        welch = float(stats.ttest_ind(variant, baseline, equal_var=False).pvalue)
    if len(paired_diffs) >= 2 and paired_diffs.std(ddof=1) > 0:
        paired = float(stats.ttest_1samp(paired_diffs, 0.0).pvalue)
    return welch, paired


def _p(welch: float, paired: float) -> str:
    return "–" if np.isnan(welch) and np.isnan(paired) else f"{welch:.2g} / {paired:.2g}".replace("nan", "–")


def paper_frame(pair: Sequence[str]) -> pd.DataFrame:
    """The paper's Table 3 rows (percent); ``<m>_diff`` only on the rows the ablation mirrors (``pair[1:]``),
    against ``pair[0]``."""
    rows = []
    for label, values in PAPER_TABLE3.items():
        row: dict[str, Any] = {"label": label, **{f"{m}_mean": values[m] for m in METRICS}}
        for m in METRICS:
            row[f"{m}_diff"] = values[m] - PAPER_TABLE3[pair[0]][m] if label in pair[1:] else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


_DENSE_NOTE = (
    "dense NME: mean over SynthFace val faces >= {min_face:g} px of the image distance between the predicted and "
    "the true mesh's visible vertices, in % of sqrt(w h) of the face box (lower is better); a face's prediction is "
    "its anchor of highest score >= {score_threshold:g} with box IoU >= {match_iou:g} (retina.dense.accuracy). "
    "Rows without the pixel loss show what an untrained mesh head predicts."
)


def _pm(mean: float, std: float, signed: bool = False) -> str:
    if np.isnan(mean):
        return "–"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text if np.isnan(std) else f"{text} ± {std:.2f}"


_CI_NOTE = (
    "Δ … CI: the paired image bootstrap of the AP difference to the same-seed baseline ({draws} draws of the "
    "evaluation images with replacement, seed {seed}, the same draws for both models and every seed; "
    "retina.eval.bootstrap): its {level:.0%} percentile interval, per seed below and, above, averaged over seeds "
    "bound by bound. It is the test-set uncertainty of one seed's difference, beside the seed std of Δ: an interval "
    "without 0 says that seed's difference is not an accident of these test images."
)


def _boot_settings(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    boot = next(b for r in records for b in (r.get("bootstrap"), (r.get("real") or {}).get("bootstrap")) if b)
    return {"draws": boot["draws"], "seed": boot["seed"], "level": boot["level"]}


def _ci(low: float, high: float) -> str:
    return "–" if np.isnan(low) or np.isnan(high) else f"[{low:+.2f}, {high:+.2f}]"


def _offset_lines(records: Sequence[dict[str, Any]]) -> list[str]:
    """The DCN rows' offset statistics at the end of training, mean over seeds (none without DCN records)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if (r.get("dcn_offsets") or {}).get("final"):
            rows.setdefault(r["label"], []).append(r["dcn_offsets"])
    if not rows:
        return []
    cells = []
    for label, stats in rows.items():
        final = {k: np.mean([s["final"][k] for s in stats]) for k in stats[0]["final"]}
        cells.append([label, str(len(stats)), f"{final['dcn_offset_max']:.2f}",
                      f"{np.mean([s['run_offset_max'] for s in stats]):.2f}", f"{final['dcn_offset_mean']:.3f}",
                      f"{final['dcn_mask_min']:.3f} – {final['dcn_mask_max']:.3f}"])  # fmt: skip
    text = ("DCN offsets: absolute values of the predicted offsets in pixels of each DCN layer's input, all DCN layers "
            "together (the engine's metrics.jsonl; its last line covers the last 10 iterations), mean over seeds; "
            "offsets 0 and mask 1 are the plain conv:")  # fmt: skip
    header = ["method", "seeds", "largest offset at the end", "largest offset in the run", "mean offset", "mask range"]
    return [text, "", *_md_table(header, cells), ""]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _setting_lines(r: dict[str, Any]) -> list[str]:
    train = r["train"]
    return [
        f"- ablated field{'s' if isinstance(r['field'], list) else ''}: "
        + ", ".join(f"`{f}`" for f in (r["field"] if isinstance(r["field"], list) else [r["field"]]))
        + "; everything else identical across rows (data, schedule, seeds, protocol)",
        f"- model: `{r['model_cfg']['name']}` preset; training: {train['iterations']} iterations, global batch "
        f"{train['batch_size']}, {train['image_size']} px crops, recipe `{r['train_cfg']['recipe']}`, "
        f"{train['world_size']} process(es) on {train['device']}",
        f"- training data: {r['train_data']}",
        f"- evaluation data: {r['eval_data']}; test protocol `{r['protocol']}`; AP at IoU {r['iou']:g} "
        "(official WIDER FACE protocol); mAP (hard): hard AP averaged over IoU 0.5:0.05:0.95",
    ]


def markdown(records: Sequence[dict[str, Any]], summary: pd.DataFrame, df: pd.DataFrame) -> str:
    first = records[0]
    synthetic = "synthetic data" if first["synthetic"] else "real data"
    lines = [f"# Ablation `{first['ablation']}` ({first['setting']} setting, {synthetic})", ""]
    lines += [f"{first['description']}.", ""]
    if first["setting_note"]:
        lines += [f"**{first['setting_note']}**", ""]
    lines += [*_setting_lines(first), ""]
    lines += ["AP in %: mean ± sample std over seeds; Δ: mean ± std of the per-seed paired difference to the "
              "baseline (first row), same seed. p (hard): two-sided p-values that the hard AP equals the "
              "baseline's, Welch's t-test over seeds / paired t-test over same-seed differences; a difference "
              "with p above 0.05 is not distinguishable from seed noise.", ""]  # fmt: skip
    metrics = metrics_of(df)
    dense, real = DENSE in metrics, REAL[0] in metrics
    if dense:
        lines += [_DENSE_NOTE.format(**records[0]["dense"]["settings"]), ""]
    if real:
        lines += [f"real: AP on {records[0]['real']['data']} (real images, the same protocol); p (real hard) as p "
                  "(hard).", ""]  # fmt: skip
    ci = [m for m in ("real_hard", "hard") if f"{m}_ci_low" in summary]  # the image bootstrap, where recorded
    if ci:
        lines += [_CI_NOTE.format(**_boot_settings(records)), ""]
    header = ["method", "seeds", *(HEADERS[m] for m in metrics), *(f"Δ {HEADERS[m]}" for m in metrics)]
    header += ["p (real hard)"] * real + ["p (hard)"] + ["p (dense)"] * dense + [f"Δ {HEADERS[m]} CI" for m in ci]
    rows = []
    for _, s in summary.iterrows():
        cells = [s["label"], str(s["n"])] + [_pm(s[f"{m}_mean"], s[f"{m}_std"]) for m in metrics]
        if s["baseline"]:
            cells += ["(baseline)"] + [""] * (len(metrics) + dense + real + len(ci))
        else:
            cells += [_pm(s[f"{m}_diff"], s[f"{m}_diff_std"], signed=True) for m in metrics]
            cells += [_p(s["real_hard_p_welch"], s["real_hard_p_paired"])] if real else []
            cells.append(_p(s["hard_p_welch"], s["hard_p_paired"]))
            cells += [_p(s[f"{DENSE}_p_welch"], s[f"{DENSE}_p_paired"])] if dense else []
            cells += [_ci(s[f"{m}_ci_low"], s[f"{m}_ci_high"]) for m in ci]
        rows.append(cells)
    lines += [*_md_table(header, rows), "", "Per seed (AP %" + (", dense NME %" if dense else "") + "):", ""]
    per_seed = [
        [r["label"], str(r["seed"]), *(f"{r[m]:.2f}" for m in metrics)]
        + [_ci(r.get(f"{m}_low", np.nan), r.get(f"{m}_high", np.nan)) for m in ci]
        for _, r in df.iterrows()
    ]
    header = ["method", "seed", *(HEADERS[m] for m in metrics), *(f"Δ {HEADERS[m]} CI" for m in ci)]
    lines += [*_md_table(header, per_seed), ""]
    lines += _offset_lines(records)
    pair = first["paper_rows"]
    if not pair:  # an ablation the paper does not have
        return "\n".join(lines + _footer(records)) + "\n"
    lines += [f"## Reference: {PAPER_SOURCE} (paper numbers, not measured here, not comparable with the rows "
              "above)", ""]  # fmt: skip
    paper = paper_frame(pair)
    lines += _md_table(
        ["method (paper)", *(HEADERS[m] for m in METRICS)],
        [[p["label"], *(f"{p[f'{m}_mean']:.3f}" for m in METRICS)] for _, p in paper.iterrows()],
    )
    lines += [""]
    for label in pair[1:]:
        mirrored = paper[paper["label"] == label].iloc[0]
        diffs = ", ".join(f"{HEADERS[m]} {mirrored[f'{m}_diff']:+.3f}" for m in METRICS)
        lines += [f"The paper's rows are cumulative; this ablation mirrors `{pair[0]}` -> `{label}`: {diffs}.", ""]
    lines += _footer(records)
    return "\n".join(lines) + "\n"


def _footer(records: Sequence[dict[str, Any]]) -> list[str]:
    times: dict[str, list[float]] = {}
    for r in records:
        if r["train"]["wall_s"] is not None:
            times.setdefault(r["label"], []).append(r["train"]["wall_s"])
    lines = []
    if times:
        parts = [f"{k} {np.mean(v):.0f} s ({len(v)} runs)" for k, v in times.items()]
        lines.append("Mean training wall time per run: " + "; ".join(parts) + ".")
    ev = [r["eval"]["wall_s"] for r in records]
    lines.append(f"Mean evaluation wall time per run: {np.mean(ev):.0f} s.")
    commits = sorted({describe_git(g) for r in records for g in (r["provenance"]["git"], *r["train"].get("git", []))})
    machine = records[0]["provenance"]["machine"]
    lines.append(
        f"Records: {len(records)}; code: {', '.join(commits)}; machine: {machine['processor']}, "
        f"{machine['cpu_count']} CPUs. Built by retina.report.ablation_table from records/*.json."
    )
    return lines


def csv_text(records: Sequence[dict[str, Any]], summary: pd.DataFrame) -> str:
    """Our rows then the paper's, one CSV table (percent); ``source`` says which is which."""
    first = records[0]
    ours = summary.assign(source="measured (this suite)", data=first["eval_data"], protocol=first["protocol"],
                          setting=first["setting"], synthetic=first["synthetic"])  # fmt: skip
    paper = (
        paper_frame(first["paper_rows"]).assign(source=PAPER_SOURCE, data="WIDER FACE val", synthetic=False)
        if first["paper_rows"]
        else pd.DataFrame()
    )
    columns = ["source", "setting", "data", "synthetic", "protocol", "variant", "label", "n", "seeds"]
    metrics = tuple(m for m in (*REAL, *METRICS, DENSE) if f"{m}_mean" in summary)
    columns += [f"{m}_{s}" for m in metrics for s in ("mean", "std", "diff", "diff_std", "p_welch", "p_paired")]
    columns += [c for m in metrics for c in (f"{m}_ci_low", f"{m}_ci_high") if c in summary]  # where recorded
    table = pd.concat([ours, paper], ignore_index=True).reindex(columns=columns).astype({"n": "Int64"})
    return table.to_csv(index=False, float_format="%.4f")


def curves_png(records: Sequence[dict[str, Any]]) -> bytes:
    """Precision vs recall per setting (easy, medium, hard), every seed's curve, one colour per variant."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15.0, 4.8), dpi=110)
    axes = fig.subplots(1, len(SETTINGS))
    labels = list(dict.fromkeys(r["label"] for r in records))
    colours = {label: f"C{k}" for k, label in enumerate(labels)}
    for ax, setting in zip(axes, SETTINGS, strict=True):
        for label in labels:
            runs = [r for r in records if r["label"] == label]
            for k, r in enumerate(runs):
                curve = r["curves"][setting]
                rec = np.array(curve["recall"], float)
                prec = np.array([np.nan if p is None else p for p in curve["precision"]], float)
                shown = ~np.isnan(prec)
                ap = np.mean([100 * x["metrics"][setting] for x in runs])
                name = f"{label}: AP {ap:.2f} (mean of {len(runs)})" if k == 0 else None
                ax.plot(rec[shown], prec[shown], color=colours[label], linewidth=1.2, alpha=0.8, label=name)
        style_pr_axes(ax, f"{setting} (one line per seed)", legend_size=8)
    first = records[0]
    data = "synthetic SynthFace" if first["synthetic"] else first["eval_data"]
    fig.suptitle(f"Ablation {first['ablation']} ({first['setting']} setting, {data}, protocol {first['protocol']})")
    return figure_png(fig)


def build(folder: str | Path) -> dict[str, Path]:
    """Write table.md, table.csv, table.json and pr_curves.png into ``folder``; returns their paths."""
    folder = Path(folder)
    records = load_records(folder)
    df = frame(records)
    summary = summarize(df)
    first = records[0]
    summary_json = {
        "ablation": first["ablation"],
        "setting": first["setting"],
        "synthetic": first["synthetic"],
        "eval_data": first["eval_data"],
        "protocol": first["protocol"],
        "unit": "AP in percent",
        "summary": json.loads(summary.to_json(orient="records")),  # NaN -> null
        "paper_reference": {"source": PAPER_SOURCE, "rows": first["paper_rows"]},
        "provenance": provenance(
            builder="retina.report.ablation_table", records=[f"{r['variant']}__seed{r['seed']}" for r in records]
        ),
    }
    return {
        "md": write_text(folder / "table.md", markdown(records, summary, df)),
        "csv": write_text(folder / "table.csv", csv_text(records, summary)),
        "json": write_json(folder / "table.json", summary_json),
        "png": write_bytes(folder / "pr_curves.png", curves_png(records)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(
            "usage: python -m retina.report.ablation_table RESULTS_FOLDER (e.g. results/ablations/dcn)", file=sys.stderr
        )
        return 2
    try:
        for path in build(args[0]).values():
            print(path)
    except RetinaError as exc:
        print(f"retina.report.ablation_table: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
