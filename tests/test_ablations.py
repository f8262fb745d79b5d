"""Ablations: variants as data, the runner (records, skip on rerun, resume), the table (golden statistics)."""

import dataclasses
import io
import json

import numpy as np
import pandas as pd
import pytest

from ablations import run as runner
from ablations.variants import ABLATIONS, Setting, replace_path
from retina.cli import main as cli_main
from retina.config import DCN_OFFSET_LR, AugmentCfg, TrainCfg, to_dict
from retina.data.dataset import SplitPaths
from retina.errors import RetinaError
from retina.evaluate import EvalSplit
from retina.paper import PAPER_TABLE3, TABLE3_ABLATIONS
from retina.report.ablation_table import build, frame, load_records, summarize
from tests.toy_faces import make_toy_split


def _flat(obj, prefix=""):
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{prefix}{key}.").items()}
    return {prefix[:-1]: obj}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
@pytest.mark.parametrize("setting", ["cpu", "paper"])
def test_variants_are_valid_configs_differing_only_in_the_ablated_field(name, setting):
    ablation = ABLATIONS[name]
    if setting == "paper" and ablation.paper is None:
        with pytest.raises(ValueError, match="only the cpu setting"):
            ablation.setting(setting)
        return
    chosen = ablation.setting(setting)
    variants = ablation.variants(chosen)
    assert [v.baseline for v in variants] == [True] + [False] * (len(variants) - 1)

    def data(v):  # the row's SynthFace config (None: the setting's)
        return dataclasses.asdict((v.data or chosen.data).cfg) if chosen.data is not None else {}

    # dataclasses.asdict, not to_dict: fields at their defaults may be omitted from to_dict (LossCfg.w_pixel)
    flats = [_flat({"model": dataclasses.asdict(v.model), "train": dataclasses.asdict(v.train), "data": data(v)})
             for v in variants]  # fmt: skip
    differing = {k for f in flats[1:] for k in flats[0] if flats[0][k] != f[k]}
    assert differing == set(ablation.fields)
    values = [v.value if isinstance(ablation.field, tuple) else (v.value,) for v in variants]
    assert [tuple(f[k] for k in ablation.fields) for f in flats] == values


def test_the_two_tables_ablate_what_the_paper_does():
    lm = ABLATIONS["landmarks"].variants(ABLATIONS["landmarks"].cpu)
    assert [v.train.loss.w_landmarks for v in lm] == [0.0, 0.1]
    dcn = ABLATIONS["dcn"].variants(ABLATIONS["dcn"].paper)
    assert [v.model.neck.dcn for v in dcn] == [False, True, True]  # the third: offsets frozen (the control)
    assert [v.train.dcn_offset_lr for v in dcn][1:] == [DCN_OFFSET_LR, 0.0]
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


# --- the mesh ablation: several fields per row, the dense NME column ---------------------------------------

MESH_ROWS = ["+DCN", "+Lpts", "+Lpixel", "+Lpts +Lpixel"]


@pytest.mark.parametrize("setting", ["cpu", "paper"])
def test_mesh_ablation_rows_set_both_loss_weights_on_the_mesh_preset(setting):
    ablation = ABLATIONS["mesh"]
    assert ablation.fields == ("train.loss.w_landmarks", "train.loss.w_pixel")
    variants = ablation.variants(ablation.setting(setting))
    assert [v.key for v in variants] == ["base", "lpts", "lpixel", "lpts_lpixel"]
    assert [v.baseline for v in variants] == [True, False, False, False]
    pairs = [(0.0, 0.0), (0.1, 0.0), (0.0, 0.01), (0.1, 0.01)]
    assert [(v.train.loss.w_landmarks, v.train.loss.w_pixel) for v in variants] == pairs
    assert [v.value for v in variants] == pairs
    name = "mobilenet0.25-mesh" if setting == "cpu" else "resnet50-paper-mesh"
    assert all(v.model.name == name and v.model.head.mesh for v in variants)
    # everything but the two weights is the baseline's
    flats = [_flat({"model": to_dict(v.model), "train": to_dict(v.train)}) for v in variants]
    for flat in flats[1:]:
        keys = set(flat) | set(flats[0])
        assert {k for k in keys if flat.get(k) != flats[0].get(k)} <= set(ablation.fields)
    assert list(ablation.paper_rows) == MESH_ROWS


