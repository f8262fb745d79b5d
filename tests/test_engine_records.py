"""Honest training records: the command and commit at the start and at each save, resume of a finished run,
resume on other data, the data fingerprint, the packaging of the committed checkpoint, train's flag checks."""

import hashlib
import json
import shutil
import sys

import pytest
import torch

from retina.build import build_detector
from retina.checkpoint import read_checkpoint, save_checkpoint
from retina.cli import main
from retina.config import AugmentCfg, TrainCfg, preset
from retina.data.dataset import SplitPaths, data_fingerprint
from retina.engine import RunSpec, train
from retina.errors import RetinaError
from retina.synth.config import SYNTH_PRESETS
from retina.synth.splits import generate_split
from tests.conftest import REPO_ROOT
from tests.toy_faces import make_toy_split

MODEL = preset("mobilenet0.25")
CFG = TrainCfg(recipe="test", batch_size=2, max_iterations=6, lr=0.01, warmup_lr=0.001,
               augment=AugmentCfg(image_size=64), seed=0)  # fmt: skip


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return SplitPaths.from_root(make_toy_split(tmp_path_factory.mktemp("toy")))


def _spec(out, data, **kw):
    return RunSpec(out_dir=out, data=data, workers=0, checkpoint_every=3, log_every=1, progress=False, **kw)


