"""One call from a coloured mesh and the paper's camera (7) and light (9) parameters to an image.

``render_mesh`` is what a photometric loss (the paper's L_pixel) needs: per-pixel (Phong-interpolated)
Lambertian shading of per-vertex albedo, differentiable with respect to vertex colours, positions,
camera and light. The rasterizer backend is chosen by name: ``"torch"`` (any device) or ``"nvdiffrast"``
(CUDA, optional extra ``render``); both provide the same ``rasterize`` / ``interpolate`` functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch

import retina.render.torch_backend as torch_backend
from retina.errors import RetinaError
from retina.render.antialias import antialias as antialias_silhouette
from retina.render.camera import model_to_camera, perspective
from retina.render.light import lambertian, split_light, vertex_normals
from retina.render.types import Raster


@dataclass(frozen=True, eq=False)
class Rendering:
    """image (Tensor[B, H, W, 3]) shaded colour, zero on the background; mask (Tensor[B, H, W]) bool
    covered pixels; raster the :class:`Raster` it came from."""

    image: torch.Tensor
    mask: torch.Tensor
    raster: Raster


BACKENDS = ("torch", "nvdiffrast")


def backend(name: str) -> ModuleType:
    """The module providing ``rasterize`` and ``interpolate`` for a backend name.

    ``"nvdiffrast"`` is imported only when asked for; RetinaError when its optional extra ``render`` is
    not installed or no CUDA device is visible.
    """
    if name == "torch":
        return torch_backend
    if name == "nvdiffrast":
        import retina.render.nvdiffrast_backend as nvdiffrast_backend

        nvdiffrast_backend.check_available()
        return nvdiffrast_backend
    raise RetinaError(f"unknown renderer backend {name!r} (available: {', '.join(map(repr, BACKENDS))})")


def render_mesh(
    vertices: torch.Tensor,
    tris: torch.Tensor,
    colors: torch.Tensor,
    camera: torch.Tensor,
    light: torch.Tensor,
    resolution: tuple[int, int],
    near: float = 0.1,
    far: float = 100.0,
    backend_name: str = "torch",
    antialias: bool = False,
) -> Rendering:
    """Render meshes that share a triangle list.

    vertices (Tensor[B, V, 3]) model frame; tris (Tensor[T, 3]); colors (Tensor[B, V, 3]) albedo;
    camera (Tensor[B, 7]) = translation (3, camera frame), pose (pitch, yaw, roll radians), focal
    (pixels; principal point at the image centre); light (Tensor[B, 9]) = point-light position (camera
    frame), light colour, ambient colour; resolution (H, W). ``antialias``: blend the outer silhouette
    (:func:`retina.render.antialias.antialias`), which gives gradients through the outline; ``mask`` stays the
    hard coverage.
    """
    be = backend(backend_name)
    points = model_to_camera(vertices, camera[:, 3:6], camera[:, 0:3])
    clip = perspective(points, camera[:, 6], resolution, None, near, far)
    raster = be.rasterize(clip, tris, resolution)
    normals = vertex_normals(points, tris)
    attrs = be.interpolate(torch.cat([colors, normals, points], -1), raster, tris)
    mask = raster.mask
    bi, yi, xi = mask.nonzero(as_tuple=True)
    px = attrs[bi, yi, xi]  # (N, 9) covered pixels only: background normals are zero
    position, color, ambient = split_light(light)
    shaded = lambertian(px[:, 0:3], px[:, 3:6], px[:, 6:9], position[bi], color[bi], ambient[bi])
    image = attrs.new_zeros((*mask.shape, 3)).index_put((bi, yi, xi), shaded)
    if antialias:
        image = antialias_silhouette(image, raster, clip, tris)
    return Rendering(image, mask, raster)
