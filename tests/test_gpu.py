"""GPU checks (``pytest -m gpu``; skipped without CUDA): the device path gives the CPU path's detections.

Run by benchmarks/gpu_check.sh together with the GPU speed table.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from retina import Detector
from retina.build import build_detector
from retina.config import PostCfg, preset
from retina.models.detector import Predictions
from retina.postprocess import RawDetections, postprocess
from retina.priors import make_priors
from tests.conftest import SHARED_DATA

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
WEIGHTS = SHARED_DATA / "weights" / "retinaface_mobilenet0.25_Final.pth"
PHOTO = SHARED_DATA / "samples" / "biubug6_Face-Detector-1MB_sample.jpg"


def _image() -> np.ndarray:
    if PHOTO.is_file():
        import cv2

        return cv2.imread(str(PHOTO))
    return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # synthetic


def _model():
    if WEIGHTS.is_file():
        return Detector.from_checkpoint(WEIGHTS).model, preset("mobilenet0.25")
    torch.manual_seed(0)
    return build_detector(preset("mobilenet0.25")), preset("mobilenet0.25")


@pytest.fixture(scope="module")
def detectors():
    model, cfg = _model()
    post = PostCfg(score_threshold=0.3)
    cpu = Detector(model, cfg, post=post, fuse=False)
    return cpu, Detector(copy.deepcopy(model), cfg, post=post, device="cuda", fuse=False)  # .to() works in place


def _unmatched(a, b, iou: float, score: float) -> list[int]:
    """Detections of ``a`` scoring >= 0.5 without one in ``b`` (threshold 0.3: no boundary effects)."""
    if len(b) == 0:
        return [int(i) for i in np.flatnonzero(a.scores >= 0.5)]
    overlap = box_iou(torch.as_tensor(a.boxes, dtype=torch.float64), torch.as_tensor(b.boxes, dtype=torch.float64))
    bad = []
    for i in np.flatnonzero(a.scores >= 0.5):
        j = int(overlap[i].argmax())
        if overlap[i, j] < iou or abs(a.scores[i] - b.scores[j]) > score:
            bad.append(int(i))
    return bad


def _match(a, b, iou=0.99, score=1e-3):
    assert (a.scores >= 0.5).sum() > 0 or (b.scores >= 0.5).sum() > 0 or len(a) == len(b) == 0
    assert _unmatched(a, b, iou, score) == [] and _unmatched(b, a, iou, score) == []


@pytest.fixture
def no_tf32():
    """PyTorch runs fp32 convolutions in TF32 on Ampere+ by default; exact comparisons need real fp32."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = old


def test_cuda_detections_equal_cpu(detectors, no_tf32):
    cpu, gpu = detectors
    image = _image()
    _match(cpu(image), gpu(image))
    assert gpu.to_tensor([image]).device.type == "cuda"


def test_batched_cuda_equals_single(detectors, no_tf32):
    _, gpu = detectors
    image = _image()
    flipped = np.ascontiguousarray(image[:, ::-1])
    batched = gpu([image, flipped])
    _match(batched[0], gpu(image), iou=0.999, score=1e-5)
    _match(batched[1], gpu(flipped), iou=0.999, score=1e-5)


def test_postprocess_on_device_equals_cpu():
    gen = torch.Generator().manual_seed(0)
    priors = make_priors((64, 96), (8, 16, 32), ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0)))
    a = len(priors)
    pred = Predictions(torch.randn(3, a, 2, generator=gen) * 3, torch.randn(3, a, 4, generator=gen) * 0.5,
                       torch.randn(3, a, 10, generator=gen))  # fmt: skip
    cfg = PostCfg(score_threshold=0.5, nms_iou=0.4)
    cpu = postprocess(pred, priors, (0.1, 0.2), cfg)
    gpu = postprocess(Predictions(*(t.cuda() for t in pred)), priors.cuda(), (0.1, 0.2), cfg)
    for c, g in zip(cpu, gpu, strict=True):
        assert g.boxes.device.type == "cuda" and len(c.scores) > 0
        for x, y in zip(c, g, strict=True):
            torch.testing.assert_close(y.cpu(), x, rtol=1e-5, atol=1e-4)


