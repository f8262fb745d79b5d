"""Ablations: variants as data, the runner (records, skip on rerun, resume), the table (golden statistics)."""

import dataclasses
import io
import json

import numpy as np
import pandas as pd
import pytest

from ablations import run as runner
from ablations.variants import ABLATIONS, PAPER_TABLE3, Setting, replace_path
from reports.ablation_table import build, frame, load_records, summarize
from retina.cli import main as cli_main
from retina.config import AugmentCfg, TrainCfg, to_dict
from retina.data.dataset import SplitPaths
from retina.errors import RetinaError
from retina.evaluate import EvalSplit
from tests.toy_faces import make_toy_split


def _flat(obj, prefix=""):
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{prefix}{key}.").items()}
    return {prefix[:-1]: obj}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
@pytest.mark.parametrize("setting", ["cpu", "paper"])
def test_variants_are_valid_configs_differing_only_in_the_ablated_field(name, setting):
    ablation = ABLATIONS[name]
    variants = ablation.variants(ablation.setting(setting))
    assert [v.baseline for v in variants] == [True, False]
    flats = [_flat({"model": to_dict(v.model), "train": to_dict(v.train)}) for v in variants]
    differing = {k for k in flats[0] if flats[0][k] != flats[1][k]}
    assert differing == {ablation.field}
    assert [f[ablation.field] for f in flats] == [v.value for v in variants]


def test_the_two_tables_ablate_what_the_paper_does():
    lm = ABLATIONS["landmarks"].variants(ABLATIONS["landmarks"].cpu)
    assert [v.train.loss.w_landmarks for v in lm] == [0.0, 0.1]
    dcn = ABLATIONS["dcn"].variants(ABLATIONS["dcn"].paper)
    assert [v.model.neck.dcn for v in dcn] == [False, True]
    assert dcn[0].model.name == "resnet50-paper" and dcn[0].train.epochs == 80
    # the paper's text: landmark regression raises hard AP by 0.408 (on top of +DCN)
    assert PAPER_TABLE3["+Lpts"]["hard"] - PAPER_TABLE3["+DCN"]["hard"] == pytest.approx(0.408)


def test_replace_path_rejects_unknown_fields_and_wrong_types():
    cfg = TrainCfg()
    assert replace_path(cfg, ["loss", "w_landmarks"], 0).loss.w_landmarks == 0.0  # int -> float
    with pytest.raises(ValueError, match="no field 'w_lmk'"):
        replace_path(cfg, ["loss", "w_lmk"], 0.0)
    with pytest.raises(ValueError, match="is bool"):
        replace_path(ABLATIONS["dcn"].cpu.model, ["neck", "dcn"], "yes")
    with pytest.raises(ValueError, match="weights must be >= 0"):  # the replaced config is validated again
        replace_path(cfg, ["loss", "w_landmarks"], -1.0)


# --- table: golden statistics from hand-made records ---------------------------------------------------


def _record(variant, seed, hard, order, label=None):
    ap = {"easy": 0.9, "medium": 0.8, "hard": hard, "hard_map": hard / 2}
    curve = {"recall": [0.0, 0.5, 1.0], "precision": [None, 0.9, 0.5]}
    return {
        "ablation": "landmarks", "setting": "cpu", "variant": variant, "label": label or variant, "order": order,
        "baseline": order == 0, "seed": seed, "metrics": ap, "curves": dict.fromkeys(("easy", "medium", "hard"), curve),
        "train": {"iterations": 10, "batch_size": 2, "image_size": 64, "world_size": 1, "device": "cpu",
                  "wall_s": 2.0 + order},
        "eval": {"wall_s": 1.0}, "field": "train.loss.w_landmarks", "description": "test", "setting_note": "note",
        "synthetic": True, "train_data": "toy (synthetic)", "eval_data": "toy val (synthetic)", "protocol": "original",
        "iou": 0.5, "model_cfg": {"name": "mobilenet0.25"}, "train_cfg": {"recipe": "test"},
        "paper_rows": ["+DCN", "+Lpts"], "key": "k",
        "provenance": {"git": {"commit": "abc", "dirty": False}, "machine": {"processor": "cpu", "cpu_count": 2}},
    }  # fmt: skip


def _write_records(folder, records):
    for r in records:
        path = folder / "records" / f"{r['variant']}__seed{r['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))


