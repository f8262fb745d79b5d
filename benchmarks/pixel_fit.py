"""Can the dense branch's pixel loss alone fit single SynthFace faces? Dense NME before and after fitting.

    python benchmarks/pixel_fit.py [--images 12] [--steps 100] [--lr 0.01] [--fit-code] [--publish]

A diagnostic without any network: for each face at least ``--min-face`` pixels tall in the first ``--images``
images of the ablation SynthFace val split (SYNTHETIC data), the raw camera (7) and raw light (9) of
``retina.models.heads.mesh_parameters`` (and with ``--fit-code`` the 128-d shape-and-texture code of the committed
mesh decoder) are optimised directly by Adam, starting from zeros (the default camera and light, and code 0: the
decoder's output there, which the record measures against the mean face), on the pixel loss of that face's crop
alone (square crop of margin 1.2 around the true box, rendered at ``--crop`` pixels, as
``retina.dense.pixel.pixel_loss`` renders it). Loss variants (one fit each):

- eq. 5 as the suite trains it: L1 over the whole crop (black background), no silhouette gradients;
- eq. 5 with silhouette antialiasing (gradients through the outline, ``render_mesh(antialias=True)``);
- the L1 averaged over the covered pixels only, no silhouette gradients.

The dense NME of a face is ``retina.dense.accuracy``'s: the mean image distance between the posed and projected
mesh and the true mesh over the true mesh's visible vertices, over sqrt(w h) of the face box, in percent.
Baselines: the default camera (no fitting: the start of every fit) and an oracle, code 0 posed by the true
rotation (the default camera otherwise). Every row is scored twice, alike: as placed, and with the best 2-D
translation removed (projected vertices centred on the true ones), which leaves what rotation, scale and shape
get wrong.

Writes ``results/dense/pixel_fit.json`` (``--publish``: ``reports/records/dense/pixel_fit.json``, shown by the
report's dense section): a ``table`` of rows (mean and median NME, mean final loss, fraction of faces improved),
settings, per-face numbers, a ``finding`` computed from them, and provenance.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.publishing import add_allow_dirty, require_clean
from retina.config import PixelCfg
from retina.results import REPO_ROOT, provenance, write_json

RECORD = Path("dense") / "pixel_fit.json"
CROP_MARGIN = PixelCfg().crop_margin  # the frame the camera lives in, as in training
DEFAULT_ROW = "default camera, code 0 (no fitting)"
ORACLE_ROW = "oracle: true rotation, code 0"
MEAN, MEDIAN = "mean NME %", "median NME %"
MEAN_C, MEDIAN_C = "mean NME % (best translation)", "median NME % (best translation)"


@dataclasses.dataclass(frozen=True)
class Variant:
    """A pixel-loss variant: ``antialias`` renders with silhouette gradients; ``covered`` averages the L1 over the
    covered pixels instead of the whole crop."""

    key: str
    label: str
    antialias: bool = False
    covered: bool = False


VARIANTS = (
    Variant("eq5", "eq. 5 (whole crop, black background), no silhouette gradients"),
    Variant("eq5_aa", "eq. 5 + silhouette antialiasing", antialias=True),
    Variant("covered", "mean over covered pixels, no silhouette gradients", covered=True),
)


@dataclasses.dataclass(frozen=True)
class Face:
    """One face to fit: its crop (1, 4) xyxy image pixels, the target crop (1, S, S, 3) RGB in [0, 1], the true
    mesh's image uv (V, 2) float64 and visibility (V,) bool, its box xywh pixels and its true rotation (3,)
    pitch, yaw, roll radians."""

    image: int
    index: int
    box: tuple[float, float, float, float]
    rotation: tuple[float, float, float]
    crop: Tensor
    target: Tensor
    true_uv: np.ndarray
    visible: np.ndarray


def nme(uv: np.ndarray, true_uv: np.ndarray, visible: np.ndarray, box_wh: tuple[float, float], centred: bool) -> float:
    """NME in percent: mean distance of uv (V, 2) to true_uv (V, 2) image pixels over the ``visible`` (V,) vertices,
    over sqrt(w h) of the box; ``centred``: after the translation that best matches (the mean offset removed)."""
    d = uv[visible] - true_uv[visible]
    if centred:
        d = d - d.mean(0)
    return float(100.0 * np.linalg.norm(d, axis=1).mean() / np.sqrt(box_wh[0] * box_wh[1]))


def scores(uv: np.ndarray, face: Face) -> dict[str, float]:
    """A posed mesh's uv (V, 2) scored against ``face``'s true mesh: NME % as placed and with the best translation."""
    box = face.box[2:]
    return {
        "nme": round(nme(uv, face.true_uv, face.visible, box, centred=False), 4),
        "nme_centred": round(nme(uv, face.true_uv, face.visible, box, centred=True), 4),
    }


def improved_fraction(before: list[float], after: list[float]) -> float:
    """The fraction of faces whose NME went down."""
    return sum(a < b for b, a in zip(before, after, strict=True)) / len(before)


def load_faces(split_dir: Path, images: int, min_face: float, size: int) -> list[Face]:
    """The faces at least ``min_face`` pixels tall in the first ``images`` images of a SynthFace split."""
    from retina.dense.accuracy import true_mesh
    from retina.dense.crops import face_crops, square_crops
    from retina.images import read_image
    from retina.mesh.hierarchy import default_hierarchy
    from retina.synth.splits import read_meta

    hierarchy = default_hierarchy()
    faces = []
    for i, meta in enumerate(read_meta(split_dir)[:images]):
        img = read_image(split_dir / "images" / meta["path"])
        batch = torch.from_numpy(img)[None]
        for k, f in enumerate(meta["faces"]):
            x, y, w, h = (float(v) for v in f["box"])
            if h < min_face:
                continue
            truth = true_mesh(f, hierarchy, img.shape[:2])
            if not truth.visible.any():
                continue
            crop = square_crops(torch.tensor([[x, y, x + w, y + h]]), CROP_MARGIN)
            target = face_crops(batch, torch.zeros(1, dtype=torch.int64), crop, size)
            pitch, yaw, roll = (float(r) for r in f["camera"]["rotation_rad"])
            faces.append(Face(i, k, (x, y, w, h), (pitch, yaw, roll), crop, target, truth.uv, truth.visible))
    return faces


def image_uv(mesh: Tensor, camera: Tensor, crop: Tensor) -> np.ndarray:
    """Image-pixel uv (V, 2) float64 of a mesh (1, V, >=3) model frame posed by camera (1, 7) in the canonical crop
    of crop (1, 4) xyxy."""
    from retina.dense.crops import posed_uv

    return posed_uv(mesh[..., :3], camera, crop)[0].detach().double().numpy()


def variant_loss(image: Tensor, mask: Tensor, target: Tensor, variant: Variant) -> Tensor:
    """The loss (scalar) of a rendering image (1, S, S, 3) with coverage mask (1, S, S) against target (1, S, S, 3)."""
    from retina.dense.pixel import photometric_l1

    if variant.covered:
        m = mask.to(image.dtype)
        return ((image - target).abs().sum(-1) * m).sum() / m.sum().clamp(min=1.0)
    return photometric_l1(image, target).sum()


def fit(face: Face, decoder: nn.Module, variant: Variant, steps: int, lr: float, size: int, fit_code: bool) -> dict:
    """Adam on the raw camera, light (and code) of one face from zeros; NME and loss before and after."""
    from retina.dense.crops import crop_camera
    from retina.models.heads import MESH_CAMERA, MESH_CODE, MESH_LIGHT, mesh_parameters
    from retina.render import render_mesh

    raw_cam, raw_light = torch.zeros(1, MESH_CAMERA, requires_grad=True), torch.zeros(1, MESH_LIGHT, requires_grad=True)
    code = torch.zeros(1, MESH_CODE, requires_grad=fit_code)
    opt = torch.optim.Adam([raw_cam, raw_light] + ([code] if fit_code else []), lr=lr)

    def loss_now() -> Tensor:
        camera, light = mesh_parameters(raw_cam, raw_light)
        mesh = decoder(code)
        r = render_mesh(
            mesh[..., :3], decoder.triangles, mesh[..., 3:], crop_camera(camera, size), light, (size, size),
            antialias=variant.antialias,
        )  # fmt: skip
        return variant_loss(r.image, r.mask, face.target, variant)

    losses = []
    for _ in range(steps):
        loss = loss_now()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = float(loss_now())
        camera, light = mesh_parameters(raw_cam, raw_light)
        uv = image_uv(decoder(code), camera, face.crop)
    return {
        **scores(uv, face),
        "loss_start": round(losses[0] if losses else final, 5),
        "loss_final": round(final, 5),
        "camera": [round(v, 4) for v in camera[0].tolist()],
        "light": [round(v, 4) for v in light[0].tolist()],
    }


def baselines(face: Face, decoder: nn.Module) -> dict[str, dict[str, float]]:
    """Scores of code 0 under the default camera (the start of every fit) and under the true rotation (the oracle)."""
    from retina.models.heads import MESH_CAMERA, MESH_CODE, MESH_LIGHT, mesh_parameters

    with torch.no_grad():
        mesh = decoder(torch.zeros(1, MESH_CODE))
        camera, _ = mesh_parameters(torch.zeros(1, MESH_CAMERA), torch.zeros(1, MESH_LIGHT))
        default = scores(image_uv(mesh, camera, face.crop), face)
        camera[0, 3:6] = torch.tensor(face.rotation)
        oracle = scores(image_uv(mesh, camera, face.crop), face)
    return {"default": default, "oracle": oracle}


def code0_offset(decoder: nn.Module) -> dict[str, float]:
    """How far the decoder's output at code 0 is from its training-set mean face (``FaceDecoder.mean``)."""
    from retina.mesh.hierarchy import default_hierarchy
    from retina.mesh.pretrain import inter_ocular

    with torch.no_grad():
        d = (decoder(torch.zeros(1, decoder.config.code_dim))[0] - decoder.mean).double()
    shape = float(d[:, :3].norm(dim=-1).mean())
    return {
        "shape_iod": round(shape / inter_ocular(default_hierarchy()), 5),
        "colour_255": round(255 * float(d[:, 3:].abs().mean()), 3),
    }


