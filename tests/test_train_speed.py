"""Issue 23 (CPU training throughput): the faster training path computes what the code before it computed.

- Golden: one engine step (its losses, and how far it moved each part's weights and BatchNorm statistics) equals
  the numbers recorded with the code before issue 23 (commit 0122c47), for the paper and the biubug6 loss recipes.
- The same step equals a plain reference step, the biubug6-style step of ``benchmarks/train_speed.py`` (per-image
  matching with a Python loop over faces, OHEM by a double sort, ``torch.optim.SGD``) on the same input, to float32
  tolerance; and the suite's matching and losses equal that reference on batches with an image without
  faces, faces without landmarks, duplicate faces and a crowd. (This also shows that the benchmark's baseline
  computes the suite's loss recipe, so that the two steps it times do the same work.)
- Photometric distortion through look-up tables equals the float32 implementation it replaced, bit for bit, and
  the horizontal flip by ``cv2.flip`` equals the numpy mirror.
- The stage timer changes nothing it times; the ``cpu_bf16`` flag trains and says so in the records; the benchmark
  runs end to end on a toy setting and the report's section reads its record.
"""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from benchmarks import train_speed
from benchmarks.train_speed import biubug6_loss, biubug6_match, biubug6_step
from retina.build import build_detector
from retina.checkpoint import read_checkpoint
from retina.config import TRAIN_PRESETS, AugmentCfg, LossCfg, TrainCfg, preset
from retina.data.dataset import FaceDataset, ResumableSampler, SplitPaths, Target, collate
from retina.data.transforms import Sample, hflip, photometric
from retina.engine import RunSpec, cpu_has_bf16, train
from retina.errors import RetinaError
from retina.losses import assign, losses
from retina.matching import POSITIVE
from retina.models.detector import Predictions
from retina.preprocess import normalize
from retina.priors import make_priors
from retina.report import sections, sources
from retina.stages import StageTimer
from tests.toy_faces import make_toy_split

MODEL = preset("mobilenet0.25")
V = (0.1, 0.2)

# Recorded at commit 0122c47 (before issue 23) by the step of ``_golden_cfg`` on ``make_toy_split(n=8, size=96,
# seed=5, max_faces=4)``: the final losses, and per top-level module the summed |final - initial| of its parameters
# ("update") and of its BatchNorm running statistics ("running").
GOLDEN = {
    "paper": {
        "losses": {"cls": 4.267251014709473, "box": 3.0188639163970947, "landmarks": 14.473740577697754},
        "groups": {
            "update.backbone": 1.605347512379742, "running.backbone": 1102.4656826987043,
            "update.fpn": 0.288317277084837, "running.fpn": 33.238481354914256,
            "update.contexts": 0.20142666208566773, "running.contexts": 29.263112884171278,
            "update.cls_head": 0.008686086017405614, "update.box_head": 0.0014799825730733573,
            "update.landmark_head": 0.0020792187278857455,
        },
    },
    "biubug6": {
        "losses": {"cls": 5.898316860198975, "box": 4.518519878387451, "landmarks": 19.4354305267334},
        "groups": {
            "update.backbone": 2.3892607680472775, "running.backbone": 1102.4656826987043,
            "update.fpn": 0.4608615639975442, "running.fpn": 33.238481354914256,
            "update.contexts": 0.2768411968536144, "running.contexts": 29.263112884171278,
            "update.cls_head": 0.014122836182650644, "update.box_head": 0.008710883848834783,
            "update.landmark_head": 0.015073422489876975,
        },
    },
}  # fmt: skip


def _golden_cfg(recipe: str) -> TrainCfg:
    return TrainCfg(recipe="golden", batch_size=4, max_iterations=1, lr=0.01, warmup_lr=0.01, warmup_fraction=0.0,
                    augment=AugmentCfg(image_size=96), seed=3, loss=TRAIN_PRESETS[recipe].loss)  # fmt: skip


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return SplitPaths.from_root(make_toy_split(tmp_path_factory.mktemp("toy"), n=8, size=96, seed=5, max_faces=4))


