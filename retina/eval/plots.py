"""PR-curve figure in the style of the official WIDER FACE plots (precision vs recall, AP in the legend)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from retina.eval.widerface import PRCurve

_COLOURS = {"easy": "tab:green", "medium": "tab:blue", "hard": "tab:red"}


def pr_figure_png(curves: Mapping[str, PRCurve], title: str = "WIDER FACE evaluation") -> bytes:
    """The settings' PR curves in one figure (one line each, AP in the legend); returns PNG bytes.

    Points without a proposal (precision NaN, MATLAB's 0/0) are left out, as MATLAB's plot does.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 5.0), dpi=120)
    ax = fig.add_subplot()
    for setting, curve in curves.items():
        precision, recall = curve.precision, curve.recall
        shown = ~np.isnan(precision)
        ax.plot(
            recall[shown],
            precision[shown],
            color=_COLOURS.get(setting),
            linewidth=2,
            label=f"{setting}: AP {curve.ap:.3f}",
        )
    iou = {c.iou for c in curves.values()}
    arithmetic = {c.arithmetic for c in curves.values()}
    style_pr_axes(ax, f"{title} (IoU {', '.join(map(str, sorted(iou)))}, {', '.join(sorted(arithmetic))})")
    return figure_png(fig)


def style_pr_axes(ax: Any, title: str, legend_size: float | None = None) -> None:
    """The WIDER-style precision/recall axes: unit square, dotted grid, legend lower left."""
    ax.set_title(title)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(True, linestyle=":")
    ax.legend(loc="lower left", fontsize=legend_size)


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (tight bounding box), without metadata that changes from run to run."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()
