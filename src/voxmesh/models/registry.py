"""The registry of methods: name -> model class and what the rest of voxmesh needs to know
about it (title, stochastic or not, shipped configs per dataset, quick-test settings), in
the manner of timm's model registry. A method is one module that registers itself here
plus its configs; nothing else in the code names it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from voxmesh.errors import VoxmeshError
from voxmesh.models.base import TalkingFaceModel


@dataclass(frozen=True)
class MethodInfo:
    """What a method declares when it registers.

    ``configs``: dataset preset -> shipped config name (``voxmesh/configs/<name>.yaml``).
    ``stochastic``: several motions a seed (evaluated over several seeds, with diversity).
    ``sampling_steps``: generation takes a number of sampling steps (a quality/speed curve).
    ``quick_overrides``: config overrides that make the model tiny for smoke tests and
    ``voxmesh benchmark --quick``. ``benchmark_overrides``: the benchmark's training budget.
    ``compared``: one of the methods the benchmark compares side by side."""

    name: str
    title: str
    model_class: type[TalkingFaceModel]
    stochastic: bool = False
    sampling_steps: bool = False
    configs: Mapping[str, str] = field(default_factory=dict)
    quick_overrides: tuple[str, ...] = ()
    benchmark_overrides: tuple[str, ...] = ()
    compared: bool = True


_REGISTRY: dict[str, MethodInfo] = {}  # names and aliases, in registration order


def register(name: str, *, title: str | None = None, stochastic: bool = False, sampling_steps: bool = False,
             configs: Mapping[str, str] | None = None, quick_overrides: tuple[str, ...] | list[str] = (),
             benchmark_overrides: tuple[str, ...] | list[str] = (), aliases: tuple[str, ...] = (),
             compared: bool = True) -> Callable[[type[TalkingFaceModel]], type[TalkingFaceModel]]:
    """Class decorator: register the method ``name`` (the name checkpoints record) with its
    metadata; ``aliases`` are other names configs may use for it."""

    def decorator(cls: type[TalkingFaceModel]) -> type[TalkingFaceModel]:
        cls.method = name
        info = MethodInfo(name, title or cls.__name__, cls, stochastic, sampling_steps, dict(configs or {}),
                          tuple(quick_overrides), tuple(benchmark_overrides), compared)
        _REGISTRY[name] = info
        for alias in aliases:
            _REGISTRY[alias] = info
        return cls

    return decorator


def _registered() -> dict[str, MethodInfo]:
    import voxmesh.models  # noqa: F401  (importing the package registers every method)

    return _REGISTRY


def method_info(name: str) -> MethodInfo:
    """The registered metadata of method ``name`` (or an alias)."""
    registry = _registered()
    key = name.lower()
    if key not in registry:
        raise VoxmeshError(f"Unknown method '{name}'; use one of {', '.join(sorted(registry)) or 'none'}.")
    return registry[key]


def model_class(name: str) -> type[TalkingFaceModel]:
    return method_info(name).model_class


def available_methods() -> list[str]:
    """Every registered name and alias, sorted."""
    return sorted(_registered())


def compared_methods() -> tuple[str, ...]:
    """The methods the benchmark compares, in registration order (baselines first)."""
    seen: list[str] = []
    for info in _registered().values():
        if info.compared and info.name not in seen:
            seen.append(info.name)
    return tuple(seen)


__all__ = ["MethodInfo", "available_methods", "compared_methods", "method_info", "model_class", "register"]
