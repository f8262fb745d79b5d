"""Predicted face meshes drawn over SynthFace val images, for the report's dense-branch section.

    python benchmarks/dense_gallery.py [--checkpoint FILE] [--images 3]            # -> results/dense_gallery/
    python benchmarks/dense_gallery.py --publish                                 # -> reports/records/dense_gallery/

For each of the first ``--images`` val images of the mesh ablation's SynthFace pair (synthetic data), every face of
at least 16 px gets its prediction as :mod:`retina.dense.accuracy` picks it (the anchor of highest score >= 0.5
with box IoU >= 0.5); the decoded, posed, lit mesh is rendered into the crop of its predicted box and blended over
the image (60 %), and the true mesh's visible vertices (every 8th) are dotted in green. Writes the drawn JPEGs and
``gallery.json`` (checkpoint and its sha256, per face: NME, box; provenance). The default checkpoint is the mesh
ablation's ``+Lpts +Lpixel`` seed-0 run (``nox -s ablation_mesh``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.publishing import add_allow_dirty, require_clean
from retina.api import Detector
from retina.dense.accuracy import DenseCfg, FaceMatches, face_errors, match_faces, scored_faces, true_mesh
from retina.dense.crops import crop_camera, square_crops
from retina.images import read_image
from retina.mesh.hierarchy import default_hierarchy
from retina.render import render_mesh
from retina.results import REPO_ROOT, file_sha256, provenance, write_bytes, write_json
from retina.synth.splits import read_meta

DEFAULT_CHECKPOINT = REPO_ROOT / "results/ablations/mesh/runs/lpts_lpixel/seed0/final.pth"
ALPHA = 0.6


def _val_split() -> Path:
    from ablations.run import synth_pair
    from ablations.variants import SYNTH_ABLATION, SynthData

    return synth_pair(SynthData(SYNTH_ABLATION))[1]


@torch.inference_mode()
def _meshes(detector: Detector, faces: list[dict[str, Any]], m: FaceMatches, cfg: DenseCfg) -> list[dict[str, Any]]:
    """Per matched face: the square crop (4,) xyxy and the rendering (S, S, 3) RGB + mask (S, S) at crop size."""
    decoder = detector.model.mesh_decoder
    out = []
    for face, a in zip(faces, m.anchor.tolist(), strict=True):
        if a < 0:
            continue
        crop = square_crops(m.boxes[a : a + 1], cfg.crop_margin)[0]
        size = max(8, round(float(crop[2] - crop[0])))
        mesh = decoder(m.pred.mesh_code[0, a : a + 1].float())
        camera = crop_camera(m.pred.mesh_camera[0, a : a + 1].float(), size)
        light = m.pred.mesh_light[0, a : a + 1].float()
        r = render_mesh(mesh[..., :3], decoder.triangles, mesh[..., 3:], camera, light, (size, size), antialias=True)
        rendering = r.image[0].clamp(0, 1).numpy()
        out.append({"face": face, "crop": crop.numpy(), "image": rendering, "mask": r.mask[0].numpy()})
    return out


def draw(image: np.ndarray, meta: dict[str, Any], meshes: list[dict[str, Any]]) -> np.ndarray:
    """BGR copy of ``image`` with the rendered meshes blended in and the true visible vertices dotted."""
    canvas = image.astype(np.float32) / 255.0
    h, w = image.shape[:2]
    hierarchy = default_hierarchy()
    for m in meshes:
        x0, y0 = (round(float(v)) for v in m["crop"][:2])
        ys, xs = np.nonzero(m["mask"])
        keep = (ys + y0 >= 0) & (ys + y0 < h) & (xs + x0 >= 0) & (xs + x0 < w)
        ys, xs = ys[keep], xs[keep]
        rgb = m["image"][ys, xs][:, ::-1]  # -> BGR
        canvas[ys + y0, xs + x0] = (1 - ALPHA) * canvas[ys + y0, xs + x0] + ALPHA * rgb
        truth = true_mesh(m["face"], hierarchy, (h, w))
        for u, v in truth.uv[truth.visible][::8]:
            cv2.circle(canvas, (int(u), int(v)), 1, (0.0, 1.0, 0.0), -1)
    return (np.clip(canvas, 0, 1) * 255).astype(np.uint8)


def shown(path: Path) -> str:
    """A path relative to the repository when inside it, else as given."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="a mesh-head checkpoint")
    p.add_argument("--images", type=int, default=3, help="how many val images (the first ones)")
    p.add_argument("--publish", action="store_true", help="write into reports/records/dense_gallery/ (committed)")
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.publish:
        require_clean(p, "benchmarks/dense_gallery.py --publish", args.allow_dirty)
    if not args.checkpoint.is_file():
        print(f"dense_gallery: no checkpoint {args.checkpoint}; run nox -s ablation_mesh first", file=sys.stderr)
        return 2
    out = REPO_ROOT / ("reports/records" if args.publish else "results") / "dense_gallery"
    val = _val_split()
    detector = Detector.from_checkpoint(args.checkpoint)
    if not hasattr(detector.model, "mesh_decoder"):
        print(f"dense_gallery: {args.checkpoint} has no mesh head", file=sys.stderr)
        return 2
    cfg = DenseCfg()
    metas = [m for m in read_meta(val) if any(f["box"][3] >= 40 for f in m["faces"])][: args.images]
    items = []
    for meta in metas:
        image = read_image(val / "images" / meta["path"])
        faces = scored_faces(meta, cfg)
        m = match_faces(detector, image, [f for _, f in faces], cfg)  # one detector pass for drawing and errors
        drawn = draw(image, meta, _meshes(detector, [f for _, f in faces], m, cfg))
        name = Path(meta["path"]).stem + "_mesh.jpg"
        write_bytes(out / name, cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        errors = list(face_errors(detector, image.shape[:2], faces, m, cfg))
        items.append({"image": name, "source": meta["path"], "faces": errors})
    record = {
        "data": "SynthFace ablation val images (synthetic data)",
        "checkpoint": shown(args.checkpoint),
        "checkpoint_sha256": file_sha256(args.checkpoint),
        "settings": {**cfg.__dict__, "blend": ALPHA, "true_vertices_shown": "every 8th visible"},
        "images": items,
        "provenance": provenance(split=str(val)),
    }
    path = write_json(out / "gallery.json", record)
    print(f"{len(items)} images -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
