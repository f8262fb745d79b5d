"""Detections mapped back to original-image pixels, exactly, with a stand-in network of known output.

The shared-data test (tests/test_reference_biubug6.py) compares protocols on a square photo with loose
tolerances; here the image is not square (x and y scales differ) and the expected faces are known exactly.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from retina import Detector
from retina.config import PostCfg, preset
from retina.postprocess import RawDetections
from retina.protocols import Resize
from retina.protocols import TestProtocol as Protocol
from tests.standin import FACES, MirrorFaces, scene

H, W = 90, 160


def _expected(height: int = H, width: int = W) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pixels = [f.pixels(width, height) for f in FACES]
    return (np.array([p[0] for p in pixels]), np.array([f.score for f in FACES]), np.array([p[1] for p in pixels]))


def _assert_faces(dets, expected) -> None:
    boxes, scores, marks = expected
    np.testing.assert_allclose(dets.boxes, boxes, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(dets.scores, scores, rtol=1e-6)
    np.testing.assert_allclose(dets.landmarks, marks, rtol=1e-6, atol=1e-4)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(MirrorFaces(), preset("mobilenet0.25"))


@pytest.mark.parametrize("protocol", ["original", "vga", "fixed"])
def test_named_protocols_map_back_exactly(detector, protocol):
    # vga: 90 x 160 -> 360 x 640 (x4); fixed: short side 1600 capped by long side 2150 -> 1209 x 2150
    _assert_faces(detector(scene(H, W), protocol=protocol), _expected())


def test_several_sizes_and_flips_merge_to_the_same_faces(detector):
    # Downscaled (short side 60: 60 x 107, x and y scales 0.6667 and 0.6688) and upscaled, each also flipped:
    # four passes that must all land on the same faces, so box voting returns them unchanged.
    proto = Protocol("mixed", (Resize(short=60), Resize(long=400)), flip=True, voting_iou=0.4)
    dets = detector.detect_arrays([scene(H, W), scene(W, H)], proto, detector.post)
    _assert_faces(dets[0], _expected())
    _assert_faces(dets[1], _expected(W, H))


def test_to_image_by_hand():
    # Input 50 x 100 made from a 100 x 400 image: sx = 0.25, sy = 0.5.
    raw = RawDetections(torch.tensor([[10.0, 20, 30, 40]]), torch.tensor([0.8]),
                        torch.tensor([[[12.0, 22], [28, 23], [20, 30], [14, 36], [26, 37]]]))  # fmt: skip
    out = Detector._to_image(raw, (100, 400), (50, 100), flip=False)
    torch.testing.assert_close(out.boxes, torch.tensor([[40.0, 40, 120, 80]]))
    torch.testing.assert_close(out.landmarks[0], torch.tensor([[48.0, 44], [112, 46], [80, 60], [56, 72], [104, 74]]))
    # the same input seen flipped: x -> 100 - x and left/right swapped, then the scaling
    out = Detector._to_image(raw, (100, 400), (50, 100), flip=True)
    torch.testing.assert_close(out.boxes, torch.tensor([[280.0, 40, 360, 80]]))
    expected = torch.tensor([[288.0, 46], [352, 44], [320, 60], [296, 74], [344, 72]])
    torch.testing.assert_close(out.landmarks[0], expected)
    assert out.scores.tolist() == pytest.approx([0.8])


@pytest.mark.parametrize(("height", "width"), [(10, 1000), (1000, 10)])
def test_a_resize_that_keeps_one_side(detector, height, width):
    # long side 1000 -> 1020: the short side (10 * 1.02 = 10.2) rounds back to 10, so one scale is exactly 1
    proto = Protocol("long1020", (Resize(long=1020),))
    dets = detector.detect_arrays([scene(height, width)], proto, detector.post)[0]
    _assert_faces(dets, _expected(height, width))


def test_one_face_and_no_face():
    one = Detector(MirrorFaces(FACES[:1]), preset("mobilenet0.25"))
    dets = one(scene(H, W))
    assert len(dets) == 1
    _assert_faces(dets, tuple(a[:1] for a in _expected()))
    none = one(scene(H, W), score_threshold=0.95)
    assert none.boxes.shape == (0, 4) and none.landmarks.shape == (0, 5, 2) and none.boxes.dtype == np.float32


class _Passes(MirrorFaces):
    """MirrorFaces that records each network input (height, width, mirrored) and scores its faces by pass:
    0.6 + 0.3 * width / 400, less 0.05 when mirrored."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __call__(self, x):
        pred = super().__call__(x)
        h, w = x.shape[-2:]
        for i in range(len(x)):
            mirrored = bool(x[i, :, :, : w // 2].mean() < x[i, :, :, w - w // 2 :].mean())
            self.seen.append((h, w, mirrored))
            score = 0.6 + 0.3 * w / 400 - (0.05 if mirrored else 0.0)
            faces = pred.logits[i, :, 1] > -30
            pred.logits[i, faces, 1] = float(np.log(score / (1 - score)))
        return pred


def test_every_resize_runs_plain_and_flipped_and_the_passes_are_merged():
    model = _Passes()
    detector = Detector(model, preset("mobilenet0.25"))
    proto = Protocol("mixed", (Resize(short=60), Resize(long=400)), flip=True, voting_iou=0.4)
    dets = detector.detect_arrays([scene(H, W)], proto, detector.post)[0]
    # 90 x 160 -> 60 x 107 and 225 x 400, each plain and mirrored
    assert sorted(model.seen) == [(60, 107, False), (60, 107, True), (225, 400, False), (225, 400, True)]
    boxes, _, marks = _expected()
    _assert_faces(dets, (boxes, np.array([0.9, 0.9]), marks))  # the best pass's score: 0.6 + 0.3 * 400 / 400
    model.seen.clear()
    detector(scene(H, W))  # one plain pass
    assert model.seen == [(H, W, False)]


def test_merge_by_hand():
    # two passes: the same face seen twice (boxes side by side, IoU 0.25 at pixel offset 0, 0.294 at 1) and a
    # second face in the first pass only
    def raw(boxes, scores):
        boxes = torch.tensor(boxes, dtype=torch.float64)
        return RawDetections(boxes, torch.tensor(scores, dtype=torch.float64), boxes[:, None, :2].expand(-1, 5, 2))

    passes = [raw([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.5]), raw([[6, 0, 16, 10]], [0.8])]
    proto = Protocol("two", (Resize(), Resize(short=2)), voting_iou=0.28)
    merged = Detector._merge(passes, proto, PostCfg(nms_pixel_offset=1.0))
    torch.testing.assert_close(merged.scores, torch.tensor([0.9, 0.5], dtype=torch.float64))
    x1 = 6 * 0.8 / 1.7
    torch.testing.assert_close(merged.boxes[0], torch.tensor([x1, 0, x1 + 10, 10], dtype=torch.float64))
    assert len(Detector._merge(passes, proto, PostCfg(nms_pixel_offset=0.0)).scores) == 3  # the post's offset
    assert len(Detector._merge(passes, proto, PostCfg(nms_pixel_offset=1.0, max_detections=1)).scores) == 1


def test_per_call_thresholds_override_the_detectors():
    # two faces 16 18 64 54 and 16 18 64 35.5 (pixels): IoU (+1 pixel convention) 49 x 18.5 / (49 x 37) = 0.5,
    # so NMS at 0.4 keeps one, at 0.6 both
    near = (FACES[0], replace(FACES[0], box=(0.1, 0.2, 0.4, 35.5 / 90), score=0.6))
    detector = Detector(MirrorFaces(near), preset("mobilenet0.25"))
    image = scene(H, W)
    assert len(detector(image)) == 1 and len(detector(image, nms_iou=0.6)) == 2
    assert len(detector(image, score_threshold=0.7, nms_iou=0.6)) == 1
    assert detector.post.nms_iou == 0.4  # the detector's own settings are unchanged
    plain = detector.prepare(image, Resize())
    np.testing.assert_array_equal(plain, image)  # no flip unless asked
    np.testing.assert_array_equal(detector.prepare(image, Resize(), flip=True), image[:, ::-1])


def test_errors_name_the_image_in_a_list(detector):
    from retina.errors import RetinaError

    with pytest.raises(RetinaError, match="image 1"):
        detector([scene(H, W), np.zeros((4, 4, 2), np.uint8)])