def test_multi_field_rows_need_one_value_per_field_and_paper_rows_a_mirrored_row():
    mesh = ABLATIONS["mesh"]
    with pytest.raises(ValueError, match=r"row 'bad' has 1 values for fields"):
        dataclasses.replace(mesh, rows=(*mesh.rows[:3], ("bad", "bad", (0.1,))))
    with pytest.raises(ValueError, match=r"row 'bad' has 3 values"):
        dataclasses.replace(mesh, rows=(*mesh.rows[:3], ("bad", "bad", (0.1, 0.0, 1.0))))
    with pytest.raises(ValueError, match="paper_rows needs a baseline"):
        dataclasses.replace(mesh, paper_rows=("+DCN",))
    with pytest.raises(ValueError, match="paper_rows needs a baseline"):  # more paper rows than rows
        dataclasses.replace(ABLATIONS["landmarks"], paper_rows=("+DCN", "+Lpts", "+Lpixel"))
    with pytest.raises(ValueError, match="weights must be >= 0"):  # each value validated in its field
        dataclasses.replace(mesh, rows=(*mesh.rows[:3], ("bad", "bad", (0.1, -1.0))))


def _key_plan(name: str, tmp_path) -> runner.Plan:
    ablation = ABLATIONS[name]
    split = EvalSplit(tmp_path / "images", tmp_path / "gt", "nothing (not read)")
    return runner.Plan(ablation, ablation.cpu, SplitPaths(tmp_path / "images", tmp_path / "label.txt"), "none",
                       split, {"data": "id"}, True, tmp_path / "out")  # fmt: skip


def test_run_key_of_mesh_rows_includes_the_pretrained_decoder_sha256(tmp_path, monkeypatch):
    import hashlib

    from retina import weights as mesh_decoder
    from retina.config import PostCfg

    plan = _key_plan("mesh", tmp_path)
    variant = plan.variants[2]
    key = runner.run_key(plan, variant)
    content = {
        "model_cfg": to_dict(variant.model), "train_cfg": to_dict(variant.train), "data": {"data": "id"},
        "protocol": plan.setting.protocol, "post": to_dict(PostCfg()),
        "backbone_init": runner.file_id(plan.pretrained_backbone),
    }  # fmt: skip
    without = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    assert key != without
    sha = hashlib.sha256(mesh_decoder.DEFAULT_DECODER.read_bytes()).hexdigest()
    content["mesh_decoder_init"] = {"file": mesh_decoder.DEFAULT_DECODER.name, "sha256": sha}
    assert key == hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
    # the same bytes elsewhere: the same key; other bytes: another key
    same = tmp_path / "same" / mesh_decoder.DEFAULT_DECODER.name
    same.parent.mkdir()
    same.write_bytes(mesh_decoder.DEFAULT_DECODER.read_bytes())
    monkeypatch.setattr(mesh_decoder, "DEFAULT_DECODER", same)
    assert runner.run_key(plan, variant) == key
    other = tmp_path / mesh_decoder.DEFAULT_DECODER.name
    other.write_bytes(same.read_bytes() + b"\0")
    monkeypatch.setattr(mesh_decoder, "DEFAULT_DECODER", other)
    assert runner.run_key(plan, variant) != key
    # rows without a mesh head do not depend on the decoder
    lm_plan = _key_plan("landmarks", tmp_path)
    lm_key = runner.run_key(lm_plan, lm_plan.variants[1])
    monkeypatch.undo()
    assert runner.run_key(lm_plan, lm_plan.variants[1]) == lm_key


_DENSE_SETTINGS = {"score_threshold": 0.5, "match_iou": 0.5, "min_face": 16.0, "crop_margin": 1.2}


def _mesh_record(variant, seed, hard, order, nme, label=None):
    r = _record(variant, seed, hard, order, label)
    r.update(ablation="mesh", field=["train.loss.w_landmarks", "train.loss.w_pixel"], paper_rows=MESH_ROWS)
    if nme is not None:
        r["dense"] = {"nme": nme, "nme_median": nme, "faces": 10, "matched": 9, "scored": 9,
                      "settings": _DENSE_SETTINGS}  # fmt: skip
    return r


def _mesh_records(dense_nmes):
    """baseline hard 50, 60, 70 %, lpts 52, 64, 76 % (as in the golden test above), seeds 0-2, with the given
    dense NMEs (fractions) per (variant, seed) or None."""
    base = [_mesh_record("base", s, h, 0, dense_nmes[0][s]) for s, h in zip((0, 1, 2), (0.5, 0.6, 0.7), strict=True)]
    lpts = [_mesh_record("lpts", s, h, 1, dense_nmes[1][s], "+Lpts") for s, h in
            zip((0, 1, 2), (0.52, 0.64, 0.76), strict=True)]  # fmt: skip
    return base + lpts


