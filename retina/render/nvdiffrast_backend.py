"""Rasterization and attribute interpolation with nvdiffrast (CUDA only, optional extra ``render``).

Same two functions, signatures and :class:`Raster` as :mod:`retina.render.torch_backend`; only
nvdiffrast's public API is called (``nvdiffrast.torch``: ``RasterizeCudaContext``, ``rasterize``,
``interpolate``, ``get_log_level``). nvdiffrast (0.3.3, packaged on PyPI as ``diffrp-nvdiffrast``) is
under NVIDIA's non-commercial licence: it is imported lazily and never vendored.

Conventions mapped here (nvdiffrast's ``rast_out`` is (B, H, W, 4) float32 = (u, v, z/w, id + 1)):

- ``u`` / ``v`` weigh the triangle's vertices 0 / 1 and ``1 - u - v`` vertex 2, perspective-correct,
  as ``Raster.bary``; the last channel is the triangle id plus one, 0 for background (ours: -1),
  stored as a float value up to 2**24 and as shifted float bits above (nvdiffrast ``common.h``).
- nvdiffrast differentiates ``u, v`` only (not ``z/w``), so ``Raster.depth`` is recomputed from the
  barycentrics and clip coordinates: ``sum(b_k z_k) / sum(b_k w_k)`` equals ``z/w`` and carries gradients.
- Same pixel convention as ours (row 0 at NDC ``y = -1``, centres at half-integers). Edge cases differ:
  nvdiffrast clips triangles at the near plane where we drop those with a vertex at ``w <= 0``, and it
  applies a fill rule to centres exactly on shared edges where we keep the nearer/lower id.
- nvdiffrast's own ``antialias`` is not used: silhouette gradients, when asked for
  (``render_mesh(antialias=True)``), come from :mod:`retina.render.antialias` on either backend's raster, so
  both backends differentiate the same quantities.

Global state (an exception to the suite's rule): one ``RasterizeCudaContext`` per CUDA device, created
on first use and cached in ``_CONTEXTS``; a context owns GPU buffers that are costly to rebuild per call.

Import fix (torch >= 2.9): ``import nvdiffrast.torch`` itself succeeds; the CUDA plugin is built on the
first call (``ops._get_plugin``) by ``torch.utils.cpp_extension.load`` and then fetched with
``importlib.import_module(plugin_name)``, which assumes ``load`` put the module in ``sys.modules``.
Newer torch no longer does, so that first call raises ``ModuleNotFoundError`` for
``nvdiffrast_plugin_<version>_torch<version>`` although the library was built. :func:`_load_plugin`
catches exactly that, loads the built library from torch's extension build folder, registers it in
``sys.modules`` and retries.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from retina.errors import RetinaError
from retina.render.types import Raster

MISSING_EXTRA = (
    "nvdiffrast backend needs the optional extra: pip install -e .[render] "
    "(nvdiffrast 0.3.3 from diffrp-nvdiffrast, non-commercial licence)"
)
NO_CUDA = "nvdiffrast backend needs a CUDA device (torch.cuda.is_available() is False); use backend 'torch'"
_PLUGIN_PREFIX = "nvdiffrast_plugin"
_ID_EXACT = 1 << 24  # ids up to 2**24 are stored as float values
_ID_BITS = 0x4A800000  # above: float bits = this + id (nvdiffrast common.h, triidx_to_float)

# One rasterizer context per CUDA device index, created on first use (see the module docstring).
_CONTEXTS: dict[int, Any] = {}


def nvdr() -> ModuleType:
    """``nvdiffrast.torch``, imported on first use; RetinaError naming the extra when it is missing."""
    try:
        import nvdiffrast.torch as module
    except ImportError as err:
        raise RetinaError(MISSING_EXTRA) from err
    return module


def check_available() -> None:
    """Raise RetinaError unless nvdiffrast imports and a CUDA device is visible (nothing is compiled)."""
    nvdr()
    if not torch.cuda.is_available():
        raise RetinaError(NO_CUDA)


def _cuda_index(t: torch.Tensor) -> int:
    """CUDA device index of ``t``; RetinaError when CUDA is absent or ``t`` lives elsewhere."""
    if not torch.cuda.is_available():
        raise RetinaError(NO_CUDA)
    if t.device.type != "cuda":
        raise RetinaError(f"nvdiffrast backend needs a CUDA device: inputs are on {t.device}; move them with .cuda()")
    return t.device.index if t.device.index is not None else torch.cuda.current_device()


def _load_plugin(module: ModuleType) -> None:
    """Build (first time) and import nvdiffrast's plugin, registering it in sys.modules on torch >= 2.9."""
    try:
        module.get_log_level()  # public call that runs the plugin build / import
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith(_PLUGIN_PREFIX):
            raise
        sys.modules[err.name] = _import_built(err.name)
        module.get_log_level()