def _row(label: str, rows: list[dict[str, float]], before: list[float] | None) -> dict[str, Any]:
    """A table row from per-face scores {"nme", "nme_centred"[, "loss_final"]}; ``before``: the default's NMEs."""
    nmes, centred = [r["nme"] for r in rows], [r["nme_centred"] for r in rows]
    row: dict[str, Any] = {"method": label, "faces": len(rows)}
    row |= {MEAN: round(statistics.fmean(nmes), 2), MEDIAN: round(statistics.median(nmes), 2)}
    row |= {MEAN_C: round(statistics.fmean(centred), 2), MEDIAN_C: round(statistics.median(centred), 2)}
    if before is not None:
        row["mean final loss"] = round(statistics.fmean(r["loss_final"] for r in rows), 4)
        row["NME improved"] = round(improved_fraction(before, nmes), 2)
    return row


def summary(per_face: list[dict[str, Any]], variants: tuple[Variant, ...]) -> dict[str, Any]:
    """The report's ``table`` rows (baselines first, then one per variant).

    per_face: dicts with "default", "oracle" and, per variant key, scores ({"nme", "nme_centred"}, NME %; the
    variants' with "loss_final").
    """
    before = [f["default"]["nme"] for f in per_face]
    table = [_row(DEFAULT_ROW, [f["default"] for f in per_face], None)]
    table.append(_row(ORACLE_ROW, [f["oracle"] for f in per_face], None))
    table += [_row(v.label, [f[v.key] for f in per_face], before) for v in variants]
    return {"table": table}


