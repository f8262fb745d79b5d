"""Differentiable mesh rendering: a function API (``rasterize``, ``interpolate``, camera, light).

``rasterize`` / ``interpolate`` here are the PyTorch backend (:mod:`retina.render.torch_backend`, the default
and the CPU path); ``backend("nvdiffrast")`` gives the GPU backend with the same two signatures
(:mod:`retina.render.nvdiffrast_backend`, optional extra ``render``). Camera and lighting are pure functions
shared by all backends; :func:`render_mesh` chains them with the paper's 7 camera and 9 light parameters.
"""

from retina.render.camera import euler_rotation, model_to_camera, perspective, project
from retina.render.light import lambertian, split_light, vertex_normals
from retina.render.pipeline import Rendering, backend, render_mesh
from retina.render.torch_backend import interpolate, rasterize
from retina.render.types import Raster

__all__ = [
    "Raster",
    "Rendering",
    "backend",
    "euler_rotation",
    "interpolate",
    "lambertian",
    "model_to_camera",
    "perspective",
    "project",
    "rasterize",
    "render_mesh",
    "split_light",
    "vertex_normals",
]
