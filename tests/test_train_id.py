"""ArcFace training on aligned crops (retina.recognition.train) and its backbone (retina.models.face_embed).

The training tests use a tiny split made here in the SynthFace-ID layout: 4 identities (a red disc, a green
rectangle, a blue triangle, a white cross; drawn with cv2, jittered in place, size and background), 6 images
each, 128x128, with the five landmarks at the ArcFace template's points shifted by (8, 8) plus 0.5 px noise, so
alignment is nearly a plain crop. A network 1/16 of mobilefacenet-s keeps every run to a few seconds.

Torch runs single-threaded in this module (restored afterwards): on 2 CPU cores shared with other work, two
OpenMP threads were 10-20x slower than one in our measurements.
"""

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from retina.cli import main as cli_main
from retina.commands.train_arcface import RECIPES
from retina.config import from_dict, to_dict
from retina.errors import DataFormatError, RetinaError
from retina.models.face_embed import (
    EMBED_PRESETS,
    FaceEmbedCfg,
    build_embedder,
    count_parameters,
    embed_preset,
    normalize_crops,
)
from retina.recognition.train import (
    TRAIN_ID_PRESETS,
    AlignedFaces,
    IdRunSpec,
    TrainIdCfg,
    aligned_crop,
    augment_crop,
    embed_images,
    id_data,
    load_embedder,
    read_synthface_id,
    save_embedder,
    train_id,
)
from retina.results import file_sha256
from retina.verify.align import ARCFACE_112

IDENTITIES = (3, 7, 12, 40)  # not contiguous: read_synthface_id re-indexes them 0..3
PER_IDENTITY = 6
SHIFT = 8  # landmarks at the template + SHIFT: the aligned crop is about image[8:120, 8:120]
TINY = FaceEmbedCfg(
    name="test-tiny",
    width=0.25,
    blocks=((2, 64, 1, 2), (2, 128, 1, 2), (2, 128, 1, 2)),
    head_channels=128,
    embedding_dim=32,
)
# Measured when written (seeds 0-3, one thread): last-quarter mean loss 0.01-2.4 vs first quarter 23-31; mean
# cosine same identity 0.97-0.99, different identities -0.29 to -0.05.
LEARN = TrainIdCfg(recipe="test", model=TINY, batch_size=12, max_iterations=40, optimizer="sgd", lr=0.05,
                   weight_decay=5e-4, warmup_fraction=0.1, color_jitter=0.1, seed=0)  # fmt: skip
SHORT = dataclasses.replace(LEARN, batch_size=8, max_iterations=12)

# Documented sizes at D = 128 (retina/models/face_embed.py): about 1.0 M and 0.15 M parameters.
PARAMETER_RANGES = {"mobilefacenet": (0.9e6, 1.1e6), "mobilefacenet-s": (0.1e6, 0.2e6)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _draw(index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 128x128 BGR picture of identity ``index`` and its five landmarks (5, 2)."""
    image = rng.integers(60, 90, (128, 128, 3)).astype(np.uint8)
    cx, cy = 64 + rng.normal(0, 1.5), 70 + rng.normal(0, 1.5)
    r = 24 * rng.uniform(0.9, 1.1)
    colour = [(40, 40, 220), (40, 200, 40), (220, 60, 40), (230, 230, 230)][index]
    if index == 0:
        cv2.circle(image, (round(cx), round(cy)), int(r), colour, -1, cv2.LINE_AA)
    elif index == 1:
        cv2.rectangle(image, (int(cx - r), int(cy - 0.7 * r)), (int(cx + r), int(cy + 0.7 * r)), colour, -1)
    elif index == 2:
        points = np.array([[cx, cy - r], [cx - r, cy + 0.8 * r], [cx + r, cy + 0.8 * r]], np.int32)
        cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
    else:
        for sign in (1, -1):
            start, end = (int(cx - r), int(cy - sign * r)), (int(cx + r), int(cy + sign * r))
            cv2.line(image, start, end, colour, 5, cv2.LINE_AA)
    return image, ARCFACE_112 + SHIFT + rng.normal(0, 0.5, (5, 2))


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A SynthFace-ID layout split folder: images/id_XXXXX/id_XXXXX_KKKK.jpg and meta.json."""
    root = tmp_path_factory.mktemp("synthface-id") / "train"
    rng = np.random.default_rng(0)
    entries = []
    for index, identity in enumerate(IDENTITIES):
        name = f"id_{identity:05d}"
        for k in range(1, PER_IDENTITY + 1):
            image, landmarks = _draw(index, rng)
            file = f"images/{name}/{name}_{k:04d}.jpg"
            (root / file).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / file), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            entries.append({"file": file, "identity": identity, "box": [20, 20, 108, 118],
                            "landmarks": landmarks.tolist()})  # fmt: skip
    (root / "meta.json").write_text(json.dumps({"images": entries}))
    return root


def _crops(data) -> np.ndarray:
    dataset = AlignedFaces(data, augment=False)
    return np.stack([dataset[i][0].numpy() for i in range(len(dataset))])


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the backbone ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EMBED_PRESETS))
def test_backbone_output_shape_and_parameter_count(name):
    model = build_embedder(name, seed=0).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 128) and out.dtype == torch.float32
    low, high = PARAMETER_RANGES[name]
    assert low <= count_parameters(model) <= high
    gdc = model.gdc[0]  # the global depthwise conv covers the whole 7x7 map, one filter per channel
    assert gdc.kernel_size == (7, 7) and gdc.groups == gdc.in_channels and gdc.padding == (0, 0)


