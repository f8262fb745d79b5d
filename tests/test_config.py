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
