"""Dense accuracy on SynthFace: how far a detector's predicted meshes land from the true ones (issue 11, item 8).

SynthFace writes every face's generating parameters beside the WIDER files (``meta.jsonl``: the morphable
model's parameters, pose, camera), so the true mesh of each face is known exactly: the finest level of
:func:`retina.mesh.hierarchy.default_hierarchy` (1,169 face-region vertices) of that face, posed and projected by
its camera into the image. The prediction for a face is its detector anchor of highest score among those scoring
at least ``score_threshold`` whose decoded box overlaps the face by IoU >= ``match_iou`` (the detection NMS would
keep); that anchor's code is decoded by the model's ``FaceDecoder``, posed by its camera in the canonical crop of
its *predicted* box (:mod:`retina.dense.crops`) and projected into the image.

NME of a face: the mean image distance between predicted and true vertices over the true mesh's *visible*
vertices (facing the camera, inside the image and not hidden by the face itself), divided by sqrt(w h) of the
face's ground-truth box; the same vertex ids on both sides (one topology). Faces shorter than ``min_face`` pixels,
or without a matching anchor (reported as the miss count), are left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from retina.api import Detector
from retina.coding import decode_boxes
from retina.dense.crops import posed_uv, square_crops
from retina.images import read_image
from retina.mesh.hierarchy import MeshHierarchy, default_hierarchy
from retina.mesh.morphable import FaceParams, face_shape
from retina.mesh.template import build_template
from retina.postprocess import face_scores
from retina.protocols import Resize
from retina.render import model_to_camera, project, vertex_normals
from retina.synth.splits import read_meta

SELF_OCCLUSION_TOL = 0.05  # camera units (the face is ~1.3 tall): a vertex this far behind a surface is hidden


@dataclass(frozen=True)
class DenseCfg:
    """Which faces are scored and how a prediction is matched to a face (see the module docstring)."""

    score_threshold: float = 0.5
    match_iou: float = 0.5
    min_face: float = 16.0
    crop_margin: float = 1.2  # must be the training's PixelCfg.crop_margin: the camera lives in that crop


@dataclass(frozen=True)
class TrueMesh:
    """A face's true finest-level vertices in image pixels: uv (V, 2) float64, visible (V,) bool."""

    uv: np.ndarray
    visible: np.ndarray


def true_mesh(face: dict[str, Any], hierarchy: MeshHierarchy, image_hw: tuple[int, int]) -> TrueMesh:
    """The true projected mesh of one SynthFace face record (``meta.jsonl``'s ``faces`` entry)."""
    template = build_template()
    verts = face_shape(template, FaceParams.from_dict(face["model"]))[hierarchy.template_ids]
    cam = face["camera"]
    pts = model_to_camera(
        torch.from_numpy(verts)[None].double(),
        torch.tensor([cam["rotation_rad"]], dtype=torch.float64),
        torch.tensor([cam["translation"]], dtype=torch.float64),
    )
    focal = torch.tensor([float(cam["focal_px"])], dtype=torch.float64)
    principal = torch.tensor([cam["principal_px"]], dtype=torch.float64)
    uv = project(pts, focal, principal)[0].numpy()
    tris = np.array(hierarchy.levels[0].triangles, dtype=np.int64)
    normals = vertex_normals(pts, torch.from_numpy(tris))[0]
    facing = ((normals * -pts[0]).sum(-1) > 0).numpy()
    h, w = image_hw
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    hidden = self_occluded(uv, pts[0, :, 2].numpy(), tris, SELF_OCCLUSION_TOL)
    return TrueMesh(uv, facing & inside & ~hidden)


def self_occluded(uv: np.ndarray, z: np.ndarray, tris: np.ndarray, tol: float) -> np.ndarray:
    """(V,) bool: a triangle not touching the vertex covers its exact projection nearer by more than ``tol``.

    uv (V, 2) pixels, z (V,) camera depth, tris (T, 3). Exact at the vertex, where a raster would sample the
    nearest pixel centre (off the face for outline vertices, or across a grazing silhouette)."""
    corners = uv[tris]  # (T, 3, 2)
    lo, hi = corners.min(1), corners.max(1)
    u, v = uv[:, :1], uv[:, 1:]
    vi, ti = np.nonzero((u >= lo[:, 0]) & (u <= hi[:, 0]) & (v >= lo[:, 1]) & (v <= hi[:, 1]))
    keep = (tris[ti] != vi[:, None]).all(1)
    vi, ti = vi[keep], ti[keep]
    a, e1, e2 = corners[ti, 0], corners[ti, 1] - corners[ti, 0], corners[ti, 2] - corners[ti, 0]
    p = uv[vi] - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    flat = det == 0  # seen edge-on: hides nothing
    det = np.where(flat, 1.0, det)
    l1 = (p[:, 0] * e2[:, 1] - p[:, 1] * e2[:, 0]) / det
    l2 = (e1[:, 0] * p[:, 1] - e1[:, 1] * p[:, 0]) / det
    lam = np.stack([1.0 - l1 - l2, l1, l2], 1)
    covers = ~flat & (lam >= 0).all(1)
    depth = 1.0 / (lam / z[tris[ti]]).sum(1)  # 1/z is affine in screen space
    hidden = np.zeros(len(uv), dtype=bool)
    hidden[vi[covers & (depth < z[vi] - tol)]] = True
    return hidden


def _xyxy(box_xywh: list[float]) -> list[float]:
    x, y, w, h = box_xywh
    return [x, y, x + w, y + h]


