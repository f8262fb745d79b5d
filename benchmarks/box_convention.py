"""Where WIDER FACE puts a face box, as a WIDER-trained detector shows it on SynthFace faces.

    python benchmarks/box_convention.py [--weights W] [--preset default] [--publish]

SynthFace's v2 face box is the tight box of the rendered face zone (chin to mid forehead). WIDER FACE's
annotators drew their boxes by habit; a detector trained on WIDER FACE (biubug6's released MobileNet-0.25,
from ``../shared``) reproduces that habit. On SynthFace val faces at least 40 px tall, less than 10% occluded,
within 20 degrees of frontal, its best-matching box (IoU >= 0.3, score >= 0.3) is compared with the SynthFace
box: median centre offset and size ratio, as fractions of the SynthFace box. The record backs
``retina.synth.config.WIDER_BOX_RAISE`` (the top and bottom raise of SynthCfg.box_convention "wider").
No real image is used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.publishing import add_allow_dirty, require_clean
from retina.api import Detector
from retina.eval.transfer import _iou
from retina.results import REPO_ROOT, file_id, provenance, write_json
from retina.synth.config import WIDER_BOX_RAISE
from retina.synth.splits import default_split, read_meta

WEIGHTS = REPO_ROOT.parent / "shared" / "data" / "weights" / "retinaface_mobilenet0.25_Final.pth"


def offsets(detector: Detector, split: Path, max_images: int) -> np.ndarray:
    """(N, 4): per matched face (dx, dy, w ratio, h ratio) of the detector's box against the SynthFace box."""
    rows = []
    for meta in read_meta(split)[:max_images]:
        faces = [f for f in meta["faces"] if f["box"][3] >= 40 and f["occlusion"] < 0.1
                 and abs(f["pose_deg"]["yaw"]) < 20]  # fmt: skip
        if not faces:
            continue
        dets = detector(cv2.imread(str(split / "images" / meta["path"])), score_threshold=0.3)
        if not len(dets):
            continue
        pred = np.concatenate([dets.boxes[:, :2], dets.boxes[:, 2:] - dets.boxes[:, :2]], 1)
        truth = np.array([f["box"] for f in faces], float)
        overlap = _iou(truth, pred)
        for i, j in enumerate(overlap.argmax(1)):
            if overlap[i, j] >= 0.3:
                g, p = truth[i], pred[j]
                rows.append([(p[0] + p[2] / 2 - g[0] - g[2] / 2) / g[2], (p[1] + p[3] / 2 - g[1] - g[3] / 2) / g[3],
                             p[2] / g[2], p[3] / g[3]])  # fmt: skip
    return np.array(rows).reshape(-1, 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=WEIGHTS, help="a WIDER-trained checkpoint (default biubug6's)")
    p.add_argument("--preset", default="default", help="SynthFace preset of the val split (its box convention)")
    p.add_argument("--max-images", type=int, default=200)
    p.add_argument("--publish", action="store_true")
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.publish:
        require_clean(p, "benchmarks/box_convention.py --publish", args.allow_dirty)
    if not args.weights.is_file():
        print(f"box_convention: no WIDER-trained weights at {args.weights} (pass --weights)", file=sys.stderr)
        return 2
    split = default_split("val", args.preset)
    rel = offsets(Detector.from_checkpoint(args.weights), split, args.max_images)
    dx, dy, w, h = np.median(rel, 0)
    record = {
        "benchmark": "WIDER FACE box habit on SynthFace faces",
        "data": f"SynthFace val, preset {args.preset} (synthetic data)",
        "weights": file_id(args.weights),
        "faces": len(rel),
        "median": {"dx": dx, "dy": dy, "w_ratio": w, "h_ratio": h},
        "implied_raise": {"top": -dy + (h - 1) / 2, "bottom": -dy - (h - 1) / 2},
        "used": {"top": WIDER_BOX_RAISE[0], "bottom": WIDER_BOX_RAISE[1]},
        "provenance": provenance(),
    }
    out = REPO_ROOT / ("reports/records" if args.publish else "results") / "box_convention" / "box_convention.json"
    write_json(out, record)
    print(f"{len(rel)} faces: centre {dy:+.3f} h, height x{h:.3f} -> raise top {record['implied_raise']['top']:.3f}, "
          f"bottom {record['implied_raise']['bottom']:.3f} of the height; wrote {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
