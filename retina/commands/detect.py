"""``retina detect IMAGE_OR_DIR... --out DIR [--model M] [--weights W]``: per image a JSON file and a picture.

``--model retinaface`` (default) runs a retina checkpoint or biubug6 state dict; ``--model mtcnn`` runs MTCNN
(:mod:`retina.models.mtcnn`) from a folder holding facenet-pytorch's ``pnet.pt``, ``rnet.pt`` and ``onet.pt``.
Both write the same JSON layout (boxes, scores, landmarks, settings).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from retina.commands.args import add_limits, default_file, device, fraction, iou_threshold, limits, output_dir
from retina.config import PRESETS, PostCfg
from retina.errors import RetinaError
from retina.images import IMAGE_SUFFIXES, is_image_file, read_image
from retina.protocols import PROTOCOLS
from retina.results import write_bytes, write_json
from retina.weights import DEFAULT_WEIGHTS

if TYPE_CHECKING:
    from retina.api import Detections

MODELS = ("retinaface", "mtcnn")
# RetinaFace-only flags and the values they take when not given (None marks "not given").
RETINAFACE_DEFAULTS = {"preset": None, "protocol": "original", "nms_iou": 0.4}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders (searched recursively)")
    p.add_argument("--model", choices=MODELS, default="retinaface", help="detector (default: retinaface)")
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="retinaface: retina checkpoint, biubug6 state dict or .onnx export (default: the committed checkpoint, "
        "trained on synthetic data); mtcnn (required): a folder holding pnet.pt, rnet.pt and onet.pt "
        "(facenet-pytorch's data/)",
    )
    p.add_argument(
        "--preset", default=None, choices=sorted(PRESETS), help="retinaface only: architecture the weights must match"
    )
    p.add_argument(
        "--protocol",
        default=None,
        choices=sorted(PROTOCOLS),
        help="retinaface only: test-time protocol (default: original)",
    )
    p.add_argument(
        "--score-threshold",
        type=fraction,
        default=0.5,
        help="keep faces scoring above this, in [0, 1] (mtcnn: applied after O-Net's own 0.7)",
    )
    p.add_argument(
        "--nms-iou",
        type=iou_threshold,
        default=None,
        help="retinaface only: NMS IoU threshold, in (0, 1] (default: 0.4)",
    )
    add_limits(p)
    p.add_argument("--device", type=device, default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--out", required=True, type=output_dir, help="output folder")


def collect_images(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded (sorted, recursive) to their image files (``IMAGE_SUFFIXES``, any case)."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if is_image_file(p))
            if not found:
                suffixes = " ".join(sorted(IMAGE_SUFFIXES))
                raise RetinaError(f"no image files ({suffixes}) in folder {item}")
            out += found
        elif item.is_file():
            out.append(item)
        else:
            raise RetinaError(f"no such file or folder: {item}")
    stems = [p.stem for p in out]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise RetinaError(f"several inputs share a file stem, their outputs would collide: {clashes[:5]}")
    return out


def draw(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A copy of ``image`` with boxes, scores and the five landmarks drawn."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 600))
    colours = [(0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0)]
    for box, score, points in zip(boxes, scores, landmarks, strict=True):
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        cv2.putText(
            canvas,
            f"{score:.2f}",
            (x1, max(0, y1 - 3)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            (255, 255, 255),
            thickness,
        )
        for (x, y), colour in zip(points, colours, strict=True):
            cv2.circle(canvas, (round(x), round(y)), thickness + 1, colour, -1)
    return canvas


Detect = Callable[[np.ndarray], "Detections"]


def retinaface(args: argparse.Namespace) -> tuple[Detect, dict[str, Any]]:
    """The RetinaFace detector of ``args`` and the settings recorded with its results."""
    from retina.api import Detector  # torch import only when the command runs

    for name, default in RETINAFACE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.weights = default_file(args.weights, DEFAULT_WEIGHTS)
    post = limits(args, PostCfg())
    detector = Detector.from_file(args.weights, args.preset, args.device, protocol=args.protocol, post=post)
    settings = {
        "weights": str(args.weights),
        "model": detector.cfg.name,
        "protocol": args.protocol,
        "score_threshold": args.score_threshold,
        "nms_iou": args.nms_iou,
        "top_k": post.pre_nms_top_k,
        "max_detections": post.max_detections,
    }
    return lambda image: detector(image, score_threshold=args.score_threshold, nms_iou=args.nms_iou), settings


def check_mtcnn_flags(args: argparse.Namespace) -> None:
    """RetinaFace-only flags and a missing ``--weights`` are errors with ``--model mtcnn``."""
    given = ["--" + name.replace("_", "-") for name in RETINAFACE_DEFAULTS if getattr(args, name) is not None]
    given += [
        flag for flag, name in (("--top-k", "top_k"), ("--max-detections", "max_detections")) if hasattr(args, name)
    ]
    if given:
        raise RetinaError(f"{', '.join(given)}: RetinaFace options, they do not apply to --model mtcnn")
    if args.weights is None:
        raise RetinaError("--model mtcnn needs --weights DIR, a folder holding pnet.pt, rnet.pt and onet.pt")


def mtcnn(args: argparse.Namespace) -> tuple[Detect, dict[str, Any]]:
    """The MTCNN detector of ``args`` (BGR images in) and the settings recorded with its results."""
    from retina.api import Detections
    from retina.models.mtcnn import MtcnnCfg, load_mtcnn

    cfg = MtcnnCfg(channels="bgr")
    model = load_mtcnn(args.weights, cfg, device=args.device)

    def detect(image: np.ndarray) -> Detections:
        faces = model(image)
        keep = faces.probs > args.score_threshold  # O-Net's threshold (0.7) applies first
        return Detections(faces.boxes[keep], faces.probs[keep], faces.landmarks[keep])

    settings = {
        "weights": str(args.weights),
        "model": "mtcnn",
        "score_threshold": args.score_threshold,
        "min_face_size": cfg.min_face_size,
        "factor": cfg.factor,
        "thresholds": list(cfg.thresholds),
    }
    return detect, settings


def run(args: argparse.Namespace) -> int:
    if args.model == "mtcnn":
        check_mtcnn_flags(args)
    paths = collect_images(args.inputs)
    detect, settings = mtcnn(args) if args.model == "mtcnn" else retinaface(args)
    failed = 0
    for image_path in paths:
        try:
            image = read_image(image_path)
        except RetinaError as exc:  # keep going: one bad file must not cost the others' results
            print(f"warning: {exc}", file=sys.stderr)
            failed += 1
            continue
        dets = detect(image)
        record = {
            "image": str(image_path),
            "image_size": [int(image.shape[1]), int(image.shape[0])],
            **dets.to_dict(),
            "settings": settings,
        }
        write_json(args.out / f"{image_path.stem}.json", record)
        ok, encoded = cv2.imencode(".jpg", draw(image, dets.boxes, dets.scores, dets.landmarks))
        if not ok:
            raise RetinaError(f"could not encode the annotated picture for {image_path}")
        write_bytes(args.out / f"{image_path.stem}.jpg", encoded.tobytes())
        print(f"{image_path}: {len(dets)} faces")
    print(f"wrote {len(paths) - failed} results to {args.out}")
    if failed:
        raise RetinaError(f"{failed} of {len(paths)} images could not be read (see the warnings above)")
    return 0
