"""``retina export-onnx --weights W --out model.onnx``: the inference graph for ONNX Runtime.

Dynamic batch, height and width; BatchNorm folded; heads merged into one ``packed`` (B, A, 16) output; the
architecture config in the file's metadata (see ``retina.onnx``). Load it with ``Detector.from_onnx``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="retina checkpoint or biubug6 state dict")
    p.add_argument("--preset", default=None, help="architecture the weights must match (checked)")
    p.add_argument("--out", required=True, type=Path, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    p.add_argument(
        "--check-image",
        default=None,
        metavar="IMAGE",
        help="also run IMAGE through PyTorch and ONNX Runtime and report the largest box difference",
    )


def run(args: argparse.Namespace) -> int:
    from retina.api import Detector
    from retina.build import build_detector
    from retina.checkpoint import load_weights, read_checkpoint
    from retina.onnx import export_onnx

    cfg, state, _ = read_checkpoint(args.weights, args.preset)
    model = build_detector(cfg)
    load_weights(model, state, str(args.weights))
    path = export_onnx(model, cfg, args.out, opset=args.opset)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, preset {cfg.name}, opset {args.opset})")
    if args.check_image is not None:
        ours = Detector(model, cfg)(args.check_image)
        theirs = Detector.from_onnx(path)(args.check_image)
        if len(ours) != len(theirs):
            print(f"check: {len(ours)} detections with PyTorch but {len(theirs)} with ONNX Runtime")
            return 1
        diff = float(abs(ours.boxes - theirs.boxes).max()) if len(ours) else 0.0
        print(f"check: {len(ours)} detections, largest box difference {diff:.2e} px")
    return 0