def _spec(out, data, **kw):
    return RunSpec(out_dir=out, data=data, workers=0, checkpoint_every=1, log_every=1, progress=False, **kw)


def _groups(state: dict[str, torch.Tensor], seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    init = build_detector(MODEL).state_dict()
    groups: dict[str, float] = {}
    for k, v in state.items():
        if v.is_floating_point():
            g = ("running." if "running" in k else "update.") + k.split(".")[0]
            groups[g] = groups.get(g, 0.0) + float((v.double() - init[k].double()).abs().sum())
    return groups


@pytest.mark.parametrize("recipe", ["paper", "biubug6"])
def test_one_step_equals_the_numbers_recorded_before_issue_23(toy, tmp_path, recipe):
    record = train(MODEL, _golden_cfg(recipe), _spec(tmp_path / "run", toy))
    _, state, _ = read_checkpoint(tmp_path / "run" / "final.pth")
    golden = GOLDEN[recipe]
    assert record["final_losses"] == pytest.approx(golden["losses"], rel=1e-4)
    assert _groups(state, 3) == pytest.approx(golden["groups"], rel=1e-3, abs=1e-6)


def _reference_batch(data: SplitPaths, cfg: TrainCfg):
    dataset = FaceDataset(data, cfg.augment, cfg.seed)
    indices = next(iter(ResumableSampler(len(dataset), cfg.batch_size, cfg.seed, 0, 1)))
    return collate([dataset[k] for k in indices])


@pytest.mark.parametrize("recipe", ["paper", "biubug6"])
def test_one_step_equals_a_plain_reference_step(toy, tmp_path, recipe):
    cfg = _golden_cfg(recipe)
    record = train(MODEL, cfg, _spec(tmp_path / "run", toy))
    _, state, _ = read_checkpoint(tmp_path / "run" / "final.pth")
    images, targets = _reference_batch(toy, cfg)
    assert any(len(t.boxes) == 0 for t in targets) and any(len(t.boxes) > 1 for t in targets)  # what is covered
    torch.manual_seed(cfg.seed)
    model = build_detector(MODEL)
    sgd = torch.optim.SGD(model.parameters(), lr=_lr0(cfg), momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)  # fmt: skip
    priors = make_priors((96, 96), MODEL.priors.strides, MODEL.priors.sizes)
    # The engine's input: a channels-last view of the uint8 batch. On an NCHW copy the convolutions round otherwise,
    # and OHEM's discrete choice can then take a few other near-equal negatives (updates ~2% apart on this batch).
    parts = biubug6_step(model, sgd, normalize(images, MODEL.input), targets, priors, cfg.loss)
    assert {k: float(v.detach()) for k, v in parts.items()} == pytest.approx(record["final_losses"], rel=1e-5)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state[k], v, rtol=1e-4, atol=1e-5, msg=k)


def _faces(n: int, size: int, g: torch.Generator, landmarks: float = 0.7) -> Target:
    xy = torch.rand(n, 2, generator=g) * (size - 30)
    wh = torch.rand(n, 2, generator=g) * 40 + 3
    lmk = xy[:, None] + torch.rand(n, 5, 2, generator=g) * wh[:, None]
    return Target(torch.cat([xy, xy + wh], 1), lmk, torch.rand(n, generator=g) < landmarks)


def _batches(size: int) -> list[list[Target]]:
    g = torch.Generator().manual_seed(0)
    dup = _faces(3, size, g)
    twins = Target(torch.cat([dup.boxes, dup.boxes[:1]]), torch.cat([dup.landmarks, dup.landmarks[:1] + 1]),
                   torch.tensor([True, False, True, False]))  # a face twice, once without landmarks  # fmt: skip
    return [
        [_faces(0, size, g), _faces(4, size, g), twins, _faces(1, size, g, landmarks=0.0)],
        [_faces(60, size, g), _faces(2, size, g)],  # a crowd
        [_faces(0, size, g), _faces(0, size, g)],  # no face at all
    ]


