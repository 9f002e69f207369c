"""Mesh topology: templates, regions, mesh files, spirals and the mesh pyramid."""

from voxmesh.mesh.template import (
    Template,
    load_flame_masks,
    load_index_file,
    load_mesh,
    load_regions,
    load_templates,
    save_mesh,
    save_regions,
    save_templates,
    topology_hash,
)

__all__ = [
    "Template",
    "load_flame_masks",
    "load_index_file",
    "load_mesh",
    "load_regions",
    "load_templates",
    "save_mesh",
    "save_regions",
    "save_templates",
    "topology_hash",
]
