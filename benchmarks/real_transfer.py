"""Synthetic-to-real transfer: checkpoints evaluated on real WIDER FACE images (``nox -s real_transfer``).

    python benchmarks/real_transfer.py                         # the committed checkpoint (+ biubug6's real weights
                                                               # when ../shared is present) on the development set
    python benchmarks/real_transfer.py --weights A.pth B.pth --names a b
    python benchmarks/real_transfer.py --wider-root WIDER      # a user's full WIDER FACE val instead
    python benchmarks/real_transfer.py --publish               # also -> reports/records/real_transfer/

The development set: 119 real WIDER FACE val images of ``<dev-root>/val_resized416/`` restored to their original
size with ``original_sizes_dev.json`` and the official ground truth cut down to them (built once into the cache,
never into the repository; :mod:`retina.eval.transfer`). Per checkpoint the record holds AP easy / medium / hard
(official protocol, matlab arithmetic), the hard mAP 0.5:0.95, PR curves (every 10th threshold), recall per
face-height bin and false positives per image at score 0.5, the SynthFace val AP beside it (synthetic data), and
on the sample photos the detections at score >= 0.5 that match no face found by either reference detector
(biubug6's code with its real weights, facenet-pytorch's MTCNN), and whether the astronaut's face is found.
Drawn detections on the sample photos go to ``<out>/gallery/`` (local only: the photos are not ours to publish).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.publishing import add_allow_dirty, require_clean
from retina.api import Detector
from retina.config import PostCfg
from retina.data.widerface import load_ground_truth, read_predictions
from retina.errors import RetinaError
from retina.eval.transfer import OPERATING_SCORE, _iou, development_set, operating_point, summary
from retina.evaluate import EvalSplit, evaluate_detector
from retina.results import REPO_ROOT, file_id, provenance, write_bytes, write_json
from retina.synth.splits import default_split
from retina.weights import DEFAULT_WEIGHTS

SHARED = REPO_ROOT.parent / "shared" / "data"
BIUBUG6 = SHARED / "weights" / "retinaface_mobilenet0.25_Final.pth"
ASTRONAUT = "scikit-image_astronaut.png"
CURVE_STEP = 10  # every 10th of the 1000 thresholds in the record


def curves(result: Any) -> dict[str, Any]:
    return {
        s: {"precision": np.nan_to_num(c.precision[::CURVE_STEP]).round(5).tolist(),
            "recall": c.recall[::CURVE_STEP].round(5).tolist()}
        for s, c in result.curves.items()
    }  # fmt: skip


def evaluate_on(detector: Detector, split: EvalSplit, protocol: str, out: Path) -> dict[str, Any]:
    """Official evaluation plus the operating point at score 0.5, predictions under ``out``."""
    result, _ = evaluate_detector(detector, split, out, protocol, progress=False)
    gt = load_ground_truth(split.gt)
    preds = read_predictions(out / "predictions", gt).detections
    return {**summary(result), "curves": curves(result), "operating_point": operating_point(preds, gt)}


def reference_faces(name: str) -> list[np.ndarray]:
    """Faces (x y w h) found by the reference detectors on a sample photo: biubug6 at >= 0.5 and MTCNN."""
    faces = []
    ref = json.loads((SHARED / "reference" / "biubug6_mnet0.25_samples.json").read_text())["images"]
    entry = ref.get(f"samples/{name}", {"boxes_xyxy": [], "scores": []})
    faces += [b for b, s in zip(entry["boxes_xyxy"], entry["scores"], strict=True) if s >= OPERATING_SCORE]
    mtcnn = json.loads((SHARED / "reference" / "facenet-pytorch_mtcnn_samples.json").read_text())["images"]
    faces += mtcnn.get(name, {"boxes": []})["boxes"]
    boxes = np.array(faces, float).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)


def sample_photos(detector: Detector, samples: Path, gallery: Path | None) -> dict[str, Any]:
    """Detections at score >= 0.5 on each sample photo: unmatched ones (IoU < 0.3 to every reference face)."""
    out = {}
    for path in sorted(p for p in samples.iterdir() if p.suffix.lower() in (".jpg", ".png")):
        image = cv2.imread(str(path))
        dets = detector(image, score_threshold=OPERATING_SCORE)
        refs = reference_faces(path.name)
        xywh = np.concatenate([dets.boxes[:, :2], dets.boxes[:, 2:] - dets.boxes[:, :2]], 1)
        overlap = _iou(xywh, refs) if len(refs) and len(xywh) else np.zeros((len(xywh), len(refs)))
        unmatched = int((overlap.max(1, initial=0.0) < 0.3).sum()) if len(xywh) else 0
        found = overlap.max(0, initial=0.0) >= 0.5 if len(refs) else np.zeros(0, bool)
        out[path.name] = {"detections": len(dets), "unmatched": unmatched,
                          "reference_faces": len(refs), "reference_faces_found": int(found.sum())}  # fmt: skip
        if path.name == ASTRONAUT:
            out[path.name]["astronaut_face_found"] = bool(found.any())
        if gallery is not None:
            drawn = image.copy()
            for (x1, y1, x2, y2), s in zip(dets.boxes.round().astype(int), dets.scores, strict=True):
                cv2.rectangle(drawn, (x1, y1), (x2, y2), (0, 255, 0), 2)
                cv2.putText(drawn, f"{s:.2f}", (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 0), 1)
            write_bytes(gallery / f"{path.stem}.jpg", cv2.imencode(".jpg", drawn)[1].tobytes())
    return out


def checkpoint_row(name: str, weights: Path, split: EvalSplit, args: argparse.Namespace, work: Path) -> dict:
    detector = Detector.from_checkpoint(weights, post=PostCfg())
    row: dict[str, Any] = {"name": name, "weights": file_id(weights), "model": detector.cfg.name}
    print(f"{name}: real images ...", flush=True)
    row["real"] = evaluate_on(detector, split, args.protocol, work / name / "real")
    if not args.no_synth:
        print(f"{name}: SynthFace val (synthetic data) ...", flush=True)
        synth = EvalSplit.from_root(default_split("val"), label="SynthFace val (synthetic data)")
        row["synthface_val"] = evaluate_on(detector, synth, args.protocol, work / name / "synth")
    if args.samples.is_dir():
        gallery = args.out / "gallery" / name
        row["sample_photos"] = sample_photos(detector, args.samples, gallery)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = "| checkpoint | SynthFace val easy / medium / hard | real easy | medium | hard | hard mAP | FP/img @0.5 |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r.get("synthface_val")
        synth = " / ".join(f"{s[k]:.3f}" for k in ("easy", "medium", "hard")) if s else "-"
        real = r["real"]
        fp = real["operating_point"]["false_positives_per_image"]
        aps = " | ".join(f"{real[k]:.3f}" for k in ("easy", "medium", "hard", "hard_map_50_95"))
        lines.append(f"| {r['name']} | {synth} | {aps} | {fp:.2f} |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, nargs="+", help="checkpoints (default: committed + biubug6 if present)")
    p.add_argument("--names", nargs="+", help="one name per checkpoint (default: file stems)")
    p.add_argument("--dev-root", type=Path, default=SHARED / "widerface", help="development material (../shared)")
    p.add_argument("--wider-root", type=Path, help="a full WIDER FACE val (WIDER_val/images + ground_truth) instead")
    p.add_argument("--samples", type=Path, default=SHARED / "samples", help="sample photos (skipped if absent)")
    p.add_argument("--protocol", default="original", help="test protocol (default original)")
    p.add_argument("--no-synth", action="store_true", help="skip the SynthFace val column")
    p.add_argument("--out", type=Path, default=Path("results") / "real_transfer")
    p.add_argument("--publish", action="store_true", help="also write the record into reports/records/real_transfer/")
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.publish:
        require_clean(p, "benchmarks/real_transfer.py --publish", args.allow_dirty)
    if args.weights is None:
        args.weights = [DEFAULT_WEIGHTS, *([BIUBUG6] if BIUBUG6.is_file() else [])]
        args.names = args.names or [
            "committed SynthFace checkpoint",
            *(["biubug6 (real WIDER FACE)"] * BIUBUG6.is_file()),
        ]
    args.names = args.names or [w.stem for w in args.weights]
    if len(args.names) != len(args.weights):
        p.error("--names needs one name per --weights file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    prov = provenance(load_avg_before=list(os.getloadavg()))
    try:
        split = (
            EvalSplit.from_root(args.wider_root, label="WIDER FACE val")
            if args.wider_root
            else development_set(args.dev_root)
        )
        with tempfile.TemporaryDirectory() as tmp:
            rows = [checkpoint_row(n, w, split, args, Path(tmp)) for n, w in zip(args.names, args.weights, strict=True)]
    except RetinaError as exc:
        print(f"real_transfer: error: {exc}", file=sys.stderr)
        return 2
    record = {
        "benchmark": "synthetic-to-real transfer",
        "data": split.label,
        "images": len(load_ground_truth(split.gt).images),
        "test_protocol": args.protocol,
        "arithmetic": "matlab",
        "operating_score": OPERATING_SCORE,
        "rows": rows,
        "table": table(rows),
        "provenance": {**prov, "load_avg_after": list(os.getloadavg())},
    }
    paths = [write_json(args.out / "real_transfer.json", record)]
    if args.publish:
        paths.append(write_json(REPO_ROOT / "reports" / "records" / "real_transfer" / "real_transfer.json", record))
    print(record["table"])
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