def test_table_mean_std_and_paired_difference_golden(tmp_path):
    # baseline hard AP 50, 60, 70 %: mean 60, std 10; variant 52, 64, 76: mean 64, std 12;
    # paired differences 2, 4, 6: mean 4, std 2 (a diff of means with unpaired std would say 4 +- 15.6)
    base = [_record("base", s, h, 0) for s, h in zip((0, 1, 2), (0.50, 0.60, 0.70), strict=True)]
    var = [_record("lpts", s, h, 1, "+Lpts") for s, h in zip((2, 0, 1), (0.76, 0.52, 0.64), strict=True)]
    _write_records(tmp_path, var + base)
    records = load_records(tmp_path)
    assert [(r["variant"], r["seed"]) for r in records][:2] == [("base", 0), ("base", 1)]
    s = summarize(frame(records)).set_index("variant")
    assert s.loc["base", "hard_mean"] == pytest.approx(60.0)
    assert s.loc["base", "hard_std"] == pytest.approx(10.0)
    assert s.loc["lpts", "hard_mean"] == pytest.approx(64.0)
    assert s.loc["lpts", "hard_std"] == pytest.approx(12.0)
    assert s.loc["lpts", "hard_diff"] == pytest.approx(4.0)
    assert s.loc["lpts", "hard_diff_std"] == pytest.approx(2.0)
    assert s.loc["lpts", "hard_map_diff"] == pytest.approx(2.0)
    assert s.loc["lpts", "easy_diff"] == pytest.approx(0.0)
    assert s.loc["base", "hard_diff"] == 0.0 and s.loc["lpts", "n"] == 3
    # paired t-test: t = 4 / (2 / sqrt 3) = sqrt 12 with 2 degrees of freedom, whose two-sided p-value has the
    # closed form 1 - t / sqrt(t^2 + 2) = 1 - sqrt(12 / 14) = 0.0741799
    assert s.loc["lpts", "hard_p_paired"] == pytest.approx(1 - np.sqrt(12 / 14), rel=1e-9)
    # Welch: se^2 = 100/3 + 144/3, t = 4 / sqrt(244/3) = 0.44353, df = se^4 / ((100/3)^2/2 + (144/3)^2/2) = 3.874;
    # p = 2 * (1 - F_t(0.44353; 3.874)), between its values at df=3 and df=4, 0.6874 and 0.6804
    assert 0.6804 < s.loc["lpts", "hard_p_welch"] < 0.6874
    assert np.isnan(s.loc["base", "hard_p_welch"]) and np.isnan(s.loc["lpts", "easy_p_welch"])  # no spread

    paths = build(tmp_path)
    md = paths["md"].read_text()
    assert "| +Lpts | 3 | 90.00 ± 0.00 | 80.00 ± 0.00 | 64.00 ± 12.00 | 32.00 ± 6.00 |" in md
    assert "+4.00 ± 2.00 | +2.00 ± 1.00 | 0.68 / 0.074 |" in md and "(baseline)" in md
    assert "not comparable" in md
    assert "| +Lpts | 96.467 | 96.075 | 91.694 | 52.297 |" in md
    assert "`+DCN` -> `+Lpts`: easy +0.118, medium +0.242, hard +0.408, mAP (hard) +0.775" in md
    table = pd.read_csv(io.StringIO(paths["csv"].read_text()))
    ours = table[table["source"] == "measured (this suite)"].set_index("variant")
    assert ours.loc["lpts", "hard_diff"] == pytest.approx(4.0) and ours.loc["lpts", "n"] == 3
    paper = table[table["source"].str.contains("arXiv 1905.00641")].set_index("label")
    assert paper.loc["+Lpts", "hard_mean"] == pytest.approx(91.694)
    assert paper.loc["+Lpts", "hard_diff"] == pytest.approx(0.408)
    assert np.isnan(paper.loc["+Lpixel", "hard_diff"])
    assert paths["png"].read_bytes().startswith(b"\x89PNG")
    assert json.loads(paths["json"].read_text())["provenance"]["git"]


def test_table_with_one_seed_shows_no_spread_and_rejects_bad_folders(tmp_path):
    _write_records(tmp_path, [_record("base", 0, 0.5, 0), _record("lpts", 0, 0.6, 1)])
    s = summarize(frame(load_records(tmp_path))).set_index("variant")
    assert np.isnan(s.loc["lpts", "hard_std"]) and s.loc["lpts", "hard_diff"] == pytest.approx(10.0)
    assert "| lpts | 1 | 90.00 | 80.00 | 60.00 | 30.00 | +0.00 | +0.00 | +10.00 | +5.00 |" in (
        build(tmp_path)["md"].read_text()
    )
    with pytest.raises(RetinaError, match="no records"):
        load_records(tmp_path / "nothing")
    (tmp_path / "records" / "bad.json").write_text("{}")
    with pytest.raises(RetinaError, match=r"bad\.json: not an ablation record"):
        load_records(tmp_path)


