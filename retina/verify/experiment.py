"""Face verification by alignment source (the paper's table 4): rows = how faces are aligned, one dataset.

    python -m retina.verify.experiment                                    # nox -s verification: SynthFace-ID
    python -m retina.verify.experiment --mtcnn-weights DIR                # with the MTCNN row
    python -m retina.verify.experiment --lfw-pairs pairs.txt --lfw-images lfw/ --onnx arcface_r100.onnx

Rows (alignment sources), each giving a 112x112 crop per image before one embedding model sees it:

- ``none``: no landmarks, a centre crop of the face box (the true box where the data has one; otherwise the
  central square of side 0.45 x the short image side, where LFW-style data centre the face);
- ``MTCNN`` (with ``--mtcnn-weights``) and ``RetinaFace``: the five landmarks of the detected face nearest
  the image centre (as verification crops are made), aligned by the similarity transform onto the ArcFace
  template; an image where the detector finds no face falls back to the ``none`` crop (counted);
- ``ground truth``: the data's true landmarks, where known (SynthFace-ID).

Each row is scored with the LFW protocol: 10-fold accuracy (threshold chosen on the other 9 folds), mean and
std over folds, TAR at FAR 1e-3 / 1e-4 and the ROC curve. Against the RetinaFace row each other row gets the
paired per-fold difference and whether it exceeds the folds' std. Writes ``verification.json`` (record),
``table.md`` and ``roc.png`` under ``--out/<dataset>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retina.errors import RetinaError
from retina.results import REPO_ROOT, file_sha256, files_sha256, provenance, write_bytes, write_json, write_text
from retina.verify.align import align_face, center_crop
from retina.verify.protocol import cosine_scores, fold_accuracy, roc_curve, tar_at_far
from retina.verify.readers import read_lfw_pairs
from retina.weights import DEFAULT_EMBEDDER, DEFAULT_WEIGHTS

FARS = (1e-3, 1e-4)
CROP = 112
# arXiv 1905.00641 table 4: ArcFace (ResNet-100, MS1M) verification accuracy (%) by alignment source.
PAPER_TABLE4 = {
    "MTCNN": {"LFW": 99.83, "CFP-FP": 98.37, "AgeDB-30": 98.15},
    "RetinaFace": {"LFW": 99.86, "CFP-FP": 99.49, "AgeDB-30": 98.60},
}


@dataclass(frozen=True)
class Face:
    """One image of a verification set: its file and, where the data know them, the true box and landmarks."""

    path: Path
    box: np.ndarray | None = None  # (4,) x1 y1 x2 y2 pixels
    landmarks: np.ndarray | None = None  # (5, 2) pixels


@dataclass(frozen=True)
class VerifySet:
    """Images and pairs: ``left``/``right`` (P,) image indices, ``same`` (P,) bool, ``folds`` (P,) int."""

    name: str
    label: str
    synthetic: bool
    faces: tuple[Face, ...]
    left: np.ndarray
    right: np.ndarray
    same: np.ndarray
    folds: np.ndarray


def content(vset: VerifySet) -> dict[str, Any]:
    """What the set holds, byte for byte: sha256 of its images (paths relative to their common folder) and of its
    pairs, folds and true boxes and landmarks; and the image count."""
    root = Path(os.path.commonpath([str(f.path.parent) for f in vset.faces]))
    images = files_sha256(root, [f.path for f in vset.faces])
    labels = [vset.left, vset.right, vset.same, vset.folds]
    labels += [np.asarray(x, np.float64) for f in vset.faces for x in (f.box, f.landmarks) if x is not None]
    digest = hashlib.sha256(images["sha256"].encode())
    for array in labels:
        digest.update(np.ascontiguousarray(array).tobytes())
    return {"sha256": digest.hexdigest(), "images": images["files"]}


def _indexed(pairs: Any, lookup: Callable[[Path], Face]) -> tuple[tuple[Face, ...], np.ndarray, np.ndarray]:
    index: dict[Path, int] = {}
    faces: list[Face] = []
    ends = []
    for pair in pairs.pairs:
        for path in (pair.left, pair.right):
            if path not in index:
                index[path] = len(faces)
                faces.append(lookup(path))
        ends.append((index[pair.left], index[pair.right]))
    e = np.asarray(ends, int).reshape(-1, 2)
    return tuple(faces), e[:, 0], e[:, 1]


def synthface_id_set(split: Path) -> VerifySet:
    """The SynthFace-ID test split (``pairs.txt`` in the LFW layout, ``meta.json`` with the true faces)."""
    meta = json.loads((split / "meta.json").read_text())
    truth = {split / m["file"]: m for m in meta["images"]}
    pairs = read_lfw_pairs(split / "pairs.txt", split / "images")

    def lookup(path: Path) -> Face:
        m = truth.get(path)
        if m is None:
            raise RetinaError(f"{split / 'meta.json'}: no entry for {path}")
        return Face(path, np.asarray(m["box"], float), np.asarray(m["landmarks"], float))

    faces, left, right = _indexed(pairs, lookup)
    label = f"SynthFace-ID test split (synthetic data, preset {meta.get('preset', '?')})"
    return VerifySet("synthface_id", label, True, faces, left, right, pairs.same, pairs.folds)


def lfw_set(pairs_file: Path, images: Path) -> VerifySet:
    pairs = read_lfw_pairs(pairs_file, images)
    faces, left, right = _indexed(pairs, Face)
    return VerifySet("lfw", f"LFW ({pairs_file})", False, faces, left, right, pairs.same, pairs.folds)


# --- alignment sources ------------------------------------------------------------------------------------

Detect = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # BGR image -> boxes (M, 4), landmarks (M, 5, 2)


def central_box(image: np.ndarray) -> np.ndarray:
    """The ``none`` box where no true box is known: a central square of side 0.45 x the short side."""
    h, w = image.shape[:2]
    side = 0.45 * min(h, w)
    return np.array([(w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2])


def crop_none(image: np.ndarray, face: Face) -> np.ndarray:
    return center_crop(image, face.box if face.box is not None else central_box(image), CROP)


def nearest_centre(boxes: np.ndarray, image: np.ndarray) -> int:
    """Index of the box whose centre is nearest the image centre (the first on ties: the higher score)."""
    h, w = image.shape[:2]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return int(np.argmin(np.hypot(centres[:, 0] - w / 2, centres[:, 1] - h / 2)))


def detector_crop(detect: Detect) -> Callable[[np.ndarray, Face], tuple[np.ndarray, bool]]:
    """(crop, fell back) from the detector's face nearest the centre; the ``none`` crop when it finds none."""

    def crop(image: np.ndarray, face: Face) -> tuple[np.ndarray, bool]:
        boxes, landmarks = detect(image)
        if len(boxes) == 0:
            return crop_none(image, face), True
        return align_face(image, landmarks[nearest_centre(np.asarray(boxes), image)], CROP), False

    return crop


