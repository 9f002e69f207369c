"""GLDiTalker: graph-enhanced quantised motion space (stage 1) and space-time latent
diffusion (stage 2). Registered as ``"gldi"`` (alias ``"glditalker"``); see
:mod:`voxmesh.models.gldi.model` for the method and ``docs/methods/gldi.md`` for the
choices made where the paper is silent."""

from voxmesh.models.gldi.model import GLDI_DEFAULTS, GLDiTalker, crossfade_weights, plan_windows

__all__ = ["GLDI_DEFAULTS", "GLDiTalker", "crossfade_weights", "plan_windows"]