# --- the runner on a toy split ----------------------------------------------------------------------


def _plan(tmp_path, toy, seeds=(0, 1), iterations=2):
    train = TrainCfg(recipe="test", batch_size=2, max_iterations=iterations, augment=AugmentCfg(image_size=64))
    setting = Setting("cpu", "mobilenet0.25", train, None, seeds=seeds, note="toy")
    ablation = dataclasses.replace(ABLATIONS["landmarks"], cpu=setting)
    return runner.Plan(
        ablation, setting, SplitPaths.from_root(toy), "toy train (synthetic)",
        EvalSplit.from_root(toy, label="toy (synthetic)"), {"toy": 0}, True, tmp_path / "out" / "landmarks",
        workers=0, progress=False,
    )  # fmt: skip


@pytest.mark.slow
def test_runner_writes_one_record_per_variant_and_seed_skips_them_and_resumes(tmp_path, monkeypatch):
    from retina import engine

    toy = make_toy_split(tmp_path / "toy")
    plan = _plan(tmp_path, toy)
    out = plan.out
    # an interrupted run of (lpts, seed 1): the runner resumes it
    lpts = runner.seeded(plan.variants[1], 1)
    spec = engine.RunSpec(runner.run_dir(plan, lpts, 1), plan.train_data, workers=0, checkpoint_every=1,
                          progress=False, stop_after=1)  # fmt: skip
    engine.train(lpts.model, lpts.train, spec)
    paths = runner.run(plan, jobs=2)  # two processes, one thread each
    assert sorted(p.name for p in paths) == [f"{v}__seed{s}.json" for v in ("lpts", "no_lpts") for s in (0, 1)]
    rec = json.loads((out / "records" / "lpts__seed1.json").read_text())
    assert rec["train_cfg"]["loss"]["w_landmarks"] == 0.1 and rec["train_cfg"]["seed"] == 1
    assert rec["key"] == runner.run_key(plan, lpts) and rec["synthetic"] and rec["protocol"] == "original"
    assert len(rec["curves"]["hard"]["recall"]) == 1000
    # the record's APs are those of the submission it wrote for this (variant, seed), evaluated on its own
    evaluated = runner.run_dir(plan, lpts, 1) / "eval_original"
    args = ["--gt", str(toy / "ground_truth"), "--pred", str(evaluated / "predictions"), "--out", str(tmp_path / "re")]
    assert cli_main(["widerface-eval", *args]) == 0
    alone = json.loads((tmp_path / "re" / "results.json").read_text())
    for setting in ("easy", "medium", "hard"):
        assert rec["metrics"][setting] == alone[setting], setting
    assert rec["metrics"]["hard_map"] == alone["hard_map_50_95"]
    assert rec["provenance"]["git"] and rec["train"]["iterations"] == 2
    assert json.loads((runner.run_dir(plan, lpts, 1) / "train_record.json").read_text())["resumed_from"] == 1
    base = json.loads((out / "records" / "no_lpts__seed0.json").read_text())
    assert base["train_cfg"] == to_dict(runner.seeded(plan.variants[0], 0).train)
    assert base["train_cfg"]["loss"]["w_landmarks"] == 0.0

    # rerun: nothing is trained or evaluated again
    def fail(*args, **kwargs):
        raise AssertionError("should have been skipped")

    mtimes = {p: p.stat().st_mtime_ns for p in paths}
    monkeypatch.setattr(engine, "train", fail)
    monkeypatch.setattr(runner, "evaluate_one", fail)
    assert runner.run(plan) == paths
    assert {p: p.stat().st_mtime_ns for p in paths} == mtimes
    # a lost record is re-evaluated from the finished training, without training again
    monkeypatch.undo()
    monkeypatch.setattr(engine, "train", fail)
    (out / "records" / "no_lpts__seed1.json").unlink()
    runner.run(plan)
    assert (out / "records" / "no_lpts__seed1.json").is_file()
    # the same folder with other settings is refused, not silently mixed
    with pytest.raises(RetinaError, match="other settings"):
        runner.run(_plan(tmp_path, toy, iterations=3))


def test_cli_errors_are_one_line(capsys):
    assert runner.main(["dcn", "--setting", "paper"]) == 2
    assert "pass --data-root" in capsys.readouterr().err
    assert runner.main(["landmarks", "--val-root", "somewhere"]) == 2
    assert "--val-root needs --data-root" in capsys.readouterr().err
    assert runner.main(["landmarks", "--seeds", "1", "1"]) == 2
    assert "distinct" in capsys.readouterr().err
