"""Wavefront OBJ loading, so a user can bring a face mesh of their own.

Reads ``v`` (positions), ``vt`` (texture coordinates) and ``f`` (faces, ``i``, ``i/t``, ``i//n`` or
``i/t/n``, 1-based or negative relative indices; polygons are fan-triangulated). Other statements
(normals, groups, materials, smoothing) are ignored. Malformed lines raise
:class:`retina.errors.DataFormatError` naming the file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retina.errors import DataFormatError


@dataclass(frozen=True, eq=False)
class ObjMesh:
    """vertices (ndarray[V, 3]) float64; triangles (ndarray[T, 3]) int64, 0-based, in file winding;
    uvs (ndarray[V, 2] float64 or None): per-vertex texture coordinates when every face vertex names
    one and each vertex has a single one (None otherwise)."""

    vertices: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray | None


def _index(token: str, count: int, where: str) -> int:
    try:
        i = int(token)
    except ValueError:
        raise DataFormatError(f"{where}: bad index {token!r}") from None
    j = i - 1 if i > 0 else count + i
    if i == 0 or not 0 <= j < count:
        raise DataFormatError(f"{where}: index {i} out of range (1..{count})")
    return j


def load_obj(path: str | os.PathLike[str]) -> ObjMesh:
    """Load the triangle mesh of an OBJ file (see module docstring)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read OBJ file ({exc.strerror})") from None
    verts: list[list[float]] = []
    uvs: list[list[float]] = []
    tris: list[tuple[int, int, int]] = []
    uv_of: dict[int, int] = {}
    uv_consistent = True
    for n, raw in enumerate(lines, start=1):
        where = f"{path}:{n}"
        parts = raw.split("#", 1)[0].split()
        if not parts:
            continue
        key, args = parts[0], parts[1:]
        if key in ("v", "vt"):
            want = 3 if key == "v" else 2
            try:
                values = [float(a) for a in args[:want]]
            except ValueError:
                raise DataFormatError(f"{where}: bad number in {raw.strip()!r}") from None
            if len(values) < want or not np.all(np.isfinite(values)):
                raise DataFormatError(f"{where}: '{key}' needs {want} finite numbers, got {raw.strip()!r}")
            (verts if key == "v" else uvs).append(values)
        elif key == "f":
            if len(args) < 3:
                raise DataFormatError(f"{where}: a face needs at least 3 vertices, got {raw.strip()!r}")
            corners = []
            for a in args:
                fields = a.split("/")
                vi = _index(fields[0], len(verts), where)
                if len(fields) > 1 and fields[1]:
                    ti = _index(fields[1], len(uvs), where)
                    uv_consistent &= uv_of.setdefault(vi, ti) == ti
                else:
                    uv_consistent = False
                corners.append(vi)
            tris += [(corners[0], corners[k], corners[k + 1]) for k in range(1, len(corners) - 1)]
    if not verts or not tris:
        raise DataFormatError(f"{path}: no {'vertices' if not verts else 'faces'} found")
    vertices = np.asarray(verts, dtype=np.float64)
    uv_arr = None
    if uv_consistent and len(uv_of) == len(verts):
        uv_arr = np.asarray(uvs, dtype=np.float64)[[uv_of[i] for i in range(len(verts))]]
    return ObjMesh(vertices, np.asarray(tris, dtype=np.int64), uv_arr)
