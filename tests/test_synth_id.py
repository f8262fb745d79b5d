"""SynthFace-ID: LFW layout, pairs.txt protocol, disjoint identities, determinism, framing and annotations."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from retina.errors import DataFormatError, RetinaError
from retina.synth.identities import (
    DATASET,
    generate_id_split,
    make_pairs,
    pairs_text,
    read_id_meta,
    sample_identity,
    sample_view,
    synth_id_split,
)
from retina.synth.identity_config import SYNTH_ID_PRESETS, SYNTH_ID_VERSION, TEST_IDENTITY_OFFSET, fold_capacity
from retina.verify.readers import LfwPairs, read_lfw_pairs

TINY = SYNTH_ID_PRESETS["tiny"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("retina_cache")


@pytest.fixture(scope="module")
def train_split(cache) -> Path:
    with pytest.MonkeyPatch.context() as mp:  # the cache root follows RETINA_CACHE, as SynthFace's does
        mp.setenv("RETINA_CACHE", str(cache))
        return synth_id_split("train", "tiny", workers=1, progress=False)


@pytest.fixture(scope="module")
def test_split(cache) -> Path:
    return synth_id_split("test", "tiny", workers=1, root=cache / "other_root", progress=False)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_cache_folder_naming_and_reuse(cache, train_split, test_split):
    assert train_split.parent.parent == cache / "synthface" and train_split.name == "train"
    assert re.fullmatch(rf"v{SYNTH_ID_VERSION}-id-tiny-[0-9a-f]{{12}}", train_split.parent.name)
    assert test_split.parent.parent == cache / "other_root" and test_split.parent.name == train_split.parent.name
    stamp = (test_split / "meta.json").stat().st_mtime_ns
    assert synth_id_split("test", "tiny", root=cache / "other_root", progress=False) == test_split
    assert (test_split / "meta.json").stat().st_mtime_ns == stamp  # reused, not regenerated


@pytest.mark.parametrize("split", ["train", "test"])
def test_layout_and_meta_fields(split, train_split, test_split):
    root = train_split if split == "train" else test_split
    expected = {"images", "meta.json"} | ({"pairs.txt"} if split == "test" else set())
    assert {p.name for p in root.iterdir()} == expected
    meta = read_id_meta(root)
    assert meta["dataset"] == DATASET == "SynthFace-ID (synthetic data)" and meta["synthetic"] is True
    assert meta["version"] == SYNTH_ID_VERSION and meta["seed"] == 0 and meta["split"] == split
    assert meta["config"] == json.loads(json.dumps(TINY.to_dict())) and meta["preset"] == "tiny"
    ids, per_id = (range(6), 3) if split == "train" else (range(TEST_IDENTITY_OFFSET, TEST_IDENTITY_OFFSET + 20), 3)
    assert [r["identity"] for r in meta["identities"]] == list(ids)
    files = [r["file"] for r in meta["images"]]
    assert files == [f"images/id_{i:05d}/id_{i:05d}_{k:04d}.jpg" for i in ids for k in range(1, per_id + 1)]
    on_disk = sorted(str(p.relative_to(root)) for p in (root / "images").rglob("*") if p.is_file())
    assert on_disk == sorted(files)
    for r in meta["images"]:
        assert r["file"].split("/")[1] == f"id_{r['identity']:05d}"
        data = (root / r["file"]).read_bytes()
        assert data[:2] == b"\xff\xd8"  # JPEG
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert img.shape == (250, 250, 3)
        assert len(r["box"]) == 4 and all(isinstance(v, int) for v in r["box"])
        assert np.shape(r["landmarks"]) == (5, 2) and len(r["landmark_visible"]) == 5
        assert all(isinstance(v, bool) for v in r["landmark_visible"])
        pitch, yaw, roll = r["pose_deg"]
        assert abs(yaw) <= 60 and abs(pitch) <= 20 and abs(roll) <= 20


def test_framing_like_lfw(test_split):
    """One main face, its face box about 100-120 px tall, centred within the jitter (2.5 std = 7.5 px)."""
    for r in read_id_meta(test_split)["images"]:
        x1, y1, x2, y2 = r["box"]
        assert 0 <= x1 < x2 <= 250 and 0 <= y1 < y2 <= 250
        assert 85 <= y2 - y1 <= 135, r
        assert abs((x1 + x2) / 2 - 125) <= 8.5 and abs((y1 + y2) / 2 - 125) <= 8.5, r


def test_landmarks_inside_image_and_box(train_split, test_split):
    frontal = 0
    for root in (train_split, test_split):
        for r in read_id_meta(root)["images"]:
            lm = np.array(r["landmarks"])
            assert np.all((lm >= 0) & (lm < 250))
            x1, y1, x2, y2 = r["box"]
            pitch, yaw, _ = r["pose_deg"]
            if abs(yaw) <= 20 and abs(pitch) <= 15:
                frontal += 1
                assert np.all((lm[:, 0] >= x1 - 2) & (lm[:, 0] <= x2 + 2) & (lm[:, 1] >= y1 - 2) & (lm[:, 1] <= y2 + 2))
                # RetinaFace order on a frontal face: eyes left to right, above the nose, above the mouth.
                assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
                assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])
                if r["occluder"] is None:
                    assert all(r["landmark_visible"]), r
    assert frontal >= 20  # most LFW-like poses are near frontal


def _folds(pairs: LfwPairs) -> list[tuple[list, list]]:
    """Per fold: matched (identity, n1, n2) and mismatched (identity1, n1, identity2, n2), from the image paths."""

    def parse(path: Path) -> tuple[int, int]:
        name, number = path.stem.rsplit("_", 1)
        assert name.startswith("id_") and path.parent.name == name
        return int(name[3:]), int(number)

    folds: list[tuple[list, list]] = [([], []) for _ in range(int(pairs.folds.max()) + 1)]
    for pair in pairs.pairs:
        (i, a), (j, b) = parse(pair.left), parse(pair.right)
        if pair.same:
            folds[pair.fold][0].append((i, a, b))
        else:
            folds[pair.fold][1].append((i, a, j, b))
    return folds


def test_pairs_txt_protocol(test_split):
    text = (test_split / "pairs.txt").read_text()
    assert text.splitlines()[0] == "10\t2" and len(text.splitlines()) == 1 + 10 * 4
    folds = _folds(read_lfw_pairs(test_split / "pairs.txt", test_split / "images"))
    assert len(folds) == 10 and all(len(m) == 2 and len(u) == 2 for m, u in folds)
    ids = {r["identity"] for r in read_id_meta(test_split)["images"]}
    seen: set[tuple] = set()
    fold_ids = []
    for matched, mismatched in folds:
        members = set()
        for i, a, b in matched:
            assert i in ids and 1 <= a < b <= 3
            members.add(i)
        for i, a, j, b in mismatched:
            assert i in ids and j in ids and i < j and 1 <= a <= 3 and 1 <= b <= 3
            members |= {i, j}
        for i, *_ in [*matched, *mismatched]:
            assert (test_split / f"images/id_{i:05d}/id_{i:05d}_0001.jpg").is_file()
        pairs = {("m", *p) for p in matched} | {("u", *p) for p in mismatched}
        assert len(pairs) == 4 and not pairs & seen  # no duplicate pair anywhere
        seen |= pairs
        fold_ids.append(members)
    for f, members in enumerate(fold_ids):  # identity-disjoint folds
        assert all(not members & other for other in fold_ids[f + 1 :])
    for line in text.splitlines()[1:]:  # the files the names point to exist
        parts = line.split("\t")
        people = [(parts[0], parts[1]), (parts[0], parts[2])] if len(parts) == 3 else [parts[0:2], parts[2:4]]
        for name, n in people:
            assert (test_split / "images" / name / f"{name}_{int(n):04d}.jpg").is_file()


def test_pairs_text_and_capacity_golden():
    assert pairs_text([([(3, 1, 2)], [(3, 1, 4, 2)])], 1) == "1\t1\nid_00003\t1\t2\nid_00003\t1\tid_00004\t2\n"
    # default: 10 identities a fold, C(20, 2) = 190 image pairs each; C(10, 2) = 45 identity pairs x 20 x 20.
    assert fold_capacity(SYNTH_ID_PRESETS["default"]) == (1900, 18000)
    assert fold_capacity(TINY) == (2 * 3, 1 * 9)
    with pytest.raises(ValueError, match="pairs_per_fold"):
        replace(TINY, pairs_per_fold=7)  # only 6 distinct matched pairs in a fold of 2 identities x 3 images


def test_make_pairs_exhausts_a_full_fold_without_duplicates():
    cfg = replace(TINY, pairs_per_fold=6)  # every matched pair of the fold's two identities
    for matched, mismatched in make_pairs(cfg, seed=5):
        people = sorted({i for i, _, _ in matched})
        assert len(people) == 2
        assert sorted(matched) == [(i, a, b) for i in people for a, b in ((1, 2), (1, 3), (2, 3))]
        assert len(set(mismatched)) == 6 and all((i, j) == tuple(people) for i, _, j, _ in mismatched)
    assert make_pairs(cfg, seed=5) == make_pairs(cfg, seed=5) != make_pairs(cfg, seed=6)


def test_train_and_test_identities_disjoint(train_split, test_split):
    train, test = read_id_meta(train_split), read_id_meta(test_split)
    assert not {r["identity"] for r in train["images"]} & {r["identity"] for r in test["images"]}
    train_params = [json.dumps(r["params"], sort_keys=True) for r in train["identities"]]
    test_params = [json.dumps(r["params"], sort_keys=True) for r in test["identities"]]
    assert len(set(train_params) | set(test_params)) == len(train_params) + len(test_params)
    assert TINY.identities("train").stop <= TINY.identities("test").start


def test_one_identity_shares_person_params_and_varies_per_image(test_split):
    meta = read_id_meta(test_split)
    person = sample_identity(0, TEST_IDENTITY_OFFSET + 4)
    assert json.loads(json.dumps(person.to_dict())) == meta["identities"][4]["params"]
    assert sample_identity(1, TEST_IDENTITY_OFFSET + 4) != person  # the seed changes the people
    views = [sample_view(TINY, person, np.random.default_rng(s))["faces"][-1] for s in range(6)]
    for v in views:
        p = v["params"]
        assert p.identity == person.identity and p.hair == person.hair
        assert replace(p.colors, skin=person.colors.skin) == person.colors
        assert np.allclose(p.tint, person.tint, atol=5 * TINY.tint_jitter) and p.tint != person.tint
    assert len({v["pose"] for v in views}) == 6 and len({v["params"].expression for v in views}) > 1
    images = [r for r in meta["images"] if r["identity"] == TEST_IDENTITY_OFFSET + 4]
    assert len(images) == 3 and len({tuple(r["pose_deg"]) for r in images}) == 3


@pytest.mark.slow
def test_same_bytes_for_same_seed_whatever_the_workers(train_split, tmp_path):
    """~10 s: two spawned workers import torch."""
    again = generate_id_split(tmp_path / "train", TINY, "train", seed=0, workers=2, progress=False, preset="tiny")
    assert _hashes(again) == _hashes(train_split)


def test_user_errors(tmp_path, train_split):
    with pytest.raises(RetinaError, match="split"):
        synth_id_split("val", "tiny", root=tmp_path)
    with pytest.raises(RetinaError, match="preset"):
        synth_id_split("train", "huge", root=tmp_path)
    with pytest.raises(RetinaError, match="already exists"):
        generate_id_split(train_split, TINY, "train")
    with pytest.raises(RetinaError, match=r"meta\.json"):
        read_id_meta(tmp_path)
    bad = tmp_path / "pairs.txt"
    bad.write_text("1\t1\nid_00001\t1\t2\nid_00001\t1\n")
    with pytest.raises(DataFormatError, match=r"pairs\.txt:3"):
        read_lfw_pairs(bad, tmp_path, check_images=False)