@pytest.mark.parametrize("loss_cfg", [LossCfg(), TRAIN_PRESETS["biubug6"].loss], ids=["paper", "biubug6"])
def test_matching_and_losses_equal_the_plain_reference(loss_cfg):
    size = 128
    priors = make_priors((size, size), MODEL.priors.strides, MODEL.priors.sizes)
    g = torch.Generator().manual_seed(1)
    for targets in _batches(size):
        ours = assign(targets, priors, V, loss_cfg)
        for i, t in enumerate(targets):
            labels, boxes, points, has = biubug6_match(t, priors, V, loss_cfg)
            assert torch.equal(ours.labels[i], labels)
            pos = labels == POSITIVE
            torch.testing.assert_close(ours.box_targets[i][pos], boxes[pos])
            torch.testing.assert_close(ours.landmark_targets[i][pos & has], points[pos & has])
            assert torch.equal(ours.landmark_mask[i], pos & has)
        b, a = len(targets), len(priors)
        pred = Predictions(torch.randn(b, a, 2, generator=g) * 2, torch.randn(b, a, 4, generator=g),
                           torch.randn(b, a, 10, generator=g))  # fmt: skip
        parts = losses(pred, ours, loss_cfg, ours.num_positive, ours.num_landmarks)
        reference = biubug6_loss(pred, targets, priors, loss_cfg)
        for k in parts:
            torch.testing.assert_close(parts[k], reference[k], rtol=1e-5, atol=1e-6, msg=k)


