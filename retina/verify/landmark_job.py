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
from retina.eval.landmarks import (
    CED_GRID,
    FAILURE_NME,
    Summary,
    binned_means,
    ced,
    inter_ocular,
    layout_in_boxes,
    match,
    nme,
    normalised_layout,
)
from retina.results import REPO_ROOT, file_sha256, provenance, write_bytes, write_json, write_text
from retina.weights import DEFAULT_WEIGHTS

# arXiv 1905.00641 section 4.5 (facts quoted from the paper; other data).
PAPER = {
    "AFLW 5-point NME (%)": {"MTCNN": 2.72, "RetinaFace": 2.21},
    "WIDER FACE val failure rate at NME > 10% (%)": {"MTCNN": 26.31, "RetinaFace": 9.37},
}
CONSTANT = "constant layout"  # the split's mean landmark layout (in box units) placed in each true box
YAW_EDGES = (0.0, 15.0, 30.0, 45.0, 60.0, 91.0)  # |yaw| bins, degrees (SynthFace's meta.jsonl)
SIZE_EDGES = (0.0, 40.0, 80.0, 160.0, float("inf"))  # sqrt(w h) bins of the true box, pixels
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
    yaws = _yaws(split, len(entries))
    predicted: dict[str, list[np.ndarray]] = {name: [] for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    truth, boxes_all, yaw_all = [], [], []
    for k, entry in enumerate(tqdm(entries, desc="images", disable=not progress)):
        keep = eligible(entry.boxes, entry.landmark_flags, min_face)
        boxes, marks = entry.boxes[keep], entry.landmarks[keep]
        truth.append(marks)
        boxes_all.append(boxes)
        yaw_all.append(yaws[k][keep] if yaws is not None else np.full(len(boxes), np.nan))
        true_xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
        image = read_image(split / "images" / entry.path)
        for name, method in methods.items():
            t0 = time.perf_counter()
            det_boxes, det_marks = method(image)
            seconds[name] += time.perf_counter() - t0
            index = match(true_xyxy, det_boxes, match_iou)
            pred = np.full((len(boxes), 5, 2), np.nan)
            pred[index >= 0] = det_marks[index[index >= 0]]
            predicted[name].append(pred)
    true = np.concatenate(truth) if truth else np.zeros((0, 5, 2))
    boxes = np.concatenate(boxes_all) if boxes_all else np.zeros((0, 4))
    preds = {name: np.concatenate(v) if v else np.zeros((0, 5, 2)) for name, v in predicted.items()}
    if len(true):
        preds[CONSTANT] = layout_in_boxes(normalised_layout(true, boxes).mean(0), boxes)
    errors = {name: _nmes(p, true, boxes) for name, p in preds.items()}
    return {
        "images": len(entries),
        "nme": errors,
        "face_px": np.sqrt(boxes[:, 2] * boxes[:, 3]),
        "abs_yaw": np.abs(np.concatenate(yaw_all)) if yaw_all else np.zeros(0),
        "iod": {name: inter_ocular(p, boxes) for name, p in {**preds, "true": true}.items()},
        "seconds": {**seconds, CONSTANT: 0.0},
    }


def _nmes(pred: np.ndarray, true: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) NME per face, NaN where the method found no detection (its prediction is NaN)."""
    out = np.full(len(true), np.nan)
    found = ~np.isnan(pred).any(axis=(1, 2))
    if found.any():
        out[found] = nme(pred[found], true[found], boxes[found])
    return out


def _yaws(split: Path, n: int) -> list[np.ndarray] | None:
    """Per image (label order) the faces' yaw in degrees, from a SynthFace ``meta.jsonl``; None without one."""
    if not (split / "meta.jsonl").is_file():
        return None
    from retina.synth.splits import read_meta

    return [np.array([f["pose_deg"]["yaw"] for f in m["faces"]], float) for m in read_meta(split)[:n]]


def summarise(measured: dict[str, Any]) -> dict[str, Any]:
    """Common-face and own-face summaries and CED curves per method (NME in fractions)."""
    nmes = measured["nme"]
    n = len(measured["face_px"])
    common = np.all([~np.isnan(v) for v in nmes.values()], axis=0) if nmes else np.zeros(0, bool)
    out: dict[str, Any] = {"faces_eligible": n, "faces_common": int(common.sum()), "methods": {}}
    out["breakdown"] = breakdown(measured, common)
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


def breakdown(measured: dict[str, Any], common: np.ndarray) -> dict[str, Any]:
    """On the common faces: mean NME per method by |yaw| (when known) and by face size, and the mean predicted
    and true inter-ocular distance (in sqrt(w h) units) by |yaw| with their correlation over faces."""
    nmes, iod = measured["nme"], measured["iod"]
    out: dict[str, Any] = {
        "nme_by_size": {
            name: binned_means(v[common], measured["face_px"][common], SIZE_EDGES) for name, v in nmes.items()
        }
    }
    yaw = measured["abs_yaw"][common]
    if len(yaw) and not np.isnan(yaw).all():
        out["nme_by_abs_yaw"] = {name: binned_means(v[common], yaw, YAW_EDGES) for name, v in nmes.items()}
        out["iod_by_abs_yaw"] = {name: binned_means(v[common], yaw, YAW_EDGES) for name, v in iod.items()}
    true = iod["true"][common]
    out["iod_correlation"] = {
        name: float(np.corrcoef(v[common], true)[0, 1]) if common.sum() > 2 else None
        for name, v in iod.items() if name not in ("true", CONSTANT)
    }  # fmt: skip
    return out


def breakdown_tables(summary: dict[str, Any]) -> str:
    """Markdown: NME by |yaw| and by face size, predicted vs true inter-ocular distance by |yaw|."""
    b = summary["breakdown"]
    parts = []
    for key, title in (
        ("nme_by_abs_yaw", "mean NME % by |yaw| (degrees)"),
        ("nme_by_size", "mean NME % by sqrt(w h) (px)"),
    ):
        if key not in b:
            continue
        names = list(b[key])
        bins = [e["bin"] for e in b[key][names[0]]]
        rows = [[name, *(_cell(e) for e in b[key][name])] for name in names]
        faces = [str(e["faces"]) for e in b[key][names[0]]]
        parts.append(_md(["method (" + title + ")", *bins], [*rows, ["faces", *faces]]))
    if "iod_by_abs_yaw" in b:
        names = list(b["iod_by_abs_yaw"])
        bins = [e["bin"] for e in b["iod_by_abs_yaw"][names[0]]]
        rows = [[name, *(f"{e['mean']:.3f}" if e["mean"] is not None else "–" for e in b["iod_by_abs_yaw"][name])]
                for name in names]  # fmt: skip
        corr = ", ".join(f"{k} {v:.2f}" for k, v in b["iod_correlation"].items() if v is not None)
        parts.append(_md(["inter-ocular distance / sqrt(w h), by |yaw|", *bins], rows)
                     + f"\nCorrelation of predicted with true inter-ocular distance over faces: {corr}.\n")  # fmt: skip
    return "\n".join(parts)


def _cell(entry: dict[str, Any]) -> str:
    return "–" if entry["mean"] is None else f"{100 * entry['mean']:.2f}"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


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
    note = (f"{CONSTANT}: the split's mean landmark layout (in box units) placed in the true box: a baseline that "
            "knows the box and nothing of the face.")  # fmt: skip
    quoted = "; ".join(f"{k}: " + ", ".join(f"{m} {v}" for m, v in row.items()) for k, row in PAPER.items())
    paper = ["", f"Common faces: {summary['faces_common']} found by every method. Data: {data}. {note}", "",
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
        "table": table(summary, data) + "\n" + breakdown_tables(summary),
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
