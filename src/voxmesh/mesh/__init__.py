"""Mesh topology: templates, regions, mesh files, spirals and the mesh pyramid."""

from voxmesh.mesh.pyramid import MeshPyramid, build_mesh_pyramid
from voxmesh.mesh.spiral import ordered_one_rings, spiral_indices
from voxmesh.mesh.template import (
    Template,
    load_face,
    load_flame_masks,
    load_index_file,
    load_mesh,
    load_regions,
    load_templates,
    save_mesh,
    save_regions,
    save_templates,
    scale_problem,
    topology_hash,
)

__all__ = [
    "MeshPyramid",
    "Template",
    "build_mesh_pyramid",
    "load_face",
    "load_flame_masks",
    "load_index_file",
    "load_mesh",
    "load_regions",
    "load_templates",
    "ordered_one_rings",
    "save_mesh",
    "save_regions",
    "save_templates",
    "scale_problem",
    "spiral_indices",
    "topology_hash",
]