def _photometric_float32(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The implementation before issue 23: the whole image in float32."""
    x = image.astype(np.float32)
    if rng.random() < 0.5:
        x += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        x *= rng.uniform(0.5, 1.5)
    do_sat, do_hue = rng.random() < 0.5, rng.random() < 0.5
    if do_sat or do_hue:
        hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
        if do_sat:
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255)
        if do_hue:
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-9, 9)) % 180
        x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    if not contrast_first and rng.random() < 0.5:
        x *= rng.uniform(0.5, 1.5)
    return np.clip(x, 0, 255).astype(np.uint8)


def test_photometric_lookup_tables_equal_the_float32_implementation():
    big = np.random.default_rng(0).integers(0, 256, (90, 80, 3), dtype=np.uint8)
    big[:10] = 0
    big[10:20] = 255  # saturated levels: clipping on both sides
    for seed in range(300):
        image = big[seed % 7 : seed % 7 + 60, 3:63]  # a crop view, as random_square_crop hands it over
        ours_rng, ref_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        ours, ref = photometric(image, ours_rng), _photometric_float32(image, ref_rng)
        assert ours.dtype == np.uint8 and ours.flags.c_contiguous and np.array_equal(ours, ref), seed
        assert ours_rng.random() == ref_rng.random()  # the same draws: later augmentation steps see the same stream


def test_hflip_equals_the_numpy_mirror():
    big = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    for image in (big, big[5:45, 7:61], big[::2, 3:]):  # contiguous, a crop view, strided rows
        sample = Sample(image, np.array([[1.0, 2.0, 20.0, 30.0]], np.float32), np.ones((1, 5, 2), np.float32),
                        np.ones(1, bool))  # fmt: skip
        flipped = hflip(sample).image
        assert flipped.flags.c_contiguous and np.array_equal(flipped, np.ascontiguousarray(image[:, ::-1]))


def test_stage_timer_changes_nothing_and_accounts_for_the_loop(toy, tmp_path):
    cfg = dataclasses.replace(_golden_cfg("paper"), max_iterations=4, batch_size=2)
    timer = StageTimer(warmup=1)
    train(MODEL, cfg, _spec(tmp_path / "timed", toy), stages=timer)
    train(MODEL, cfg, _spec(tmp_path / "plain", toy))
    _, timed, _ = read_checkpoint(tmp_path / "timed" / "final.pth")
    _, plain, _ = read_checkpoint(tmp_path / "plain" / "final.pth")
    assert all(torch.equal(timed[k], plain[k]) for k in plain)
    summary = timer.summary()
    assert summary["iterations"] == 3
    names = {"data", "input", "forward", "assign", "loss", "backward", "optimizer", "log", "checkpoint", "other"}
    assert set(summary["stages"]) == names
    assert sum(s["share"] for s in summary["stages"].values()) == pytest.approx(1.0)
    assert summary["stages"]["backward"]["wall_ms"] > 0


def test_cpu_bf16_trains_and_is_recorded(toy, tmp_path):
    cfg = dataclasses.replace(_golden_cfg("paper"), max_iterations=2, batch_size=2)
    plain = train(MODEL, cfg, _spec(tmp_path / "fp32", toy))
    assert "cpu_bf16" not in plain  # float32 records stay as they were
    if not cpu_has_bf16():
        with pytest.raises(RetinaError, match="bf16"):
            train(MODEL, cfg, _spec(tmp_path / "bf16", toy, cpu_bf16=True))
        return
    record = train(MODEL, cfg, _spec(tmp_path / "bf16", toy, cpu_bf16=True))
    assert record["cpu_bf16"] is True
    assert json.loads((tmp_path / "bf16" / "train_record.json").read_text())["cpu_bf16"] is True
    assert all(np.isfinite(v) for v in record["final_losses"].values())
    assert record["final_losses"] != plain["final_losses"]  # it does change the numbers
    longer = dataclasses.replace(cfg, max_iterations=3)
    train(MODEL, longer, _spec(tmp_path / "half", toy, cpu_bf16=True, stop_after=1))
    with pytest.raises(RetinaError, match="trained in bf16"):  # one numeric mode per run
        train(MODEL, longer, _spec(tmp_path / "half", toy, resume=True))


@pytest.mark.slow
def test_train_speed_benchmark_runs_on_a_toy_setting(toy, tmp_path, monkeypatch):
    setting = train_speed.Setting("toy", 2, 64, 1, 0, 0, "toy split, batch 2 at 64 px")
    monkeypatch.setitem(train_speed.SETTINGS, "toy", setting)
    monkeypatch.setattr(train_speed, "split_root", lambda s: toy.labels.parent)
    out = tmp_path / "train_speed" / "machine.json"  # laid out as under results/ or reports/records/
    args = ["--settings", "toy", "--rounds", "1", "--warmup", "1", "--e2e-rounds", "1", "--e2e-iterations", "7",
            "--log-every", "3", "--data-images", "4", "--out", str(out)]  # fmt: skip
    assert train_speed.main(args) == 0
    record = json.loads(out.read_text())
    section = record["settings"]["toy"]
    assert section["step"]["rows"][0]["x_biubug6"] == 1.0
    assert max(section["step"]["losses_biubug6_vs_suite"].values()) < 1e-4
    assert all(section["parts"]["checks"].values())
    assert "now" in section["data"] and "now" in [r["config"] for r in section["e2e"]["rows"]]
    assert set(section["e2e"]["profile"]["stages"]) >= {"data", "forward", "backward"}
    assert "toy_step_x_biubug6" in record["goals"]
    section = sections.train_speed_section(sources.collect([tmp_path]), sections.LOCAL)
    assert {f"train_speed_toy_{k}.csv" for k in ("step", "parts", "iteration", "profile", "data")} == set(
        section.tables
    )
    assert any("x biubug6-style" in line for line in section.lines)


def _lr0(cfg: TrainCfg) -> float:
    """The engine's learning rate at the first of one iteration."""
    from retina.schedule import learning_rate

    return learning_rate(0, 1, cfg.lr, warmup_fraction=cfg.warmup_fraction, warmup_lr=cfg.warmup_lr,
                         step_fractions=cfg.step_fractions)  # fmt: skip