def aligned_crops(vset: VerifySet, source: Callable[[np.ndarray, Face], tuple[np.ndarray, bool]],
                  progress: bool, desc: str) -> tuple[np.ndarray, int]:  # fmt: skip
    """(N, 112, 112, 3) uint8 BGR crops of every image, and how many fell back to the ``none`` crop."""
    from tqdm import tqdm

    from retina.images import read_image

    crops = np.zeros((len(vset.faces), CROP, CROP, 3), np.uint8)
    fallbacks = 0
    for k, face in enumerate(tqdm(vset.faces, desc=desc, disable=not progress)):
        crops[k], fell = source(read_image(face.path), face)
        fallbacks += int(fell)
    return crops, fallbacks


# --- embedding and scoring --------------------------------------------------------------------------------

Embed = Callable[[np.ndarray], np.ndarray]  # (N, 112, 112, 3) uint8 BGR -> (N, D)


def own_embedder(path: Path) -> tuple[Embed, dict[str, Any]]:
    from retina.recognition.train import embed_images, load_embedder

    model, payload = load_embedder(path)
    info = {"kind": "ArcFace (this suite)", "file": path.name, "sha256": file_sha256(path),
            "config": payload.get("config"), "flip": True}  # fmt: skip
    return (lambda crops: embed_images(model, crops, flip=True, channels="bgr")), info


