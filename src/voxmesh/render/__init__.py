"""voxmesh.render: a headless software renderer for face meshes and contact sheets."""

from voxmesh.render.rasterizer import (
    SKIN_COLOR,
    Camera,
    Lighting,
    Renderer,
    error_colors,
    render_frame,
    render_sequence,
)
from voxmesh.render.sheet import contact_sheet
from voxmesh.render.video import encode_video, probe_media, to_video

__all__ = [
    "SKIN_COLOR",
    "Camera",
    "Lighting",
    "Renderer",
    "contact_sheet",
    "error_colors",
    "render_frame",
    "render_sequence",
    "encode_video",
    "probe_media",
    "to_video",
]