def test_backbone_width_and_dimension_are_configurable():
    cfg = FaceEmbedCfg(name="t", width=0.25, embedding_dim=64, head_channels=128)
    model = build_embedder(cfg, seed=0).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, 112, 112)).shape == (3, 64)
    assert cfg.channels(64) == 16 and cfg.channels(20) == 8  # width 0.25, multiples of 8, at least 8
    assert count_parameters(model) < count_parameters(build_embedder("mobilefacenet-s"))


def test_backbone_eval_mode_is_deterministic_and_batch_independent():
    model = build_embedder(TINY, seed=0)
    with torch.no_grad():  # train mode: give BatchNorm non-trivial running statistics
        for _ in range(3):
            model(torch.randn(8, 3, 112, 112) * 0.5 + 0.1)
    model.eval()
    x = torch.randn(5, 3, 112, 112)
    with torch.no_grad():
        a, b = model(x), model(x)
        singles = torch.cat([model(x[i : i + 1]) for i in range(5)])
        reordered = model(x.flip(0)).flip(0)
    assert torch.equal(a, b)
    torch.testing.assert_close(singles, a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reordered, a, rtol=1e-5, atol=1e-5)
    c = build_embedder(TINY, seed=0).state_dict()  # same seed, same initial weights
    assert _states_equal(c, build_embedder(TINY, seed=0).state_dict())


def test_normalize_crops_golden_values():
    crops = torch.zeros(1, 112, 112, 3, dtype=torch.uint8)
    crops[..., 0] = 255  # pure red, RGB
    x = normalize_crops(crops)
    assert x.shape == (1, 3, 112, 112) and x.dtype == torch.float32
    assert x[0, 0, 0, 0].item() == 127.5 / 128 and x[0, 1, 0, 0].item() == -127.5 / 128


