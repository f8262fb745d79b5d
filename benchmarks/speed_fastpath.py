"""The fast-path ablation of benchmarks/speed.py (``python benchmarks/speed.py fastpath``).

mobilenet0.25 with its released weights, one photo at VGA (640x480), one CPU thread, score threshold 0.02.
Each section times its variants interleaved (round-robin, ``--rounds`` rounds after warm-up), so that load
from other processes falls on every variant alike. ``fast_path`` marks the steps of the fastest path kept
(``Detector.from_onnx``; the PyTorch backend shares its pre- and post-processing).

The ``biubug6-style`` pipeline is our re-creation of how the common PyTorch port runs inference (its
structure, not its code): BatchNorm not folded, priors rebuilt in Python loops on every call, softmax and
decoding of every anchor, then a numpy greedy NMS (top-k 5000, keep 750). Steps are then added one at a
time until the ``Detector`` path is reached.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from benchmarks.timing import interleaved, load_model, photo_at, set_threads, write_records
from retina.api import Detector
from retina.coding import decode_boxes, decode_landmarks
from retina.config import DetectorCfg, PostCfg, preset
from retina.models.fuse import fuse_batchnorm
from retina.postprocess import face_scores, logit_bound, postprocess
from retina.priors import PriorCache, make_priors

VGA = (480, 640)


# --- the biubug6-style baseline (a re-creation of its structure) ------------------------------------


def python_priors(image_hw: tuple[int, int], cfg: DetectorCfg) -> torch.Tensor:
    """(A, 4) cx cy w h pixels, built cell by cell in Python on every call (how older ports do it)."""
    values: list[float] = []
    for stride, sizes in zip(cfg.priors.strides, cfg.priors.sizes, strict=True):
        for i in range(math.ceil(image_hw[0] / stride)):
            for j in range(math.ceil(image_hw[1] / stride)):
                for s in sizes:
                    values += [(j + 0.5) * stride, (i + 0.5) * stride, s, s]
    return torch.tensor(values).view(-1, 4)


def numpy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS, one kept box per numpy iteration; boxes (N, 4) x1 y1 x2 y2, "+1 pixel" areas."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= iou]
    return np.array(keep, dtype=np.int64)


def numpy_post(pred, priors, cfg: DetectorCfg, threshold: float = 0.02) -> tuple[np.ndarray, ...]:
    """Decode every anchor in torch, then threshold, top-k 5000, NMS 0.4 and keep 750 in numpy."""
    v = cfg.priors.variances
    boxes = decode_boxes(pred.boxes[0], priors, v).numpy()
    scores = face_scores(pred.logits[0]).numpy()
    landmarks = decode_landmarks(pred.landmarks[0], priors, v).reshape(-1, 10).numpy()
    idx = np.where(scores > threshold)[0]
    idx = idx[scores[idx].argsort()[::-1][:5000]]
    keep = numpy_nms(boxes[idx], scores[idx], 0.4)[:750]
    return boxes[idx][keep], scores[idx][keep], landmarks[idx][keep]


def numpy_pre(image: np.ndarray, cfg: DetectorCfg) -> torch.Tensor:
    x = np.float32(image) - np.array(cfg.input.mean, np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1)).unsqueeze(0)


def baseline(model, cfg: DetectorCfg, priors: Callable[[tuple[int, int]], torch.Tensor], post: str) -> Callable:
    """An image -> (boxes, scores, landmarks) pipeline of the baseline family (``post``: "numpy" or "retina")."""

    def run(image: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            pred = model(numpy_pre(image, cfg))
            p = priors(image.shape[:2])
            if post == "numpy":
                return numpy_post(pred, p, cfg)
            raw = postprocess(pred, p, cfg.priors.variances, PostCfg())[0]
            return raw.boxes.numpy(), raw.scores.numpy(), raw.landmarks.numpy()

    return run


# --- the ablation -----------------------------------------------------------------------------------------


def export_separate_heads(model, path: Path) -> Path:
    """The fused model exported as is (three head outputs), to measure what merging the heads buys."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.zeros(1, 3, *VGA),), str(path), dynamo=False, input_names=["images"],
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}}, opset_version=17,
        )  # fmt: skip
    return path


