"""benchmarks/pixel_step.py: the record's statistics and table from fake timings (no training)."""

from __future__ import annotations

import pytest

from benchmarks.pixel_step import Timings, block_ratios, summary


def _fake() -> Timings:
    # block 1: without 0.2 s/step, with 0.5 s/step (x2.5); block 2 (a slower moment): 0.4 and 0.8 (x2.0);
    # block 3: 0.25 and 0.55 (x2.2)
    return Timings(
        without=[[0.2, 0.2], [0.4, 0.4], [0.25, 0.25]],
        with_pixel=[[0.4, 0.6], [0.8, 0.8], [0.5, 0.6]],
        pixel_forward=[0.1, 0.3, 0.2, 0.2, 0.1, 0.2],
        faces=[14.0, 16.0, 15.0, 15.0, 12.0, 18.0],
    )


def test_block_ratios_are_ratios_of_block_means() -> None:
    assert block_ratios(_fake()) == pytest.approx([2.5, 2.0, 2.2])


def test_summary_ratio_is_median_of_block_ratios_and_rows_hold_by_hand_values() -> None:
    s = summary(_fake(), batch=8, w_pixel=0.01)
    assert s["ratio_with_over_without"] == pytest.approx(2.2)
    assert s["rendered_faces_per_step"] == pytest.approx(15.0)
    # medians over all steps: without {0.2,0.2,0.25,0.25,0.4,0.4} -> 0.25; with {0.4,0.5,0.6,0.6,0.8,0.8} -> 0.6
    assert s["extra_s_per_step"] == pytest.approx(0.35)
    without, with_pixel, forward = s["table"]
    assert without == {
        "training step": "without Lpixel (w_pixel 0)",
        "median s": 0.25,
        "mean s": 0.2833,
        "images/s": 32.0,
        "rendered faces/step": 0.0,
        "x without": 1.0,
    }
    assert with_pixel["training step"] == "with Lpixel (w_pixel 0.01)"
    assert (with_pixel["median s"], with_pixel["mean s"], with_pixel["images/s"]) == (0.6, 0.6167, 13.33)
    assert (with_pixel["rendered faces/step"], with_pixel["x without"]) == (15.0, 2.2)
    assert "images/s" not in forward  # the pixel forward is part of a step, not a step
    assert (forward["median s"], forward["x without"]) == (0.2, 0.8)  # 0.2 s of a 0.25 s step


def test_summary_without_pixel_forward_has_two_rows() -> None:
    t = _fake()
    t.pixel_forward.clear()
    assert len(summary(t, batch=8, w_pixel=0.01)["table"]) == 2
