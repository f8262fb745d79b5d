"""Mesh-decoder pre-training (retina.mesh.pretrain): tiny runs learn, checkpoints round-trip, metrics by hand."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from retina.cli import main
from retina.commands.mesh_pretrain import RECIPES
from retina.errors import CheckpointError
from retina.mesh.hierarchy import default_hierarchy
from retina.mesh.pretrain import (
    PRETRAIN_PRESETS,
    PretrainCfg,
    inter_ocular,
    mesh_errors,
    pretrain,
)
from retina.mesh.template import build_template
from retina.models.mesh_decoder import (
    FaceDecoder,
    MeshDecoderConfig,
    load_mesh_decoder,
    save_mesh_decoder,
)
from retina.results import file_sha256

WEIGHTS = Path(__file__).resolve().parent.parent / "retina" / "weights"
SMALL = MeshDecoderConfig(channels=(8, 8, 8, 8), K=2)


@pytest.fixture(scope="module", autouse=True)
def built_meshes() -> None:
    """Build (and cache) the template and hierarchy once, outside the timed test bodies."""
    build_template()
    default_hierarchy()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread (as the command's default): two threads on a busy 2-core machine run far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(**kw: object) -> PretrainCfg:
    base = PretrainCfg(
        decoder=SMALL, encoder_hidden=16, train_samples=8, heldout_samples=4, iterations=15, batch_size=8, lr=3e-3
    )
    return dataclasses.replace(base, **kw)


def test_tiny_run_loss_falls(tmp_path: Path) -> None:
    record = pretrain(tiny_cfg(), tmp_path, log_every=1, eval_every=15)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == list(range(1, 16))
    assert lines[-1]["loss"] < 0.7 * lines[0]["loss"]  # the same 8 faces every step: the loss must fall
    assert record["sha256"] == file_sha256(tmp_path / "mesh_decoder.pth")
    assert set(record["heldout"]) == set(record["baseline_mean_face"])
    assert (tmp_path / "mesh_decoder.pth").stat().st_size < 2_000_000


def test_seeded_runs_are_identical(tmp_path: Path) -> None:
    cfg = tiny_cfg(iterations=5)
    pretrain(cfg, tmp_path / "a")
    pretrain(cfg, tmp_path / "b")
    a, _ = load_mesh_decoder(tmp_path / "a" / "mesh_decoder.pth")
    b, _ = load_mesh_decoder(tmp_path / "b" / "mesh_decoder.pth")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    ra, rb = (json.loads((tmp_path / d / "record.json").read_text()) for d in "ab")
    assert ra["heldout"] == rb["heldout"]


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = FaceDecoder(default_hierarchy(), SMALL)
    model.mean.normal_()
    model.scale.uniform_(0.5, 2.0)
    path = save_mesh_decoder(tmp_path / "d.pth", model.eval(), {"note": "test"})
    assert isinstance(torch.load(path, weights_only=True), dict)
    loaded, payload = load_mesh_decoder(path)
    code = torch.randn(2, SMALL.code_dim)
    with torch.no_grad():
        assert torch.equal(model(code), loaded(code))
    assert loaded(code).shape == (2, default_hierarchy().num_vertices[0], 6)
    assert payload["provenance"] == {"note": "test"}


def test_load_refuses_other_files(tmp_path: Path) -> None:
    torch.save({"format": "something else"}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not a mesh-decoder checkpoint"):
        load_mesh_decoder(tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_mesh_decoder(tmp_path / "missing.pth")


def test_mesh_errors_of_a_known_offset() -> None:
    rng = np.random.default_rng(0)
    target = rng.uniform(size=(3, 10, 6))
    pred = target + np.array([0.03, -0.04, 0.0, 0.1, -0.1, 0.1])  # |(0.03, -0.04, 0)| = 0.05
    err = mesh_errors(pred, target, iod=0.5)
    assert err["shape_error"] == pytest.approx(0.05, rel=1e-12)
    assert err["shape_error_iod"] == pytest.approx(0.1, rel=1e-12)
    assert err["colour_error"] == pytest.approx(0.1, rel=1e-12)
    assert err["colour_error_255"] == pytest.approx(25.5, rel=1e-12)


def test_inter_ocular_is_the_template_eye_distance() -> None:
    eyes = build_template().landmarks[:2]  # the template's own landmark vertices, not the hierarchy's
    assert inter_ocular(default_hierarchy()) == pytest.approx(float(np.linalg.norm(eyes[0] - eyes[1])), rel=1e-12)
    assert 0.4 < inter_ocular(default_hierarchy()) < 0.7  # eyes at X = +-0.29 on a 2-unit head


def test_cli_refuses_an_existing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "record.json").write_text("{}")
    assert main(["mesh-pretrain", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"retina mesh-pretrain: error: {tmp_path} already holds a run")
    assert main(["mesh-pretrain", "--out", str(tmp_path / "new"), "--recipe", "nope"]) == 2
    assert "--recipe: invalid choice: 'nope'" in capsys.readouterr().err


def test_cli_recipes_are_the_library_presets() -> None:
    assert tuple(PRETRAIN_PRESETS) == RECIPES


def test_cli_tiny_run_and_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = "--iterations 2 --train-samples 4 --heldout-samples 2 --seed 1 --threads 1"
    argv = ["mesh-pretrain", "--out", str(tmp_path / "run"), "--package", str(tmp_path / "pkg"), *flags.split()]
    assert main(argv) == 0
    assert "held-out shape error" in capsys.readouterr().out
    record = json.loads((tmp_path / "pkg" / "mesh_decoder.json").read_text())
    assert record["command"].startswith("retina ") and record["provenance"]["config"]["iterations"] == 2
    assert record["provenance"]["config"]["seed"] == 1 and record["provenance"]["config"]["train_samples"] == 4


def test_committed_decoder_matches_its_record() -> None:
    record_path = WEIGHTS / "mesh_decoder.json"
    if not record_path.exists():
        pytest.skip("no committed retina/weights/mesh_decoder.json yet")
    record = json.loads(record_path.read_text())
    assert file_sha256(WEIGHTS / record["checkpoint"]) == record["sha256"]
    assert file_sha256(WEIGHTS / record["metrics"]["file"]) == record["metrics"]["sha256"]
    assert record["heldout"]["shape_error"] < record["baseline_mean_face"]["shape_error"]
    assert record["heldout"]["colour_error"] < record["baseline_mean_face"]["colour_error"]
    decoder, payload = load_mesh_decoder(WEIGHTS / record["checkpoint"])
    assert payload["config"] == record["provenance"]["config"]["decoder"]
    with torch.no_grad():
        assert decoder(torch.zeros(1, decoder.config.code_dim)).shape == (1, default_hierarchy().num_vertices[0], 6)
    assert (WEIGHTS / record["checkpoint"]).stat().st_size < 2_000_000
