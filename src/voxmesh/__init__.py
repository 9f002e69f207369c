"""voxmesh: speech-driven 3D facial animation."""

__version__ = "0.1.0"

from voxmesh.errors import VoxmeshError



def load_model(name_or_path: str = "default", device: str = "cpu", **settings):
    """A trained model ready to animate speech (see :mod:`voxmesh.animate`)."""
    from voxmesh.animate import load_model as _load_model

    return _load_model(name_or_path, device=device, **settings)


__all__ = ["__version__", "VoxmeshError", "load_model"]
