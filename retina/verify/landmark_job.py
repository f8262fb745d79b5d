"""Landmark accuracy of RetinaFace against MTCNN (paper section 4.5) on a split with true landmarks.

    python -m retina.verify.landmark_job                                 # nox -s landmarks: SynthFace val
    python -m retina.verify.landmark_job --mtcnn-weights DIR             # with MTCNN (pnet.pt, rnet.pt, onet.pt)
    python -m retina.verify.landmark_job --data-root SPLIT --weights W   # a split in the RetinaFace label layout

Every true face with five labelled landmarks and a box at least ``--min-face`` pixels tall (MTCNN's default
minimum face, 20) is matched one-to-one to each method's detections (IoU >= ``--match-iou``; the methods draw
boxes of different shapes, so the match only says which detection is that face); its NME is computed for
every method that found it. The headline compares the methods on the faces that all of them found, so that
a method is not flattered by missing the hard faces; each method's own coverage is reported beside it.
Writes ``landmarks.json`` (record with provenance), ``table.md`` and ``ced.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from retina.data.dataset import SplitPaths, content_id
from retina.errors import RetinaError
from retina.eval.landmarks import CED_GRID, FAILURE_NME, Summary, ced, match, nme
from retina.results import REPO_ROOT, file_sha256, provenance, write_bytes, write_json, write_text
from retina.weights import DEFAULT_WEIGHTS

# arXiv 1905.00641 section 4.5 (facts quoted from the paper; other data).
PAPER = {
    "AFLW 5-point NME (%)": {"MTCNN": 2.72, "RetinaFace": 2.21},
    "WIDER FACE val failure rate at NME > 10% (%)": {"MTCNN": 26.31, "RetinaFace": 9.37},
}
Method = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # BGR image -> (boxes xyxy (M, 4), landmarks (M, 5, 2))


def retinaface_method(weights: Path, score_threshold: float) -> tuple[Method, dict[str, Any]]:
    from retina.api import Detector

    detector = Detector.from_checkpoint(weights)

    def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dets = detector(image, protocol="original", score_threshold=score_threshold)
        return dets.boxes, dets.landmarks

    info = {"checkpoint": weights.name, "sha256": file_sha256(weights), "score_threshold": score_threshold}
    return detect, info


def mtcnn_method(folder: Path) -> tuple[Method, dict[str, Any]]:
    from retina.models.mtcnn import WEIGHT_FILES, MtcnnCfg, load_mtcnn

    mtcnn = load_mtcnn(folder, MtcnnCfg(channels="bgr"))

    def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        faces = mtcnn.detect(image)
        return faces.boxes, faces.landmarks

    weights = {name: file_sha256(folder / name) for name in WEIGHT_FILES}
    info = {"weights": weights, "settings": "facenet-pytorch defaults"}
    return detect, info


def eligible(boxes_xywh: np.ndarray, flags: np.ndarray, min_face: float) -> np.ndarray:
    """(N,) faces with all five landmarks labelled and a box at least ``min_face`` pixels tall."""
    return np.all(flags >= 0, axis=1) & (boxes_xywh[:, 3] >= min_face) & (boxes_xywh[:, 2] > 0)


def measure(split: Path, methods: dict[str, Method], min_face: float, match_iou: float,
            max_images: int | None = None, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Per method: (N_faces,) NME of the eligible faces (NaN where the method missed the face), seconds."""
    from tqdm import tqdm

    from retina.data.widerface import read_retinaface_labels
    from retina.images import read_image

    labels = split / "label.txt"
    if not labels.is_file():
        raise RetinaError(f"{split}: no label.txt with landmarks (the RetinaFace label layout)")
    entries = read_retinaface_labels(labels)[:max_images]
    errors: dict[str, list[np.ndarray]] = {name: [] for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    sizes = []
    for entry in tqdm(entries, desc="images", disable=not progress):
        keep = eligible(entry.boxes, entry.landmark_flags, min_face)
        boxes, marks = entry.boxes[keep], entry.landmarks[keep]
        true_xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
        sizes.append(np.sqrt(boxes[:, 2] * boxes[:, 3]))
        image = read_image(split / "images" / entry.path)
        for name, method in methods.items():
            t0 = time.perf_counter()
            det_boxes, det_marks = method(image)
            seconds[name] += time.perf_counter() - t0
            index = match(true_xyxy, det_boxes, match_iou)
            found = index >= 0
            e = np.full(len(boxes), np.nan)
            if found.any():
                e[found] = nme(det_marks[index[found]], marks[found], boxes[found])
            errors[name].append(e)
    return {
        "images": len(entries),
        "nme": {name: np.concatenate(v) if v else np.zeros(0) for name, v in errors.items()},
        "face_px": np.concatenate(sizes) if sizes else np.zeros(0),
        "seconds": seconds,
    }


def summarise(measured: dict[str, Any]) -> dict[str, Any]:
    """Common-face and own-face summaries and CED curves per method (NME in fractions)."""
    nmes = measured["nme"]
    n = len(measured["face_px"])
    common = np.all([~np.isnan(v) for v in nmes.values()], axis=0) if nmes else np.zeros(0, bool)
    out: dict[str, Any] = {"faces_eligible": n, "faces_common": int(common.sum()), "methods": {}}
    for name, v in nmes.items():
        found = ~np.isnan(v)
        out["methods"][name] = {
            "found": int(found.sum()),
            "found_fraction": float(found.mean()) if n else float("nan"),
            "common": vars(Summary.of(v[common])),
            "own": vars(Summary.of(v[found])),
            "ced_common": [round(float(x), 6) for x in ced(v[common])],
            "seconds_per_image": measured["seconds"][name] / max(1, measured["images"]),
        }
    return out


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.2f}"


