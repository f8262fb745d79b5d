"""Detections mapped back to original-image pixels, exactly, with a stand-in network of known output.

The shared-data test (tests/test_reference_biubug6.py) compares protocols on a square photo with loose
tolerances; here the image is not square (x and y scales differ) and the expected faces are known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retina import Detector
from retina.config import preset
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