def test_box_voting_and_top_k_on_device_equal_cpu():
    from retina.postprocess import box_voting

    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=gen) * 200
    boxes = torch.cat([xy, xy + 10 + torch.rand(300, 2, generator=gen) * 30], 1)
    dets = RawDetections(boxes, torch.rand(300, generator=gen), boxes[:, None, :2].expand(-1, 5, 2).contiguous())
    cpu = box_voting(dets, 0.4)
    gpu = box_voting(RawDetections(*(t.cuda() for t in dets)), 0.4)
    assert gpu.boxes.device.type == "cuda" and len(cpu.scores) < 300
    for x, y in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(y.cpu(), x, rtol=1e-5, atol=1e-4)
    # the per-image top-k cut before NMS, on the device
    priors = make_priors((64, 96), (8, 16, 32), ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0)))
    a = len(priors)
    pred = Predictions(torch.randn(2, a, 2, generator=gen) * 3, torch.randn(2, a, 4, generator=gen) * 0.5,
                       torch.randn(2, a, 10, generator=gen))  # fmt: skip
    cfg = PostCfg(score_threshold=0.3, nms_iou=0.4, pre_nms_top_k=20, max_detections=5)
    on_cpu = postprocess(pred, priors, (0.1, 0.2), cfg)
    on_gpu = postprocess(Predictions(*(t.cuda() for t in pred)), priors.cuda(), (0.1, 0.2), cfg)
    for c, g in zip(on_cpu, on_gpu, strict=True):
        for x, y in zip(c, g, strict=True):
            torch.testing.assert_close(y.cpu(), x, rtol=1e-5, atol=1e-4)


def test_assign_and_losses_on_device_equal_cpu():
    from retina.config import LossCfg
    from retina.data.dataset import Target
    from retina.losses import assign, losses

    priors = make_priors((64, 96), (8, 16, 32), ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0)))
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(6, 2, generator=gen) * 60
    boxes = torch.cat([xy, xy + 8 + torch.rand(6, 2, generator=gen) * 20], 1)
    faces = Target(boxes, xy[:, None] + torch.rand(6, 5, 2, generator=gen) * 8, torch.arange(6) % 2 == 0)
    empty = Target(torch.zeros(0, 4), torch.zeros(0, 5, 2), torch.zeros(0, dtype=torch.bool))
    cfg = LossCfg()
    cpu = assign([faces, empty], priors, (0.1, 0.2), cfg)  # the faces stay on the CPU, as the loader gives them
    gpu = assign([faces, empty], priors.cuda(), (0.1, 0.2), cfg)
    assert int(cpu.num_landmarks) > 0
    assert gpu.labels.device.type == "cuda" and gpu.box_targets.device.type == "cuda"
    assert torch.equal(gpu.labels.cpu(), cpu.labels) and torch.equal(gpu.landmark_mask.cpu(), cpu.landmark_mask)
    positive = cpu.labels == 1  # elsewhere the matched face is an arbitrary one of equal (zero) overlap
    for name in ("box_targets", "landmark_targets", "face_index"):
        torch.testing.assert_close(getattr(gpu, name).cpu()[positive], getattr(cpu, name)[positive])
    a = len(priors)
    pred = Predictions(torch.randn(2, a, 2, generator=gen), torch.randn(2, a, 4, generator=gen),
                       torch.randn(2, a, 10, generator=gen))  # fmt: skip
    on_cpu = losses(pred, cpu, cfg, cpu.num_positive, cpu.num_landmarks)
    on_gpu = losses(Predictions(*(t.cuda() for t in pred)), gpu, cfg, gpu.num_positive, gpu.num_landmarks)
    for k, v in on_cpu.items():
        torch.testing.assert_close(on_gpu[k].cpu(), v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_forward_finds_the_same_faces(detectors, dtype):
    from benchmarks.speed import Autocast

    model, cfg = _model()
    _, gpu = detectors
    half = Detector(Autocast(model, dtype), cfg, post=gpu.post, device="cuda")
    image = _image()
    ref, got = gpu(image), half(image)
    strong = ref.scores > 0.9
    if strong.any():  # the confident faces survive reduced precision
        overlap = box_iou(torch.as_tensor(ref.boxes[strong]), torch.as_tensor(got.boxes))
        assert bool((overlap.max(1).values > 0.9).all())


def test_gpu_grid_cell_records_memory_and_throughput(tmp_path):
    from benchmarks import speed

    out = tmp_path / "m"
    args = ["grid", "--presets", "mobilenet0.25", "--sizes", "320x240", "--settings", "gpu-fp32,gpu-fp16"]
    args += ["--repeats", "3", "--min-repeats", "2", "--warmup", "1", "--batches", "320x240:1,4", "--out", str(out)]
    assert speed.main(args) == 0
    rows = json.loads((out / "grid.json").read_text())["rows"]
    assert {r["setting"] for r in rows} == {"gpu-fp32", "gpu-fp16"}
    for r in rows:
        assert r["peak_gpu_mib"] > 0 and r["e2e_ms"] > 0
        assert [t["batch"] for t in r["throughput"]] == [1, 4]
        assert all(t["images_per_s"] > 0 for t in r["throughput"])
