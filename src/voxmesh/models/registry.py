"""Method name -> model class."""

from __future__ import annotations

from typing import Callable

from voxmesh.errors import VoxmeshError
from voxmesh.models.base import TalkingFaceModel

_REGISTRY: dict[str, type[TalkingFaceModel]] = {}


def register(name: str) -> Callable[[type[TalkingFaceModel]], type[TalkingFaceModel]]:
    def decorator(cls: type[TalkingFaceModel]) -> type[TalkingFaceModel]:
        cls.method = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def model_class(name: str) -> type[TalkingFaceModel]:
    import voxmesh.models  # noqa: F401  (importing the package registers every method)

    key = name.lower()
    if key not in _REGISTRY:
        raise VoxmeshError(f"Unknown method '{name}'; use one of {', '.join(sorted(_REGISTRY)) or 'none'}.")
    return _REGISTRY[key]


def available_methods() -> list[str]:
    import voxmesh.models  # noqa: F401

    return sorted(_REGISTRY)
