"""A researcher's workflow without surprises (issue 22): one test (or more) per numbered item of the issue."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from retina.build import build_detector
from retina.checkpoint import read_checkpoint, save_checkpoint
from retina.cli import main
from retina.config import preset
from retina.errors import RetinaError
from retina.eval.report import claim_out
from tests.conftest import REPO_ROOT, shared_file
from tests.toy_faces import make_toy_split


def _weights(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    cfg = preset("mobilenet0.25")
    return save_checkpoint(path, build_detector(cfg), cfg)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_split(tmp_path_factory.mktemp("workflow_toy"), n=4)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return _weights(root / "a.pth", 1), _weights(root / "b.pth", 2)


def _evaluate(toy: Path, weights: Path, *extra: str) -> int:
    return main(["evaluate", "--data-root", str(toy), "--weights", str(weights), "--no-progress", *extra])


# --- 1. results are never overwritten silently -------------------------------------------------------------


@pytest.mark.slow
def test_two_models_get_two_folders_and_an_occupied_folder_is_refused(toy, models, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a, b = models
    assert _evaluate(toy, a) == 0 and _evaluate(toy, b) == 0
    folders = sorted((tmp_path / "results" / "widerface_eval").iterdir())
    assert [f.name.split("-")[0] for f in folders] == [f"{toy.name}_original_a", f"{toy.name}_original_b"]
    out = capsys.readouterr().out
    assert f"writing to results/widerface_eval/{folders[0].name}" in out
    first = json.loads((folders[0] / "results.json").read_text())
    # the same evaluation again replaces its own results (a note says so); another one is refused
    assert _evaluate(toy, a) == 0 and "replacing the earlier results of this same evaluation" in capsys.readouterr().err
    assert _evaluate(toy, b, "--out", str(folders[0])) == 2
    assert "holds the results of another evaluation (other weights); pass --overwrite" in capsys.readouterr().err
    assert json.loads((folders[0] / "results.json").read_text())["easy"] == first["easy"]
    assert _evaluate(toy, a, "--score-threshold", "0.5", "--out", str(folders[0])) == 2
    assert "(other post)" in capsys.readouterr().err
    assert _evaluate(toy, b, "--out", str(folders[0]), "--overwrite") == 0
    replaced = json.loads((folders[0] / "results.json").read_text())
    assert replaced["evaluation_key"]["weights"]["file"] == "b.pth"
    # settings that change the numbers name the folder
    assert _evaluate(toy, a, "--score-threshold", "0.1", "--top-k", "all", "--arithmetic", "float64") == 0
    names = {f.name for f in (tmp_path / "results" / "widerface_eval").iterdir()}
    assert any(n.endswith("_score0.1_topkall_float64") for n in names)


def test_claim_out_rules(tmp_path):
    key = {"weights": {"file": "a.pth", "sha256": "1"}, "iou": 0.5}
    assert claim_out(tmp_path / "new", key) is None
    (tmp_path / "results.json").write_text(json.dumps({"evaluation_key": key}))
    assert "same evaluation" in claim_out(tmp_path, key)
    with pytest.raises(RetinaError, match=r"\(other iou\)"):
        claim_out(tmp_path, {**key, "iou": 0.6})
    assert "--overwrite" in claim_out(tmp_path, {**key, "iou": 0.6}, overwrite=True)
    (tmp_path / "results.json").write_text('{"easy": 0.5}')  # an older results.json: no record of its settings
    with pytest.raises(RetinaError, match="no record of what they evaluated"):
        claim_out(tmp_path, key)


# --- 2. a note whenever a committed (synthetic-data) checkpoint is used -------------------------------------


def test_default_checkpoint_gets_a_note(toy, tmp_path, capsys):
    args = ["evaluate", "--data-root", str(toy), "--no-progress", "--out", str(tmp_path / "e")]
    assert main(args) == 0
    assert "note: no --weights given: using the committed checkpoint mobilenet0.25_synthface.pth (trained on " \
           "synthetic faces)" in capsys.readouterr().err  # fmt: skip
    image = next((toy / "images").rglob("*.jpg"))
    assert main(["detect", str(image), "--out", str(tmp_path / "d")]) == 0
    assert "trained on synthetic faces" in capsys.readouterr().err


# --- 3. the report of the folder it is run in ----------------------------------------------------------------


@pytest.mark.slow
def test_report_in_a_copy_writes_and_reads_there(toy, models, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    monkeypatch.chdir(copy)
    assert main(["report"]) == 2 and f"no results/ in {copy}" in capsys.readouterr().err
    assert main(["report", "--publish"]) == 2
    assert "--publish needs a repository checkout" in capsys.readouterr().err
    before = sorted((REPO_ROOT / "results" / "report").glob("**/*")) if (REPO_ROOT / "results").is_dir() else []
    assert _evaluate(toy, models[0]) == 0
    capsys.readouterr()
    assert main(["report"]) == 0
    assert "wrote results/report/report.md" in capsys.readouterr().out
    page = (copy / "results" / "report" / "report.md").read_text()
    assert "`a.pth`" in page and "results/widerface_eval/" in page
    after = sorted((REPO_ROOT / "results" / "report").glob("**/*")) if (REPO_ROOT / "results").is_dir() else []
    assert before == after  # the checkout holding the package was not written
    elsewhere = tmp_path / "elsewhere"
    assert main(["report", "--results", str(copy / "results"), "--out", str(elsewhere)]) == 0
    assert "`a.pth`" in (elsewhere / "report.md").read_text()


# --- 5. ONNX models in the command line, and --top-k -------------------------------------------------------


@pytest.mark.slow
def test_onnx_weights_in_detect_and_evaluate(toy, models, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "m.onnx"
    assert main(["export-onnx", "--weights", str(models[0]), "--out", str(onnx)]) == 0
    image = sorted((toy / "images").rglob("*.jpg"))[0]
    for weights, out in ((models[0], "pth"), (onnx, "onnx")):
        assert main(["detect", str(image), "--weights", str(weights), "--score-threshold", "0.3",
                     "--out", str(tmp_path / out)]) == 0  # fmt: skip
    torch_dets, onnx_dets = (json.loads((tmp_path / d / f"{image.stem}.json").read_text()) for d in ("pth", "onnx"))
    assert len(torch_dets["scores"]) == len(onnx_dets["scores"]) > 0
    np.testing.assert_allclose(onnx_dets["boxes"], torch_dets["boxes"], atol=1e-2)
    for weights, out in ((models[0], "e_pth"), (onnx, "e_onnx")):
        assert _evaluate(toy, weights, "--out", str(tmp_path / out)) == 0
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("e_pth", "e_onnx"))
    assert b["evaluation_key"]["weights"]["file"] == "m.onnx" and b["provenance"]["weights"] == str(onnx)
    for s in ("easy", "medium", "hard"):
        assert b[s] == pytest.approx(a[s], abs=1e-3)
    assert _evaluate(toy, onnx, "--device", "cpu", "--preset", "resnet50", "--out", str(tmp_path / "x")) == 2
    assert "not the requested preset 'resnet50'" in capsys.readouterr().err


@pytest.mark.slow
def test_top_k_and_max_detections_limit_the_detections(toy, models, tmp_path):
    image = sorted((toy / "images").rglob("*.jpg"))[0]
    counts = {}
    for flags in ([], ["--top-k", "5"], ["--max-detections", "3"], ["--top-k", "all", "--max-detections", "all"]):
        out = tmp_path / "_".join(flags or ["default"])
        assert main(["detect", str(image), "--weights", str(models[0]), "--score-threshold", "0", *flags,
                     "--out", str(out)]) == 0  # fmt: skip
        record = json.loads((out / f"{image.stem}.json").read_text())
        counts[" ".join(flags)] = (len(record["scores"]), record["settings"]["top_k"])
    assert counts[""][1] == 5000 and counts["--top-k all --max-detections all"][1] is None
    assert counts["--top-k 5"][0] <= 5 and counts["--max-detections 3"][0] == 3
    assert counts["--top-k all --max-detections all"][0] >= counts[""][0] > 5


# --- 6. resume from the run's own settings, named differences, fine-tuning -----------------------------------

TRAIN = ["--batch-size", "2", "--image-size", "64", "--workers", "0", "--no-progress", "--checkpoint-every", "2",
         "--log-every", "1"]  # fmt: skip


def _stopped_run(toy: Path, out: Path, *flags: str) -> None:
    """``retina train`` with ``flags``, left after the checkpoint at iteration 2 (an interrupted run)."""
    from retina.cli import build_parser
    from retina.commands import train as command
    from retina.data.dataset import SplitPaths
    from retina.engine import RunSpec, train

    argv = ["train", "--out", str(out), "--data-root", str(toy), *TRAIN, *flags]
    args = build_parser(argv).parse_args(argv)
    spec = RunSpec(out_dir=out, data=SplitPaths.from_root(toy), workers=0, checkpoint_every=2, log_every=1,
                   progress=False, stop_after=2, data_label=f"RetinaFace-layout split {toy}")  # fmt: skip
    train(preset(args.preset or "mobilenet0.25"), command.train_config(args), spec)


@pytest.mark.slow
def test_resume_reads_the_runs_settings_and_names_what_differs(toy, tmp_path, capsys):
    run = tmp_path / "run"
    _stopped_run(toy, run, "--recipe", "biubug6", "--max-iterations", "4")
    assert main(["train", "--out", str(run), "--resume", "--lr", "0.5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "lr 0.001 in the run, 0.5 now; cannot resume it with these" in err and err.count("in the run") == 1
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {run} at iteration 2/4" in out and "done: 4 iterations" in out
    record = json.loads((run / "train_record.json").read_text())
    assert record["train_cfg"]["recipe"] == "biubug6" and record["train_cfg"]["epochs"] == 250
    # the hash the record holds is that of the config the checkpoint holds, read back
    from retina.config import TrainCfg, config_hash, from_dict

    saved = from_dict(TrainCfg, read_checkpoint(run / "final.pth")[2]["extra"]["train_cfg"])
    assert config_hash(saved) == record["train_cfg_hash"]


def test_no_progress_prints_each_checkpoint(toy, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--data-root", str(toy), *TRAIN, "--max-iterations", "3"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("iteration ")]
    assert [line.split(":")[0] for line in lines] == ["iteration 2/3 (epoch 1)", "iteration 3/3 (epoch 1.5)"]
    assert "loss " in lines[0] and "images/s" in lines[0]


@pytest.mark.slow
def test_init_weights_start_a_new_run_and_are_recorded(toy, models, tmp_path, capsys):
    from retina.results import file_sha256

    out = tmp_path / "tuned"
    args = ["train", "--out", str(out), "--data-root", str(toy), *TRAIN, "--max-iterations", "2"]
    assert main([*args, "--init-weights", str(models[0]), "--lr", "1e-9"]) == 0
    record = json.loads((out / "train_record.json").read_text())
    assert record["starting_weights"] == {
        "pretrained_backbone": None, "init_weights": {"file": "a.pth", "sha256": file_sha256(models[0])}}  # fmt: skip
    start, end = read_checkpoint(models[0])[1], read_checkpoint(out / "final.pth")[1]
    key = "landmark_head.convs.0.weight"  # a tiny learning rate: the weights stay where they started
    torch.testing.assert_close(end[key], start[key], atol=1e-6, rtol=0)
    assert main([*args, "--out", str(tmp_path / "r2"), "--init-weights", str(models[0]), "--preset", "resnet50"]) == 2
    assert "another architecture (mobilenet0.25, not resnet50)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_resume_with_another_starting_file_is_refused(toy, models, tmp_path, capsys):
    run = tmp_path / "run"
    _stopped_run(toy, run, "--max-iterations", "4", "--init-weights", str(models[0]))
    assert main(["train", "--out", str(run), "--resume", "--init-weights", str(models[1]), "--no-progress"]) == 2
    assert "the run started from no such file, not --init-weights b.pth" in capsys.readouterr().err


# --- 7. one summary under torchrun; DDP's gradient layout ---------------------------------------------------


@pytest.mark.slow
def test_parameters_take_the_gradient_layout_of_training():
    """DDP's "Grad strides do not match bucket view strides": 1x1 and depthwise conv weights get gradients with
    channels-last strides (the training input is channels-last); _match_grad_layout gives them those strides."""
    from retina.engine import _match_grad_layout
    from retina.preprocess import normalize

    def mismatched(model: torch.nn.Module) -> list[str]:
        cfg = preset("mobilenet0.25")
        x = normalize(torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8), cfg.input)
        sum(t.sum() for t in model(x)).backward()
        return [n for n, p in model.named_parameters() if p.grad is not None and p.grad.stride() != p.stride()]

    model = build_detector(preset("mobilenet0.25")).train()
    assert mismatched(model)  # the cause: without the fix, some strides differ
    model = build_detector(preset("mobilenet0.25")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _match_grad_layout(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # same values: only the strides of size-1 dimensions changed
    assert mismatched(model) == []


def test_done_line_is_printed_by_rank_0_only(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    args = ["train", "--out", str(tmp_path / "r"), "--data-root", str(toy), *TRAIN, "--max-iterations", "1"]
    assert main(args) == 0 and "done:" not in capsys.readouterr().out


# --- 8. nox -s train keeps its default --out ---------------------------------------------------------------


def test_nox_train_session_keeps_the_default_out():
    sys.path.insert(0, str(REPO_ROOT))
    try:
        import noxfile
    finally:
        sys.path.remove(str(REPO_ROOT))

    class Session:
        def __init__(self, posargs: list[str]) -> None:
            self.posargs, self.calls = posargs, []

        def run(self, *args: str) -> None:
            self.calls.append(list(args))

    for posargs, out in ((["--data-root", "D"], "runs/mobilenet0.25_synthface"), (["--out", "mine"], "mine"),
                         (["--out=mine"], None)):  # fmt: skip
        session = Session(posargs)
        noxfile.train(session)
        (call,) = session.calls
        assert call[:2] == ["retina", "train"] and call[2 : 2 + len(posargs)] == posargs
        assert (call[call.index("--out") + 1] if "--out" in call else None) == out
        assert sum(a == "--out" or a.startswith("--out=") for a in call) == 1


# --- 9. records: the starting files and the installed versions ---------------------------------------------


def test_versions_name_installed_packages_that_are_not_imported():
    pytest.importorskip("onnxruntime")
    code = ("import sys, json; from retina.results import versions; v = versions(); "
            "print(json.dumps([v['onnxruntime'], 'onnxruntime' in sys.modules]))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    version, imported = json.loads(done.stdout)
    import importlib.metadata

    assert not imported and version == importlib.metadata.version("onnxruntime")


def test_pretrained_backbone_file_is_recorded(toy, models, tmp_path):
    from retina.results import file_sha256

    out = tmp_path / "r"
    args = ["train", "--out", str(out), "--data-root", str(toy), *TRAIN, "--max-iterations", "1"]
    assert main([*args, "--pretrained-backbone", str(models[1])]) == 0
    starting = json.loads((out / "train_record.json").read_text())["starting_weights"]
    assert starting["pretrained_backbone"] == {"file": "b.pth", "sha256": file_sha256(models[1])}
    assert read_checkpoint(out / "final.pth")[2]["provenance"]["starting_weights"] == starting


# --- 10. the README's detection counts come from the command it shows ----------------------------------------


@pytest.mark.slow
def test_readme_detection_counts_come_from_its_command(tmp_path, capsys):
    weights = shared_file("weights/retinaface_mobilenet0.25_Final.pth")
    samples = shared_file("samples")
    readme = (REPO_ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("retina detect SAMPLES "))
    argv = command.split("#")[0].split()[1:]
    argv = [str(samples) if a == "SAMPLES" else str(weights) if a.endswith("_Final.pth") else a for a in argv]
    argv[argv.index("--out") + 1] = str(tmp_path / "out")
    assert main(argv) == 0
    counts = [int(line.rsplit(": ", 1)[1].split()[0]) for line in capsys.readouterr().out.splitlines()[:3]]
    total = " + ".join(f"{n:,}" for n in counts)
    assert f"{total} detections at threshold 0.02" in " ".join(readme.split())


# --- 11. smaller things: defaults in --help, --gt of a root --------------------------------------------------


def test_help_shows_the_defaults(capsys):
    assert main(["evaluate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("test-time protocol (default: original)", "(default: 0.02)", "NMS IoU threshold, in (0, 1] "
                  "(default: 0.4)", "(default 5000)", "(default: 8)"):  # fmt: skip
        assert shown in text, shown


def test_widerface_eval_finds_the_ground_truth_under_a_root(toy, tmp_path, capsys):
    pred = tmp_path / "pred"
    shutil.copytree(toy / "images", pred)  # any folder of <event>/<stem>.txt: write empty predictions
    for image in list(pred.rglob("*.jpg")):
        image.with_suffix(".txt").write_text(f"{image.stem}\n0\n")
        image.unlink()
    for gt in (toy, toy / "ground_truth"):
        assert main(["widerface-eval", "--pred", str(pred), "--gt", str(gt)]) == 0
    assert capsys.readouterr().out.count("WIDER FACE evaluation") == 2


def test_readme_resume_error_row_is_the_default_recipes():
    """The README's example of a refused resume: a run of the default recipe resumed with --lr 0.5."""
    import dataclasses

    from retina.config import config_hash, train_preset

    recipe = train_preset("synth-cpu")
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    now = config_hash(dataclasses.replace(recipe, lr=0.5))
    assert f"(training recipe {config_hash(recipe)}, now {now}): lr {recipe.lr} in the run, 0.5 now;" in readme


def test_the_speed_report_module_leaves_sys_path_alone():
    """It put retina/ on sys.path, so a later ``import onnx`` found retina/onnx.py (an ONNX export after the
    report, in one process, failed)."""
    import importlib

    import retina.report.speed

    importlib.reload(retina.report.speed)
    package = str(Path(retina.report.speed.__file__).resolve().parent.parent)
    assert package not in sys.path
