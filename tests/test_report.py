"""The report: pure functions from records to a page, on tiny fixture records; and the published page is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retina.errors import RetinaError
from retina.report import report, sections, sources
from tests.test_ablations import _record as ablation_record

PROV = {"created_utc": "2026-01-02T03:04:05+00:00", "git": {"commit": "0123456789abcdef", "dirty": False},
        "machine": {"processor": "Test CPU", "cpu_count": 2}}  # fmt: skip


def _evaluation(root: Path, name: str, hard: float) -> Path:
    """A results.json + pr_curves.csv pair as ``retina evaluate`` writes them (three thresholds only)."""
    folder = root / "widerface_eval" / name
    folder.mkdir(parents=True)
    record = {"easy": 0.9, "medium": 0.8, "hard": hard, "hard_map_50_95": hard / 2, "arithmetic": "matlab",
              "counts": {"images": 3, "faces": 7},
              "provenance": {**PROV, "data": "toy (synthetic)", "model": "mobilenet0.25",
                             "weights": f"/somewhere/{name}.pth", "test_protocol": "original"}}  # fmt: skip
    (folder / "results.json").write_text(json.dumps(record))
    rows = ["arithmetic,setting,iou,threshold,proposals,true_positives,precision,recall"]
    for arithmetic in ("matlab", "float64"):
        for setting in ("easy", "medium", "hard"):
            rows += [f"{arithmetic},{setting},0.5,0.0,10,5,0.5,0.7", f"{arithmetic},{setting},0.5,0.5,4,3,0.75,0.4",
                     f"{arithmetic},{setting},0.5,1.0,0,0,,0.0"]  # fmt: skip
    (folder / "pr_curves.csv").write_text("\n".join(rows) + "\n")
    return folder


def _target(root: Path) -> report.Target:
    return report.Target((root,), root / "out" / "report.md", root / "out" / "assets", sections.LOCAL)


def test_read_curves_keeps_one_arithmetic_and_marks_no_proposal_points(tmp_path):
    folder = _evaluation(tmp_path, "m", 0.6)
    curves = sections.read_curves(folder / "pr_curves.csv", "matlab")
    assert set(curves) == {"easy", "medium", "hard"}
    assert curves["hard"] == {"recall": [0.7, 0.4, 0.0], "precision": [0.5, 0.75, None]}


def test_empty_record_set_lists_every_missing_job_with_its_command(tmp_path):
    text, assets, missing = report.build(_target(tmp_path))
    assert "python benchmarks/main_job.py" in missing and "nox -s ablation_landmarks" in missing
    assert "nox -s speed" in missing and "python benchmarks/gallery.py" in missing
    assert text.count("*Not run:*") == len(missing)
    assert any(c.startswith("python benchmarks/pixel_step.py") for c in missing)  # the dense branch's benchmarks
    assert "training.png" in assets  # the committed checkpoint's record is always there


def test_one_then_several_models_share_the_pr_figure_and_table(tmp_path):
    _evaluation(tmp_path, "alpha", 0.6)
    text, assets, missing = report.build(_target(tmp_path))
    assert "| mobilenet0.25 `alpha.pth`, original protocol | toy (synthetic) | 0.9000 | 0.8000 | 0.6000 |" in text
    assert "python benchmarks/main_job.py" not in missing
    assert assets["pr_curves.png"].startswith(b"\x89PNG")
    assert "commit 0123456789; Test CPU, 2 CPUs; 2026-01-02" in text
    _evaluation(tmp_path, "beta", 0.7)
    text2, assets2, _ = report.build(_target(tmp_path))
    assert "`alpha.pth`" in text2 and "`beta.pth`" in text2
    assert assets2["evaluation.csv"].decode().count("\n") == 3  # header + two models
    # the inputs' hash changes with any input: a stale page cannot pass for a current one
    hashes = [line for line in text.splitlines() if "widerface_eval" in line and "sha256" in line]
    hashes2 = [line for line in text2.splitlines() if "widerface_eval" in line and "sha256" in line]
    assert hashes != hashes2


def test_record_without_provenance_or_not_json_is_a_clear_error(tmp_path):
    folder = _evaluation(tmp_path, "alpha", 0.6)
    record = json.loads((folder / "results.json").read_text())
    del record["provenance"]["machine"]
    (folder / "results.json").write_text(json.dumps(record))
    with pytest.raises(RetinaError, match=r"results.json: evaluation record without provenance \(machine missing\)"):
        report.build(_target(tmp_path))
    (folder / "results.json").write_text('{"easy": 0.9,\n oops}')
    with pytest.raises(RetinaError, match=r"results.json:2: not a JSON record"):
        report.build(_target(tmp_path))


def test_ablation_section_from_records(tmp_path):
    folder = tmp_path / "ablations" / "landmarks"
    for variant, order, hards in (("base", 0, (0.50, 0.60, 0.70)), ("lpts", 1, (0.52, 0.64, 0.76))):
        for seed, hard in enumerate(hards):
            r = ablation_record(variant, seed, hard, order)
            r["provenance"] = {**r["provenance"], "created_utc": PROV["created_utc"]}
            path = folder / "records" / f"{variant}__seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(r))
    section = sections.ablation_section(sources.collect([tmp_path]), "landmarks", sections.LOCAL)
    text = "\n".join(section.lines)
    assert "| lpts | 3 | 90.00 ± 0.00 | 80.00 ± 0.00 | 64.00 ± 12.00 |" in text  # the golden numbers of test_ablations
    assert "+4.00 ± 2.00" in text and "### Ablation `landmarks`" in text
    assert section.figures["ablation_landmarks.png"].startswith(b"\x89PNG") and len(section.sources) == 6


def test_published_report_is_current():
    """docs/report.md and its tables equal a rebuild from the committed records (rerun: nox -s report -- --publish)."""
    target = report.Target.published()
    if not target.page.is_file():
        pytest.fail("docs/report.md is missing: run nox -s report -- --publish and commit it")
    text, assets, _ = report.build(target)
    assert target.page.read_text() == text, "docs/report.md is stale: run nox -s report -- --publish"
    for name, data in assets.items():
        path = target.assets / name
        assert path.is_file(), f"{path} missing: run nox -s report -- --publish"
        if name.endswith(".csv"):
            assert path.read_bytes() == data, f"{path} is stale: run nox -s report -- --publish"
    listed = sorted(p.name for p in target.assets.iterdir())
    assert listed == sorted([*assets, report.MANIFEST]), "stray files in docs/report/"
    assert report.written_before(target.assets) == set(assets), "docs/report/manifest.json is stale"


def test_a_record_under_the_first_root_shadows_its_copy_under_a_later_root(tmp_path):
    first, second = tmp_path / "results", tmp_path / "published"
    _evaluation(first, "alpha", 0.6)
    _evaluation(second, "alpha", 0.7)
    _evaluation(second, "beta", 0.8)
    found = sources.collect([first, second]).of("evaluation")
    assert [(s.path.parent.name, s.record["hard"]) for s in found] == [("alpha", 0.6), ("beta", 0.8)]


def test_report_out_deletes_only_files_it_wrote(tmp_path):
    # --out DIR may hold the user's own files: only what the manifest of an earlier build lists is ever removed
    target = _target(tmp_path)
    target.assets.mkdir(parents=True)
    (target.assets / "mine.png").write_bytes(b"the user's")
    (tmp_path / "outside.txt").write_text("keep")
    report.write(target)
    _, assets, _ = report.build(target)
    assert (target.assets / "mine.png").read_bytes() == b"the user's"  # no manifest before: nothing deleted
    assert report.written_before(target.assets) == set(assets) and all((target.assets / n).is_file() for n in assets)
    # an earlier build wrote "old.csv" (and a tampered manifest names files elsewhere): old.csv alone goes
    (target.assets / "old.csv").write_text("stale")
    manifest = {"files": [*assets, "old.csv", "../outside.txt", "sub/x", "..", report.MANIFEST]}
    (target.assets / report.MANIFEST).write_text(json.dumps(manifest))
    report.write(target)
    assert not (target.assets / "old.csv").exists() and (tmp_path / "outside.txt").read_text() == "keep"
    assert sorted(p.name for p in target.assets.iterdir()) == sorted([*assets, "mine.png", report.MANIFEST])
    (target.assets / report.MANIFEST).write_text("not json")
    assert report.written_before(target.assets) == set()


def test_mutation_section_from_a_record_and_when_missing(tmp_path):
    assert "nox -s mutation" in sections.mutation_section(sources.collect([tmp_path]), sections.LOCAL).missing

    def module(file, mutants, killed, equivalent, survivors):
        return {"file": file, "mutants": mutants, "killed": killed, "timeout": 0, "crashed": 0,
                "equivalent": equivalent, "survived": len(survivors), "caught": killed,
                "score": killed / (mutants - equivalent), "survivors": [{"mutant": m} for m in survivors]}  # fmt: skip

    modules = {"coding": module("retina/coding.py", 10, 9, 1, []), "losses": module("retina/losses.py", 20, 18, 0,
               ["retina.losses.x_losses__mutmut_3", "retina.losses.x_losses__mutmut_9"])}  # fmt: skip
    record = {"tool": "mutmut 3.8.1", "score_definition": "caught / (mutants - equivalent)", "goal": 0.9,
              "conditions": "clean clone", "modules": modules,
              "total": {**module("", 30, 27, 1, ["a", "b"]), "score": 27 / 29, "equivalent_by_kind": {"device": 1}},
              "provenance": PROV}  # fmt: skip
    (tmp_path / "mutation").mkdir()
    (tmp_path / "mutation" / "mutation.json").write_text(json.dumps(record))
    section = sections.mutation_section(sources.collect([tmp_path]), sections.LOCAL)
    text = "\n".join(section.lines)
    assert "| coding | retina/coding.py | 10 | 9 | 0 | 0 | 1 | 0 | 100.0 | 90.0 |" in text
    assert "| losses | retina/losses.py | 20 | 18 | 0 | 0 | 0 | 2 | 90.0 | 90.0 |" in text
    assert "| total |  | 30 | 27 | 0 | 0 | 1 | 2 | 93.1 | 90.0 |" in text
    assert "Surviving mutants: 2: `retina.losses.x_losses__mutmut_3`, `retina.losses.x_losses__mutmut_9`. " in text
    assert "Equivalent mutants by kind: device 1." in text
    assert not section.missing and section.tables["mutation.csv"].count("\n") == 4
