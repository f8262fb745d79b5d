"""benchmarks/pixel_fit.py: the NME helper, the table and the computed finding from hand-made numbers (no fitting)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.pixel_fit import DEFAULT_ROW, ORACLE_ROW, VARIANTS, finding, improved_fraction, nme, summary


def test_nme_is_mean_visible_distance_over_sqrt_box_area_in_percent() -> None:
    true_uv = np.zeros((3, 2))
    uv = np.array([[3.0, 4.0], [0.0, 1.0], [100.0, 0.0]])  # distances 5, 1, 100
    visible = np.array([True, True, False])
    # mean(5, 1) = 3 px over sqrt(4 * 9) = 6 px -> 50 %
    assert nme(uv, true_uv, visible, (4.0, 9.0), centred=False) == pytest.approx(50.0)


def test_centred_nme_removes_the_mean_offset_only() -> None:
    true_uv = np.array([[0.0, 0.0], [2.0, 0.0]])
    shifted = true_uv + np.array([7.0, -3.0])
    visible = np.array([True, True])
    assert nme(shifted, true_uv, visible, (1.0, 1.0), centred=True) == pytest.approx(0.0, abs=1e-12)
    # a scale error survives centring: points at -1, 3 vs 0, 2 -> offsets -1, +1 after centring -> mean 1 px
    scaled = np.array([[-1.0, 0.0], [3.0, 0.0]])
    assert nme(scaled + 5.0, true_uv, visible, (2.0, 2.0), centred=True) == pytest.approx(50.0)


def test_improved_fraction_counts_strict_decreases() -> None:
    assert improved_fraction([10.0, 10.0, 10.0, 10.0], [9.0, 10.0, 11.0, 2.0]) == pytest.approx(0.5)


def _per_face() -> list[dict]:
    # two faces: default 20 and 10 % (mean 15), oracle 6 and 8 % (mean 7); with the best translation removed
    # default 12 and 8 (mean 10), oracle 2 and 4 (mean 3)
    faces = [
        {"default": {"nme": 20.0, "nme_centred": 12.0}, "oracle": {"nme": 6.0, "nme_centred": 2.0}},
        {"default": {"nme": 10.0, "nme_centred": 8.0}, "oracle": {"nme": 8.0, "nme_centred": 4.0}},
    ]
    after = {"eq5": ((18.0, 11.0), (12.0, 9.0)), "eq5_aa": ((8.0, 5.0), (6.0, 3.0)), "covered": ((30, 20), (20, 14))}
    for v in VARIANTS:
        for f, (a, c), loss in zip(faces, after[v.key], (0.2, 0.4), strict=True):
            f[v.key] = {"nme": a, "nme_centred": c, "loss_final": loss}
    return faces


def test_summary_rows_hold_by_hand_values() -> None:
    table = summary(_per_face(), VARIANTS)["table"]
    assert [r["method"] for r in table] == [DEFAULT_ROW, ORACLE_ROW, *(v.label for v in VARIANTS)]
    assert table[0]["mean NME %"] == 15.0 and "NME improved" not in table[0]
    assert table[0]["mean NME % (best translation)"] == 10.0
    assert table[1]["median NME %"] == 7.0 and table[1]["median NME % (best translation)"] == 3.0
    eq5, aa, covered = table[2:]
    assert eq5["mean NME %"] == 15.0 and eq5["NME improved"] == 0.5 and eq5["mean final loss"] == pytest.approx(0.3)
    assert eq5["mean NME % (best translation)"] == 10.0
    assert aa["mean NME %"] == 7.0 and aa["NME improved"] == 1.0 and aa["median NME % (best translation)"] == 4.0
    assert covered["NME improved"] == 0.0


def test_finding_is_computed_from_the_table() -> None:
    text = finding(summary(_per_face(), VARIANTS)["table"], steps=100, lr=0.01, fit_code=False, min_face=40)
    assert "on 2 SynthFace val faces >= 40 px" in text
    assert "mean NME 15.0% -> 7.0%" in text and "improved on 2/2 faces" in text
    assert "reaches a mean NME of 7.0% as placed" in text
    # every row with the best translation removed; best: antialiasing, (10 - 4) / (10 - 3) = 86 % of the gap
    assert "default 10.0%, oracle 3.0%" in text and f"{VARIANTS[2].label} 17.0%" in text
    assert f'"{VARIANTS[1].label}", closes 86% of the gap' in text


def test_oracle_and_fits_are_scored_alike() -> None:
    # the oracle once had its translation removed and the fits not: both columns for every row, same function
    from benchmarks.pixel_fit import Face, scores

    true_uv = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    face = Face(0, 0, (0.0, 0.0, 2.0, 2.0), (0.0, 0.0, 0.0), None, None, true_uv, np.ones(3, dtype=bool))
    s = scores(true_uv + np.array([3.0, 4.0]), face)  # moved by 5 px over sqrt(2 * 2) = 2 px
    assert s == {"nme": pytest.approx(250.0), "nme_centred": pytest.approx(0.0, abs=1e-9)}
