"""The fast path computes what the straightforward path computes.

Post-processing (threshold on logit differences, flat index_select, plain NMS for one image) against a
float64 reference written the obvious way; CPU pre-processing (numpy into a reused buffer) against the
torch path other devices use.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torchvision.ops import nms

from retina import Detector
from retina.build import build_detector
from retina.coding import decode_boxes, decode_landmarks
from retina.config import InputCfg, PostCfg, preset
from retina.models.detector import Predictions
from retina.postprocess import logit_bound, postprocess
from retina.priors import make_priors

V = (0.1, 0.2)


def _reference(pred: Predictions, priors: torch.Tensor, cfg: PostCfg) -> list[tuple[torch.Tensor, ...]]:
    """Per image, float64: softmax of every anchor, threshold, top-k, decode, NMS, max detections."""
    out = []
    for i in range(pred.logits.shape[0]):
        scores = torch.softmax(pred.logits[i].double(), -1)[:, 1]
        keep = torch.nonzero(scores > cfg.score_threshold).flatten()
        keep = keep[torch.argsort(scores[keep], descending=True, stable=True)][: cfg.pre_nms_top_k]
        p = priors[keep].double()
        boxes = decode_boxes(pred.boxes[i, keep].double(), p, V)
        landmarks = decode_landmarks(pred.landmarks[i, keep].double(), p, V)
        shifted = boxes.clone()
        shifted[:, 2:] += cfg.nms_pixel_offset
        kept = nms(shifted, scores[keep], cfg.nms_iou)[: cfg.max_detections]
        out.append((boxes[kept], scores[keep][kept], landmarks[kept]))
    return out


@pytest.mark.parametrize(
    "cfg",
    [PostCfg(score_threshold=0.02), PostCfg(score_threshold=0.5, pre_nms_top_k=40, max_detections=7),
     PostCfg(score_threshold=0.0, nms_pixel_offset=0.0), PostCfg(score_threshold=1.0)],
)  # fmt: skip
@pytest.mark.parametrize("batch", [1, 3])
def test_postprocess_equals_float64_reference(cfg, batch):
    gen = torch.Generator().manual_seed(batch)
    priors = make_priors((48, 64), (8, 16, 32), ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0)))
    a = len(priors)
    pred = Predictions(torch.randn(batch, a, 2, generator=gen) * 3, torch.randn(batch, a, 4, generator=gen) * 0.3,
                       torch.randn(batch, a, 10, generator=gen))  # fmt: skip
    got = postprocess(pred, priors, V, cfg)
    for (boxes, scores, landmarks), ours in zip(_reference(pred, priors, cfg), got, strict=True):
        assert len(ours.scores) == len(scores)
        torch.testing.assert_close(ours.scores.double(), scores, rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.boxes.double(), boxes, rtol=0, atol=1e-4)
        torch.testing.assert_close(ours.landmarks.double(), landmarks, rtol=0, atol=1e-4)
    if cfg.score_threshold == 1.0:
        assert all(len(o.scores) == 0 for o in got)


def test_logit_bound_never_drops_a_passing_anchor():
    diffs = torch.linspace(-12, 12, 200_001, dtype=torch.float32)
    scores = torch.softmax(torch.stack([torch.zeros_like(diffs), diffs], -1), -1)[:, 1]
    for t in (1e-6, 0.02, 0.3, 0.5, 0.9, 0.999):
        passing = scores > t
        assert bool((diffs[passing] > logit_bound(t)).all())
        assert abs(logit_bound(t, margin=0) - math.log(t / (1 - t))) < 1e-12
    assert logit_bound(0.0) == -math.inf and logit_bound(1.0) == math.inf


@pytest.mark.parametrize(
    "inp", [InputCfg(), InputCfg(channel_order="rgb", mean=(123.0, 117.0, 104.0), std=(58.4, 57.1, 57.4))]
)
def test_cpu_pre_processing_equals_torch_path(inp):
    cfg = dataclasses.replace(preset("mobilenet0.25"), input=inp)
    det = Detector(build_detector(cfg), cfg)
    images = np.random.default_rng(0).integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    batches = [images, [images[0][:, ::-1], images[1]]]  # an array, and a list with a flipped view
    fresh = [det.to_tensor(b).clone() for b in batches]
    reused = det.to_tensor(batches[1], reuse=True)
    assert reused.data_ptr() == det.to_tensor(batches[1], reuse=True).data_ptr()  # the buffer is reused
    det._numpy_input = False  # the path other devices take
    for got, batch in zip(fresh, batches, strict=True):
        assert got.is_contiguous() and got.dtype == torch.float32
        torch.testing.assert_close(got, det.to_tensor(batch), rtol=0, atol=0)
    torch.testing.assert_close(reused, det.to_tensor(batches[1]), rtol=0, atol=0)
