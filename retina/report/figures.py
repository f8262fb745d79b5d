"""The report's figures: plain data in, PNG bytes out (matplotlib's object API; no display, no files).

PNGs are written without a creation time or software version in their metadata, so that the same data give
the same bytes with the same matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from retina.eval.plots import figure_png

SETTINGS = ("easy", "medium", "hard")


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


png = figure_png  # one PNG writer for the suite (retina.eval.plots)


def _precision_recall(curve: Mapping[str, Sequence[float | None]]) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) without the points of no proposal (precision None/NaN, MATLAB's 0/0)."""
    recall = np.asarray(curve["recall"], float)
    precision = np.asarray([np.nan if p is None else p for p in curve["precision"]], float)
    shown = ~np.isnan(precision)
    return recall[shown], precision[shown]


def pr_panels(models: Sequence[tuple[str, Mapping[str, Any]]], title: str) -> bytes:
    """WIDER-style PR curves, one panel per setting (easy, medium, hard), one line per model.

    ``models``: (name, {setting: {"recall": [...], "precision": [...], "ap": float}}) in legend order.
    """
    fig = _figure(15.0, 4.8)
    axes = fig.subplots(1, len(SETTINGS))
    for ax, setting in zip(axes, SETTINGS, strict=True):
        for k, (name, curves) in enumerate(models):
            recall, precision = _precision_recall(curves[setting])
            ax.plot(recall, precision, color=f"C{k}", linewidth=2, label=f"{curves[setting]['ap']:.3f} {name}")
        ax.set(title=f"{setting} set", xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01))
        ax.grid(True, linestyle=":")
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(title)
    return png(fig)


def grouped_bars(groups: Sequence[str], series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                 ylabel: str, title: str) -> bytes:  # fmt: skip
    """Bars of several series over the same groups with error bars (mean, std; NaN std: no bar)."""
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    x = np.arange(len(groups), dtype=float)
    width = 0.8 / max(1, len(series))
    for k, (name, means, stds) in enumerate(series):
        errors = np.nan_to_num(np.asarray(stds, float))
        ax.bar(x + (k - (len(series) - 1) / 2) * width, means, width, yerr=errors, capsize=4, label=name)
    ax.set_xticks(x, groups)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(True, axis="y", linestyle=":")
    ax.legend(fontsize=8)
    return png(fig)


def stacked_stages(rows: Sequence[tuple[str, Mapping[str, float]]], stages: Sequence[str], title: str) -> bytes:
    """Horizontal stacked bars: per row (a label), each stage's share of the row's total; totals in the labels.

    Shares rather than milliseconds: the rows span three orders of magnitude, and stacked bars on a log axis
    would misstate the proportions.
    """
    fig = _figure(9.0, 0.45 * len(rows) + 1.5)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    values = np.array([[r.get(stage, 0.0) for stage in stages] for _, r in rows], float).reshape(len(rows), -1)
    totals = values.sum(axis=1)
    shares = values / np.where(totals > 0, totals, 1.0)[:, None]
    left = np.zeros(len(rows))
    for k, stage in enumerate(stages):
        ax.barh(y, shares[:, k], left=left, color=f"C{k}", label=stage)
        left += shares[:, k]
    ax.set_yticks(y, [f"{label} ({total:.1f} ms)" for (label, _), total in zip(rows, totals, strict=True)], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="share of the summed stage medians")
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="x", linestyle=":")
    ax.legend(fontsize=7, loc="lower right")
    return png(fig)


def latency_scaling(lines: Sequence[tuple[str, Sequence[float], Sequence[float], bool]], title: str) -> bytes:
    """Latency against input megapixels on log axes; ``lines``: (label, megapixels, ms, dashed reference?)."""
    fig = _figure(8.0, 5.5)
    ax = fig.add_subplot()
    for label, mp, ms, reference in lines:
        ax.plot(mp, ms, "x--" if reference else "o-", alpha=0.5 if reference else 1.0, label=label)
    ax.set(xscale="log", yscale="log", xlabel="input megapixels", ylabel="end to end, median ms")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return png(fig)


def loss_curves(runs: Sequence[tuple[str, Mapping[str, Sequence[float]]]], title: str) -> bytes:
    """Training losses against iterations, one panel per run; each mapping holds ``iteration`` and losses."""
    fig = _figure(6.5 * len(runs), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(runs)))
    for ax, (name, series) in zip(axes, runs, strict=True):
        for key, values in series.items():
            if key != "iteration":
                ax.plot(series["iteration"], values, linewidth=1.2, label=key)
        ax.set(yscale="log", xlabel="iteration", ylabel="loss (log scale)", title=name)
        ax.grid(True, which="both", linestyle=":")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return png(fig)


def gallery(panels: Sequence[tuple[np.ndarray, str]], columns: int) -> bytes:
    """Images (HxWx3 uint8 RGB, already drawn on) in a grid of ``columns``, each with its title."""
    rows = -(-len(panels) // columns)
    fig = _figure(5.0 * columns, 4.2 * rows)
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (image, title) in zip(axes, panels, strict=False):
        ax.imshow(image)
        ax.set_title(title, fontsize=8)
    return png(fig)
