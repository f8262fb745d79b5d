"""SynthFace: files in the WIDER FACE layouts that read back as the metadata says, deterministically."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from retina.cli import main
from retina.data.widerface import load_ground_truth, read_retinaface_labels
from retina.errors import DataFormatError, RetinaError
from retina.mesh import FaceParams, build_template, face_shape
from retina.render import model_to_camera, project
from retina.synth.config import difficulty, settings_of, wider_attributes
from retina.synth.image import _unit
from retina.synth.sheet import contact_sheet
from retina.synth.splits import SYNTH_PRESETS, SynthCfg, default_split, generate_split, read_meta

TINY = SYNTH_PRESETS["tiny"]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return generate_split(tmp_path_factory.mktemp("synth") / "val", TINY, "val", 5, seed=3)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "synth.json"
    }


def test_layout_and_synthetic_label(split):
    assert sorted(p.name for p in split.iterdir()) == [
        "ground_truth",
        "images",
        "label.txt",
        "meta.jsonl",
        "synth.json",
    ]
    names = {p.name for p in (split / "ground_truth").iterdir()}
    assert names == {"wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat"}
    info = json.loads((split / "synth.json").read_text())
    assert info["synthetic"] is True and "synthetic data" in info["description"]
    assert info["seed"] == 3 and info["n_images"] == 5 and info["config"] == json.loads(json.dumps(TINY.to_dict()))
    assert "provenance" in info and "hard:" in info["difficulty_rule"]
    metas = read_meta(split)
    assert len(metas) == 5 and sum(len(m["faces"]) for m in metas) == info["n_faces"]
    for m in metas:
        event, name = m["path"].split("/")
        assert event.split("--")[0].isdigit() and "Synth" in event and name.endswith(".jpg")
        img = cv2.imread(str(split / "images" / m["path"]))
        assert img.shape == (m["height"], m["width"], 3) and m["width"] == TINY.width


def test_label_txt_round_trip_equals_metadata(split):
    labels = read_retinaface_labels(split / "label.txt")
    metas = read_meta(split)
    assert [lab.path for lab in labels] == [m["path"] for m in metas]
    for lab, m in zip(labels, metas, strict=True):
        faces = m["faces"]
        assert len(faces) >= 1
        np.testing.assert_array_equal(lab.boxes, [f["box"] for f in faces])
        np.testing.assert_array_equal(lab.landmarks, [f["landmarks"] for f in faces])
        np.testing.assert_array_equal(lab.landmark_flags, [f["landmark_flags"] for f in faces])
        np.testing.assert_array_equal(lab.quality, [f["quality"] for f in faces])


def test_ground_truth_round_trip_equals_metadata_and_settings_nest(split):
    gt = load_ground_truth(split / "ground_truth")
    metas = read_meta(split)
    assert list(gt.images) == [tuple(m["path"][: -len(".jpg")].split("/")) for m in metas]
    assert list(gt.events) == sorted({m["event"] for m in metas}, key=lambda e: int(e.split("--")[0]))
    for k, m in enumerate(metas):
        np.testing.assert_array_equal(gt.boxes[k], [f["box"] for f in m["faces"]])
        for s in ("easy", "medium", "hard"):
            want = [i for i, f in enumerate(m["faces"]) if s in settings_of(f["difficulty"])]
            np.testing.assert_array_equal(gt.keep[s][k], want)
        assert set(gt.keep["easy"][k]) <= set(gt.keep["medium"][k]) <= set(gt.keep["hard"][k])
        for name in ("blur", "occlusion", "pose", "invalid"):
            np.testing.assert_array_equal(gt.attributes[name][k], [f["attributes"][name] for f in m["faces"]])


def test_boxes_and_landmarks_are_consistent(split):
    for m in read_meta(split):
        for f in m["faces"]:
            x, y, w, h = f["box"]
            assert all(isinstance(v, int) for v in f["box"]) and w > 0 and h > 0
            assert x >= 0 and y >= 0 and x + w <= m["width"] and y + h <= m["height"]
            lm = np.array(f["landmarks"])
            assert 0 <= f["occlusion"] <= 1 and math.isclose(f["quality"], round(1 - f["occlusion"], 3), abs_tol=1e-3)
            if abs(f["pose_deg"]["yaw"]) < 45 and abs(f["pose_deg"]["roll"]) < 30:
                assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # RetinaFace: landmark 0 is image-left
            visible = np.array(f["landmark_flags"]) == 0
            inside = (lm[:, 0] >= x - 1) & (lm[:, 0] <= x + w + 1) & (lm[:, 1] >= y - 1) & (lm[:, 1] <= y + h + 1)
            assert np.all(inside[visible])


def test_landmarks_reproject_from_the_recorded_model_and_camera(split):
    """The side file is exact ground truth for a mesh branch: shape + camera reproduce the landmarks."""
    for m in read_meta(split):
        for f in m["faces"]:
            template = build_template(*f["template_grid"])
            verts = torch.from_numpy(face_shape(template, FaceParams.from_dict(f["model"])))[None]
            cam = f["camera"]
            pts = model_to_camera(
                verts,
                torch.tensor([cam["rotation_rad"]], dtype=torch.float64),
                torch.tensor([cam["translation"]], dtype=torch.float64),
            )
            ids = torch.from_numpy(np.array(template.landmark_ids))
            lm = project(
                pts[:, ids],
                torch.tensor([cam["focal_px"]], dtype=torch.float64),
                torch.tensor([cam["principal_px"]], dtype=torch.float64),
            )[0].numpy()
            np.testing.assert_allclose(lm, f["landmarks"], atol=0.006)


def test_same_seed_same_bytes_other_seed_other_images(split, tmp_path):
    again = generate_split(tmp_path / "again", TINY, "val", 5, seed=3)
    assert _hashes(again) == _hashes(split)
    a, b = (json.loads((d / "synth.json").read_text()) for d in (split, again))
    a.pop("provenance"), b.pop("provenance")
    assert a == b
    other = generate_split(tmp_path / "other", TINY, "val", 2, seed=4)
    assert _hashes(other) != _hashes(split)
    # Image k does not depend on how many images the split has.
    first = read_meta(generate_split(tmp_path / "short", TINY, "val", 2, seed=3))
    assert {m["path"]: m for m in first}.items() <= {m["path"]: m for m in read_meta(split)}.items()


def test_light_direction_does_not_depend_on_the_blas():
    # A vector whose unit length the AVX-512 OpenBLAS ddot (fused multiply-adds) and the AVX2 one (separate
    # rounding) give in different last bits; the light direction written to meta.jsonl must not depend on that.
    v = np.array([float.fromhex(h) for h in ("-0x1.2009cf16f1ffap-2", "-0x1.560a2bb1801f2p-1", "-0x1.0e1e58b5c8496p0")])
    fused = ("-0x1.c202fab451a70p-3", "-0x1.0b309d660e59bp-1", "-0x1.a603d6625eb38p-1")  # AVX-512 kernel's values
    assert [x.hex() for x in _unit(v)] == list(fused)


def test_generator_camera_transform_is_the_fused_chain_without_blas():
    from retina.render import euler_rotation
    from retina.synth.face import DISTANCE, _to_camera

    g = torch.Generator().manual_seed(0)
    verts, rot = torch.randn(3, 500, 3, generator=g), 0.5 * torch.randn(3, 3, generator=g)
    got = _to_camera(verts, rot)
    want = model_to_camera(verts, rot, torch.tensor([[0.0, 0.0, DISTANCE]]).expand(3, 3))
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6)  # the same transform, up to the last bit
    v, r = verts.double().numpy(), euler_rotation(rot).transpose(-1, -2).double().numpy()
    out = (v[..., 0:1] * r[:, None, 0]).astype(np.float32)
    for k in (1, 2):  # each term added by a fused multiply-add (float32 products are exact in float64)
        out = (v[..., k : k + 1] * r[:, None, k] + out).astype(np.float32)
    out = out * np.float32([1, -1, -1]) + np.float32([0, 0, DISTANCE])
    assert np.array_equal(got.numpy(), out)


@pytest.mark.slow
def test_worker_processes_do_not_change_the_files(split, tmp_path):
    assert _hashes(generate_split(tmp_path / "par", TINY, "val", 5, seed=3, workers=2)) == _hashes(split)


def test_read_meta_errors_name_file_and_line(tmp_path):
    with pytest.raises(RetinaError, match=r"no meta\.jsonl"):
        read_meta(tmp_path)
    (tmp_path / "meta.jsonl").write_text('{"path": "a/b.jpg", "faces": []}\n{broken\n')
    with pytest.raises(DataFormatError, match=r"meta\.jsonl:2: not a JSON record"):
        read_meta(tmp_path)


def test_difficulty_rule_by_hand():
    assert difficulty(60, 0.0, 0.0, 10, 5) == "easy"
    assert difficulty(39, 0.0, 0.0, 10, 5) == "medium"
    assert difficulty(60, 0.3, 0.0, 10, 5) == "medium"
    assert difficulty(60, 0.0, 0.02, 10, 5) == "medium"
    assert difficulty(60, 0.0, 0.0, 70, 5) == "medium"
    assert difficulty(60, 0.0, 0.0, 10, 28) == "medium"
    assert difficulty(19, 0.0, 0.0, 0, 0) == "hard"
    assert difficulty(60, 0.6, 0.0, 0, 0) == "hard"
    assert difficulty(60, 0.0, 0.1, 0, 0) == "hard"
    assert difficulty(60, 0.0, 0.0, 80, 0) == "hard"
    assert difficulty(9, 0.0, 0.0, 0, 0) is None
    assert difficulty(60, 0.8, 0.0, 0, 0) is None
    assert settings_of("easy") == ("easy", "medium", "hard") and settings_of(None) == ()
    names = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
    assert wider_attributes("easy", 0.0, 0.01, 0.2, (5, 10, -5), (0.7, 0.3)) == dict.fromkeys(names, 0)
    extreme = wider_attributes(None, 0.5, 0.1, 0.9, (0, 70, 0), (1.4, 0.1))
    assert extreme == {"blur": 2, "expression": 1, "illumination": 1, "invalid": 1, "occlusion": 2, "pose": 1}
    assert wider_attributes("hard", 0.2, 0.03, 0.0, (0, 0, 30), (0.1, 0.2))["illumination"] == 1  # too dark


def test_config_validation():
    with pytest.raises(ValueError, match="face_px_range"):
        SynthCfg(width=160, height_range=(120, 200), face_px_range=(10.0, 300.0))
    with pytest.raises(ValueError, match="faces_range"):
        SynthCfg(faces_range=(0, 3))
    with pytest.raises(ValueError, match="scene_weights"):
        SynthCfg(scene_weights=(0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="probability"):
        SynthCfg(p_occluder=1.5)
    with pytest.raises(RetinaError, match="unknown split"):
        generate_split("/nonexistent/x", TINY, "dev", 1)


def test_cli_generates_and_reports_errors_cleanly(tmp_path, capsys):
    out = tmp_path / "cli"
    sheet = tmp_path / "sheet.png"
    argv = ["synth", "--out", str(out), "--split", "train", "--images", "2", "--preset", "tiny", "--seed", "1"]
    assert main([*argv, "--contact-sheet", str(sheet)]) == 0
    assert "synthetic data" in capsys.readouterr().out
    assert len(read_retinaface_labels(out / "label.txt")) == 2
    assert cv2.imread(str(sheet)) is not None
    assert main(argv) == 2  # the folder exists now
    assert "already exists" in capsys.readouterr().err
    assert main([*argv[:-2], "--preset", "huge"]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_default_split_is_cached_outside_the_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("RETINA_CACHE", str(tmp_path / "cache"))
    first = default_split("val", preset="tiny")
    assert first.is_relative_to(tmp_path / "cache" / "synthface") and first.name == "val"
    assert len(read_meta(first)) == TINY.val_images
    stamp = (first / "meta.jsonl").stat().st_mtime_ns
    assert default_split("val", preset="tiny") == first
    assert (first / "meta.jsonl").stat().st_mtime_ns == stamp  # not generated again
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left
    with pytest.raises(RetinaError):
        default_split("test")


def test_contact_sheet(split, tmp_path):
    path = contact_sheet(split, tmp_path / "sheet.png", n=4, cols=2, tile=100)
    sheet = cv2.imread(str(path))
    assert sheet.shape == (200, 200, 3)
    small = cv2.imread(str(contact_sheet(split, tmp_path / "small.png", n=4, cols=2, tile=100, levels=8)))
    assert small.shape == sheet.shape and (tmp_path / "small.png").stat().st_size < path.stat().st_size
    with pytest.raises(RetinaError):
        contact_sheet(split, tmp_path / "bad.png", levels=1)
