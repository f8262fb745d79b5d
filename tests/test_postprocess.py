import math

import pytest
import torch

from retina.coding import encode_boxes, encode_landmarks
from retina.config import PostCfg
from retina.models.detector import Predictions
from retina.postprocess import RawDetections, box_voting, face_scores, logit_bound, postprocess

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


# --- scores, thresholds, top-k and NMS order: hand-worked ----------------------------------------------------


def test_face_scores_and_logit_bound_by_hand():
    logits = torch.tensor([[[0.0, math.log(3)], [2.0, 2.0], [-5.0, -4.0]]])  # (B, A, 2)
    sigmoid1 = 1 / (1 + math.exp(-1))
    assert face_scores(logits).tolist() == [pytest.approx([0.75, 0.5, sigmoid1])]
    assert logit_bound(0.0) == -math.inf and logit_bound(1.0) == math.inf
    assert logit_bound(0.5) == pytest.approx(-1e-3, abs=1e-15)  # log(0.5 / 0.5) minus the margin
    assert logit_bound(0.75) == pytest.approx(math.log(3) - 1e-3, abs=1e-15)
    assert logit_bound(0.75, margin=0.0) == pytest.approx(math.log(3), abs=1e-15)


def _grid(n: int, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """n priors on a grid (stride 20) and a 10 x 10 box on each: boxes far apart (no NMS between them)."""
    k = torch.arange(n, dtype=torch.float64)
    centres = torch.stack([(k % side) * 20 + 10, (k // side) * 20 + 10], 1)
    priors = torch.cat([centres, torch.full((n, 2), 10.0, dtype=torch.float64)], 1)
    return priors, torch.cat([centres - 5, centres + 5], 1)


def test_threshold_is_strict_and_the_prefilter_loses_nothing():
    priors, boxes = _grid(4)
    # a face with a non-zero background logit (p = sigmoid(1) = 0.731), p = 0.5 exactly, p just below 0.5
    # (its logit difference -0.0005 passes the pre-filter's margin), p = sigmoid(0.6) = 0.646
    logits = torch.tensor([[[-5.0, -4.0], [0.0, 0.0], [0.0, -0.0005], [1.0, 1.6]]], dtype=torch.float64)
    pred = Predictions(logits, encode_boxes(boxes, priors, V)[None], torch.zeros(1, 4, 10, dtype=torch.float64))
    out = postprocess(pred, priors, V, PostCfg(score_threshold=0.5))[0]
    torch.testing.assert_close(out.scores, torch.sigmoid(torch.tensor([1.0, 0.6], dtype=torch.float64)))
    torch.testing.assert_close(out.boxes, boxes[[0, 3]])
    out = postprocess(pred, priors, V, PostCfg(score_threshold=0.7))[0]
    torch.testing.assert_close(out.boxes, boxes[[0]])


def test_one_candidate_one_image_and_no_top_k():
    pred = _predictions(BOXES, SCORES, PRIORS)
    # one image: the NMS fast path still applies max_detections
    single = Predictions(*(t[:1] for t in pred))
    out = postprocess(single, PRIORS, V, PostCfg(score_threshold=0.02, max_detections=1))[0]
    torch.testing.assert_close(out.scores, torch.tensor([0.9], dtype=torch.float64))
    # a batch with a single candidate in all
    out = postprocess(pred, PRIORS, V, PostCfg(score_threshold=0.92))
    assert [o.scores.tolist() for o in out] == [[], [pytest.approx(0.95)]]
    out = postprocess(pred, PRIORS, V, PostCfg(score_threshold=0.02, pre_nms_top_k=None, max_detections=None))
    assert [len(o.scores) for o in out] == [2, 4]


def test_top_k_keeps_the_best_per_image_and_the_earlier_anchors_on_ties():
    priors, boxes = _grid(256)
    tied = torch.full((256,), 0.8, dtype=torch.float64)
    distinct = 0.3 + 0.6 * torch.randperm(256, generator=torch.Generator().manual_seed(0)).double() / 256
    pred = _predictions(boxes.expand(2, 256, 4), torch.stack([tied, distinct]).tolist(), priors)
    out = postprocess(pred, priors, V, PostCfg(score_threshold=0.1, pre_nms_top_k=20, max_detections=None))
    kept = sorted(out[0].boxes.tolist())
    assert kept == sorted(boxes[:20].tolist())  # equal scores: the first 20 anchors
    best = torch.argsort(distinct, descending=True)[:20]
    torch.testing.assert_close(out[1].scores, distinct[best])
    torch.testing.assert_close(out[1].boxes, boxes[best])


def test_many_detections_come_out_sorted_per_image():
    priors, boxes = _grid(150)
    gen = torch.Generator().manual_seed(1)
    scores = 0.1 + 0.8 * torch.rand(2, 150, generator=gen, dtype=torch.float64)
    pred = _predictions(boxes.expand(2, 150, 4), scores.tolist(), priors)
    out = postprocess(pred, priors, V, PostCfg(score_threshold=0.05, max_detections=None))
    for o, s in zip(out, scores, strict=True):
        torch.testing.assert_close(o.scores, s.sort(descending=True).values)


def test_prediction_and_prior_counts_must_agree():
    pred = _predictions(BOXES, SCORES, PRIORS)
    with pytest.raises(ValueError, match=r"^4 predictions per image but 3 priors$"):
        postprocess(pred, PRIORS[:3], V, PostCfg())


# --- box voting --------------------------------------------------------------------------------------------


def _raw(boxes, scores) -> RawDetections:
    boxes = torch.as_tensor(boxes, dtype=torch.float64)
    return RawDetections(boxes, torch.as_tensor(scores, dtype=torch.float64), boxes[:, None, :2].expand(-1, 5, 2))


def test_box_voting_iou_convention_and_inclusive_threshold():
    side_by_side = _raw([[0, 0, 10, 10], [6, 0, 16, 10]], [0.9, 0.8])
    # IoU of [x1, x2 + offset): offset 1 (default): 5 * 11 / (2 * 121 - 55) = 0.294; offset 2: 72 / 216 = 0.333
    assert len(box_voting(side_by_side, iou=0.3).scores) == 2
    merged = box_voting(side_by_side, iou=0.3, pixel_offset=2.0)
    torch.testing.assert_close(merged.boxes, torch.tensor([[(0 * 0.9 + 6 * 0.8) / 1.7, 0, 10 + 0.8 * 6 / 1.7, 10]],
                                                          dtype=torch.float64))  # fmt: skip
    assert len(box_voting(side_by_side, iou=0.3, pixel_offset=0.0).scores) == 2  # 40 / 160 = 0.25
    # IoU exactly 0.5 (10 x 10 and 10 x 5 pixels, one inside the other) merges at iou = 0.5
    nested = _raw([[0, 0, 9, 9], [0, 0, 9, 4]], [0.9, 0.3])
    torch.testing.assert_close(box_voting(nested, iou=0.5).boxes, torch.tensor([[0, 0, 9, 7.75]], dtype=torch.float64))


def test_box_voting_of_nothing_and_of_one_box():
    empty = box_voting(_raw(torch.zeros(0, 4), torch.zeros(0)), iou=0.4)
    assert empty.boxes.shape == (0, 4) and empty.landmarks.shape == (0, 5, 2)
    one = box_voting(_raw([[1, 2, 3, 4]], [0.7]), iou=0.4)
    torch.testing.assert_close(one.boxes, torch.tensor([[1.0, 2, 3, 4]], dtype=torch.float64))
    assert one.scores.tolist() == [0.7]


def test_box_voting_keeps_the_input_order_of_equal_scores():
    _, boxes = _grid(120)
    out = box_voting(_raw(boxes, torch.full((120,), 0.5)), iou=0.4)
    torch.testing.assert_close(out.boxes, boxes)


def test_box_voting_in_chunks_equals_the_clusters_by_hand():
    # 2,100 clusters (1,000 pairs, 1,100 single boxes) among 3,100 boxes: more than 4e6 / 2,100 = 1,904 boxes,
    # so the (heads x boxes) overlaps are taken in two chunks; the pairs' second members score lowest, in the
    # second chunk.
    _, heads = _grid(2100, side=50)
    members = heads[:1000] + torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # IoU 10 * 11 / 132 = 0.83
    head_scores = 0.5 + 0.4 * torch.arange(2100, 0, -1, dtype=torch.float64) / 2100
    member_scores = 0.1 + 0.3 * torch.arange(1000, 0, -1, dtype=torch.float64) / 1000
    out = box_voting(_raw(torch.cat([heads, members]), torch.cat([head_scores, member_scores])), iou=0.4)
    torch.testing.assert_close(out.scores, head_scores)
    w_head, w_member = head_scores[:1000, None], member_scores[:, None]
    pairs = (heads[:1000] * w_head + members * w_member) / (w_head + w_member)
    torch.testing.assert_close(out.boxes, torch.cat([pairs, heads[1000:]]))
