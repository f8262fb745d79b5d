"""benchmarks/dcn_offsets.py: the rule that suggests the DCN offset learning-rate multiplier, on hand-made rows."""

from __future__ import annotations

from benchmarks.dcn_offsets import suggest


def _row(multiplier: float, gap: float, sem: float) -> dict[str, float]:
    return {"dcn_offset_lr": multiplier, "loss_gap_second_half": gap, "loss_gap_second_half_sem": sem}


def test_the_largest_multiplier_whose_loss_gap_is_within_two_standard_errors() -> None:
    rows = [_row(1.0, 0.19, 0.027), _row(0.1, 0.0072, 0.0216), _row(0.01, -0.0024, 0.012), _row(0.0, -0.0074, 0.009)]
    assert suggest(rows) == 0.1  # 1: 0.19 > 2 x 0.027; 0.1: 0.0072 <= 0.0432 (not the smallest gap, 0.01's)


def test_a_gap_just_beyond_two_standard_errors_disqualifies_and_zero_never_qualifies() -> None:
    assert suggest([_row(0.5, 0.0201, 0.01), _row(0.05, 0.02, 0.01)]) == 0.05  # 0.0201 > 0.02; 0.02 <= 0.02
    assert suggest([_row(1.0, 0.3, 0.01), _row(0.0, 0.0, 0.01)]) is None