def onnx_embedder(path: Path, layout: str, channels: str, mean: float, std: float) -> tuple[Embed, dict[str, Any]]:
    from retina.verify.embed import EmbedCfg, OnnxEmbedder

    cfg = EmbedCfg(layout=layout, channels=channels, mean=(mean,) * 3, std=(std,) * 3, flip=True)
    model = OnnxEmbedder(path, cfg)
    record = model.settings_record()
    return model, {"kind": "ONNX", "file": record["model"], **record}


def score_row(vset: VerifySet, embeddings: np.ndarray) -> dict[str, Any]:
    """Protocol results of one row: 10-fold accuracy, TAR@FAR, ROC (at most ~400 points kept)."""
    scores = cosine_scores(embeddings[vset.left], embeddings[vset.right])
    acc = fold_accuracy(scores, vset.same, vset.folds)
    far, tar, _ = roc_curve(scores, vset.same)
    keep = np.unique(np.linspace(0, len(far) - 1, min(len(far), 400)).round().astype(int))
    return {
        "accuracy_mean": acc.mean,
        "accuracy_std": acc.std_sample,
        "accuracy_std_population": acc.std_population,
        "fold_accuracies": [float(a) for a in acc.accuracies],
        "tar_at_far": {f"{t.far:g}": (None if t.tar != t.tar else t.tar) for t in tar_at_far(scores, vset.same, FARS)},
        "roc": {"far": far[keep].round(6).tolist(), "tar": tar[keep].round(6).tolist()},
    }


def compare(row: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Paired per-fold difference (row - reference), its std, whether |mean| exceeds the folds' std, and the paired
    t-test's p-value: None with a note when the differences do not vary (the test is undefined)."""
    from scipy import stats

    diff = np.asarray(row["fold_accuracies"]) - np.asarray(reference["fold_accuracies"])
    spread = max(row["accuracy_std"], reference["accuracy_std"])
    std = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    p, note = None, f"no p-value: the {len(diff)} per-fold differences do not vary"
    if np.ptp(diff) > 1e-9:  # accuracies are ratios of pair counts: equal differences may differ by rounding
        p, note = float(stats.ttest_1samp(diff, 0.0).pvalue), ""
    exceeds = bool(abs(diff.mean()) > spread)
    return {"mean": float(diff.mean()), "std": std, "exceeds_fold_std": exceeds, "p_paired": p, "note": note}


def _pct(x: float | None) -> str:
    return "–" if x is None or x != x else f"{100 * x:.2f}"


def table_rows(rows: dict[str, dict[str, Any]], dataset: str) -> list[dict[str, str]]:
    """The table-4-shaped rows (strings) of the record; the paper's rows follow ours."""
    out = []
    for name, r in rows.items():
        vs = r.get("vs_retinaface")
        diff = "–" if vs is None else (f"{100 * vs['mean']:+.2f} ± {100 * vs['std']:.2f} "
                                       f"({'exceeds' if vs['exceeds_fold_std'] else 'within'} fold std)")  # fmt: skip
        out.append({"alignment": name, "dataset": dataset,
                    "accuracy % (mean ± std, 10 folds)": f"{_pct(r['accuracy_mean'])} ± {_pct(r['accuracy_std'])}",
                    **{f"TAR@FAR={k} %": _pct(v) for k, v in r["tar_at_far"].items()},
                    "vs RetinaFace (paired, per fold)": diff, "fallbacks": str(r["fallbacks"])})  # fmt: skip
    for name, values in PAPER_TABLE4.items():
        cells = ", ".join(f"{k} {v}" for k, v in values.items())
        out.append({"alignment": f"paper: {name}", "dataset": "LFW / CFP-FP / AgeDB-30 (ArcFace R100, MS1M)",
                    "accuracy % (mean ± std, 10 folds)": cells})  # fmt: skip
    return out


def markdown(rows: list[dict[str, str]]) -> str:
    header = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r.get(h, "") for h in header) + " |" for r in rows]) + "\n"


