"""The mutation-testing record (benchmarks/mutation.py, ``nox -s mutation``): counts, score and the equivalent list."""

from __future__ import annotations

import json

import pytest

from benchmarks import mutation as mt


def test_summarise_counts_caught_equivalent_and_survivors():
    target = mt.Target("retina/x.py", ("tests/test_x.py",))
    statuses = {"m1": "killed", "m2": "timeout", "m3": "survived", "m4": "survived", "m5": "no tests",
                "m6": "segfault", "m7": "killed"}  # fmt: skip
    diffs = {"m3": ["-a", "+b"], "m4": ["-c", "+d"], "m5": ["-e", "+f"]}
    equivalent = [
        {"module": "x", "mutant": "m3", "kind": "same behaviour", "diff": ["-a", "+b"], "reason": "r"},
        {"module": "x", "mutant": "m4", "kind": "device", "diff": ["-c", "+OLD"], "reason": "stale diff"},
        {"module": "x", "mutant": "m9", "kind": "device", "diff": [], "reason": "no such mutant"},
    ]
    m = mt.summarise(target, statuses, diffs, equivalent)
    assert (m["mutants"], m["killed"], m["timeout"], m["crashed"], m["caught"]) == (7, 2, 1, 1, 4)
    assert (m["equivalent"], m["survived"]) == (1, 2)  # m4's entry no longer matches its diff: a survivor
    assert m["score"] == pytest.approx(4 / 6)
    assert [s["mutant"] for s in m["survivors"]] == ["m4", "m5"] and m["survivors"][1]["status"] == "no tests"
    assert m["stale_equivalent_entries"] == ["m4", "m9"]
    assert m["equivalent_by_kind"] == {"same behaviour": 1, "float precision": 0, "device": 0}
    total = mt.totals({"x": m, "y": m})
    assert (total["mutants"], total["caught"], total["equivalent"], total["survived"]) == (14, 8, 2, 4)
    assert total["score"] == pytest.approx(8 / 12) and total["equivalent_by_kind"]["same behaviour"] == 2


def test_scope_patterns():
    api = mt.TARGETS["api"]
    assert api.dotted == "retina.api" and "retina.api.xǁDetectorǁ_to_image__mutmut_*" in api.patterns()
    assert api.in_scope("retina.api.xǁDetectorǁ_to_image__mutmut_3")
    assert not api.in_scope("retina.api.xǁDetectorǁfrom_onnx__mutmut_1")
    assert mt.TARGETS["losses"].in_scope("retina.losses.x_losses__mutmut_1")  # whole file


def test_committed_equivalent_list_is_well_formed(tmp_path):
    entries = mt.load_equivalent()
    assert entries and len({e["mutant"] for e in entries}) == len(entries)
    for e in entries:
        target = mt.TARGETS[e["module"]]
        assert e["mutant"].startswith(target.dotted + ".") and target.in_scope(e["mutant"]), e["mutant"]
        assert e["kind"] in mt.KINDS and len(e["reason"]) > 20
        assert [line[0] for line in e["diff"]] == ["-", "+"] or len(e["diff"]) > 2, e["mutant"]
    bad = tmp_path / "equivalent.json"
    bad.write_text(json.dumps([{"module": "x", "mutant": "m", "kind": "maybe", "diff": [], "reason": "r"}]))
    with pytest.raises(SystemExit, match="kind"):
        mt.load_equivalent(bad)
