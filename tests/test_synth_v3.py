"""SynthFace v3: the domain-randomisation factors, their independence, WIDER's box habit, natural statistics."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from retina.synth.backdrop import dead_leaves, pink_noise
from retina.synth.camera import camera_effects, resolution_sigma
from retina.synth.config import FACTORS, SYNTH_PRESETS, WIDER_BOX_RAISE, SynthCfg
from retina.synth.image import compose_image
from retina.synth.negatives import NEGATIVE_KINDS, draw_negative

SMALL = dataclasses.replace(
    SYNTH_PRESETS["tiny"], width=200, height_range=(160, 220), face_px_range=(16.0, 70.0), faces_range=(1, 5)
)
V3 = dataclasses.replace(
    SMALL, natural_backdrop=1.0, hard_negatives_range=(2, 4), face_appearance=True, lighting=True, camera=True
)
OFF = {
    "backdrop": {"natural_backdrop": 0.0},
    "negatives": {"hard_negatives_range": (0, 0)},
    "appearance": {"face_appearance": False},
    "lighting": {"lighting": False},
    "camera": {"camera": False},
}


def _geometry(meta: dict) -> list[tuple]:
    """What the main random stream decides: every face's box, landmarks, pose and model."""
    return [(tuple(f["box"]), str(f["landmarks"]), str(f["pose_deg"]), str(f["model"])) for f in meta["faces"]]


@pytest.mark.parametrize("factor", FACTORS)
def test_switching_one_factor_off_leaves_the_faces_where_they_were(factor):
    assert set(OFF) == set(FACTORS)
    full_jpeg, full = compose_image(V3, "train", 2, 0)
    off_jpeg, off = compose_image(dataclasses.replace(V3, **OFF[factor]), "train", 2, 0)
    assert len(full["faces"]) >= 2 and _geometry(off) == _geometry(full)
    assert off_jpeg != full_jpeg  # the factor did act on the image


def test_every_factor_off_draws_nothing_new():
    # the v3 fields at their defaults are the v2 generator: the metadata holds no v3 entry
    _, meta = compose_image(SMALL, "val", 1, 0)
    assert "camera" not in meta["scene"] and "hard_negatives" not in meta["scene"]
    _, meta3 = compose_image(V3, "val", 1, 0)
    assert 2 <= meta3["scene"]["hard_negatives"] <= 4 and set(meta3["scene"]["camera"]) >= {"gamma", "grey"}
    assert _geometry(meta3) == _geometry(meta)  # and v3 keeps the faces of the same seed


def test_wider_box_convention_raises_the_zone_box():
    top, bottom = WIDER_BOX_RAISE
    for index in range(2):
        _, zone = compose_image(SMALL, "train", index, 0)
        _, wider = compose_image(dataclasses.replace(SMALL, box_convention="wider"), "train", index, 0)
        for fz, fw in zip(zone["faces"], wider["faces"], strict=True):
            x, y, w, h = fz["box"]
            if y - top * h < 0 or y + h >= zone["height"]:
                continue  # clipped at the border: the raise is clipped too
            # integer boxes of a float box: the raise moves each edge by its fraction of the height, +-1 px rounding
            assert fw["box"][0] == x and fw["box"][2] == w
            assert abs(fw["box"][1] - (y - top * h)) <= 1.0
            assert abs(fw["box"][1] + fw["box"][3] - (y + h - bottom * h)) <= 1.0
            assert fw["landmarks"] == fz["landmarks"]


def test_config_validates_the_new_fields():
    with pytest.raises(ValueError, match="probability"):
        SynthCfg(natural_backdrop=1.5)
    with pytest.raises(ValueError, match="box_convention"):
        SynthCfg(box_convention="coco")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hard_negatives_range"):
        SynthCfg(hard_negatives_range=(3, 1))


def test_pink_noise_has_the_asked_spectrum():
    # the radially averaged power of 1/f^a amplitude noise falls as f^-2a: fit the log-log slope
    for exponent in (1.0, 1.5):
        field = pink_noise(np.random.default_rng(0), 256, 256, exponent).astype(np.float64)
        power = np.abs(np.fft.fft2(field - field.mean())) ** 2
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
        band = (f > 0.02) & (f < 0.3)
        slope = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
        assert slope == pytest.approx(-2 * exponent, abs=0.15)


def test_dead_leaves_have_natural_image_statistics():
    img = dead_leaves(np.random.default_rng(1), 256, 256)
    assert img.shape == (256, 256, 3) and img.dtype == np.float32 and img.min() >= 0 and img.max() <= 1
    grey = img.mean(2).astype(np.float64)
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
    band = (f > 0.02) & (f < 0.3)
    slope = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
    assert -3.5 < slope < -1.5  # natural images: about -2 (amplitude ~ 1/f); flat colours would be far steeper


@pytest.mark.parametrize("kind", NEGATIVE_KINDS)
def test_a_negative_paints_inside_the_image_only_what_it_covers(kind):
    img = np.full((300, 300, 3), 0.5, np.float32)
    draw_negative(img, np.random.default_rng(2), 60.0, kind)
    changed = np.abs(img - 0.5).max(2) > 1e-6
    assert changed.any() and img.min() >= 0 and img.max() <= 1
    ys, xs = np.nonzero(changed)
    assert np.ptp(ys) <= 100 and np.ptp(xs) <= 100  # within its 1.6 x size (+4 px) window, not all over the image


def test_camera_effects():
    assert resolution_sigma(1.0) == 0.0
    assert resolution_sigma(0.5) == pytest.approx(0.5 * math.sqrt(3))
    assert resolution_sigma(0.3) > resolution_sigma(0.6) > 0
    img = np.random.default_rng(3).uniform(0, 1, (40, 50, 3)).astype(np.float32)
    a, sa = camera_effects(img, np.random.default_rng(7))
    b, sb = camera_effects(img, np.random.default_rng(7))
    assert np.array_equal(a, b) and sa == sb and a.shape == img.shape and a.dtype == np.float32
    greys = [camera_effects(img, np.random.default_rng(s)) for s in range(60)]
    grey = [out for out, fx in greys if fx["grey"]]
    assert grey  # about 8% of photos are grey-scale
    # grey before the photon noise: the channels differ only by that noise
    assert all(np.abs(g - g.mean(2, keepdims=True)).mean() < 0.02 for g in grey)


def test_v3_images_decode_and_annotate_like_v2():
    jpeg, meta = compose_image(V3, "train", 4, 0)
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (meta["height"], meta["width"])
    for f in meta["faces"]:
        x, y, w, h = f["box"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= meta["width"] and y + h <= meta["height"]
        assert f["blur"]["effective_sigma"] >= 0 and f["difficulty"] in (None, "easy", "medium", "hard")


def test_the_default_pair_is_v3_and_v2_keeps_its_config():
    default, v2 = SYNTH_PRESETS["default"], SYNTH_PRESETS["v2"]
    assert default.natural_backdrop > 0 and default.hard_negatives_range[1] > 0 and default.box_convention == "wider"
    assert default.face_appearance and default.lighting and default.camera
    # v2 is the generator's defaults: its config (and so its cache key) names no v3 field
    assert v2 == SynthCfg() and not set(v2.to_dict()) & {"natural_backdrop", "camera", "box_convention"}
    # the two differ in the factors, the box habit and the scene mix, not in image or face geometry
    same = ("width", "height_range", "face_px_range", "max_yaw_deg", "train_images", "val_images")
    assert all(getattr(default, f) == getattr(v2, f) for f in same)
