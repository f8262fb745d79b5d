"""Detections of the committed checkpoint on a few SynthFace val images, for the report's gallery.

    python benchmarks/gallery.py              # -> results/gallery/
    python benchmarks/gallery.py --publish    # -> reports/records/gallery/ (committed)

Writes the images (synthetic, re-encoded as JPEG) and ``gallery.json``: every detection scoring at least
the lowest gallery threshold (boxes x1 y1 x2 y2, scores, five landmarks, in the image's pixels), the
checkpoint, protocol and provenance. The report draws them at each threshold; nothing is detected then.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.publishing import add_allow_dirty, require_clean
from retina.api import Detector
from retina.results import REPO_ROOT, file_sha256, provenance, write_bytes, write_json
from retina.synth.splits import default_split
from retina.weights import DEFAULT_WEIGHTS

THRESHOLDS = (0.5, 0.9)
PROTOCOL = "original"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=3, help="how many val images (the first of each scene kind)")
    p.add_argument("--publish", action="store_true", help="write into reports/records/gallery/ (committed)")
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.publish:
        require_clean(p, "benchmarks/gallery.py --publish", args.allow_dirty)
    out = REPO_ROOT / ("reports/records" if args.publish else "results") / "gallery"
    val = default_split("val")
    events = sorted(d for d in (val / "images").iterdir() if d.is_dir())
    paths = [sorted(e.glob("*.jpg"))[0] for e in events][: args.images]  # one image per scene kind
    detector = Detector.from_checkpoint(DEFAULT_WEIGHTS)
    items = []
    for path in paths:
        image = cv2.imread(str(path))
        dets = detector(image, protocol=PROTOCOL, score_threshold=min(THRESHOLDS))
        _, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        write_bytes(out / path.name, jpeg.tobytes())
        items.append({"image": path.name, "source": f"{path.parent.name}/{path.name}", "detections": {
            "boxes": dets.boxes.round(2).tolist(), "scores": dets.scores.round(4).tolist(),
            "landmarks": dets.landmarks.round(2).tolist()}})  # fmt: skip
    record = {
        "data": "SynthFace val images (synthetic data)",
        "checkpoint": DEFAULT_WEIGHTS.name,
        "checkpoint_sha256": file_sha256(DEFAULT_WEIGHTS),
        "protocol": PROTOCOL,
        "thresholds": list(THRESHOLDS),
        "images": items,
        "provenance": provenance(split=str(val)),
    }
    path = write_json(out / "gallery.json", record)
    print(f"{len(items)} images -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
