"""Agreement with the biubug6/Pytorch_Retinaface code (a peer implementation) on real photos.

``../shared/data/reference/biubug6_mnet0.25_samples.json`` holds that code's outputs with the released
MobileNet-0.25 weights (original size, threshold 0.02, "+1 pixel" NMS at 0.4, no top-k). Every reference
detection with score >= 0.1 must have one of ours with IoU >= 0.99, score within 1e-4 and landmarks within
0.1 px, and the other way round.
"""

import json

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from retina import Detector
from retina.config import PostCfg
from tests.conftest import shared_file

REFERENCE = "reference/biubug6_mnet0.25_samples.json"
WEIGHTS = "weights/retinaface_mobilenet0.25_Final.pth"


@pytest.fixture(scope="module")
def reference():
    return json.loads(shared_file(REFERENCE).read_text())


@pytest.fixture(scope="module")
def detector():
    post = PostCfg(score_threshold=0.02, nms_iou=0.4, pre_nms_top_k=None, max_detections=None, nms_pixel_offset=1.0)
    return Detector.from_checkpoint(shared_file(WEIGHTS), preset="mobilenet0.25", post=post)


def _unmatched(a_boxes, a_scores, a_lmk, b_boxes, b_scores, b_lmk):
    """Indices of a's detections (score >= 0.1) without a counterpart in b."""
    iou = box_iou(torch.as_tensor(a_boxes, dtype=torch.float64), torch.as_tensor(b_boxes, dtype=torch.float64))
    bad = []
    for i in np.flatnonzero(a_scores >= 0.1):
        j = int(iou[i].argmax())
        ok = iou[i, j] >= 0.99 and abs(a_scores[i] - b_scores[j]) <= 1e-4
        if not (ok and np.abs(a_lmk[i] - b_lmk[j]).max() <= 0.1):
            bad.append(int(i))
    return bad


@pytest.mark.parametrize(
    "image",
    ["samples/biubug6_Face-Detector-1MB_sample.jpg", "samples/biubug6_Pytorch_Retinaface_test.jpg",
     "samples/scikit-image_astronaut.png"],
)  # fmt: skip
def test_detections_match_biubug6(reference, detector, image):
    ref = reference["images"][image]
    dets = detector(shared_file(image))
    ours = (dets.boxes, dets.scores, dets.landmarks)
    theirs = (np.array(ref["boxes_xyxy"]), np.array(ref["scores"]), np.array(ref["landmarks"]).reshape(-1, 5, 2))
    assert (theirs[1] >= 0.1).sum() > 0
    assert _unmatched(*theirs, *ours) == []
    assert _unmatched(*ours, *theirs) == []


def test_resize_protocols_map_back_to_image_pixels(detector):
    image = shared_file("samples/scikit-image_astronaut.png")
    base = detector(image, score_threshold=0.5)
    for name in ("vga", "fixed"):
        other = detector(image, protocol=name, score_threshold=0.5)  # the best detection is the same face
        assert len(base) == 1 and other.scores[0] > 0.99
        iou = box_iou(torch.as_tensor(base.boxes), torch.as_tensor(other.boxes[:1]))
        assert float(iou[0, 0]) > 0.85, name
        assert np.abs(base.landmarks[0] - other.landmarks[0]).max() < 6, name


def test_uniform_image_has_no_faces(detector):
    assert len(detector(np.full((480, 640, 3), 127, np.uint8), score_threshold=0.5)) == 0
