"""Model assembly, BatchNorm folding and the Detector API invariants (randomly initialised models)."""

import numpy as np
import pytest
import torch

from retina import Detections, Detector
from retina.build import build_detector
from retina.config import PRESETS, PostCfg, preset
from retina.errors import RetinaError
from retina.models.fuse import fuse_batchnorm
from retina.priors import make_priors
from retina.protocols import Resize
from retina.protocols import TestProtocol as Protocol


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if "152" in n else n for n in sorted(PRESETS)]
)  # ResNet-152 in float64: ~10 s on 2 cores
def test_outputs_match_priors_and_fused_equals_unfused(name):
    torch.manual_seed(0)
    cfg = PRESETS[name]
    model = build_detector(cfg).eval().double()  # float64: deep random nets amplify float32 rounding
    _randomise_bn(model)
    x = torch.randn(1, 3, 37, 50, dtype=torch.float64)  # odd sizes: feature maps are ceil(size / stride)
    with torch.no_grad():
        ref = model(x)
        fused = fuse_batchnorm(model)(x)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fuse_batchnorm(model).modules())
    assert n_bn == 0
    assert ref.logits.shape[1] == len(make_priors((37, 50), cfg.priors.strides, cfg.priors.sizes))
    for a, b in zip(ref, fused, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * float(a.abs().max()))


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    cfg = preset("mobilenet0.25")
    model = build_detector(cfg)
    _randomise_bn(model)
    return Detector(model, cfg, post=PostCfg(score_threshold=0.3))


def _images(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(48, 64, 3), (48, 64, 3), (33, 71, 3), (64, 48, 3)]]


def _assert_same(a: Detections, b: Detections):
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.landmarks, b.landmarks, rtol=1e-5, atol=1e-4)


def test_batched_equals_per_image(detector):
    images = _images()
    batched = detector(images)
    assert isinstance(batched, list) and len(batched) == 4
    assert sum(len(d) for d in batched) > 0  # the random model fires: the comparison is not vacuous
    for image, dets in zip(images, batched, strict=True):
        _assert_same(dets, detector(image))


def test_single_image_returns_detections_with_documented_shapes(detector):
    dets = detector(_images()[2])
    assert isinstance(dets, Detections)
    assert dets.boxes.shape == (len(dets), 4) and dets.landmarks.shape == (len(dets), 5, 2)
    assert np.all(np.diff(dets.scores) <= 0)


def test_nothing_above_threshold_gives_empty_arrays(detector):
    dets = detector(_images()[0], score_threshold=1.0)
    assert len(dets) == 0
    assert dets.boxes.shape == (0, 4) and dets.scores.shape == (0,) and dets.landmarks.shape == (0, 5, 2)


def test_grayscale_and_four_channel_images(detector):
    gray = _images()[0][..., 0]
    _assert_same(detector(gray), detector(np.repeat(gray[..., None], 3, axis=2)))
    bgra = np.concatenate([_images()[3], np.full((64, 48, 1), 255, np.uint8)], axis=2)
    _assert_same(detector(bgra), detector(_images()[3]))
    one_pixel = detector(np.zeros((1, 1, 3), np.uint8), score_threshold=0.0)
    assert one_pixel.boxes.shape[1:] == (4,)


def test_bad_inputs_give_clear_errors(detector, tmp_path):
    with pytest.raises(RetinaError, match="empty image"):
        detector(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(RetinaError, match="expected"):
        detector(np.zeros((4, 4, 2), np.uint8))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(RetinaError, match="cannot decode"):
        detector(bad)
    with pytest.raises(RetinaError, match="not found"):
        detector(tmp_path / "missing.jpg")
    with pytest.raises(RetinaError, match="unknown test protocol"):
        detector(_images()[0], protocol="bogus")


def test_flip_pass_maps_back_to_the_original_frame(detector):
    image = _images()[2]
    w = image.shape[1]
    # A flip pass on `image` and a plain pass on its mirror see the same network input; the flip pass's
    # mapped-back detections must be the plain ones mirrored, with left/right landmarks swapped.
    x = detector.to_tensor([detector.prepare(image, Resize(), flip=True)])
    raw = detector.decode(detector.forward(x), image.shape[:2])[0]
    mapped = detector._to_image(raw, image.shape[:2], image.shape[:2], flip=True)
    assert len(raw.scores) > 0
    mirrored_boxes = torch.stack([w - raw.boxes[:, 2], raw.boxes[:, 1], w - raw.boxes[:, 0], raw.boxes[:, 3]], 1)
    torch.testing.assert_close(mapped.boxes, mirrored_boxes)
    swapped = raw.landmarks[:, [1, 0, 2, 4, 3]]
    torch.testing.assert_close(mapped.landmarks[..., 0], w - swapped[..., 0])
    torch.testing.assert_close(mapped.landmarks[..., 1], swapped[..., 1])


def test_multiscale_style_protocol_runs_and_merges(detector):
    proto = Protocol("small-multi", (Resize(short=40), Resize(short=56)), flip=True, voting_iou=0.4)
    dets = detector.detect_arrays(_images()[:1], proto, detector.post)[0]
    assert len(dets) > 0 and np.all(np.diff(dets.scores) <= 0)
    assert np.all(dets.boxes[:, 2] >= dets.boxes[:, 0])