def table(summary: dict[str, Any], data: str) -> str:
    """The Markdown table: per method, faces found, NME and failure rate on the common faces and on its own."""
    header = ["method", "found / eligible", "mean NME % (common)", "median NME % (common)",
              f"failure rate % (NME > {100 * FAILURE_NME:g}%, common)", "AUC@10% (common)", "mean NME % (own faces)",
              "s / image"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in summary["methods"].items():
        c, own = m["common"], m["own"]
        lines.append(f"| {name} | {m['found']} / {summary['faces_eligible']} | {_pct(c['mean_nme'])} | "
                     f"{_pct(c['median_nme'])} | {_pct(c['failure_rate'])} | {c['auc_10']:.3f} | "
                     f"{_pct(own['mean_nme'])} | {m['seconds_per_image']:.2f} |")  # fmt: skip
    quoted = "; ".join(f"{k}: " + ", ".join(f"{m} {v}" for m, v in row.items()) for k, row in PAPER.items())
    paper = ["", f"Common faces: {summary['faces_common']} found by every method. Data: {data}.", "",
             f"Paper (arXiv 1905.00641 section 4.5, other data, for reference): {quoted}."]  # fmt: skip
    return "\n".join(lines + paper) + "\n"


def ced_png(record: dict[str, Any]) -> bytes:
    """The CED curves of every method on the common faces (fraction of faces against NME), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from retina.eval.plots import figure_png

    fig = Figure(figsize=(6.0, 4.5), dpi=110)
    ax = fig.add_subplot()
    grid = 100 * np.asarray(record["ced_grid"])
    for name, m in record["summary"]["methods"].items():
        ax.plot(grid, m["ced_common"], linewidth=2, label=f"{name}: mean NME {_pct(m['common']['mean_nme'])}%")
    ax.axvline(100 * FAILURE_NME, color="grey", linestyle=":", label="failure threshold")
    ax.set(xlabel="NME (% of sqrt(w h) of the true box)", ylabel="fraction of faces", ylim=(0, 1.01), xlim=(0, 20))
    ax.set_title(f"CED, {record['summary']['faces_common']} faces found by every method; {record['data']}", fontsize=8)
    ax.grid(True, linestyle=":")
    ax.legend(loc="lower right", fontsize=8)
    return figure_png(fig)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.data_root is None:
        from retina.synth.splits import default_split

        split, data = default_split("val"), "SynthFace val (synthetic data, true landmarks)"
    else:
        split, data = args.data_root, f"RetinaFace-layout split {args.data_root}"
    weights = args.weights or DEFAULT_WEIGHTS
    methods, info = {}, {}
    methods["RetinaFace"], info["RetinaFace"] = retinaface_method(weights, args.score_threshold)
    if args.mtcnn_weights is not None:
        methods["MTCNN"], info["MTCNN"] = mtcnn_method(args.mtcnn_weights)
    measured = measure(split, methods, args.min_face, args.match_iou, args.max_images, not args.no_progress)
    summary = summarise(measured)
    settings = {"min_face": args.min_face, "match_iou": args.match_iou, "max_images": args.max_images}
    record = {
        "experiment": "landmark accuracy (paper section 4.5)",
        "data": data,
        "synthetic": args.data_root is None,
        "images": measured["images"],
        "settings": settings,
        "methods_info": info,
        "mtcnn": "run" if "MTCNN" in methods else "not run: pass --mtcnn-weights DIR (facenet-pytorch 2.6.0 data/)",
        "ced_grid": [float(x) for x in CED_GRID],
        "summary": summary,
        "paper": PAPER,
        "table": table(summary, data),
        "data_content": content_id(SplitPaths.from_root(split)),
        "provenance": provenance(split=str(split)),
    }
    return record


def write(record: dict[str, Any], out: Path, publish: bool) -> list[Path]:
    paths = [write_json(out / "landmarks.json", record), write_text(out / "table.md", record["table"])]
    paths.append(write_bytes(out / "ced.png", ced_png(record)))
    if publish:
        paths.append(write_json(REPO_ROOT / "reports" / "records" / "landmarks" / "landmarks.json", record))
    return paths