def test_table_dense_nme_column_golden(tmp_path):
    # dense NME (%): baseline 20, 30, 40: mean 30, std 10; +Lpts 22, 34, 46: mean 34, std 12; paired
    # differences 2, 4, 6: mean 4, std 2 -- the hard AP's numbers, so the same p-values (0.68 Welch, 0.074 paired)
    _write_records(tmp_path, _mesh_records([(0.20, 0.30, 0.40), (0.22, 0.34, 0.46)]))
    s = summarize(frame(load_records(tmp_path))).set_index("variant")
    assert s.loc["base", "dense_nme_mean"] == pytest.approx(30.0)
    assert s.loc["base", "dense_nme_std"] == pytest.approx(10.0)
    assert s.loc["lpts", "dense_nme_mean"] == pytest.approx(34.0)
    assert s.loc["lpts", "dense_nme_std"] == pytest.approx(12.0)
    assert s.loc["lpts", "dense_nme_diff"] == pytest.approx(4.0)
    assert s.loc["lpts", "dense_nme_diff_std"] == pytest.approx(2.0)
    assert s.loc["lpts", "dense_nme_p_paired"] == pytest.approx(1 - np.sqrt(12 / 14), rel=1e-9)
    assert 0.6804 < s.loc["lpts", "dense_nme_p_welch"] < 0.6874

    md = build(tmp_path)["md"].read_text()
    header = ("| method | seeds | easy | medium | hard | mAP (hard) | dense NME | Δ easy | Δ medium | Δ hard | "
              "Δ mAP (hard) | Δ dense NME | p (hard) | p (dense) |")  # fmt: skip
    assert header in md
    assert (
        "| +Lpts | 3 | 90.00 ± 0.00 | 80.00 ± 0.00 | 64.00 ± 12.00 | 32.00 ± 6.00 | 34.00 ± 12.00 | +0.00 ± 0.00 "
        "| +0.00 ± 0.00 | +4.00 ± 2.00 | +2.00 ± 1.00 | +4.00 ± 2.00 | 0.68 / 0.074 | 0.68 / 0.074 |"
    ) in md
    base_row = "| base | 3 | 90.00 ± 0.00 | 80.00 ± 0.00 | 60.00 ± 10.00 | 30.00 ± 5.00 | 30.00 ± 10.00 | (baseline) |"
    assert base_row + "  |  |  |  |  |  |\n" in md  # six empty cells: the Δ columns and both p columns
    assert "| +Lpts | 2 | 90.00 | 80.00 | 76.00 | 38.00 | 46.00 |" in md  # per seed
    assert "faces >= 16 px" in md and "score >= 0.5 with box IoU >= 0.5" in md  # the settings in the note
    table = pd.read_csv(io.StringIO(build(tmp_path)["csv"].read_text()))
    ours = table[table["source"] == "measured (this suite)"].set_index("variant")
    assert ours.loc["lpts", "dense_nme_diff"] == pytest.approx(4.0)
    assert table[table["source"] != "measured (this suite)"]["dense_nme_mean"].isna().all()


@pytest.mark.parametrize("dense", [None, "partial"])
def test_table_without_dense_on_every_record_has_exactly_the_old_columns(tmp_path, dense):
    nmes = [(None,) * 3, (None,) * 3] if dense is None else [(0.2, 0.3, None), (0.2, 0.3, 0.4)]
    _write_records(tmp_path, _mesh_records(nmes))
    df = frame(load_records(tmp_path))
    summary = summarize(df)
    assert not any(c.startswith("dense_nme") for c in summary.columns)
    paths = build(tmp_path)
    md = paths["md"].read_text()
    assert ("| method | seeds | easy | medium | hard | mAP (hard) | Δ easy | Δ medium | Δ hard | Δ mAP (hard) | "
            "p (hard) |\n") in md  # fmt: skip
    assert "dense" not in md.lower()
    assert "| +Lpts | 3 | 90.00 ± 0.00 | 80.00 ± 0.00 | 64.00 ± 12.00 | 32.00 ± 6.00 |" in md
    assert not any("dense" in c for c in pd.read_csv(io.StringIO(paths["csv"].read_text())).columns)


