import math

import pytest
import torch

from retina.coding import encode_boxes, encode_landmarks
from retina.config import PostCfg
from retina.models.detector import Predictions
from retina.postprocess import RawDetections, box_voting, postprocess

V = (0.1, 0.2)


def _logit(p: float) -> list[float]:
    return [0.0, math.log(p / (1 - p))]  # softmax -> face probability p


def _predictions(boxes, scores, priors):
    """Predictions whose decoded boxes are exactly ``boxes`` (B, A, 4) with face scores ``scores`` (B, A)."""
    boxes = torch.as_tensor(boxes, dtype=torch.float64)
    centres = (boxes[..., None, :2] + boxes[..., None, 2:]) / 2
    landmarks = centres.expand(*boxes.shape[:-1], 5, 2)
    logits = torch.tensor([[_logit(s) for s in row] for row in scores], dtype=torch.float64)
    return Predictions(logits, encode_boxes(boxes, priors, V), encode_landmarks(landmarks, priors, V))


PRIORS = torch.tensor([[10, 10, 10, 10], [12, 10, 10, 10], [40, 40, 20, 20], [60, 60, 20, 20]], dtype=torch.float64)
BOXES = [
    [[0, 0, 20, 20], [1, 0, 21, 20], [30, 30, 50, 50], [52, 52, 70, 70]],
    [[0, 0, 20, 20], [10, 0, 30, 20], [30, 30, 50, 50], [52, 52, 70, 70]],
]
SCORES = [[0.9, 0.8, 0.01, 0.7], [0.6, 0.95, 0.5, 0.3]]


def test_threshold_nms_and_order_golden():
    out = postprocess(_predictions(BOXES, SCORES, PRIORS), PRIORS, V, PostCfg(score_threshold=0.02, nms_iou=0.4))
    # image 0: box 1 overlaps box 0 with IoU (+1 convention) 20*21 / (2*21*21 - 20*21) = 0.909 -> suppressed;
    # box 2 is below the threshold.
    torch.testing.assert_close(out[0].scores, torch.tensor([0.9, 0.7], dtype=torch.float64))
    torch.testing.assert_close(out[0].boxes, torch.tensor([[0, 0, 20, 20], [52, 52, 70, 70]], dtype=torch.float64))
    # image 1: boxes 0 and 1 overlap with IoU 11*21 / (2*21*21 - 11*21) = 0.355 < 0.4 -> both kept.
    torch.testing.assert_close(out[1].scores, torch.tensor([0.95, 0.6, 0.5, 0.3], dtype=torch.float64))
    torch.testing.assert_close(out[1].landmarks[0], torch.tensor([[20.0, 10.0]] * 5, dtype=torch.float64))


def test_pixel_offset_changes_iou_convention():
    # Without the +1 convention the IoU of image 1's boxes 0 and 1 is 10*20 / (2*400 - 200) = 0.333.
    cfg = PostCfg(score_threshold=0.02, nms_iou=0.34, nms_pixel_offset=0.0)
    assert len(postprocess(_predictions(BOXES, SCORES, PRIORS), PRIORS, V, cfg)[1].scores) == 4
    cfg = PostCfg(score_threshold=0.02, nms_iou=0.34, nms_pixel_offset=1.0)
    assert len(postprocess(_predictions(BOXES, SCORES, PRIORS), PRIORS, V, cfg)[1].scores) == 3


def test_top_k_and_max_detections_are_per_image():
    pred = _predictions(BOXES, SCORES, PRIORS)
    out = postprocess(pred, PRIORS, V, PostCfg(score_threshold=0.02, pre_nms_top_k=1))
    assert [o.scores.tolist() for o in out] == [pytest.approx([0.9]), pytest.approx([0.95])]
    out = postprocess(pred, PRIORS, V, PostCfg(score_threshold=0.02, max_detections=2))
    torch.testing.assert_close(out[1].scores, torch.tensor([0.95, 0.6], dtype=torch.float64))


def test_batched_equals_per_image_and_empty_input():
    pred = _predictions(BOXES, SCORES, PRIORS)
    cfg = PostCfg(score_threshold=0.02)
    batched = postprocess(pred, PRIORS, V, cfg)
    for i in range(2):
        single = postprocess(Predictions(*(t[i : i + 1] for t in pred)), PRIORS, V, cfg)[0]
        for a, b in zip(batched[i], single, strict=True):
            torch.testing.assert_close(a, b)
    empty = postprocess(pred, PRIORS, V, PostCfg(score_threshold=1.0))
    assert [tuple(o.boxes.shape) for o in empty] == [(0, 4), (0, 4)]
    assert tuple(empty[0].landmarks.shape) == (0, 5, 2)


def test_box_voting_golden():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [100, 100, 110, 110], [0, 0, 9, 10]], dtype=torch.float64)
    scores = torch.tensor([0.5, 0.9, 0.4, 0.2], dtype=torch.float64)
    landmarks = boxes[:, None, :2].expand(4, 5, 2)
    out = box_voting(RawDetections(boxes, scores, landmarks), iou=0.4)
    # cluster of the 0.9 box: itself, the 0.5 box and the 0.2 box (IoUs with it well above 0.4)
    w = torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64)
    members = boxes[[1, 0, 3]]
    torch.testing.assert_close(out.boxes[0], (members * w[:, None]).sum(0) / w.sum())
    torch.testing.assert_close(out.landmarks[0, 0], (members[:, :2] * w[:, None]).sum(0) / w.sum())
    torch.testing.assert_close(out.scores, torch.tensor([0.9, 0.4], dtype=torch.float64))
    torch.testing.assert_close(out.boxes[1], boxes[2])