def _import_built(name: str) -> ModuleType:
    """Import the extension ``name`` that torch.utils.cpp_extension built in its build folder."""
    from torch.utils import cpp_extension

    folder = Path(cpp_extension._get_build_directory(name, False))
    path = folder / f"{name}{cpp_extension.LIB_EXT}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise RetinaError(f"nvdiffrast plugin {name} was not built in {folder}; check nvcc and ninja")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    return plugin


def _context(index: int) -> Any:
    """The cached ``RasterizeCudaContext`` of CUDA device ``index`` (created, and the plugin built, once)."""
    if index not in _CONTEXTS:
        module = nvdr()
        _load_plugin(module)
        _CONTEXTS[index] = module.RasterizeCudaContext(device=index)
    return _CONTEXTS[index]


def _decode_ids(channel: torch.Tensor) -> torch.Tensor:
    """nvdiffrast's float id channel (id + 1, 0 = background) -> int64 ids, -1 = background."""
    shifted = channel.contiguous().view(torch.int32).to(torch.int64) - _ID_BITS
    return torch.where(channel <= _ID_EXACT, channel.to(torch.int64), shifted) - 1


def _encode_ids(tri_id: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_decode_ids`: int ids (-1 = background) -> float32 channel."""
    plus = tri_id.to(torch.int64) + 1
    bits = (plus.clamp(min=_ID_EXACT) + _ID_BITS).to(torch.int32).view(torch.float32)
    return torch.where(plus <= _ID_EXACT, plus.to(torch.float32), bits)


def _tris32(tris: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Triangle indices as nvdiffrast wants them: int32, contiguous, on ``device``."""
    return tris.to(device=device, dtype=torch.int32).contiguous()


def rasterize(pos_clip: torch.Tensor, tris: torch.Tensor, resolution: tuple[int, int]) -> Raster:
    """Rasterize triangles given in clip space (see :func:`retina.render.torch_backend.rasterize`).

    pos_clip (Tensor[B, V, 4]) on a CUDA device (computed in float32); tris (Tensor[T, 3]); resolution
    (H, W). Returns a :class:`Raster` in ``pos_clip``'s dtype.
    """
    if pos_clip.dim() != 3 or pos_clip.shape[-1] != 4:
        raise ValueError(f"pos_clip must be (B, V, 4), got {tuple(pos_clip.shape)}")
    if tris.dim() != 2 or tris.shape[-1] != 3:
        raise ValueError(f"tris must be (T, 3), got {tuple(tris.shape)}")
    h, w = int(resolution[0]), int(resolution[1])
    index = _cuda_index(pos_clip)
    b, dtype = pos_clip.shape[0], pos_clip.dtype
    if tris.shape[0] == 0:
        tri_id = torch.full((b, h, w), -1, dtype=torch.int64, device=pos_clip.device)
        return Raster(tri_id, pos_clip.new_zeros((b, h, w, 3)), pos_clip.new_full((b, h, w), float("inf")))
    tri32 = _tris32(tris, pos_clip.device)
    rast, _ = nvdr().rasterize(_context(index), pos_clip.float().contiguous(), tri32, (h, w), grad_db=False)
    tri_id = _decode_ids(rast[..., 3])
    mask = tri_id >= 0
    u, v = rast[..., 0], rast[..., 1]
    bary = (torch.stack([u, v, 1.0 - u - v], -1) * mask[..., None]).to(dtype)
    bi, yi, xi = mask.nonzero(as_tuple=True)
    corners = pos_clip[bi[:, None], tris.to(pos_clip.device, torch.int64)[tri_id[bi, yi, xi]]]  # (N, 3, 4)
    weights = bary[bi, yi, xi].unsqueeze(-1)
    depth = (weights * corners[..., 2:3]).sum((1, 2)) / (weights * corners[..., 3:4]).sum((1, 2))
    depth_img = pos_clip.new_full((b, h, w), float("inf")).index_put((bi, yi, xi), depth)
    return Raster(tri_id, bary, depth_img)


def interpolate(attr: torch.Tensor, raster: Raster, tris: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex attributes over the covered pixels with nvdiffrast.

    attr (Tensor[B, V, C] or Tensor[V, C]) on CUDA; returns (Tensor[B, H, W, C]) in attr's dtype, zero
    where uncovered. Differentiable with respect to ``attr`` and, through ``raster.bary``, the positions.
    """
    _cuda_index(raster.tri_id)
    mask = raster.mask
    rast = torch.cat(
        [
            raster.bary[..., :2].float(),  # u, v: the third weight is 1 - u - v
            torch.where(mask, raster.depth, torch.zeros_like(raster.depth)).detach().float()[..., None],
            _encode_ids(raster.tri_id)[..., None],
        ],
        -1,
    ).contiguous()
    src = attr if attr.dim() == 3 else attr[None]  # (1, V, C) broadcasts over the batch
    out, _ = nvdr().interpolate(src.float().contiguous(), rast, _tris32(tris, rast.device))
    return out.to(attr.dtype)