def test_configs_round_trip_and_validate():
    for name, cfg in EMBED_PRESETS.items():
        assert from_dict(FaceEmbedCfg, to_dict(cfg)) == cfg == embed_preset(name)
    for cfg in TRAIN_ID_PRESETS.values():
        assert from_dict(TrainIdCfg, to_dict(cfg)) == cfg
    with pytest.raises(ValueError):
        FaceEmbedCfg(input_size=100)  # not a multiple of the stride 16
    with pytest.raises(ValueError):
        TrainIdCfg(optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build_embedder(TINY)(torch.randn(1, 3, 96, 96))


# --- data -----------------------------------------------------------------------------------------------


def test_read_synthface_id_reindexes_identities(split):
    data = read_synthface_id(split)
    assert len(data.items) == len(IDENTITIES) * PER_IDENTITY and data.num_classes == 4
    assert data.identities == IDENTITIES
    first = data.items[PER_IDENTITY]  # the first image of identity 7
    assert first.label == 1 and first.path == split / "images/id_00007/id_00007_0001.jpg"
    assert data.fingerprint == {"kind": "SynthFace-ID meta.json", "sha256": file_sha256(split / "meta.json"),
                                "source": str(split / "meta.json")}  # fmt: skip


def test_read_synthface_id_errors(tmp_path, split):
    with pytest.raises(RetinaError, match=r"no meta\.json"):
        read_synthface_id(tmp_path)
    meta = json.loads((split / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps(meta))  # the same list, no images beside it
    with pytest.raises(DataFormatError, match="missing"):
        read_synthface_id(tmp_path)
    meta["images"][0]["landmarks"] = [[1, 2]] * 4
    absolute = str(split / meta["images"][0]["file"])  # an existing image, bad landmarks
    (tmp_path / "meta.json").write_text(json.dumps({"images": [{**meta["images"][0], "file": absolute}]}))
    with pytest.raises(DataFormatError, match="landmarks"):
        read_synthface_id(tmp_path)
    with pytest.raises(RetinaError, match="labels"):
        id_data([(split / "a.jpg", 1, ARCFACE_112)])  # label 0 unused


def test_alignment_of_template_landmarks_is_nearly_a_crop(split):
    data = read_synthface_id(split)
    for item in data.items[::7]:
        crop = aligned_crop(item)
        image = cv2.imread(str(item.path))[SHIFT : SHIFT + 112, SHIFT : SHIFT + 112, ::-1]  # RGB
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        assert np.abs(crop.astype(int) - image).mean() < 12  # sub-pixel shifts of sharp edges, JPEG noise


def test_augmentation_flip_and_jitter():
    crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3)).astype(np.uint8)
    assert np.array_equal(augment_crop(crop, np.random.default_rng(1), flip=False, jitter=0.0), crop)
    outcomes = set()
    for seed in range(12):
        out = augment_crop(crop, np.random.default_rng(seed), flip=True, jitter=0.0)
        flipped = np.array_equal(out, crop[:, ::-1])
        assert flipped or np.array_equal(out, crop)
        outcomes.add(flipped)
    assert outcomes == {True, False}
    grey = np.full((112, 112, 3), 100, np.uint8)
    for seed in range(12):  # a grey image: contrast and saturation keep it grey, brightness scales it
        out = augment_crop(grey, np.random.default_rng(seed), flip=False, jitter=0.2)
        assert (out == out[0, 0, 0]).all() and 80 <= out[0, 0, 0] <= 120


# --- training -------------------------------------------------------------------------------------------


def test_short_training_separates_identities(split, tmp_path):
    data = read_synthface_id(split)
    record = train_id(LEARN, data, IdRunSpec(tmp_path / "run", log_every=1, progress=False))
    assert record["finished"] and record["completed_iterations"] == 40
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < 0.25 * np.mean(losses[:10]), losses
    model, _ = load_embedder(tmp_path / "run" / "final.pth")
    features = embed_images(model, _crops(data), flip=True)
    labels = np.array([item.label for item in data.items])
    cos = features @ features.T
    same = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    different = labels[:, None] != labels[None]
    assert cos[same].mean() > cos[different].mean() + 0.5, (cos[same].mean(), cos[different].mean())


def test_resume_reproduces_the_uninterrupted_run(split, tmp_path):
    data = read_synthface_id(split)
    train_id(SHORT, data, IdRunSpec(tmp_path / "whole", checkpoint_every=4, log_every=2, progress=False))
    cut = IdRunSpec(tmp_path / "cut", checkpoint_every=4, log_every=2, progress=False, stop_after=6)
    partial = train_id(SHORT, data, cut)
    assert not partial["finished"] and not (tmp_path / "cut" / "final.pth").exists()
    record = train_id(SHORT, data, dataclasses.replace(cut, stop_after=None, resume=True))
    assert record["resumed_from"] == 4 and len(record["history"]["invocations"]) == 2
    whole, _ = load_embedder(tmp_path / "whole" / "final.pth")
    resumed, _ = load_embedder(tmp_path / "cut" / "final.pth")
    assert _states_equal(whole.state_dict(), resumed.state_dict())

    def metrics(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "images_per_s"} for x in lines]

    assert metrics("cut") == metrics("whole") and len(metrics("whole")) == 6


