"""The one learning-rate schedule: the detector's step schedule and the cosine one of the other trainers."""

from __future__ import annotations

import math

import pytest

from retina.config import TrainCfg
from retina.schedule import learning_rate


def test_paper_step_schedule_scaled_to_run_length():
    cfg = TrainCfg()  # paper: warm-up 1e-3 -> 1e-2 over 5/80 of the run, /10 at 55/80 and 68/80
    kw = {"warmup_fraction": cfg.warmup_fraction, "warmup_lr": cfg.warmup_lr, "step_fractions": cfg.step_fractions}
    assert learning_rate(0, 800, cfg.lr, **kw) == pytest.approx(1e-3)
    assert learning_rate(25, 800, cfg.lr, **kw) == pytest.approx(1e-3 + 0.5 * 9e-3)
    assert learning_rate(50, 800, cfg.lr, **kw) == pytest.approx(1e-2)
    assert learning_rate(549, 800, cfg.lr, **kw) == pytest.approx(1e-2)
    assert learning_rate(550, 800, cfg.lr, **kw) == pytest.approx(1e-3)
    assert learning_rate(680, 800, cfg.lr, **kw) == pytest.approx(1e-4)


def test_warmup_from_zero_then_cosine_or_steps():
    def lr(i: int, **kw: object) -> float:
        return learning_rate(i, 100, 0.1, warmup_fraction=0.1, **kw)  # type: ignore[arg-type]

    assert [lr(i, decay="cosine") for i in range(3)] == pytest.approx([0.01, 0.02, 0.03])
    assert lr(9, decay="cosine") == pytest.approx(0.1)  # the last warm-up iteration reaches lr
    assert lr(10, decay="cosine") == pytest.approx(0.1)  # end of warm-up: the top of the cosine
    assert lr(55, decay="cosine") == pytest.approx(0.05)  # half-way through the cosine
    assert lr(99, decay="cosine") == pytest.approx(0.05 * (1 + math.cos(math.pi * 89 / 90)))
    steps = [lr(i, step_fractions=(0.5, 0.8)) for i in (10, 49, 50, 79, 80)]
    assert steps == pytest.approx([0.1, 0.1, 0.01, 0.01, 1e-3])


def test_no_warmup():
    assert learning_rate(0, 10, 0.5, warmup_fraction=0.0, warmup_lr=0.1) == 0.5
    assert learning_rate(0, 10, 0.5, warmup_fraction=0.0, decay="cosine") == 0.5
