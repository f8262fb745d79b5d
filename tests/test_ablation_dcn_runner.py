"""The DCN ablation through the runner (issue 25): the frozen control row, offset statistics and training commits in
the records, the paired image bootstrap against the same-seed baseline (SynthFace-like and real split), and the
table's columns for them."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ablations import run as runner
from ablations.variants import ABLATIONS, Setting
from retina.config import DCN_OFFSET_LR, AugmentCfg, TrainCfg
from retina.data.dataset import SplitPaths
from retina.data.widerface import load_ground_truth, read_predictions
from retina.errors import RetinaError
from retina.eval.bootstrap import paired_bootstrap
from retina.evaluate import EvalSplit
from retina.report.ablation_table import build, frame, summarize
from tests.toy_faces import make_toy_split


def test_dcn_ablation_has_the_frozen_control_row():
    for setting in ("cpu", "paper"):
        rows = ABLATIONS["dcn"].variants(ABLATIONS["dcn"].setting(setting))
        assert [v.key for v in rows] == ["no_dcn", "dcn", "dcn_frozen"]
        assert [(v.model.neck.dcn, v.train.dcn_offset_lr) for v in rows] == [
            (False, DCN_OFFSET_LR), (True, DCN_OFFSET_LR), (True, 0.0)]  # fmt: skip


def _plan(tmp_path, real: bool = True):
    toy, other = make_toy_split(tmp_path / "toy", n=6), make_toy_split(tmp_path / "real", n=5, seed=3)
    train = TrainCfg(recipe="test", batch_size=2, max_iterations=2, augment=AugmentCfg(image_size=64))
    setting = Setting("cpu", "mobilenet0.25", train, None, seeds=(0,), note="toy")
    ablation = dataclasses.replace(ABLATIONS["dcn"], cpu=setting)
    return runner.Plan(
        ablation, setting, SplitPaths.from_root(toy), "toy train (synthetic)",
        EvalSplit.from_root(toy, label="toy (synthetic)"), {"toy": 0}, True, tmp_path / "out" / "dcn",
        workers=0, progress=False, real_split=EvalSplit.from_root(other, label="toy real") if real else None,
    )  # fmt: skip


def _predictions(folder, gt):
    return read_predictions(folder / "predictions", gt).detections


@pytest.mark.slow
def test_runner_records_offsets_commits_and_the_paired_bootstrap(tmp_path):
    torch.set_num_threads(1)
    plan = _plan(tmp_path)
    paths = runner.run(plan, jobs=1)
    records = {p.stem: json.loads(p.read_text()) for p in paths}
    base, dcn, frozen = records["no_dcn__seed0"], records["dcn__seed0"], records["dcn_frozen__seed0"]
    assert "dcn_offsets" not in base and "bootstrap" not in base
    assert frozen["dcn_offsets"]["final"] == {"dcn_offset_max": 0.0, "dcn_offset_mean": 0.0, "dcn_mask_min": 1.0,
                                              "dcn_mask_max": 1.0}  # fmt: skip
    assert dcn["dcn_offsets"]["run_offset_max"] > 0 and dcn["dcn_offsets"]["iteration"] == 2
    assert all(r["train"]["git"] and "commit" in r["train"]["git"][0] for r in records.values())
    # the stored bootstrap is the paired bootstrap of the two prediction folders, recomputed here
    for split, key in ((plan.eval_split, None), (plan.real_split, "real")):
        gt = load_ground_truth(split.gt)
        folder = f"{'real' if key else 'eval'}_original"
        a = _predictions(runner.run_dir(plan, runner.seeded(plan.variants[0], 0), 0) / folder, gt)
        b = _predictions(runner.run_dir(plan, runner.seeded(plan.variants[1], 0), 0) / folder, gt)
        expected = paired_bootstrap(a, b, gt, runner.BOOTSTRAP_DRAWS, runner.BOOTSTRAP_SEED)
        stored = (dcn[key] if key else dcn)["bootstrap"]
        assert stored["against"] == "no_dcn seed 0" and stored["draws"] == runner.BOOTSTRAP_DRAWS
        for s in ("easy", "medium", "hard"):
            assert stored["difference"][s] == pytest.approx(expected[s]["difference"].to_dict(), nan_ok=True)
        metrics = (dcn[key] if key else dcn)["metrics"]
        base_metrics = (base[key] if key else base)["metrics"]
        assert stored["difference"]["hard"]["estimate"] == pytest.approx(metrics["hard"] - base_metrics["hard"])
    # the table: the interval columns (one seed: the record's own bounds, in percent) and the offsets
    summary = summarize(frame(list(records.values())))
    row = summary[summary["variant"] == "dcn"].iloc[0]
    assert row["hard_ci_low"] == pytest.approx(100 * dcn["bootstrap"]["difference"]["hard"]["low"])
    assert row["real_hard_ci_high"] == pytest.approx(100 * dcn["real"]["bootstrap"]["difference"]["hard"]["high"])
    md = build(plan.out)["md"].read_text()
    assert "| p (real hard) | p (hard) | Δ real hard CI | Δ hard CI |" in md
    assert "paired image bootstrap of the AP difference" in md and "1000 draws" in md
    assert "| +DCN, offsets frozen at 0 (control) | 1 | 0.00 | 0.00 | 0.000 | 1.000 – 1.000 |" in md
    # a rerun computes nothing again; a DCN run folder from before the multiplier is refused, not reused
    mtimes = {p: p.stat().st_mtime_ns for p in paths}
    runner.add_bootstraps(plan)
    assert {p: p.stat().st_mtime_ns for p in paths} == mtimes
    out = runner.run_dir(plan, runner.seeded(plan.variants[1], 0), 0)
    rec = json.loads((out / "train_record.json").read_text())
    del rec["dcn_offset_lr"]
    (out / "train_record.json").write_text(json.dumps(rec))
    with pytest.raises(RetinaError, match="other settings"):
        runner._trained(out, runner.seeded(plan.variants[1], 0), plan.train_data)


def test_run_key_names_the_multiplier_of_dcn_rows_only(tmp_path):
    """The key is the sha256 of the documented content; DCN rows add ``dcn_offset_lr`` even at its default (which
    ``to_dict`` leaves out), so a DCN record from before it existed (offsets at 1x) does not pass for a new one,
    while the keys of rows without DCN are what they were."""
    import hashlib

    from retina.config import PostCfg, to_dict

    plan = _plan(tmp_path, real=False)

    def key(variant, **extra):
        content = {"model_cfg": to_dict(variant.model), "train_cfg": to_dict(variant.train), "data": {"toy": 0},
                   "protocol": "original", "post": to_dict(PostCfg()), "backbone_init": None, **extra}  # fmt: skip
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    base, dcn, frozen = plan.variants
    assert "dcn_offset_lr" not in to_dict(dcn.train)
    assert runner.run_key(plan, base) == key(base)
    assert runner.run_key(plan, dcn) == key(dcn, dcn_offset_lr=DCN_OFFSET_LR)
    assert runner.run_key(plan, frozen) == key(frozen, dcn_offset_lr=0.0)