def test_runs_refuse_to_mix(split, tmp_path):
    data = read_synthface_id(split)
    spec = IdRunSpec(tmp_path / "run", checkpoint_every=2, progress=False)
    short = dataclasses.replace(SHORT, max_iterations=2)
    train_id(short, data, spec)
    with pytest.raises(RetinaError, match="--resume"):
        train_id(short, data, spec)
    with pytest.raises(RetinaError, match="other settings"):
        train_id(dataclasses.replace(short, lr=0.01), data, dataclasses.replace(spec, resume=True))
    other = id_data([(it.path, it.label, it.landmarks) for it in data.items[::-1]])
    with pytest.raises(RetinaError, match="other data"):
        train_id(short, other, dataclasses.replace(spec, resume=True))
    again = train_id(short, data, dataclasses.replace(spec, resume=True))
    assert again["nothing_to_do"] and again["completed_iterations"] == 2


def test_checkpoints_round_trip_with_weights_only(split, tmp_path):
    data = read_synthface_id(split)
    short = dataclasses.replace(SHORT, max_iterations=2)
    record = train_id(short, data, IdRunSpec(tmp_path / "run", progress=False))
    final = tmp_path / "run" / "final.pth"
    payload = torch.load(final, map_location="cpu", weights_only=True)
    assert payload["format"] == "retina-face-embed" and set(payload) == {
        "format", "version", "config", "state_dict", "provenance"}  # fmt: skip
    assert "weight" not in payload["state_dict"]  # the ArcFace head's class centres are not in it
    prov = payload["provenance"]
    assert prov["seed"] == 0 and prov["data"]["fingerprint"] == data.fingerprint and prov["train_cfg"]["lr"] == 0.05
    assert prov["git"] == record["provenance"]["git"]
    model, _ = load_embedder(final)
    from_last, _ = load_embedder(tmp_path / "run" / "last.pth")  # the training state at the same iteration
    assert _states_equal(model.state_dict(), from_last.state_dict())
    crops = _crops(data)[:5]
    again = save_embedder(tmp_path / "copy.pth", model, prov)
    np.testing.assert_array_equal(embed_images(load_embedder(again)[0], crops), embed_images(model, crops))
    # Sizes: the CPU preset under 1 MB, the paper-size network under 5 MB.
    for name, limit in (("mobilefacenet-s", 1e6), ("mobilefacenet", 5e6)):
        assert save_embedder(tmp_path / f"{name}.pth", build_embedder(name)).stat().st_size < limit
    record_file = json.loads((tmp_path / "run" / "train_record.json").read_text())
    assert record_file["train_cfg_hash"] and record_file["wall_time_s_this_process"] > 0
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RetinaError):
        load_embedder(tmp_path / "bad.pth")


def test_embed_images_flip_sum_and_modes():
    model = build_embedder(TINY, seed=0)
    crops = np.random.default_rng(0).integers(0, 256, (5, 112, 112, 3)).astype(np.uint8)
    raw = embed_images(model, crops, batch_size=2, normalize=False)
    mirrored = embed_images(model, np.ascontiguousarray(crops[:, :, ::-1]), normalize=False)
    assert raw.shape == (5, 32) and raw.dtype == np.float32 and model.training  # mode restored
    summed = embed_images(model, crops, flip=True)
    expected = (raw + mirrored) / np.linalg.norm(raw + mirrored, axis=1, keepdims=True)
    np.testing.assert_allclose(summed, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(summed, axis=1), 1.0, rtol=1e-6)
    bgr = np.ascontiguousarray(crops[..., ::-1])
    np.testing.assert_array_equal(embed_images(model, bgr, batch_size=2, normalize=False, channels="bgr"), raw)
    assert embed_images(model, crops[:0]).shape == (0, 32)
    with pytest.raises(RetinaError, match="uint8"):
        embed_images(model, crops.astype(np.float32))


def test_command_line(split, tmp_path, capsys):
    argv = ["--data", str(split), "--out", str(tmp_path / "cli"), "--max-iterations", "2", "--batch-size", "8"]
    assert cli_main(["train-arcface", *argv, "--no-progress", "--threads", "1"]) == 0
    assert (tmp_path / "cli" / "final.pth").is_file() and (tmp_path / "cli" / "train_record.json").is_file()
    assert cli_main(["train-arcface", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "no meta.json" in capsys.readouterr().err


def test_command_recipes_are_the_presets():
    assert tuple(sorted(TRAIN_ID_PRESETS)) == RECIPES
