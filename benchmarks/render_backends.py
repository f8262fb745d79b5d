"""Time per rendered crop of each renderer backend (torch, nvdiffrast) on the template face.

    python benchmarks/render_backends.py --out OUTDIR [--size 112] [--batch 16] [--budget-s 2]

Renders a batch of template faces (``render_mesh``: rasterize, interpolate, shade) forward only and
forward + backward (gradients to vertices and colours), and writes ``OUTDIR/render_backends.json`` with
``retina.results.provenance()``: per backend the milliseconds per crop, or why it was skipped. Without
CUDA only the torch backend runs on the CPU and nvdiffrast is recorded as skipped with the reason.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retina.errors import RetinaError
from retina.mesh import FaceParams, build_template, face_shape, vertex_albedo
from retina.render import backend, render_mesh
from retina.results import provenance, write_json


def scene(device: str, size: int, batch: int) -> dict[str, Any]:
    """``render_mesh`` keyword arguments: ``batch`` copies of the template face, turned a little each."""
    template = build_template()
    verts = torch.from_numpy(face_shape(template, FaceParams())).float()[None].repeat(batch, 1, 1)
    colors = torch.from_numpy(vertex_albedo(template, FaceParams())).float()[None].repeat(batch, 1, 1)
    yaw = torch.linspace(-0.4, 0.4, batch)
    camera = torch.stack([torch.zeros(batch), torch.zeros(batch), torch.full((batch,), 10.0)], 1)
    camera = torch.cat([camera, torch.zeros(batch, 1), yaw[:, None], torch.zeros(batch, 1)], 1)
    camera = torch.cat([camera, torch.full((batch, 1), 4.0 * size)], 1)
    light = torch.tensor([[2.0, -1.0, 0.0, 0.6, 0.6, 0.55, 0.35, 0.35, 0.4]]).repeat(batch, 1)
    tris = torch.from_numpy(np.array(template.triangles))
    tensors = {"vertices": verts, "tris": tris, "colors": colors, "camera": camera, "light": light}
    return {**{k: v.to(device) for k, v in tensors.items()}, "resolution": (size, size), "near": 5.0, "far": 15.0}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], None], device: str, budget_s: float) -> dict[str, float]:
    """Median and minimum seconds of ``fn`` over repeats filling ``budget_s`` (after one warm-up call)."""
    fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while not times or (time.perf_counter() - start < budget_s and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)), "repeats": len(times)}


def bench_backend(name: str, device: str, args: argparse.Namespace) -> dict[str, Any]:
    """Forward and forward + backward milliseconds per crop of one backend."""
    kw = scene(device, args.size, args.batch)

    def forward() -> None:
        with torch.no_grad():
            render_mesh(**kw, backend_name=name)

    def backward() -> None:
        verts = kw["vertices"].clone().requires_grad_(True)
        colors = kw["colors"].clone().requires_grad_(True)
        render_mesh(**{**kw, "vertices": verts, "colors": colors}, backend_name=name).image.sum().backward()

    row: dict[str, Any] = {"backend": name, "device": device, "status": "ok"}
    for kind, fn in (("forward", forward), ("forward_backward", backward)):
        t = time_call(fn, device, args.budget_s)
        row[kind] = {**t, "ms_per_crop": 1000.0 * t["median_s"] / args.batch}
    return row


def skip_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here (extra missing, no CUDA), None when it can."""
    try:
        backend(name)
    except RetinaError as err:
        return str(err)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (render_backends.json)")
    parser.add_argument("--size", type=int, default=112, help="crop side in pixels")
    parser.add_argument("--batch", type=int, default=16, help="crops per render_mesh call")
    parser.add_argument("--budget-s", type=float, default=2.0, help="seconds of repeats per measurement")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for name in ("torch", "nvdiffrast"):
        reason = skip_reason(name)
        row = {"backend": name, "device": device, "status": "skipped", "reason": reason}
        rows.append(row if reason else bench_backend(name, device, args))
        r = rows[-1]
        msg = f"{r['forward']['ms_per_crop']:.3f} ms/crop forward" if r["status"] == "ok" else f"skipped: {reason}"
        print(f"render_backends: {name} on {device}: {msg}")
    settings = {"size": args.size, "batch": args.batch, "budget_s": args.budget_s}
    write_json(args.out / "render_backends.json", {"provenance": provenance(settings=settings), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
