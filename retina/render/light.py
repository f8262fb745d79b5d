"""Lighting: the paper's 9 parameters (point-light position 3, light colour 3, ambient colour 3).

Lambertian reflection with ambient light: ``albedo * (ambient + colour * max(0, n . l))`` where ``l``
is the unit vector from the surface point to the light. All positions are in one frame (the camera
frame of :mod:`retina.render.camera` in this suite).
"""

from __future__ import annotations

import torch


def vertex_normals(vertices: torch.Tensor, tris: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit vertex normals (B, V, 3): area-weighted sums of the normals of the incident triangles.

    vertices (Tensor[B, V, 3]); tris (Tensor[T, 3]) counter-clockwise seen from outside gives outward
    normals in a right-handed frame.
    """
    tris = tris.to(device=vertices.device, dtype=torch.int64)
    v0, v1, v2 = (vertices[:, tris[:, k]] for k in range(3))
    face_n = torch.cross(v1 - v0, v2 - v0, dim=-1)  # length = 2 * area
    b, v = vertices.shape[:2]
    # One index_add over the flattened batch: (B, T, 3) face normals -> each of their three corners.
    idx = (tris.t().reshape(1, -1) + v * torch.arange(b, device=vertices.device)[:, None]).reshape(-1)
    src = face_n.unsqueeze(1).expand(b, 3, -1, 3).reshape(-1, 3)
    normals = vertices.new_zeros(b * v, 3).index_add(0, idx, src).view(b, v, 3)
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(eps)


def lambertian(
    albedo: torch.Tensor,
    normals: torch.Tensor,
    points: torch.Tensor,
    light_position: torch.Tensor,
    light_color: torch.Tensor,
    ambient: torch.Tensor,
) -> torch.Tensor:
    """Shaded colour (..., 3) of surface points.

    albedo, normals, points (Tensor[..., 3]) (normals need not be unit length); light_position,
    light_color, ambient (Tensor[..., 3]) broadcastable to them, e.g. (B, 1, 3) for points (B, N, 3).
    """
    to_light = light_position - points
    l_dir = to_light / to_light.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n_dir = normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    ndotl = (n_dir * l_dir).sum(-1, keepdim=True).clamp_min(0.0)
    return albedo * (ambient + light_color * ndotl)


def split_light(light: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(position, colour, ambient), each (B, 3), of the paper's light vector (B, 9)."""
    return light[:, 0:3], light[:, 3:6], light[:, 6:9]
