"""The one timing helper the benchmarks share: the package's own, so that `voxmesh
benchmark` and the scripts here time things the same way."""

from voxmesh.benchmark import best_seconds

__all__ = ["best_seconds"]
