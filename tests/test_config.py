import dataclasses

import pytest

from retina.config import (
    PRESETS,
    DetectorCfg,
    NeckCfg,
    PostCfg,
    PriorCfg,
    config_hash,
    from_dict,
    preset,
    to_dict,
    to_json,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip_and_stable_hash(name):
    cfg = PRESETS[name]
    again = from_dict(DetectorCfg, to_dict(cfg))
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert to_json(again) == to_json(cfg)


def test_hash_changes_with_architecture_and_not_otherwise():
    base = preset("resnet50-paper")
    dcn = dataclasses.replace(base, neck=dataclasses.replace(base.neck, dcn=True))
    assert config_hash(dcn) != config_hash(base)
    assert config_hash(dataclasses.replace(base)) == config_hash(base)


def test_paper_anchor_sizes_match_the_paper_table():
    sizes = preset("resnet152-paper").priors.sizes
    paper = [(16, 20.16, 25.40), (32, 40.32, 50.80), (64, 80.63, 101.59), (128, 161.26, 203.19), (256, 322.54, 406.37)]
    # The paper prints 2 decimals, sometimes truncated (128 * 2^(1/3) = 161.2699 is printed 161.26).
    for got, want in zip(sizes, paper, strict=True):
        assert got == pytest.approx(want, abs=0.011)


def test_biubug6_layouts():
    m = preset("mobilenet0.25")
    assert m.priors.strides == (8, 16, 32) and m.priors.sizes == ((16, 32), (64, 128), (256, 512))
    assert m.neck.channels == 64 and m.neck.leaky == 0.1 and m.input.mean == (104, 117, 123)
    assert preset("resnet50").neck.channels == 256 and preset("resnet50").neck.leaky == 0.0


def test_validation_fails_early():
    with pytest.raises(ValueError, match="multiple of 4"):
        NeckCfg(channels=30)
    with pytest.raises(ValueError, match="strides"):
        PriorCfg(strides=(8, 16), sizes=((16.0,),))
    with pytest.raises(ValueError, match="pyramid"):
        DetectorCfg(priors=PriorCfg(strides=(4, 8, 16), sizes=((1.0,), (2.0,), (3.0,))))
    with pytest.raises(ValueError, match="NMS IoU"):
        PostCfg(nms_iou=0.0)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("resnet18")
    with pytest.raises(ValueError, match="unknown DetectorCfg keys"):
        from_dict(DetectorCfg, {**to_dict(preset("resnet50")), "typo": 1})


def _all_presets() -> list[tuple[str, object]]:
    from retina.config import TRAIN_PRESETS
    from retina.mesh.pretrain import PRETRAIN_PRESETS
    from retina.models.face_embed import EMBED_PRESETS
    from retina.recognition.train import TRAIN_ID_PRESETS

    groups = {"model": PRESETS, "train": TRAIN_PRESETS, "embed": EMBED_PRESETS, "train_id": TRAIN_ID_PRESETS,
              "pretrain": PRETRAIN_PRESETS}  # fmt: skip
    return [(f"{group}:{name}", cfg) for group, presets in groups.items() for name, cfg in presets.items()]


@pytest.mark.parametrize("name,cfg", _all_presets(), ids=[n for n, _ in _all_presets()])
def test_every_preset_and_recipe_round_trips_exactly(name, cfg):
    """Issue 22 item 6: ``epochs=250`` came back as 250.0, so a run's saved recipe hashed unlike its record."""
    again = from_dict(type(cfg), to_dict(cfg))
    assert again == cfg
    assert to_json(again) == to_json(cfg) and config_hash(again) == config_hash(cfg)


def test_committed_records_hash_as_their_configs_read_back():
    """The hashes written in the committed records are those of the configs they hold, read back."""
    import json

    from retina.config import TrainCfg
    from tests.conftest import REPO_ROOT

    records = [json.loads((REPO_ROOT / "retina" / "weights" / "mobilenet0.25_synthface.json").read_text())["train"]]
    records += [json.loads(p.read_text()) for p in sorted((REPO_ROOT / "reports" / "records").rglob("*__seed0.json"))]
    assert len(records) >= 4
    for record in records:
        assert config_hash(from_dict(TrainCfg, record["train_cfg"])) == record["train_cfg_hash"]
        assert config_hash(from_dict(DetectorCfg, record["model_cfg"])) == record["model_cfg_hash"]


def test_config_diff_names_every_differing_field():
    from retina.config import config_diff, train_preset

    a = train_preset("biubug6")
    b = dataclasses.replace(a, lr=0.5, loss=dataclasses.replace(a.loss, w_box=1.0))
    assert config_diff(a, b) == [("lr", 1e-3, 0.5), ("loss.w_box", 2.0, 1.0)]
    assert config_diff(a, dataclasses.replace(a, epochs=250.0)) == []  # equal numbers are equal settings