def _files(folder):
    """Every file under ``folder``: name -> (bytes, modification time in ns)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def fake_git(monkeypatch):
    """git_commit returns c0, c1, ... in call order: shows which call recorded which commit."""
    calls = []

    def commit(*_args):
        calls.append(f"c{len(calls)}")
        return {"commit": calls[-1], "dirty": False}

    monkeypatch.setattr("retina.engine.git_commit", commit)
    monkeypatch.setattr("retina.results.git_commit", commit)
    return calls


def test_records_name_the_command_and_the_commit_at_start_and_at_each_save(toy, tmp_path, monkeypatch, fake_git):
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["retina", "train", "--first"])
    train(MODEL, CFG, _spec(out, toy, stop_after=3))  # c0 start, c1 save of iteration 3, c2 returned record
    history = read_checkpoint(out / "last.pth")[2]["extra"]["history"]
    assert [(i["argv"], i["git"]["commit"], i["start_iteration"]) for i in history["invocations"]] == [
        (["retina", "train", "--first"], "c0", 0)
    ]
    assert [(s["iteration"], s["file"], s["git"]["commit"], s["invocation"]) for s in history["saves"]] == [
        (3, "last.pth", "c1", 0)
    ]
    monkeypatch.setattr(sys, "argv", ["retina", "train", "--resume"])
    record = train(MODEL, CFG, _spec(out, toy, resume=True))  # c3 start, c4 last.pth, c5 final.pth, c6 record
    stored = json.loads((out / "train_record.json").read_text())
    assert stored["history"] == record["history"] == read_checkpoint(out / "final.pth")[2]["extra"]["history"]
    invocations = [(i["argv"][-1], i["git"]["commit"], i["start_iteration"]) for i in stored["history"]["invocations"]]
    assert invocations == [("--first", "c0", 0), ("--resume", "c3", 3)]
    saves = [(s["iteration"], s["file"], s["git"]["commit"], s["invocation"]) for s in stored["history"]["saves"]]
    assert saves == [(3, "last.pth", "c1", 0), (6, "last.pth", "c4", 1), (6, "final.pth", "c5", 1)]
    assert read_checkpoint(out / "last.pth")[2]["provenance"]["git"]["commit"] == "c4"
    assert stored["provenance"]["git"]["commit"] == "c6" and stored["provenance"]["argv"][-1] == "--resume"
    assert stored["data"]["fingerprint"]["sha256"] == hashlib.sha256(toy.labels.read_bytes()).hexdigest()


def test_resume_of_a_finished_run_says_so_and_writes_nothing(toy, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--data-root", str(toy.labels.parent), "--out", str(out), "--batch-size", "2", "--max-iterations",
            "2", "--image-size", "64", "--workers", "0", "--no-progress", "--log-every", "1"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    before = _files(out)
    assert sorted(before) == ["final.pth", "last.pth", "metrics.jsonl", "train_record.json"]
    assert main([*args, "--resume"]) == 0
    # 8 images in batches of 2: 4 iterations per epoch
    assert capsys.readouterr().out == f"{out}: already finished at iteration 2/2 (epoch 0.5/0.5); nothing to do\n"
    assert _files(out) == before
    # the same command without --resume: an error that says the run is finished, and nothing written
    assert main(args) == 2
    assert "already holds a finished run (final.pth): use another --out" in capsys.readouterr().err
    assert _files(out) == before
    # killed after the last save but before the final files: resuming writes them and trains nothing
    (out / "final.pth").unlink()
    (out / "train_record.json").unlink()
    assert main([*args, "--resume"]) == 0
    assert _files(out)["last.pth"] == before["last.pth"]
    assert _files(out)["metrics.jsonl"][0] == before["metrics.jsonl"][0]
    assert json.loads((out / "train_record.json").read_text())["completed_iterations"] == 2


def test_resume_refuses_other_data_and_continues_on_the_same_data_elsewhere(toy, tmp_path):
    out = tmp_path / "run"
    train(MODEL, CFG, _spec(out, toy, stop_after=3))
    before = _files(out)
    other = SplitPaths.from_root(make_toy_split(tmp_path / "other", seed=1))
    ours, theirs = (hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in (toy.labels, other.labels))
    assert ours != theirs
    with pytest.raises(RetinaError) as err:
        train(MODEL, CFG, _spec(out, other, resume=True))
    message = str(err.value)
    assert "\n" not in message and "other data" in message
    assert f"label file sha256 {ours} ({toy.labels})" in message
    assert f"now label file sha256 {theirs} ({other.labels})" in message
    assert _files(out) == before
    copy = SplitPaths.from_root(shutil.copytree(toy.labels.parent, tmp_path / "copy"))  # same bytes, other path
    record = train(MODEL, CFG, _spec(out, copy, resume=True))
    assert record["finished"] and record["resumed_from"] == 3 and record["completed_iterations"] == 6


def test_synthface_fingerprint_is_its_config_split_and_seed_not_its_path_or_provenance(tmp_path):
    split = generate_split(tmp_path / "a", SYNTH_PRESETS["tiny"], "train", 1, seed=0)
    first = data_fingerprint(SplitPaths.from_root(split))
    assert first["kind"] == "SynthFace config" and first["source"] == str(split / "synth.json")
    info = json.loads((split / "synth.json").read_text())

    def fingerprint_with(**changes):
        folder = tmp_path / f"edit{len(list(tmp_path.iterdir()))}"
        shutil.copytree(split, folder)
        (folder / "synth.json").write_text(json.dumps({**info, **changes}))
        return data_fingerprint(SplitPaths.from_root(folder))["sha256"]

    assert fingerprint_with(provenance={"created_utc": "another day"}) == first["sha256"]
    assert fingerprint_with(split="val") != first["sha256"]
    assert fingerprint_with(seed=1) != first["sha256"]
    assert fingerprint_with(n_images=2) != first["sha256"]
    assert fingerprint_with(config={**info["config"], "width": 161}) != first["sha256"]
    (split / "synth.json").write_text("{not json")
    with pytest.raises(RetinaError, match=r"synth\.json: not a SynthFace description"):
        data_fingerprint(SplitPaths.from_root(split))


def _fake_run(folder, metric_iterations, iteration=4, finished=True):
    """A run folder as `retina train` leaves it, with a small untrained model."""
    folder.mkdir()
    torch.manual_seed(0)
    model = build_detector(MODEL)
    history = {"invocations": [{"argv": ["retina", "train"]}], "saves": [{"iteration": iteration}]}
    extra = {"iteration": iteration, "optimizer": {"state": {}}, "history": history, "data_fingerprint": {"k": "v"}}
    save_checkpoint(folder / "final.pth", model, MODEL, provenance={"argv": ["retina", "train"]}, extra=extra)
    rows = [{"iteration": i, "loss": 1.0 / i} for i in metric_iterations]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = {"finished": finished, "completed_iterations": iteration}
    (folder / "train_record.json").write_text(json.dumps(record))
    return model


def test_packaging_writes_the_runs_metrics_beside_the_weights(tmp_path):
    from benchmarks.embedded_checkpoint import package_run  # imports the evaluator: only for these tests

    model = _fake_run(tmp_path / "run", [2, 4])
    packaged = package_run(tmp_path / "run", tmp_path / "weights", "m")
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["m.metrics.jsonl", "m.pth"]
    assert packaged.metrics.read_bytes() == (tmp_path / "run" / "metrics.jsonl").read_bytes()
    _, state, payload = read_checkpoint(packaged.checkpoint)
    assert sorted(payload["extra"]) == ["data_fingerprint", "history", "iteration"]  # no optimiser state
    assert payload["extra"]["history"]["invocations"][0]["argv"] == ["retina", "train"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert packaged.train_record == {"finished": True, "completed_iterations": 4}


@pytest.mark.parametrize(
    ("metrics", "finished", "message"),
    [
        ([2], True, "the last record is iteration 2, but the checkpoint is at iteration 4"),
        ([], True, "the last record is iteration none"),
        ([4, 2, 4], True, "iterations do not increase"),
        ([2, 4], False, "the run did not finish"),
    ],
)
def test_packaging_refuses_a_run_whose_records_disagree_and_writes_nothing(tmp_path, metrics, finished, message):
    from benchmarks.embedded_checkpoint import package_run

    _fake_run(tmp_path / "run", metrics, finished=finished)
    with pytest.raises(RetinaError, match=message):
        package_run(tmp_path / "run", tmp_path / "weights", "m")
    assert not (tmp_path / "weights").exists()


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--lr", "-1", "argument --lr: expected a finite number > 0, got '-1'"),
        ("--lr", "nan", "argument --lr: expected a finite number > 0, got 'nan'"),
        ("--epochs", "0", "argument --epochs: expected a finite number > 0, got '0'"),
        ("--batch-size", "0", "argument --batch-size: expected an integer >= 1, got '0'"),
        ("--max-iterations", "-5", "argument --max-iterations: expected an integer >= 1, got '-5'"),
        ("--image-size", "16", "argument --image-size: expected an integer in [32, 4096], got '16'"),
        ("--seed", "-1", "argument --seed: expected an integer in [0, 4294967295], got '-1'"),
        ("--workers", "-1", "argument --workers: expected an integer >= 0, got '-1'"),
        ("--checkpoint-every", "0", "argument --checkpoint-every: expected an integer >= 1, got '0'"),
        ("--log-every", "0", "argument --log-every: expected an integer >= 1, got '0'"),
        ("--landmark-weight", "-0.1", "argument --landmark-weight: expected a finite number >= 0, got '-0.1'"),
    ],
)
def test_train_flags_out_of_range_are_one_line_errors(tmp_path, capsys, flag, value, expected):
    try:
        code = main(["train", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "run"), flag, value])
    except SystemExit as exc:  # argparse's exit, where the CLI does not turn it into a status
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"retina train: error: {expected}"), err
    assert not (tmp_path / "run").exists()


def test_committed_metrics_belong_to_the_committed_checkpoint():
    """The committed metrics.jsonl ends at the checkpoint's iteration, with the losses its record gives."""
    weights = REPO_ROOT / "retina" / "weights"
    rows = [json.loads(line) for line in (weights / "mobilenet0.25_synthface.metrics.jsonl").read_text().splitlines()]
    record = json.loads((weights / "mobilenet0.25_synthface.json").read_text())["train"]
    iteration = read_checkpoint(weights / "mobilenet0.25_synthface.pth")[2]["extra"]["iteration"]
    assert rows[-1]["iteration"] == iteration == record["completed_iterations"] == record["iterations"]
    assert {k: rows[-1][k] for k in record["final_losses"]} == record["final_losses"]
    assert [r["iteration"] for r in rows] == sorted({r["iteration"] for r in rows})


def test_loader_workers_default_by_device_and_cores():
    from retina.engine import loader_workers

    assert [loader_workers("cpu", n) for n in (1, 2, 3, 16)] == [0, 0, 1, 1]
    assert [loader_workers("cuda", n) for n in (1, 16)] == [2, 2]


@pytest.mark.parametrize(("cores", "expected"), [({0, 1}, 0), ({0, 1, 2, 3}, 1)])
def test_train_without_workers_takes_the_default_for_its_cores_and_records_it(toy, tmp_path, monkeypatch, cores,
                                                                              expected):  # fmt: skip
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: cores, raising=False)
    spec = RunSpec(out_dir=tmp_path / "run", data=toy, checkpoint_every=3, log_every=1, progress=False, stop_after=1)
    assert spec.workers is None
    record = train(MODEL, CFG, spec)
    assert record["loader_workers"] == expected  # and so in last.pth's provenance and train_record.json