def run_fastpath(args) -> int:
    import onnxruntime as ort

    from retina.onnx import export_onnx

    set_threads(1)
    model, weights = load_model("mobilenet0.25", args.weights)
    cfg = preset("mobilenet0.25")
    image, image_name = photo_at(args.image, VGA)
    fused = fuse_batchnorm(model)
    tmp = tempfile.TemporaryDirectory(prefix="retina-fastpath-")
    onnx_path = export_onnx(model, cfg, Path(tmp.name) / "packed.onnx")
    det = Detector(model, cfg)
    ort_basic = Detector.from_onnx(onnx_path, threads=1, optimization="basic")
    ort_all = Detector.from_onnx(onnx_path, threads=1)
    det_cl = Detector(model, cfg, channels_last=True)
    cache = PriorCache(cfg.priors.strides, cfg.priors.sizes)
    cached = lambda hw: cache(hw, torch.float32, torch.device("cpu"))  # noqa: E731
    steps = [
        baseline(model, cfg, lambda hw: python_priors(hw, cfg), "numpy"),
        baseline(model, cfg, cached, "numpy"),
        baseline(model, cfg, cached, "retina"),
        baseline(fused, cfg, cached, "retina"),
    ]
    e2e: dict[str, Callable[[], Any]] = {
        "biubug6-style": lambda: steps[0](image),
        "+ priors cached": lambda: steps[1](image),
        "+ vectorised decode, torchvision NMS": lambda: steps[2](image),
        "+ BatchNorm folded": lambda: steps[3](image),
        "Detector, PyTorch (+ inference mode, buffered pre-processing)": lambda: det(image),
        "Detector, PyTorch, channels-last": lambda: det_cl(image),
        "Detector, ONNX Runtime, basic graph optimisation": lambda: ort_basic(image),
        "Detector, ONNX Runtime, all graph optimisations": lambda: ort_all(image),
    }
    x = det.to_tensor([image])
    sep = ort.InferenceSession(str(export_separate_heads(fused, Path(tmp.name) / "separate.onnx")), _one_thread(ort))
    forward: dict[str, Callable[[], Any]] = {
        "eager, BatchNorm not folded": lambda: _no_grad(model, x),
        "eager, BatchNorm folded, no_grad": lambda: _no_grad(fused, x),
        "eager, BatchNorm folded, inference_mode": lambda: det.forward(x),
        "eager, channels-last (input converted)": lambda: det_cl.forward(x),
        "ONNX Runtime all, separate heads": lambda: sep.run(None, {"images": x.numpy()}),
        "ONNX Runtime all, merged heads": lambda: ort_all.forward(x),
        "ONNX Runtime basic, merged heads": lambda: ort_basic.forward(x),
    }
    compile_s = None
    if args.compile:
        compiled = torch.compile(fuse_batchnorm(model), dynamic=False)
        start = time.perf_counter()
        _no_grad(compiled, x)
        compile_s = time.perf_counter() - start
        det_c = Detector(compiled, cfg, fuse=False)
        e2e["Detector, PyTorch, torch.compile"] = lambda: det_c(image)
        forward["torch.compile (inductor)"] = lambda: det_c.forward(x)
    torch_ops = Detector(fused, cfg, fuse=False)
    torch_ops._numpy_input = False  # the path other devices take
    mean = cfg.input.mean
    pre = {
        "numpy (float32, subtract, transpose)": lambda: numpy_pre(image, cfg),
        "torch ops on the uint8 tensor": lambda: torch_ops.to_tensor([image]),
        "cv2.dnn.blobFromImages": lambda: cv2.dnn.blobFromImages([image], 1.0, None, mean, False, False),
        "numpy per channel into a new array": lambda: det.to_tensor([image]),
        "numpy per channel into a reused buffer": lambda: det.to_tensor([image], reuse=True),
    }
    big = photo_at(args.image, (2160, 4096))[0]  # at 4K a fresh 100 MB input array costs page faults
    pre_4k = {
        "cv2.dnn.blobFromImages": lambda: cv2.dnn.blobFromImages([big], 1.0, None, mean, False, False),
        "numpy per channel into a new array": lambda: det.to_tensor([big]),
        "numpy per channel into a reused buffer": lambda: det.to_tensor([big], reuse=True),
    }
    pred = det.forward(x)
    bound = logit_bound(0.02)
    scoring = {
        "softmax over all anchors, then threshold": lambda: torch.nonzero(face_scores(pred.logits) > 0.02),
        "threshold on logit difference": lambda: torch.nonzero(pred.logits[..., 1] - pred.logits[..., 0] > bound),
    }
    post = {
        "numpy threshold + greedy NMS (biubug6-style)": lambda: numpy_post(pred, cached(VGA), cfg),
        "retina.postprocess (torchvision NMS)": lambda: det.decode(pred, VGA),
    }
    priors = {
        "Python loops per call": lambda: python_priors(VGA, cfg),
        "make_priors (vectorised) per call": lambda: make_priors(VGA, cfg.priors.strides, cfg.priors.sizes),
        "PriorCache lookup": lambda: cached(VGA),
    }
    fast_path = {
        "Detector, ONNX Runtime, all graph optimisations", "eager, BatchNorm folded, inference_mode",
        "ONNX Runtime all, merged heads", "numpy per channel into a reused buffer", "threshold on logit difference",
        "retina.postprocess (torchvision NMS)", "PriorCache lookup",
    }  # fmt: skip
    rows = []
    sections = {"e2e": e2e, "forward": forward, "pre": pre, "pre 4K": pre_4k, "scoring": scoring, "post": post,
                "priors": priors}  # fmt: skip
    for section, variants in sections.items():
        rounds = max(1, args.rounds // 3) if section == "pre 4K" else args.rounds
        for name, stats in interleaved(variants, rounds, args.warmup).items():
            row = {"section": section, "variant": name, "fast_path": name in fast_path, **stats}
            height, width = (2160, 4096) if section == "pre 4K" else VGA
            row.update(image=image_name, height=height, width=width, threads=1, weights=weights,
                       score_threshold=0.02, rounds=rounds)  # fmt: skip
            if section == "e2e":  # same detections whatever the path (the baseline keeps at most 750)
                out = variants[name]()
                row["detections"] = len(out[1]) if isinstance(out, tuple) else len(out)
            rows.append(row)
            print(f"{section:8s} {name:58s} {stats['median_ms']:8.2f} ms  (cpu {stats['cpu_median_ms']:.2f})")
    rows.append({"section": "meta", "variant": "candidates at 0.02", "count": _candidates(pred)})
    if compile_s is not None:
        rows.append({"section": "meta", "variant": "torch.compile time", "seconds": compile_s})
    write_records(args.out, "fastpath", rows, args)
    tmp.cleanup()
    print(f"wrote {len(rows)} rows to {args.out}/fastpath.json and fastpath.csv")
    return 0


def _one_thread(ort):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return options


def _no_grad(model, x):
    with torch.no_grad():
        return model(x)


def _candidates(pred) -> int:
    return int((face_scores(pred.logits) > 0.02).sum())
