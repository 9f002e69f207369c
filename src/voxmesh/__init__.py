"""voxmesh: speech-driven 3D facial animation."""

__version__ = "0.1.0"

from voxmesh.errors import VoxmeshError



def load_model(name_or_path: str = "default", device: str = "cpu", **settings):
    """A trained model ready to animate speech: :meth:`voxmesh.TalkingFacePipeline.from_pretrained`."""
    from voxmesh.pipeline import load_model as _load_model

    return _load_model(name_or_path, device=device, **settings)


# The pipeline pulls in torch: loaded on first access, so `import voxmesh` stays light.
_LAZY = {"TalkingFacePipeline": "voxmesh.pipeline", "Conditions": "voxmesh.pipeline",
         "AnimationOutput": "voxmesh.pipeline"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'voxmesh' has no attribute {name!r}")


__all__ = ["__version__", "AnimationOutput", "Conditions", "TalkingFacePipeline", "VoxmeshError", "load_model"]