def finding(table: list[dict[str, Any]], steps: int, lr: float, fit_code: bool, min_face: float) -> str:
    """One paragraph computed from the table rows (no conclusions written in advance)."""
    default, oracle, *fits = table
    what = "camera, light and code" if fit_code else "camera and light"
    n = default["faces"]
    parts = [
        f"{row['method']}: mean NME {default[MEAN]:.1f}% -> {row[MEAN]:.1f}% "
        f"(median {default[MEDIAN]:.1f}% -> {row[MEDIAN]:.1f}%), improved on {round(row['NME improved'] * n)}/{n} faces"
        for row in fits
    ]
    centred = ", ".join(f"{row['method']} {row[MEAN_C]:.1f}%" for row in fits)
    best = min(fits, key=lambda r: r[MEAN_C])
    gap = default[MEAN_C] - oracle[MEAN_C]
    closed = (default[MEAN_C] - best[MEAN_C]) / gap if gap > 0 else 0.0
    if gap <= 0:
        closed_text = "cannot be set against the gap between the default camera and the oracle (there is none)"
    elif closed >= 0:
        closed_text = f"closes {closed:.0%} of the gap between the default camera and the oracle"
    else:
        closed_text = f"ends {-closed:.0%} of the default-to-oracle gap further from the oracle than it started"
    return (
        f"Fitting the {what} of single faces by the pixel loss alone (Adam, {steps} steps, lr {lr:g}, from the "
        f"default camera) on {n} SynthFace val faces >= {min_face:g} px: " + "; ".join(parts) + ". "
        f"The oracle (true rotation, code 0) reaches a mean NME of {oracle[MEAN]:.1f}% as placed. "
        f"With the best 2-D translation removed from every row alike: default {default[MEAN_C]:.1f}%, oracle "
        f'{oracle[MEAN_C]:.1f}%, {centred}; there the best variant, "{best["method"]}", {closed_text}.'
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=12, help="the first N val images; all their faces >= --min-face")
    p.add_argument("--min-face", type=float, default=40.0, help="minimum face box height in pixels")
    p.add_argument("--steps", type=int, default=100, help="Adam steps per face and variant")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate on the raw parameters")
    p.add_argument("--crop", type=int, default=64, help="rendered crop size in pixels")
    p.add_argument("--fit-code", action="store_true", help="fit the 128-d decoder code too")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--split", type=Path, default=None, help="a SynthFace split folder (default: the ablation val)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "results" / RECORD)
    p.add_argument("--publish", action="store_true", help=f"write reports/records/{RECORD} (committed) instead")
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.images < 1 or args.steps < 0 or args.lr <= 0 or args.crop < 8:
        p.error("--images must be >= 1, --steps >= 0, --lr > 0 and --crop >= 8")
    if args.publish:
        require_clean(p, "benchmarks/pixel_fit.py --publish", args.allow_dirty)
        args.out = REPO_ROOT / "reports" / "records" / RECORD
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    prov = provenance(device="cpu", threads=args.threads, seed=args.seed, load_avg_before=list(os.getloadavg()))

    from retina.models.mesh_decoder import load_mesh_decoder
    from retina.weights import DEFAULT_DECODER

    if args.split is None:
        from ablations.run import synth_pair
        from ablations.variants import SYNTH_ABLATION, SynthData

        _, args.split = synth_pair(SynthData(SYNTH_ABLATION))
    decoder, _ = load_mesh_decoder(DEFAULT_DECODER)
    decoder.eval().requires_grad_(False)
    faces = load_faces(Path(args.split), args.images, args.min_face, args.crop)
    if not faces:
        raise SystemExit(f"pixel_fit: no faces >= {args.min_face:g} px in the first {args.images} images")

    start = time.perf_counter()
    per_face = []
    for face in faces:
        row: dict[str, Any] = {"image": face.image, "face": face.index, "box_xywh": list(face.box)}
        row["yaw_deg"] = round(float(np.degrees(face.rotation[1])), 2)
        row.update(baselines(face, decoder))
        for v in VARIANTS:
            row[v.key] = fit(face, decoder, v, args.steps, args.lr, args.crop, args.fit_code)
        per_face.append(row)
        fits = " ".join(f"{v.key} {row[v.key]['nme']:.1f}" for v in VARIANTS)
        print(f"image {face.image} face {face.index}: NME % default {row['default']['nme']:.1f} -> {fits}", flush=True)
    stats = summary(per_face, VARIANTS)
    record = {
        "benchmark": "pixel_fit",
        "what": "dense NME of single faces fitted by the pixel loss alone (camera and light by Adam, no network)",
        "data": f"SynthFace ablation pair, val split (SYNTHETIC data): {Path(args.split).name}",
        "settings": {
            "images": args.images,
            "min_face_px": args.min_face,
            "steps": args.steps,
            "lr": args.lr,
            "optimizer": "Adam",
            "crop_size": args.crop,
            "crop_margin": CROP_MARGIN,
            "fit_code": args.fit_code,
            "start": "raw zeros: DEFAULT_CAMERA, DEFAULT_LIGHT, code 0",
            "mesh_decoder": DEFAULT_DECODER.name,
            "code0_vs_mean_face": code0_offset(decoder),
            "variants": [dataclasses.asdict(v) for v in VARIANTS],
            "nme": "percent of sqrt(w h) of the true box, over the true mesh's visible vertices; as placed, and "
            "with the best 2-D translation removed (every row alike)",
            "seed": args.seed,
            "threads": args.threads,
        },
        **stats,
        "finding": finding(stats["table"], args.steps, args.lr, args.fit_code, args.min_face),
        "per_face": per_face,
        "seconds": round(time.perf_counter() - start, 1),
        "provenance": {**prov, "load_avg_after": list(os.getloadavg())},
    }
    write_json(args.out, record)
    print(record["finding"])
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
