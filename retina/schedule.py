"""The learning-rate schedule of every trainer here (detector, ArcFace embedder, mesh decoder)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal


def learning_rate(
    iteration: int,
    total: int,
    lr: float,
    *,
    warmup_fraction: float,
    warmup_lr: float | None = None,
    decay: Literal["step", "cosine"] = "step",
    step_fractions: Sequence[float] = (),
) -> float:
    """The learning rate of iteration ``iteration`` (0-based) of a ``total``-iteration run.

    Warm-up over the first ``int(warmup_fraction * total)`` iterations: linear from ``warmup_lr`` at iteration 0
    towards ``lr`` (the paper's 1e-3 -> 1e-2), or, with ``warmup_lr`` None, ``lr * (iteration + 1) / warmup``
    (``lr`` at the last warm-up iteration). Then ``"step"``: ``lr`` divided by 10 at each fraction of the run in
    ``step_fractions`` (paper: epochs 55 and 68 of 80); ``"cosine"``: half a cosine from ``lr`` down to 0.
    """
    warmup = int(warmup_fraction * total)
    if iteration < warmup:
        if warmup_lr is None:
            return lr * (iteration + 1) / warmup
        return warmup_lr + (lr - warmup_lr) * iteration / warmup
    if decay == "step":
        return lr * 0.1 ** sum(iteration >= int(f * total) for f in step_fractions)
    progress = (iteration - warmup) / max(1, total - warmup)
    return 0.5 * lr * (1.0 + math.cos(math.pi * progress))