def test_paper_reference_has_one_mirrors_line_per_mirrored_row(tmp_path):
    _write_records(tmp_path, _mesh_records([(None,) * 3, (None,) * 3]))
    md = build(tmp_path)["md"].read_text()
    mirrors = [line for line in md.splitlines() if "this ablation mirrors" in line]
    assert mirrors == [
        "The paper's rows are cumulative; this ablation mirrors `+DCN` -> `+Lpts`: easy +0.118, medium +0.242, "
        "hard +0.408, mAP (hard) +0.775.",
        "The paper's rows are cumulative; this ablation mirrors `+DCN` -> `+Lpixel`: easy +0.064, medium +0.031, "
        "hard -0.010, mAP (hard) -0.030.",
        "The paper's rows are cumulative; this ablation mirrors `+DCN` -> `+Lpts +Lpixel`: easy +0.593, medium "
        "+0.342, hard +0.571, mAP (hard) +0.796.",
    ]
    table = pd.read_csv(io.StringIO(build(tmp_path)["csv"].read_text()))
    paper = table[table["source"].str.contains("arXiv 1905.00641")].set_index("label")
    assert paper.loc["+Lpixel", "hard_diff"] == pytest.approx(-0.010)
    assert paper.loc["+Lpts +Lpixel", "hard_map_diff"] == pytest.approx(0.796)
    assert paper.loc[["FPN+Context", "+DCN"], "hard_diff"].isna().all()  # only mirrored rows have differences


def test_the_report_knows_every_table3_ablation():
    assert tuple(k for k, a in ABLATIONS.items() if a.paper_rows) == TABLE3_ABLATIONS


def test_factor_study_rows_switch_one_factor_off_each():
    ablation = ABLATIONS["synth"]
    rows = ablation.variants(ablation.cpu)
    assert rows[0].data is None and ablation.cpu.backbone_init is None  # from scratch, on the setting's data
    full = ablation.cpu.data.cfg
    names = [f.split(".")[1] for f in ablation.fields]
    for k, row in enumerate(rows[1:-1]):
        off = [n for n in names if getattr(row.data.cfg, n) != getattr(full, n)]
        assert off == [names[k]], row.key
        assert not getattr(row.data.cfg, names[k]) or getattr(row.data.cfg, names[k]) == (0, 0)
    none = rows[-1].data.cfg
    assert none.natural_backdrop == 0 and none.hard_negatives_range == (0, 0)
    assert not (none.face_appearance or none.lighting or none.camera) and none.box_convention == "wider"


def test_rows_with_their_own_data_train_on_it_and_key_it(tmp_path):
    toy, other = make_toy_split(tmp_path / "toy"), make_toy_split(tmp_path / "other", seed=1)
    plan = _plan(tmp_path, toy)
    lpts = plan.variants[1]
    row = runner.RowData(SplitPaths.from_root(other), "other toy", {"toy": 1})
    with_row = dataclasses.replace(plan, row_data={lpts.key: row})
    assert with_row.data_of(lpts) == row and with_row.data_of(plan.variants[0]).train == plan.train_data
    assert runner.run_key(with_row, lpts) != runner.run_key(plan, lpts)
    assert runner.run_key(with_row, plan.variants[0]) == runner.run_key(plan, plan.variants[0])
    real = dataclasses.replace(plan, real_split=EvalSplit.from_root(other, label="toy real"))
    assert runner.run_key(real, lpts) != runner.run_key(plan, lpts)  # records with a real column are other records


@pytest.mark.slow
def test_runner_evaluates_every_row_on_the_real_split_and_tabulates_it(tmp_path):
    toy, real = make_toy_split(tmp_path / "toy"), make_toy_split(tmp_path / "real", seed=3)
    plan = dataclasses.replace(_plan(tmp_path, toy, seeds=(0,)), real_split=EvalSplit.from_root(real, label="toy real"))
    paths = runner.run(plan, jobs=1)
    rec = json.loads(paths[0].read_text())
    assert rec["real"]["data"] == "toy real" and set(rec["real"]["metrics"]) == {"easy", "medium", "hard", "hard_map"}
    assert rec["real"]["operating_point"]["score"] == 0.5
    # the real APs are those of the real predictions the runner wrote, evaluated on their own
    evaluated = runner.run_dir(plan, runner.seeded(plan.variants[0], 0), 0) / "real_original"
    args = ["--gt", str(real / "ground_truth"), "--pred", str(evaluated / "predictions"), "--out", str(tmp_path / "re")]
    assert cli_main(["widerface-eval", *args]) == 0
    alone = json.loads((tmp_path / "re" / "results.json").read_text())
    assert rec["real"]["metrics"]["hard"] == alone["hard"]
    md = build(plan.out)["md"].read_text()
    assert "| method | seeds | real easy | real medium | real hard | real mAP (hard) | easy |" in md
    assert "p (real hard) | p (hard) |" in md and "real: AP on toy real" in md
