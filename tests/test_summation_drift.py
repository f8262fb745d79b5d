"""benchmarks/summation_drift.py: the drift statistics from fake APs (no training), and the published rows."""

from __future__ import annotations

import pytest

from benchmarks.summation_drift import published_rows, summarise


def _ap(easy: float, medium: float, hard: float, hard_map: float) -> dict[str, float]:
    return {"easy": easy, "medium": medium, "hard": hard, "hard_map": hard_map}


def test_summarise_is_the_second_thread_count_minus_the_first_in_points() -> None:
    runs = {
        1: {0: _ap(0.80, 0.70, 0.60, 0.25), 1: _ap(0.82, 0.71, 0.62, 0.26)},
        2: {0: _ap(0.81, 0.70, 0.59, 0.25), 1: _ap(0.82, 0.73, 0.65, 0.26)},
    }
    s = summarise(runs)
    assert s["difference"] == "threads 2 - threads 1"
    hard = s["sets"]["hard"]  # -1 and +3 points: mean +1, sample std sqrt(((-2)^2 + 2^2) / 1) = 2.828..., |.| mean 2
    assert hard["per_seed"] == pytest.approx([-1.0, 3.0])
    assert hard["mean"] == pytest.approx(1.0)
    assert hard["std"] == pytest.approx(8**0.5)
    assert hard["mean_abs"] == pytest.approx(2.0)
    assert s["sets"]["hard_map"]["per_seed"] == pytest.approx([0.0, 0.0])


def test_published_rows_read_the_committed_dcn_table() -> None:
    rows = published_rows("dcn")
    if not rows:
        pytest.skip("no committed DCN ablation table")
    assert list(rows)[:3] == ["no_dcn", "dcn", "dcn_frozen"]
    assert rows["no_dcn"]["hard_diff"] == 0.0  # the baseline's difference to itself
    assert set(rows["dcn_frozen"]) >= {"hard_mean", "hard_diff", "hard_diff_std"}


def test_the_report_shows_the_floor_per_seed_and_its_mean(tmp_path) -> None:
    from retina.report.sections import _drift_lines
    from retina.report.sources import Source

    runs = {1: {0: _ap(0.80, 0.70, 0.60, 0.25), 1: _ap(0.82, 0.71, 0.62, 0.26)},
            2: {0: _ap(0.81, 0.70, 0.59, 0.25), 1: _ap(0.82, 0.73, 0.65, 0.26)}}  # fmt: skip
    prov = {"git": {"commit": "c" * 40, "dirty": False}, "created_utc": "2026-12-05T08:00:00",
            "machine": {"processor": "CPU", "cpu_count": 2}}  # fmt: skip
    record = {"ablation": "dcn", "threads": [1, 2], "seeds": [0, 1], "drift": summarise(runs), "provenance": prov}
    lines = _drift_lines(Source("summation_drift", tmp_path / "dcn.json", record))
    assert "| hard | -1.00, +3.00 | +1.00 ± 2.83 |" in lines
    assert "| easy | +1.00, +0.00 | +0.50 ± 0.71 |" in lines
    assert "retrained on 2 threads instead of 1" in lines[0]


def test_reproduction_of_the_published_baseline_is_checked_seed_for_seed() -> None:
    from benchmarks.summation_drift import PUBLISHED, reproduces_published

    paths = sorted((PUBLISHED / "dcn" / "records").glob("no_dcn__seed*.json"))
    if not paths:
        pytest.skip("no committed DCN ablation records")
    import json

    metrics = {json.loads(p.read_text())["seed"]: json.loads(p.read_text())["metrics"] for p in paths}
    assert reproduces_published("dcn", metrics) is True
    seeds = sorted(metrics)
    swapped = {seeds[0]: metrics[seeds[1]], seeds[1]: metrics[seeds[0]]}  # same mean, other seeds
    assert reproduces_published("dcn", swapped) is False
    assert reproduces_published("dcn", {999: metrics[seeds[0]]}) is None
