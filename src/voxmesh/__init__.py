"""voxmesh: speech-driven 3D facial animation."""

__version__ = "0.1.0"

from voxmesh.errors import VoxmeshError

__all__ = ["__version__", "VoxmeshError"]
