"""The training engine: exact resume, 2-process DDP (gloo) against 1 process, NaN handling, schedule."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from retina.checkpoint import read_checkpoint
from retina.config import AugmentCfg, TrainCfg, preset
from retina.data.dataset import ResumableSampler, SplitPaths
from retina.engine import RunSpec, TrainingDiverged, train
from retina.errors import RetinaError
from retina.losses import losses
from tests.toy_faces import make_toy_split

MODEL = preset("mobilenet0.25")


def _cfg(**kw):
    base = dict(recipe="test", batch_size=2, max_iterations=6, lr=0.01, warmup_lr=0.001,
                augment=AugmentCfg(image_size=64), seed=0)  # fmt: skip
    return TrainCfg(**{**base, **kw})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return SplitPaths.from_root(make_toy_split(tmp_path_factory.mktemp("toy")))


def _spec(out, data, **kw):
    return RunSpec(out_dir=out, data=data, workers=0, checkpoint_every=3, log_every=1, progress=False, **kw)


def test_sampler_resumes_where_it_stopped_and_splits_batches_across_ranks():
    full = list(ResumableSampler(10, 4, seed=3, start=0, stop=6))
    assert list(ResumableSampler(10, 4, seed=3, start=4, stop=6)) == full[4:]
    assert [e for b in full for e, _ in b] == [0] * 8 + [1] * 8 + [2] * 8  # 2 batches per epoch
    halves = [list(ResumableSampler(10, 4, 3, 0, 6, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves, strict=True)] == full
    with pytest.raises(RetinaError, match="not divisible"):
        ResumableSampler(10, 3, 0, 0, 1, world_size=2)


def test_interrupted_and_resumed_run_ends_with_the_same_weights(toy, tmp_path):
    cfg = _cfg()
    train(MODEL, cfg, _spec(tmp_path / "a", toy))
    train(MODEL, cfg, _spec(tmp_path / "b", toy, stop_after=3))  # "killed" after the checkpoint at 3
    assert not (tmp_path / "b" / "final.pth").exists()
    assert read_checkpoint(tmp_path / "b" / "last.pth")[2]["extra"]["iteration"] == 3
    with pytest.raises(RetinaError, match="--resume"):
        train(MODEL, cfg, _spec(tmp_path / "b", toy))
    with pytest.raises(RetinaError, match="other settings"):
        train(MODEL, _cfg(lr=0.02), _spec(tmp_path / "b", toy, resume=True))
    train(MODEL, cfg, _spec(tmp_path / "b", toy, resume=True))
    _, a, _ = read_checkpoint(tmp_path / "a" / "final.pth")
    _, b, _ = read_checkpoint(tmp_path / "b" / "final.pth")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]
    ref = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(toy, tmp_path):
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        parts = losses(*args, **kwargs)
        if calls["n"] == 5:
            parts["box"] = parts["box"] * float("nan")
        return parts

    with pytest.raises(TrainingDiverged, match=r"non-finite loss at iteration 5.*iteration 3"):
        train(MODEL, _cfg(), _spec(tmp_path, toy), loss_fn=poisoned)
    assert read_checkpoint(tmp_path / "last.pth")[2]["extra"]["iteration"] == 3


def _one_and_two_processes(toy, tmp_path, iterations: int, *extra: str) -> None:
    """``retina train`` of global batch 4 (frozen BatchNorm) into tmp_path/one (one process) and tmp_path/two
    (2 gloo processes under torchrun)."""
    common = ["--data-root", str(toy.images.parent), "--batch-size", "4", "--max-iterations", str(iterations),
              "--image-size", "64", "--freeze-bn", "--workers", "0", "--no-progress", "--log-every", "1",
              "--checkpoint-every", "100", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = [sys.executable, "-m", "retina.cli", "train", "--out", str(tmp_path / "one"), *common]
    one = subprocess.run(single, env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    launcher = ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "retina.cli", "train"]
    two = subprocess.run([*launcher, "--out", str(tmp_path / "two"), *common], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    # issue 22: one summary (rank 0), and no DDP gradient-layout warning (retina.engine._match_grad_layout)
    assert two.stdout.count("done:") == 1 and "Grad strides do not match" not in two.stderr, two.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("torchrun"), reason="torchrun not on PATH")
def test_two_process_ddp_follows_one_process(toy, tmp_path):
    """2 gloo processes x batch 2 vs 1 process x batch 4, frozen BatchNorm.

    With frozen BatchNorm the two runs compute the same global loss (the engine normalises by the global
    positive count and each process takes its half of the same global batch); they differ only by float32
    summation order in the gradient all-reduce (~1e-7 relative per step), hence rtol 1e-4 after 4 steps.
    """
    _one_and_two_processes(toy, tmp_path, 4)
    _, a, _ = read_checkpoint(tmp_path / "one" / "final.pth")
    _, b, pay = read_checkpoint(tmp_path / "two" / "final.pth")
    assert pay["provenance"]["world_size"] == 2
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    la = [json.loads(x)["loss"] for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(la) == len(lb) == 4
    assert la == pytest.approx(lb, rel=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("torchrun"), reason="torchrun not on PATH")
@pytest.mark.parametrize("pixel_weight", ["0.01", "0"])
def test_two_process_ddp_with_the_mesh_head(toy, tmp_path, pixel_weight):
    """The mesh preset under 2 gloo processes: with the pixel loss (its count all-reduced) the run follows one
    process with the global batch; without it the unused mesh head does not stop DDP."""
    _one_and_two_processes(toy, tmp_path, 2, "--preset", "mobilenet0.25-mesh", "--pixel-weight", pixel_weight)
    la, lb = (
        [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("one", "two")
    )
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], rel=1e-4)
    assert ("pixel" in la[-1]) == (pixel_weight != "0") and ("pixel" in lb[-1]) == (pixel_weight != "0")
