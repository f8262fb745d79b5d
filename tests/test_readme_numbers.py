"""The README's measured numbers are those of the committed records (reports/records/, retina/weights/)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from retina.results import REPO_ROOT

RECORDS = REPO_ROOT / "reports" / "records"
README = " ".join((REPO_ROOT / "README.md").read_text().split())  # one line: sentences wrap anywhere


def _json(relative: str) -> dict:
    paths = sorted(RECORDS.glob(relative))
    assert paths, f"no committed record {relative}"
    return json.loads(paths[0].read_text())


def _says(*phrases: str) -> None:
    for phrase in phrases:
        assert phrase in README, f"README does not say {phrase!r} (the committed record's number)"


def test_speed_and_timing_numbers():
    rows = pd.DataFrame(_json("speed/*/grid.json")["rows"])
    vga = rows[(rows["preset"] == "mobilenet0.25") & (rows["size"] == "vga") & (rows["setting"] == "cpu1")]
    ms = dict(zip(vga["backend"], vga["e2e_ms"], strict=True))
    _says(f"{ms['onnx']:.1f} ms with the ONNX Runtime backend", f"{ms['torch']:.1f} ms with the PyTorch backend")
    fast = {r["variant"]: r["median_ms"] for r in _json("speed/*/fastpath.json")["rows"] if r["section"] == "e2e"}
    ours = next(v for k, v in fast.items() if k.startswith("Detector, PyTorch"))
    _says(f"takes {fast['biubug6-style']:.1f} ms (our PyTorch pipeline {ours:.1f} ms")
    ev = _json("eval_speed/eval_speed.json")
    _says(f"takes {ev['seconds_median']['evaluate_all']:.2f} s (median",
          f"{ev['speedup_vs_baseline_one_iou']['evaluate_all']:.0f}x faster")  # fmt: skip
    _says(f"took {_json('main_job/main_job.json')['seconds']:.1f} s on 2 cores")


@pytest.mark.parametrize("name", ["landmarks", "dcn"])
def test_ablation_findings(name):
    table = pd.read_csv(RECORDS / "ablations" / name / "table.csv")
    ours = table[table["source"].str.startswith("measured")].set_index("variant")
    base, other = ours[ours["n"].notna()].index[:2]  # the baseline and the row the paper mirrors (then controls)
    _says(f"spread is {ours.loc[base, 'hard_std']:.2f}")
    _says(f"{abs(ours.loc[other, 'hard_diff']):.2f} ± {ours.loc[other, 'hard_diff_std']:.2f}")


def test_dcn_offset_and_summation_drift_numbers():
    rows = {r["dcn_offset_lr"]: r for r in _json("dcn_offsets/dcn_offsets.json")["rows"]}
    one, tenth, hundredth, frozen = rows[1.0], rows[0.1], rows[0.01], rows[0.0]
    _says(f"at 1x the largest offset reaches {one['offset_max_at_27']:.2f} pixels",
          f"({one['offset_max_run']:.2f} in the run), the masks saturate ({one['mask_min_last']:.3f} to "
          f"{one['mask_max_last']:.3f})", f"second half is {one['loss_gap_second_half']:+.3f} ± "
          f"{one['loss_gap_second_half_sem']:.3f}", f"offsets stay below {tenth['offset_max_run']:.2f} pixels and the "
          f"gap is {tenth['loss_gap_second_half']:+.3f} ± {tenth['loss_gap_second_half_sem']:.3f}",
          f"({hundredth['offset_max_run']:.2f} pixels; gap {hundredth['loss_gap_second_half']:+.3f} ± "
          f"{hundredth['loss_gap_second_half_sem']:.3f})", f"the gap is {frozen['loss_gap_first10']:+.4f} over the "
          f"first 10 iterations and {frozen['loss_gap_second_half']:+.3f} ± "
          f"{frozen['loss_gap_second_half_sem']:.3f}")  # fmt: skip
    drift = _json("summation_drift/dcn.json")
    hard, easy = drift["drift"]["sets"]["hard"], drift["drift"]["sets"]["easy"]
    assert drift["first_thread_count_reproduces_published_baseline"]
    _says(f"moves hard AP by {hard['mean']:+.2f} ± {hard['std']:.2f} points and easy by {easy['mean']:+.2f} ± "
          f"{easy['std']:.2f}")  # fmt: skip
    lm = _json("summation_drift/landmarks.json")
    assert lm["first_thread_count_reproduces_published_baseline"]
    a, b, c = (f"{v:+.2f}" for v in lm["drift"]["sets"]["hard"]["per_seed"])
    hard = lm["drift"]["sets"]["hard"]
    _says(f"{lm['seconds']:,.0f} s, again reproducing", f"hard AP {a}, {b} and {c} points (mean {hard['mean']:+.2f} ± "
          f"{hard['std']:.2f})")  # fmt: skip


def test_verification_and_landmark_numbers():
    rec = _json("verification/synthface_id.json")
    for row in ("none", "RetinaFace", "ground truth", "MTCNN"):
        r = rec["rows"][row]
        _says(f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f}")
    _says(f"{rec['rows']['MTCNN']['fallbacks']} of the {rec['images']:,} images in the pairs")
    lm = _json("landmarks/landmarks.json")["summary"]
    for name in ("RetinaFace", "MTCNN"):
        m = lm["methods"][name]
        _says(f"{100 * m['common']['mean_nme']:.2f}%", f"{100 * m['common']['failure_rate']:.2f}%")
    _says(f"on the {lm['faces_common']} both find")


def test_committed_checkpoint_records_match_their_files():
    from retina.results import file_sha256

    for record_path in sorted((REPO_ROOT / "retina" / "weights").glob("*.json")):
        record = json.loads(record_path.read_text())
        assert file_sha256(record_path.with_name(record["checkpoint"])) == record["sha256"], record_path.name
        assert file_sha256(record_path.with_name(record["metrics"]["file"])) == record["metrics"]["sha256"]


def test_mesh_decoder_numbers():
    record = json.loads((REPO_ROOT / "retina" / "weights" / "mesh_decoder.json").read_text())
    held, base = record["heldout"], record["baseline_mean_face"]
    _says(f"{100 * held['shape_error_iod']:.2f}% of the inter-ocular distance",
          f"(the mean face: {100 * base['shape_error_iod']:.2f}%)", f"{held['colour_error_255']:.1f}/255")  # fmt: skip


def test_dense_branch_numbers():
    step = _json("dense/pixel_step.json")
    rows = {r["training step"]: r for r in step["table"]}
    with_, without = (next(v for k, v in rows.items() if k.startswith(p)) for p in ("with Lpixel", "without"))
    _says(f"takes {with_['median s']:.3f} s with the pixel loss and {without['median s']:.3f} s",
          f"median step times, whose ratio is {with_['median s'] / without['median s']:.2f}",
          f"interleaved blocks has median {step['ratio_with_over_without']:.2f}x")  # fmt: skip
    fit = {r["method"]: r for r in _json("dense/pixel_fit.json")["table"]}
    default = fit["default camera, code 0 (no fitting)"]
    oracle = fit["oracle: true rotation, code 0"]
    eq5 = next(v for k, v in fit.items() if k.startswith("eq. 5 (whole crop"))
    aa = next(v for k, v in fit.items() if k.startswith("eq. 5 + silhouette"))
    moved = "mean NME % (best translation)"
    _says(f"from {default['mean NME %']:.2f}% (the default camera) to {eq5['mean NME %']:.2f}%",
          f"(median {default['median NME %']:.2f}% -> {eq5['median NME %']:.2f}%; {eq5['NME improved']:.0%} of",
          f"true rotation) gives {oracle['mean NME %']:.2f}%",
          f"default camera gives {default[moved]:.2f}%, the true pose {oracle[moved]:.2f}% and the best fit "
          f"{eq5[moved]:.2f}%", f"goes to {aa['mean NME %']:.2f}%.")  # fmt: skip
    table = pd.read_csv(RECORDS / "ablations" / "mesh" / "table.csv")
    ours = table[table["source"].str.startswith("measured")].set_index("variant")
    _says(f"hard AP is {ours.loc['base', 'hard_mean']:.2f} ± {ours.loc['base', 'hard_std']:.2f}")
    px = ours.loc["lpixel"]
    _says(f"AP {px['hard_diff']:+.2f} ± {px['hard_diff_std']:.2f} points (paired p = {px['hard_p_paired']:.2f})",
          f"dense NME {px['dense_nme_diff']:+.2f} ± {px['dense_nme_diff_std']:.2f} points")  # fmt: skip
    lp = ours.loc["lpts"]
    _says(f"lowers the dense NME by {-lp['dense_nme_diff']:.2f} ± {lp['dense_nme_diff_std']:.2f} points")


def test_training_speed_numbers():
    record = _json("train_speed/*.json")
    rows = {r["config"]: r for r in record["settings"]["synth-cpu"]["e2e"]["rows"]}
    stages = record["settings"]["synth-cpu"]["e2e"]["profile"]["stages"]
    goals, ap = record["goals"], record["bf16_ap"]["bf16_minus_fp32"]
    now, bf16 = rows["now"], rows["now, bf16 autocast (--cpu-bf16)"]
    _says(f"runs {now['x_before']:.2f}x as fast as before the speed work ({now['images_per_s']:.1f} against "
          f"{rows['before issue 23']['images_per_s']:.1f} images/s; {bf16['x_before']:.2f}x",
          f"AP by {100 * ap['easy']:+.2f} / {100 * ap['medium']:+.2f} / {100 * ap['hard']:+.2f} points",
          f"forward and backward take {stages['forward']['share'] + stages['backward']['share']:.0%}",
          f"(the data wait {stages['data']['share']:.0%}", f"matching {stages['assign']['share']:.0%})",
          f"the step is {goals['synth-cpu_step_x_biubug6']:.2f}x a biubug6-style step",
          f"({goals['synth-cpu_best_step_option']['x_biubug6']:.2f}x with bf16",
          f"0 workers ran at {now['images_per_s']:.1f} images/s, 1 at {rows['now, 1 workers']['images_per_s']:.1f} and "
          f"2 at {rows['now, 2 workers']['images_per_s']:.1f}")  # fmt: skip
    assert now["settings"]["workers"] == 0  # the default the README names for 2 cores


def test_cross_machine_numbers():
    rows = _json("reproducibility/verification_*.json")["rows"]
    assert rows["none"]["folds_equal"] and rows["ground truth"]["folds_equal"]
    assert rows["none"]["roc_points_differing"] == rows["ground truth"]["roc_points_differing"] == 0
    rf, mt = rows["RetinaFace"], rows["MTCNN"]
    assert rf["folds_equal"]
    _says(f"keeps every fold accuracy ({100 * rf['accuracy_mean'][0]:.2f}%) while {rf['roc_points_differing']} ROC "
          f"coordinates move by at most {rf['roc_max_diff']:.4f}",
          f"moves by up to {100 * mt['folds_max_diff']:.2f} points on a fold (mean {100 * mt['accuracy_mean'][1]:.2f}% "
          f"against the published {100 * mt['accuracy_mean'][0]:.2f}%)")  # fmt: skip


def test_real_transfer_and_committed_checkpoint_numbers():
    rec = _json("real_transfer/real_transfer.json")
    for row in rec["rows"]:
        real = row["real"]
        fp = real["operating_point"]["false_positives_per_image"]
        _says(" | ".join(f"{real[k]:.3f}" for k in ("easy", "medium", "hard")) + f" | {fp:.2f} |")
        _says(" / ".join(f"{row['synthface_val'][k]:.3f}" for k in ("easy", "medium", "hard")))
    ours = json.loads((REPO_ROOT / "retina" / "weights" / "mobilenet0.25_synthface.json").read_text())["eval"]
    _says(f"easy {ours['easy']:.3f}, medium {ours['medium']:.3f}, hard {ours['hard']:.3f}, hard mAP 0.5:0.95 "
          f"{ours['hard_map_50_95']:.3f}")  # fmt: skip


def test_factor_study_numbers():
    table = pd.read_csv(RECORDS / "ablations" / "synth" / "table.csv").set_index("variant")
    full, none, negatives = table.loc["full"], table.loc["none"], table.loc["no_negatives"]
    _says(f"full generator gives real easy AP {full['real_easy_mean']:.2f} ± {full['real_easy_std']:.2f}%",
          f"the v2 look {none['real_easy_mean']:.2f} ± {none['real_easy_std']:.2f}%",
          f"(paired +{none['real_easy_diff']:.2f} ± {none['real_easy_diff_std']:.2f} points, p(real hard) "
          f"{none['real_hard_p_welch']:.3f} / {none['real_hard_p_paired']:.3f}",
          f"raises it by {negatives['real_easy_diff']:.2f} ± {negatives['real_easy_diff_std']:.2f} points")  # fmt: skip
    lighting = table.loc["no_lighting"]
    _says(f"lowers hard AP by {-lighting['hard_diff']:.2f} ± {lighting['hard_diff_std']:.2f}")