def roc_png(record: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from retina.eval.plots import figure_png

    fig = Figure(figsize=(6.0, 4.5), dpi=110)
    ax = fig.add_subplot()
    for name, r in record["rows"].items():
        far, tar = np.asarray(r["roc"]["far"]), np.asarray(r["roc"]["tar"])
        shown = far > 0
        ax.plot(far[shown], tar[shown], linewidth=2, label=f"{name}: {_pct(r['accuracy_mean'])}%")
    ax.set(xscale="log", xlabel="false accept rate", ylabel="true accept rate", ylim=(0, 1.01))
    ax.set_title(f"ROC by alignment source: {record['data']}", fontsize=8)
    ax.grid(True, which="both", linestyle=":")
    ax.legend(loc="lower right", fontsize=8)
    return figure_png(fig)


# --- the job ----------------------------------------------------------------------------------------------


def dataset(args: argparse.Namespace) -> VerifySet:
    if args.lfw_pairs is not None:
        return lfw_set(args.lfw_pairs, args.lfw_images)
    from retina.synth.identities import synth_id_split

    return synthface_id_set(synth_id_split("test", args.synth_preset, progress=not args.no_progress))


def sources(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The detector rows' crop functions (name -> source) and what identifies each detector."""
    from retina.verify.landmark_job import mtcnn_method, retinaface_method

    rows: dict[str, Any] = {"none": lambda image, face: (crop_none(image, face), False)}
    info: dict[str, Any] = {}
    if args.mtcnn_weights is not None:
        detect, info["MTCNN"] = mtcnn_method(args.mtcnn_weights)
        rows["MTCNN"] = detector_crop(detect)
    detect, info["RetinaFace"] = retinaface_method(args.weights or DEFAULT_WEIGHTS, 0.5)
    rows["RetinaFace"] = detector_crop(detect)
    return rows, info


def embedder(args: argparse.Namespace) -> tuple[Embed, dict[str, Any]]:
    """The ONNX model of ``--onnx``, else our checkpoint (``--embedder`` or the committed one)."""
    if args.onnx is not None:
        return onnx_embedder(args.onnx, args.onnx_layout, args.onnx_channels, args.onnx_mean, args.onnx_std)
    path = args.embedder or DEFAULT_EMBEDDER
    if not path.is_file():
        raise RetinaError(f"embedding checkpoint not found: {path}")
    return own_embedder(path)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if (args.lfw_pairs is None) != (args.lfw_images is None):
        raise RetinaError("--lfw-pairs and --lfw-images go together")
    embed, embed_info = embedder(args)  # every model loads (or fails) before the data set is made
    rows_fn, detectors = sources(args)
    vset = dataset(args)
    if all(f.landmarks is not None for f in vset.faces):
        rows_fn["ground truth"] = lambda image, face: (align_face(image, face.landmarks, CROP), False)
    rows: dict[str, dict[str, Any]] = {}
    for name, source in rows_fn.items():
        crops, fallbacks = aligned_crops(vset, source, not args.no_progress, f"align: {name}")
        rows[name] = {**score_row(vset, embed(crops)), "fallbacks": fallbacks}
    for name, row in rows.items():
        if name != "RetinaFace":
            row["vs_retinaface"] = compare(row, rows["RetinaFace"])
    table = table_rows(rows, vset.label)
    return {
        "experiment": "face verification by alignment source (paper table 4)",
        "dataset": vset.name,
        "data": vset.label,
        "synthetic": vset.synthetic,
        "images": len(vset.faces),
        "pairs": len(vset.same),
        "data_content": content(vset),
        "embedding": embed_info,
        "detectors": detectors,
        "mtcnn": "run" if "MTCNN" in rows else "not run: pass --mtcnn-weights DIR (facenet-pytorch 2.6.0 data/)",
        "rows": rows,
        "table": table,
        "paper": PAPER_TABLE4,
        "provenance": provenance(),
    }


def write(record: dict[str, Any], out: Path, publish: bool) -> list[Path]:
    """The record, its table and ROC under ``out/<dataset>/``; ``publish`` also copies the record into
    ``reports/records/verification/`` of the checkout."""
    folder = out / record["dataset"]
    paths = [
        write_json(folder / "verification.json", record),
        write_text(folder / "table.md", markdown(record["table"])),
    ]
    paths.append(write_bytes(folder / "roc.png", roc_png(record)))
    if publish:
        name = f"{record['dataset']}.json"
        paths.append(write_json(REPO_ROOT / "reports" / "records" / "verification" / name, record))
    return paths
