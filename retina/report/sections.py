"""The report's sections: pure functions from records (:class:`reports.sources.RecordSet`) to a
:class:`Section` (Markdown lines, PNG figures, CSV tables, and the sources they were built from).

A section whose records are missing says so and names the command that makes them (``Section.missing``).
Figures and tables are referred to in the Markdown as ``{assets}/NAME``; the page builder fills in the folder.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retina.report import figures
from retina.report.sources import RecordSet, Source, caption, inputs_hash

AP_COLUMNS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class Commands:
    """The commands that make each kind of record: for ``results/`` or for the published ``reports/records/``."""

    evaluation: str
    ablation: str  # with {name}
    speed: str
    eval_speed: str
    synth_speed: str
    train_speed: str
    gallery: str
    landmarks: str
    verification: str
    dense: str
    transfer: str
    mutation: str


LOCAL = Commands(
    evaluation="python benchmarks/main_job.py",
    ablation="nox -s ablation_{name}",
    speed="nox -s speed",
    eval_speed="python benchmarks/eval_speed.py",
    synth_speed="python benchmarks/synth_speed.py",
    train_speed="python benchmarks/train_speed.py",
    gallery="python benchmarks/gallery.py",
    landmarks="nox -s landmarks",
    verification="nox -s verification",
    dense="python benchmarks/pixel_step.py; python benchmarks/pixel_fit.py; python benchmarks/dense_gallery.py",
    transfer="nox -s real_transfer",
    mutation="nox -s mutation",
)
PUBLISH = Commands(
    evaluation="python benchmarks/main_job.py --publish",
    ablation="nox -s ablation_{name} -- --publish",
    speed="python benchmarks/speed.py fastpath --publish && python benchmarks/speed.py grid --publish",
    eval_speed="python benchmarks/eval_speed.py --publish",
    synth_speed="python benchmarks/synth_speed.py --publish",
    train_speed="python benchmarks/train_speed.py --sections step,parts,data,e2e,ap --publish",
    gallery="python benchmarks/gallery.py --publish",
    landmarks="nox -s landmarks -- --mtcnn-weights DIR --publish",
    verification="nox -s verification -- --mtcnn-weights DIR --publish",
    dense="python benchmarks/pixel_step.py --publish; python benchmarks/pixel_fit.py --publish; "
    "python benchmarks/dense_gallery.py --publish",
    transfer="nox -s real_transfer -- --publish",
    mutation="nox -s mutation -- --publish",
)


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[str, ...]
    sources: tuple[Source, ...] = ()
    figures: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()  # commands that would make the absent records

    @property
    def inputs(self) -> str:
        return inputs_hash(self.sources) if self.sources else "none"


def not_run(title: str, what: str, commands: Sequence[str]) -> Section:
    lines = [f"*Not run:* no {what} records. Make them with: " + "; ".join(f"`{c}`" for c in commands) + ".", ""]
    return Section(title, tuple(lines), missing=tuple(commands))


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def csv_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def figure_line(name: str, alt: str, text: str) -> list[str]:
    return [f"![{alt}]({{assets}}/{name})", "", f"*{text}*", ""]


# --- detection accuracy -----------------------------------------------------------------------------------


def read_curves(path: Path, arithmetic: str) -> dict[str, dict[str, list[float | None]]]:
    """{setting: {"recall", "precision"}} from an evaluation's ``pr_curves.csv`` (rows of one arithmetic)."""
    curves: dict[str, dict[str, list[float | None]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["arithmetic"] != arithmetic:
                continue
            c = curves.setdefault(row["setting"], {"recall": [], "precision": []})
            c["recall"].append(float(row["recall"]))
            c["precision"].append(float(row["precision"]) if row["precision"] else None)
    return curves


def evaluation_name(source: Source) -> str:
    prov = source.provenance
    weights = Path(str(prov.get("weights", "?"))).name
    return f"{prov.get('model', '?')} `{weights}`, {prov.get('test_protocol', '?')} protocol"


def evaluation_data(source: Source) -> str:
    """The data an evaluation ran on; a subset says so (its APs are not comparable with the whole set's)."""
    subset = source.record.get("subset")
    data = str(source.provenance.get("data", "?"))
    return data if not subset else f"{data} (SUBSET: {subset['images']} of {subset['of']} images)"


def evaluation_section(records: RecordSet, commands: Commands) -> Section:
    title = "Detection accuracy (WIDER FACE protocol)"
    sources = records.of("evaluation")
    if not sources:
        return not_run(title, "evaluation", [commands.evaluation])
    models, rows = [], []
    for s in sources:
        r = s.record
        curves = read_curves(s.extra_files[0], r["arithmetic"])
        models.append((evaluation_name(s), {k: {**curves[k], "ap": r[k]} for k in AP_COLUMNS}))
        rows.append(
            [
                evaluation_name(s),
                evaluation_data(s),
                *(f"{r[k]:.4f}" for k in AP_COLUMNS),
                f"{r['hard_map_50_95']:.4f}",
                r["arithmetic"],
                r["counts"]["images"],
                r["counts"]["faces"],
            ]
        )
    header = ["model", "data", *AP_COLUMNS, "hard mAP 0.5:0.95", "arithmetic", "images", "faces"]
    data = sorted({evaluation_data(s) for s in sources})
    lines = [
        "AP at IoU 0.5 under the official WIDER FACE protocol; the hard mAP averages hard AP over IoU "
        "0.5:0.05:0.95 (WIDER Challenge 2018).",
        "",
        *md_table(header, rows),
        "",
    ]
    text = f"PR curves, {'; '.join(data)}. " + " | ".join(caption(s) for s in sources)
    lines += figure_line("pr_curves.png", "PR curves", text)
    for job in records.of("main_job"):
        j = job.record
        lines += [
            f"The main job from a cold cache ({j['command']}: SynthFace val generation, detection and "
            f"evaluation) took {j['seconds']:.1f} s wall time ({caption(job)}).",
            "",
        ]
    figure = figures.pr_panels(models, "PR curves: " + "; ".join(data))
    return Section(
        title,
        tuple(lines),
        (*sources, *records.of("main_job")),
        {"pr_curves.png": figure},
        {"evaluation.csv": csv_table(header, rows)},
    )


def read_metrics(path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _recipe(r: dict[str, Any]) -> str:
    cfg = r.get("train", {}).get("train_cfg") or r["provenance"].get("config") or {}
    return str(cfg.get("recipe", "–"))


def _train_seconds(r: dict[str, Any]) -> float:
    train = r.get("train", {})
    return float(train.get("wall_time_s_this_process") or r.get("wall_s", {}).get("total") or float("nan"))


def _evaluated(r: dict[str, Any]) -> str:
    """Where a committed checkpoint's quality is measured, in words (detector AP columns follow)."""
    if "eval" in r:
        return r["eval"]["data"]
    if "heldout" in r:
        return f"held-out faces of the morphable space: {_decoder_errors(r)}"
    return "see the verification section"


def _decoder_errors(r: dict[str, Any]) -> str:
    """A mesh decoder record's held-out shape and colour errors beside the mean face's, in words."""
    h, b = r["heldout"], r["baseline_mean_face"]
    return (f"shape error {100 * h['shape_error_iod']:.2f}% of the inter-ocular distance (mean face "
            f"{100 * b['shape_error_iod']:.2f}%), colour error {h['colour_error_255']:.1f}/255 (mean face "
            f"{b['colour_error_255']:.1f})")  # fmt: skip


def training_section(records: RecordSet) -> Section:
    title = "Training of the committed checkpoints"
    sources = records.of("checkpoint")
    if not sources:
        return Section(title, ("No committed checkpoint record in `retina/weights/`.",))
    runs, rows = [], []
    for s in sources:
        r, metrics = s.record, read_metrics(s.extra_files[0])
        keys = [k for k in ("loss", "cls", "box", "landmarks") if k in metrics[0]]
        series = {"iteration": [m["iteration"] for m in metrics], **{k: [m[k] for m in metrics] for k in keys}}
        runs.append((r["checkpoint"], series))
        ev = r.get("eval")
        scores = [f"{ev[k]:.3f}" for k in (*AP_COLUMNS, "hard_map_50_95")] if ev else ["–"] * 4
        rows.append([r["checkpoint"], r.get("kind", "detector"), _recipe(r), metrics[-1]["iteration"],
                     f"{_train_seconds(r):.0f}", _evaluated(r), *scores])  # fmt: skip
    header = ["checkpoint", "kind", "recipe", "iterations", "train s", "evaluated on", *AP_COLUMNS, "hard mAP"]
    lines = [*md_table(header, rows), ""]
    lines += [f"- reproduce `{s.record['checkpoint']}`: `{s.record['command']}`" for s in sources] + [""]
    text = "Training losses (from the metrics files committed beside the checkpoints). "
    lines += figure_line("training.png", "training losses", text + " | ".join(caption(s) for s in sources))
    figs = {"training.png": figures.loss_curves(runs, "Training losses")}
    return Section(title, tuple(lines), tuple(sources), figs, {"training.csv": csv_table(header, rows)})


# --- ablations --------------------------------------------------------------------------------------------


def ablation_section(records: RecordSet, name: str, commands: Commands) -> Section:
    from retina.report import ablation_table as at

    title = f"Ablation: {name}"
    sources = [s for s in records.of("ablation") if s.record.get("ablation") == name]
    if not sources:
        return not_run(title, f"`{name}` ablation", [commands.ablation.format(name=name)])
    settings = {s.record["setting"] for s in sources}
    if len(settings) > 1:  # several settings under several roots: the first root's wins
        first = sources[0].record["setting"]
        sources = [s for s in sources if s.record["setting"] == first]
    recs = sorted((s.record for s in sources), key=lambda r: (r["order"], r["seed"]))
    df = at.frame(recs)
    summary = at.summarize(df)
    text = at.markdown(recs, summary, df)
    body = [
        ("###" + line[1:] if line.startswith("# ") else "####" + line[2:] if line.startswith("## ") else line)
        for line in text.splitlines()
    ]
    shown = [m for m in at.metrics_of(df) if m != at.DENSE]
    groups = [at.HEADERS[m] for m in shown]
    series = [
        (row["label"], [row[f"{m}_mean"] for m in shown], [row[f"{m}_std"] for m in shown])
        for _, row in summary.iterrows()
    ]
    data = "synthetic SynthFace" if recs[0]["synthetic"] else recs[0]["eval_data"]
    bars = figures.grouped_bars(groups, series, "AP (%), mean ± std over seeds", f"{name}: {data}")
    body += [
        "",
        *figure_line(
            f"ablation_{name}.png",
            f"{name} ablation",
            f"Mean ± std over seeds, {data}, protocol "
            f"{recs[0]['protocol']}. " + caption(sources[0], f"{len(sources)} records"),
        ),
    ]
    drift = [s for s in records.of("summation_drift") if s.record.get("ablation") == name][:1]
    if drift:
        body += ["", *_drift_lines(drift[0])]
    return Section(
        title,
        tuple(body),
        (*sources, *drift),
        {f"ablation_{name}.png": bars},
        {f"ablation_{name}.csv": at.csv_text(recs, summary)},
    )


def _drift_lines(source: Source) -> list[str]:
    """The noise floor of an ablation's rows: its baseline retrained on another thread count (summation_drift)."""
    from retina.report.ablation_table import HEADERS

    r = source.record
    low, high = r["threads"]
    rows = [[HEADERS[k], ", ".join(f"{v:+.2f}" for v in d["per_seed"]), f"{d['mean']:+.2f} ± {d['std']:.2f}"]
            for k, d in r["drift"]["sets"].items()]  # fmt: skip
    text = (f"Noise floor (`python benchmarks/summation_drift.py --ablation {r['ablation']}`): the baseline row "
            f"retrained on {high} threads instead of {low}, the same function, weights and batches, only the kernels' "
            "summation order differs. A row that computes the baseline's function (a control) can differ from it by "
            f"this much without any effect of its own. AP difference in points, {high} - {low} threads:")  # fmt: skip
    header = ["AP", f"per seed ({', '.join(str(s) for s in r['seeds'])})", "mean ± std"]
    return [text, "", *md_table(header, rows), "", caption(source, "1 record")]


# --- speed ------------------------------------------------------------------------------------------------

STAGES = ("pre_ms", "forward_ms", "priors_ms", "decode_nms_ms")


def speed_section(records: RecordSet, commands: Commands) -> Section:
    import pandas as pd

    from retina.report import speed as sp

    title = "Speed"
    grids, fast = records.of("speed_grid"), records.of("speed_fastpath")
    if not grids and not fast:
        return not_run(title, "speed", [commands.speed])
    lines: list[str] = []
    figs: dict[str, bytes] = {}
    tables: dict[str, str] = {}
    stage_rows, scaling = [], []
    for s in grids:
        df = pd.DataFrame(s.record["rows"])
        lines += [
            f"### {sp.machine_line(s.provenance)}",
            "",
            "End to end (image in, detections out), median ms; paper: TVM on other hardware, for orientation only.",
            "",
            sp.paper_table(df),
            "",
            "Stages (ms), memory and counts:",
            "",
            sp.stage_table(df),
            "",
        ]
        tables[f"speed_{len(tables)}.csv"] = df.drop(columns=["throughput"], errors="ignore").to_csv(index=False)
        ok = df[df["e2e_ms"].notna()] if "e2e_ms" in df else df.iloc[0:0]
        for _, r in ok.iterrows():
            stage_rows.append((f"{r['preset']} {r['size']} {r['setting']} {r['backend']}", {k: r[k] for k in STAGES}))
        for (name, setting, backend), g in ok.groupby(["preset", "setting", "backend"]):
            g = g.sort_values("gflop")
            scaling.append(
                (f"{name} {setting} {backend}", list(g["height"] * g["width"] / 1e6), list(g["e2e_ms"]), False)
            )
    if stage_rows:
        figs["speed_stages.png"] = figures.stacked_stages(stage_rows, STAGES, "Where the time goes (stage medians)")
        for label, row in sp.PAPER_TABLE5.items():
            points = [(sp.MEGAPIXELS[k], v) for k, v in row.items() if v is not None]
            scaling.append((f"paper: {label}", [p[0] for p in points], [p[1] for p in points], True))
        figs["speed_scaling.png"] = figures.latency_scaling(scaling, "Latency against input size (log axes)")
        cap = " | ".join(caption(s) for s in grids)
        lines += figure_line("speed_stages.png", "stages", "Stage medians per cell. " + cap)
        lines += figure_line(
            "speed_scaling.png",
            "scaling",
            "End-to-end medians against megapixels; the paper's points (dashed) are other hardware. " + cap,
        )
    for s in fast:
        lines += [
            "### Fast-path ablation",
            "",
            sp.fastpath_table(pd.DataFrame(s.record["rows"])),
            "",
            f"*{caption(s)}*",
            "",
        ]
    if not grids:
        lines += [f"*Not run:* no speed grid records. Make them with: `{commands.speed}`.", ""]
    return Section(title, tuple(lines), (*grids, *fast), figs, tables)


def eval_speed_section(records: RecordSet, commands: Commands) -> Section:
    title = "Evaluation speed"
    sources = records.of("eval_speed")
    if not sources:
        return not_run(title, "evaluation-speed", [commands.eval_speed])
    lines: list[str] = []
    figs, rows = {}, []
    for k, s in enumerate(sources):
        r = s.record
        for stage, best in r["seconds_best"].items():
            rows.append([k, stage, f"{best:.4f}", f"{r['seconds_median'][stage]:.4f}", r["repeats"], r["data"]])
        speedup = r.get("speedup_vs_baseline_one_iou", {})
        lines += [
            f"{r['images']} images, {r['faces']} faces, {r['predictions']} predictions ({r['data']}): the whole "
            f"evaluation ({r['evaluate_all_covers']}) takes {r['seconds_median']['evaluate_all']:.3f} s "
            "(median)"
            + (
                f", {speedup['evaluate_one_iou_float64']:.0f}x faster than a per-image loop "
                "port of the official code at one IoU"
                if speedup
                else ""
            )
            + f". *{caption(s)}*",
            "",
        ]
        stages = {n: v for n, v in r["seconds_median"].items() if n.startswith(("evaluate", "baseline"))}
        figs[f"eval_speed_{k}.png"] = figures.grouped_bars(
            list(stages),
            [("median s", list(stages.values()), [np.nan] * len(stages))],
            "seconds (median)",
            "Evaluation stages",
        )
        lines += figure_line(f"eval_speed_{k}.png", "evaluation speed", caption(s))
    header = ["record", "stage", "best s", "median s", "repeats", "data"]
    lines = [*md_table(header, rows), "", *lines]
    return Section(title, tuple(lines), tuple(sources), figs, {"eval_speed.csv": csv_table(header, rows)})


def synth_speed_section(records: RecordSet, commands: Commands) -> Section:
    title = "SynthFace generation speed"
    sources = records.of("synth_speed")
    if not sources:
        return not_run(title, "SynthFace-speed", [commands.synth_speed])
    header = ["preset", "split", "images", "workers", "seconds", "s per 1000 images", "faces", "machine, date"]
    rows = [
        [
            r["settings"]["preset"],
            r["settings"]["split"],
            r["settings"]["images"],
            r["settings"]["workers"],
            f"{r['seconds']:.1f}",
            f"{r['seconds_per_1000_images']:.1f}",
            r["split"]["n_faces"],
            caption(s),
        ]
        for s in sources
        for r in [s.record]
    ]
    return Section(
        title, (*md_table(header, rows), ""), tuple(sources), {}, {"synth_speed.csv": csv_table(header, rows)}
    )


def train_speed_section(records: RecordSet, commands: Commands) -> Section:
    """Issue 23: the training loop's stage breakdown and the training fast-path table, per CPU setting."""
    title = "Training speed on CPUs"
    sources = records.of("train_speed")
    if not sources:
        return not_run(title, "training-speed", [commands.train_speed])
    lines: list[str] = []
    tables: dict[str, str] = {}
    for src in sources:
        r = src.record
        for name, setting in r["settings"].items():
            lines += [f"**{name}** ({setting['what']}). " + caption(src), ""]
            for key, (header, rows) in _train_speed_tables(setting).items():
                lines += [*md_table(header, rows), ""]
                tables[f"train_speed_{name}_{key}.csv"] = csv_table(header, rows)
        goals = r.get("goals", {})
        done = [f"{k.replace('_', ' ')} {v:.2f}" for k, v in goals.items() if isinstance(v, float) and "goal" not in k]
        if done:
            lines += [f"Issue 23's targets: step <= {goals['step_goal_x_biubug6']}x the biubug6-style step, synth-cpu "
                      f"iteration >= {goals['e2e_goal_x_before']}x faster than before. Measured: " + "; ".join(done)
                      + ".", ""]  # fmt: skip
        ap = r.get("bf16_ap")
        if ap:
            diff = ", ".join(f"{k} {100 * v:+.2f}" for k, v in ap["bf16_minus_fp32"].items())
            seeds = sorted({run["seed"] for run in ap["runs"]})
            lines += [f"bf16 autocast minus float32, AP points ({ap['what']}; seeds {seeds}): {diff}.", ""]
    return Section(title, tuple(lines), tuple(sources), {}, tables)


def _train_speed_tables(setting: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """The tables of one setting of a train_speed record: step, whole iteration, stage profile, data pipeline."""
    out: dict[str, tuple[list[str], list[list[Any]]]] = {}
    if "step" in setting:
        rows = [[r["variant"], "yes" if r["kept"] else "", f"{r['median_ms']:.1f}", f"{r['cpu_median_ms']:.1f}",
                 f"{r['x_biubug6']:.2f}"] for r in setting["step"]["rows"]]  # fmt: skip
        out["step"] = (["training step", "suite path", "median ms", "CPU ms", "x biubug6-style"], rows)
    if "parts" in setting:
        rows = [[r["section"], r["variant"], f"{r['median_ms']:.2f}"] for r in setting["parts"]["rows"]]
        out["parts"] = (["part of the step", "implementation", "median ms"], rows)
    if "e2e" in setting:
        rows = [[r["config"], f"{r['images_per_s']:.2f}", f"{r['iteration_cpu_ms']:.0f}",
                 *("–" if r[k] is None else f"{r[k]:.2f}" for k in ("x_before", "x_before_cpu"))]
                for r in setting["e2e"]["rows"]]  # fmt: skip
        header = ["whole iteration (data included)", "images/s", "CPU ms (training process)", "x before issue 23",
                  "x before (CPU)"]  # fmt: skip
        out["iteration"] = (header, rows)
        profile = setting["e2e"].get("profile")
        if profile:
            rows = [[stage, f"{v['wall_ms']:.1f}", f"{v['cpu_ms']:.1f}", f"{100 * v['share']:.1f}"]
                    for stage, v in profile["stages"].items()]  # fmt: skip
            out["profile"] = (["stage of an iteration", "wall ms", "CPU ms", "% of wall"], rows)
    if "data" in setting:
        runs = setting["data"]
        stages = list(next(iter(runs.values()))["cpu_ms_per_image"])
        rows = [[stage, *(f"{runs[t]['cpu_ms_per_image'][stage]:.2f}" for t in runs)] for stage in stages]
        out["data"] = (["data stage (CPU ms per image, 1 thread)", *runs], rows)
    return out


# --- records of later issues: verification and the dense branch -----------------------------------------


def _decoder_lines(records: RecordSet) -> tuple[list[str], list[Source]]:
    """The committed mesh decoder's held-out errors, from its record (``retina/weights/mesh_decoder.json``)."""
    sources = [s for s in records.of("checkpoint") if str(s.record.get("kind", "")).startswith("mesh decoder")]
    lines = []
    for s in sources:
        r = s.record
        lines += [
            f"Mesh decoder `{r['checkpoint']}` (pre-trained on the suite's morphable face space, `{r['command']}`): "
            f"held-out {_decoder_errors(r)}. *{caption(s)}*",
            "",
        ]
    return lines, sources


def dense_section(records: RecordSet, commands: Commands) -> Section:
    """The dense branch: the decoder's pre-training, the pixel loss's cost and what it fits, predicted meshes.

    The mesh ablation (its dense NME column) has its own section."""
    import cv2

    title = "Dense branch"
    lines, sources = _decoder_lines(records)
    tables = records.of("dense")
    gallery = records.of("dense_gallery")
    for s in tables:
        r = s.record
        lines += [f"**{r.get('what', s.path.stem)}**", ""]
        rows = r.get("table") or []
        header = list(dict.fromkeys(k for row in rows for k in row))
        lines += [*md_table(header, [[row.get(h, "") for h in header] for row in rows]), ""]
        lines += ([r["finding"], ""] if r.get("finding") else []) + [f"*{caption(s)}*", ""]
    figs = {}
    for k, s in enumerate(gallery):
        r = s.record
        panels = []
        for item, path in zip(r["images"], s.extra_files, strict=True):
            nmes = [f["nme"] for f in item["faces"] if f["nme"] is not None]
            text = f"mean NME {100 * sum(nmes) / len(nmes):.1f}% over {len(nmes)} faces" if nmes else "no face matched"
            panels.append((cv2.imread(str(path))[:, :, ::-1], f"{item['source']}: {text}"))
        figs[f"dense_gallery_{k}.png"] = figures.gallery(panels, columns=len(panels))
        lines += figure_line(
            f"dense_gallery_{k}.png",
            "predicted meshes",
            f"Predicted meshes (rendered, blended 60%) of checkpoint `{r['checkpoint']}` over {r['data']}; green: "
            "every 8th visible vertex of the true mesh. " + caption(s),
        )
    sources += tables + gallery
    if not tables and not gallery:
        missing = not_run(title, "dense-branch benchmark", [commands.dense])
        return Section(title, tuple(lines) + missing.lines, tuple(sources), missing=missing.missing)
    return Section(title, tuple(lines), tuple(sources), figs)


def landmarks_section(records: RecordSet, commands: Commands) -> Section:
    from retina.verify.landmark_job import ced_png

    title = "Landmark accuracy (NME, CED, failure rate)"
    sources = records.of("landmarks")
    if not sources:
        return not_run(title, "landmark-accuracy", [commands.landmarks])
    lines: list[str] = []
    figs = {}
    for k, s in enumerate(sources):
        r = s.record
        lines += [r["table"], ""]
        if r.get("mtcnn", "run") != "run":
            lines += [f"MTCNN: {r['mtcnn']}.", ""]
        figs[f"landmarks_ced_{k}.png"] = ced_png(r)
        lines += figure_line(f"landmarks_ced_{k}.png", "CED", f"{r['data']}; " + caption(s))
    return Section(title, tuple(lines), tuple(sources), figs)


def verification_section(records: RecordSet, commands: Commands) -> Section:
    from retina.verify.experiment import markdown, roc_png

    title = "Face verification by alignment source"
    sources = records.of("verification")
    if not sources:
        return not_run(title, "verification", [commands.verification])
    lines: list[str] = []
    figs = {}
    for k, s in enumerate(sources):
        r = s.record
        e = r["embedding"]
        lines += [f"{r['data']}: {r['pairs']} pairs of {r['images']} images; embedding: {e['kind']} `{e['file']}`.", ""]
        lines += [markdown(r["table"]), ""]
        if r.get("mtcnn", "run") != "run":
            lines += [f"MTCNN: {r['mtcnn']}.", ""]
        figs[f"verification_roc_{k}.png"] = roc_png(r)
        lines += figure_line(f"verification_roc_{k}.png", "ROC", caption(s))
    return Section(title, tuple(lines), tuple(sources), figs)


# --- test quality ------------------------------------------------------------------------------------------

MUTATION_COLUMNS = ("mutants", "killed", "timeout", "crashed", "equivalent", "survived")


def _score(m: dict[str, Any]) -> str:
    return "–" if m["score"] is None else f"{100 * m['score']:.1f}"


def _caught_of_all(m: dict[str, Any]) -> str:
    return f"{100 * m['caught'] / m['mutants']:.1f}" if m["mutants"] else "–"


def mutation_section(records: RecordSet, commands: Commands) -> Section:
    """Mutation testing: per module the mutants the tests catch, the survivors and the equivalent ones."""
    title = "Mutation testing"
    sources = records.of("mutation")
    if not sources:
        return not_run(title, "mutation-testing", [commands.mutation])
    s = sources[0]
    r = s.record
    header = ["module", "file", *MUTATION_COLUMNS, "score %", "caught % of all mutants"]
    rows = [[name, m["file"], *(m[k] for k in MUTATION_COLUMNS), _score(m), _caught_of_all(m)]
            for name, m in r["modules"].items()]  # fmt: skip
    total = r["total"]
    rows.append(["total", "", *(total[k] for k in MUTATION_COLUMNS), _score(total), _caught_of_all(total)])
    survivors = [(name, v["mutant"]) for name, m in r["modules"].items() for v in m["survivors"]]
    lines = [
        f"Small code changes (mutants, {r['tool']}) in the core numeric and landmark modules, each run against "
        f"that module's fast tests ({r['conditions']}). Score = {r['score_definition']}; goal "
        f"{100 * r['goal']:.0f}%. Equivalent mutants (no behaviour change, or a device change that a CPU-only run "
        "cannot see) are listed with their reasons in `benchmarks/mutation_equivalent.json`.",
        "",
        *md_table(header, rows),
        "",
        f"Surviving mutants: {len(survivors)}" + (": " + ", ".join(f"`{m}`" for _, m in survivors) if survivors else "")
        + ". Equivalent mutants by kind: "
        + ", ".join(f"{kind} {n}" for kind, n in r["total"].get("equivalent_by_kind", {}).items()) + ".",
        "",
        f"*{caption(s)}*",
        "",
    ]  # fmt: skip
    return Section(title, tuple(lines), (s,), {}, {"mutation.csv": csv_table(header, rows)})


# --- the detection gallery ---------------------------------------------------------------------------------


def draw(image_bgr: np.ndarray, dets: dict[str, Any], threshold: float) -> np.ndarray:
    """RGB copy of the image with the boxes (x1 y1 x2 y2) and five landmarks scoring >= ``threshold``."""
    import cv2

    canvas = image_bgr.copy()
    width = max(2, round(max(canvas.shape[:2]) / 320))  # still visible once the figure shrinks the image
    for box, score, marks in zip(dets["boxes"], dets["scores"], dets["landmarks"], strict=True):
        if score < threshold:
            continue
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), width)
        for x, y in marks:
            cv2.circle(canvas, (round(x), round(y)), width, (0, 0, 255), -1)
    return canvas[:, :, ::-1]


def gallery_section(records: RecordSet, commands: Commands) -> Section:
    import cv2

    title = "Detection gallery"
    sources = records.of("gallery")
    if not sources:
        return not_run(title, "gallery", [commands.gallery])
    lines, figs = [], {}
    for k, s in enumerate(sources):
        r = s.record
        panels = []
        for threshold in r["thresholds"]:
            for item, path in zip(r["images"], s.extra_files, strict=True):
                image = cv2.imread(str(path))
                shown = sum(score >= threshold for score in item["detections"]["scores"])
                panels.append(
                    (
                        draw(image, item["detections"], threshold),
                        f"{item['image']}: score >= {threshold:g}, {shown} faces",
                    )
                )
        figs[f"gallery_{k}.png"] = figures.gallery(panels, columns=len(r["images"]))
        lines += figure_line(
            f"gallery_{k}.png",
            "detections",
            f"Boxes and five landmarks on {r['data']} at two "
            f"score thresholds; checkpoint `{r['checkpoint']}`, protocol {r['protocol']}. " + caption(s),
        )
    return Section(title, tuple(lines), tuple(sources), figs)


SectionBuilder = Callable[[RecordSet, Commands], Section]


# --- synthetic to real --------------------------------------------------------------------------------------


def transfer_section(records: RecordSet, commands: Commands) -> Section:
    """Checkpoints on real WIDER FACE images beside their SynthFace val AP; recall by face size; sample photos."""
    title = "From synthetic to real"
    sources = records.of("real_transfer")
    if not sources:
        return not_run(title, "synthetic-to-real", [commands.transfer])
    s = sources[0]
    r = s.record
    lines = [f"{r['data']}; protocol `{r['test_protocol']}`, {r['arithmetic']} arithmetic, AP at IoU 0.5.", "",
             r["table"], ""]  # fmt: skip
    bins = list(r["rows"][0]["real"]["operating_point"]["recall_by_height_px"])
    rows = [[row["name"], *(_recall(row["real"]["operating_point"]["recall_by_height_px"][b]) for b in bins)]
            for row in r["rows"]]  # fmt: skip
    lines += [f"Recall at score {r['operating_score']} by true face height (px, faces that count in 'hard'):", ""]
    lines += [*md_table(["checkpoint", *bins], rows), ""]
    photos = [(row["name"], row["sample_photos"]) for row in r["rows"] if row.get("sample_photos")]
    if photos:
        lines += ["Sample photos at score >= 0.5 (unmatched: no face of either reference detector, biubug6's code "
                  "with its real weights or MTCNN, within IoU 0.3; the photos are not ours to publish: "
                  "`python benchmarks/real_transfer.py` draws them into results/real_transfer/):", ""]  # fmt: skip
        names = sorted({n for _, p in photos for n in p})
        cells = [[name, *(_photo(p.get(n)) for n in names)] for name, p in photos]
        lines += [*md_table(["checkpoint", *names], cells), ""]
    curves = [(row["name"], {k: {**row["real"]["curves"][k], "ap": row["real"][k]} for k in AP_COLUMNS})
              for row in r["rows"]]  # fmt: skip
    figs = {"transfer_pr.png": figures.pr_panels(curves, "Real images: precision vs recall")}
    lines += figure_line("transfer_pr.png", "real PR curves", caption(s))
    return Section(title, tuple(lines), (s,), figs)


def _recall(entry: dict[str, Any]) -> str:
    return "–" if entry["recall"] is None else f"{100 * entry['recall']:.1f}% of {entry['faces']}"


def _photo(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "–"
    text = f"{entry['detections']} det., {entry['unmatched']} unmatched"
    return text + (", astronaut found" if entry.get("astronaut_face_found") else "")


def all_sections(records: RecordSet, commands: Commands, ablations: Sequence[str]) -> list[Section]:
    """Every section in page order."""
    return [
        evaluation_section(records, commands),
        transfer_section(records, commands),
        training_section(records),
        *(ablation_section(records, name, commands) for name in ablations),
        speed_section(records, commands),
        eval_speed_section(records, commands),
        synth_speed_section(records, commands),
        train_speed_section(records, commands),
        landmarks_section(records, commands),
        verification_section(records, commands),
        dense_section(records, commands),
        gallery_section(records, commands),
        mutation_section(records, commands),
    ]
