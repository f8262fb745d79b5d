"""``retina export-onnx --weights W --out model.onnx``: the inference graph for ONNX Runtime.

Dynamic batch, height and width; BatchNorm folded; heads merged into one ``packed`` (B, A, 16) output; the
architecture config in the file's metadata (see ``retina.onnx``). Load it with ``Detector.from_onnx``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from retina.commands.args import int_in_range, output_file
from retina.config import PRESETS

if TYPE_CHECKING:
    from torch import nn

    from retina.config import DetectorCfg

OPSETS = (9, 23)  # opsets the TorchScript exporter writes and ONNX Runtime runs for our graph (checked by hand)
CHECK_TOLERANCE = 1e-3  # largest raw-output difference (logits, encoded offsets) accepted by --check-image


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, type=Path, help="retina checkpoint or biubug6 state dict")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS), help="architecture the weights must match")
    p.add_argument("--out", required=True, type=output_file, help="output .onnx file")
    opsets = f"{OPSETS[0]} to {OPSETS[1]}"
    p.add_argument("--opset", type=int_in_range(*OPSETS), default=17, help=f"ONNX opset version ({opsets})")
    p.add_argument(
        "--check-image",
        default=None,
        type=Path,
        metavar="IMAGE",
        help="also run IMAGE through PyTorch and ONNX Runtime and report the largest raw-output difference",
    )


def check(model: nn.Module, cfg: DetectorCfg, onnx_path: Path, image_path: Path) -> float:
    """Largest absolute difference of the raw network outputs (PyTorch vs ONNX Runtime) on one image."""
    from retina.api import Detector
    from retina.images import read_image

    image = read_image(image_path)
    ours, theirs = Detector(model, cfg), Detector.from_onnx(onnx_path)
    a = ours.forward(ours.to_tensor([image]))
    b = theirs.forward(theirs.to_tensor([image]))
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def run(args: argparse.Namespace) -> int:
    from retina.build import build_detector
    from retina.checkpoint import load_weights, read_checkpoint
    from retina.images import read_image
    from retina.onnx import export_onnx

    if args.check_image is not None:
        read_image(args.check_image)  # a bad image fails before the export, not after
    cfg, state, _ = read_checkpoint(args.weights, args.preset)
    model = build_detector(cfg)
    load_weights(model, state, str(args.weights))
    path = export_onnx(model, cfg, args.out, opset=args.opset)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, preset {cfg.name}, opset {args.opset})")
    if args.check_image is not None:
        diff = check(model, cfg, path, args.check_image)
        verdict = "ok" if diff <= CHECK_TOLERANCE else f"FAILED (tolerance {CHECK_TOLERANCE:g})"
        print(f"check: largest raw-output difference PyTorch vs ONNX Runtime {diff:.2e}: {verdict}")
        return 0 if diff <= CHECK_TOLERANCE else 1
    return 0
