"""Face meshes: the suite's procedural template, its morphable space, its albedo, and OBJ loading."""

from retina.mesh.albedo import REGIONS, AlbedoColors, HairStyle, albedo_at, face_zone
from retina.mesh.morphable import FaceParams, face_shape, sample_face_params, vertex_albedo, vertex_tint
from retina.mesh.obj import ObjMesh, load_obj
from retina.mesh.template import FaceTemplate, build_template, mesh_edges

__all__ = [
    "REGIONS",
    "AlbedoColors",
    "FaceParams",
    "FaceTemplate",
    "HairStyle",
    "ObjMesh",
    "albedo_at",
    "build_template",
    "face_shape",
    "face_zone",
    "load_obj",
    "mesh_edges",
    "sample_face_params",
    "vertex_albedo",
    "vertex_tint",
]