def predicted_uv(detector: Detector, pred: Any, anchors: Tensor, boxes: Tensor, margin: float) -> Tensor:
    """Image-pixel uv (K, V, 2) of the meshes of ``anchors`` (K,) of image 0 of ``pred`` (MeshPredictions),
    each posed in the canonical crop of its predicted box (K, 4) xyxy."""
    mesh = detector.model.mesh_decoder(pred.mesh_code[0, anchors].float())
    return posed_uv(mesh[..., :3], pred.mesh_camera[0, anchors].float(), square_crops(boxes, margin))


@dataclass(frozen=True, eq=False)
class FaceMatches:
    """A detector's prediction for the faces of one image: ``pred`` its MeshPredictions (batch of 1), boxes
    (A, 4) xyxy every anchor's decoded box (image pixels), anchor (N,) int64 each face's chosen anchor, -1 when
    no anchor matches it."""

    pred: Any
    boxes: Tensor
    anchor: Tensor


@torch.inference_mode()
def match_faces(detector: Detector, image: np.ndarray, faces: list[dict[str, Any]], cfg: DenseCfg) -> FaceMatches:
    """Run the detector on ``image`` (H, W, 3) uint8 BGR at its size and pick, per face record, the anchor of
    highest score >= ``cfg.score_threshold`` whose box overlaps the face's by IoU >= ``cfg.match_iou``."""
    x = detector.to_tensor([detector.prepare(image, Resize())])
    pred = detector.forward(x)
    priors = detector.priors(tuple(x.shape[-2:]), pred.boxes.dtype, pred.boxes.device)
    scores = face_scores(pred.logits[0].float())
    boxes = decode_boxes(pred.boxes[0].float(), priors, detector.cfg.priors.variances)
    gt = torch.tensor([_xyxy(f["box"]) for f in faces], dtype=boxes.dtype, device=boxes.device).view(-1, 4)
    ok = (box_iou(gt, boxes) >= cfg.match_iou) & (scores >= cfg.score_threshold)[None]
    best = torch.where(ok, scores[None], -1.0).argmax(1)
    return FaceMatches(pred, boxes, torch.where(ok.any(1), best, -1))


ScoredFace = tuple[int, dict[str, Any]]  # (index in the image's meta.jsonl record, the face record)


def scored_faces(meta: dict[str, Any], cfg: DenseCfg) -> list[ScoredFace]:
    """(index, record) of an image's faces at least ``cfg.min_face`` pixels tall (``meta.jsonl`` entry)."""
    return [(k, f) for k, f in enumerate(meta["faces"]) if f["box"][3] >= cfg.min_face]


@torch.inference_mode()
def face_errors(
    detector: Detector,
    image_hw: tuple[int, int],
    faces: list[tuple[int, dict[str, Any]]],
    m: FaceMatches,
    cfg: DenseCfg,
) -> Iterator[dict]:
    """Per face of ``faces`` (as :func:`scored_faces` gives them, matched by ``m``): {"face", "size_px", "matched",
    "nme" (None when not matched)}."""
    hierarchy = default_hierarchy()
    chosen = m.anchor[m.anchor >= 0]
    uv = (
        predicted_uv(detector, m.pred, chosen, m.boxes[chosen], cfg.crop_margin).double().cpu().numpy()
        if len(chosen)
        else None
    )
    j = 0
    for (k, face), anchor in zip(faces, m.anchor.cpu().tolist(), strict=True):
        row = {"face": k, "size_px": face["box"][3], "matched": anchor >= 0, "nme": None}
        if anchor >= 0:
            truth = true_mesh(face, hierarchy, image_hw)
            if truth.visible.any():
                err = np.linalg.norm(uv[j] - truth.uv, axis=1)[truth.visible].mean()
                row["nme"] = float(err / np.sqrt(face["box"][2] * face["box"][3]))
            j += 1
        yield row


def image_errors(detector: Detector, image: np.ndarray, meta: dict[str, Any], cfg: DenseCfg) -> Iterator[dict]:
    """Per scored face of one image: {"face", "size_px", "matched", "nme" (None when not matched)}."""
    faces = scored_faces(meta, cfg)
    if faces:
        m = match_faces(detector, image, [f for _, f in faces], cfg)
        yield from face_errors(detector, image.shape[:2], faces, m, cfg)


def dense_accuracy(detector: Detector, split_dir: str | Path, cfg: DenseCfg = DenseCfg()) -> dict[str, Any]:
    """NME of the predicted meshes over a SynthFace split (``images/`` + ``meta.jsonl``): the mean and median
    over matched faces (fractions of sqrt(w h)), the faces scored and matched, and the settings."""
    if not hasattr(detector.model, "mesh_decoder"):
        raise ValueError("dense accuracy needs a model with a mesh head (HeadCfg.mesh)")
    split_dir = Path(split_dir)
    rows = []
    for meta in read_meta(split_dir):
        image = read_image(split_dir / "images" / meta["path"])
        rows += [{"image": meta["path"], **r} for r in image_errors(detector, image, meta, cfg)]
    nmes = np.array([r["nme"] for r in rows if r["nme"] is not None], dtype=np.float64)
    return {
        "nme": float(nmes.mean()) if len(nmes) else None,
        "nme_median": float(np.median(nmes)) if len(nmes) else None,
        "faces": len(rows),
        "matched": int(sum(r["matched"] for r in rows)),
        "scored": len(nmes),
        "settings": {**cfg.__dict__, "normaliser": "sqrt(w h) of the ground-truth box", "vertices": "visible"},
    }
