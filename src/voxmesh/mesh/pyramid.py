"""A mesh pyramid: coarser versions of a topology with down- and up-sampling matrices,
for graph models that pool and unpool over the mesh (COMA-style encoders/decoders).

Level ``i + 1`` is a quadric decimation of level ``i`` (``fast-simplification``).
Down-sampling averages the fine vertices that collapsed into each coarse vertex; up-
sampling gives each fine vertex the barycentric weights of its closest point on the
coarse surface. Both are sparse ``torch`` matrices whose rows sum to one.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path, cache_dir, content_hash
from voxmesh.mesh.template import topology_hash

if TYPE_CHECKING:
    import torch

# Bumped when the construction changes, so that stale cached pyramids are rebuilt.
_PYRAMID_FORMAT = 1
# Closest coarse triangles (by centroid) tried for each fine vertex, on top of the
# triangles around the coarse vertex it collapsed into.
_CANDIDATE_TRIANGLES = 8
# Below this many vertices a level has no useful surface left to decimate.
_MIN_LEVEL_VERTICES = 4


@dataclass
class MeshPyramid:
    """Meshes from fine to coarse with the matrices between them.

    levels: ``[(vertices float32 [V_i, 3], faces int64 [F_i, 3])]``, level 0 the input;
    down: sparse float32 ``[V_{i+1}, V_i]`` (``coarse = down[i] @ fine``);
    up: sparse float32 ``[V_i, V_{i+1}]`` (``fine = up[i] @ coarse``);
    factors: the reduction asked for between consecutive levels.
    """

    levels: list[tuple[np.ndarray, np.ndarray]]
    down: list["torch.Tensor"]
    up: list["torch.Tensor"]
    factors: tuple[float, ...] = field(default_factory=tuple)

    @property
    def num_vertices(self) -> list[int]:
        """Vertex count of every level, fine to coarse."""
        return [int(v.shape[0]) for v, _ in self.levels]

    def spirals(self, length: int, dilation: int = 1, cache: bool = True) -> list[np.ndarray]:
        """Spiral indices int64 ``[V_i, length]`` of every level (see
        :func:`voxmesh.mesh.spiral_indices`)."""
        from voxmesh.mesh.spiral import spiral_indices

        return [spiral_indices(f, length, dilation, vertices=v, cache=cache) for v, f in self.levels]


def build_mesh_pyramid(
    vertices: np.ndarray,
    faces: np.ndarray,
    factors: Sequence[float] = (4, 4, 4),
    cache: bool = True,
) -> MeshPyramid:
    """Decimate a mesh level by level and build the sampling matrices.

    vertices: float ``[V, 3]``; faces: int ``[F, 3]``; factors: for each coarser level,
    by how much the vertex count shrinks (each > 1). Returns ``len(factors) + 1``
    levels. The result is cached under ``cache_dir("pyramids")`` keyed by the topology
    hash, the factors and a hash of the vertex positions (decimation is geometric, so
    another template of the same topology gets its own pyramid); ``cache=False``
    bypasses the cache.
    """
    vertices, faces, factors = _check_inputs(vertices, faces, factors)
    path = None
    if cache:
        key = content_hash(
            topology_hash(faces, len(vertices)),
            ",".join(f"{x:g}" for x in factors),
            vertices.tobytes(),
            str(_PYRAMID_FORMAT),
        )
        path = cache_dir("pyramids") / f"{key}.npz"
        cached = _load_pyramid(path, factors)
        if cached is not None:
            return cached
    pyramid = _build(vertices, faces, factors)
    if path is not None:
        _save_pyramid(path, pyramid)
    return pyramid


# ---- construction ------------------------------------------------------------------
def _build(vertices: np.ndarray, faces: np.ndarray, factors: tuple[float, ...]) -> MeshPyramid:
    import fast_simplification

    levels = [(vertices, faces)]
    down, up = [], []
    for level, factor in enumerate(factors, start=1):
        fine_v, fine_f = levels[-1]
        target_faces = max(_MIN_LEVEL_VERTICES, int(round(len(fine_f) / factor)))
        if target_faces >= len(fine_f) or len(fine_v) / factor < _MIN_LEVEL_VERTICES:
            raise VoxmeshError(
                f"Level {level} of the mesh pyramid would keep {len(fine_v) / factor:.0f} of "
                f"{len(fine_v)} vertices; use fewer or smaller factors than {list(factors)}."
            )
        _, _, collapses = fast_simplification.simplify(
            fine_v.astype(np.float64), fine_f, target_count=target_faces, return_collapses=True
        )
        # Replaying the collapses gives the coarse mesh together with the fine -> coarse
        # vertex map that the down-sampling matrix needs.
        coarse_v, coarse_f, mapping = fast_simplification.replay_simplification(
            np.ascontiguousarray(fine_v, dtype=np.float32),
            np.ascontiguousarray(fine_f, dtype=np.int32),
            np.ascontiguousarray(collapses, dtype=np.int32),
        )
        coarse_v = np.ascontiguousarray(coarse_v, dtype=np.float32)
        coarse_f = np.ascontiguousarray(coarse_f, dtype=np.int64).reshape(-1, 3)
        mapping = np.asarray(mapping, dtype=np.int64)
        if len(coarse_v) < _MIN_LEVEL_VERTICES or len(coarse_f) == 0:
            raise VoxmeshError(
                f"Level {level} of the mesh pyramid collapsed to {len(coarse_v)} vertices; "
                f"use fewer or smaller factors than {list(factors)}."
            )
        down.append(_averaging_matrix(mapping, len(coarse_v)))
        up.append(_sparse(*_barycentric_weights(fine_v, coarse_v, coarse_f, mapping), (len(fine_v), len(coarse_v))))
        levels.append((coarse_v, coarse_f))
    return MeshPyramid(levels, [_sparse(*d) for d in down], up, factors)


def _averaging_matrix(mapping: np.ndarray, num_coarse: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """COO parts of ``[V_coarse, V_fine]``: each coarse vertex is the mean of the fine
    vertices mapped to it (unreferenced fine vertices, mapped to -1, get no column)."""
    cols = np.flatnonzero(mapping >= 0)
    rows = mapping[cols]
    counts = np.bincount(rows, minlength=num_coarse)
    if np.any(counts == 0):
        # A coarse vertex with no fine vertex would be a zero row; the decimation never
        # makes one, so this is a defect in the mapping rather than in the user's mesh.
        raise VoxmeshError(
            f"The decimation left {int(np.sum(counts == 0))} coarse vertices without fine ones; "
            "report this mesh as a bug."
        )
    vals = 1.0 / counts[rows]
    return rows, cols, vals, (num_coarse, len(mapping))


def _barycentric_weights(
    fine_v: np.ndarray, coarse_v: np.ndarray, coarse_f: np.ndarray, mapping: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO rows, cols, values of ``[V_fine, V_coarse]``: barycentric coordinates of
    each fine vertex's closest point on the coarse surface (non-negative, rows sum to 1)."""
    from scipy.spatial import cKDTree
    from trimesh.triangles import closest_point, points_to_barycentric

    fine = np.asarray(fine_v, dtype=np.float64)
    coarse = np.asarray(coarse_v, dtype=np.float64)
    tri = coarse[coarse_f]  # [Fc, 3, 3]
    num_fine = len(fine)

    # Candidates: triangles with the nearest centroids, plus those around the coarse
    # vertex the fine vertex collapsed into (catches long thin triangles whose
    # centroid is far from the point).
    k = min(_CANDIDATE_TRIANGLES, len(coarse_f))
    _, near = cKDTree(tri.mean(axis=1)).query(fine, k=k)
    near = np.asarray(near, dtype=np.int64).reshape(num_fine, k)
    incident = _incident_faces(coarse_f, len(coarse))
    around = incident[np.where(mapping >= 0, mapping, 0)]  # [V_fine, max_degree], -1 padded
    around = np.where((around >= 0) & (mapping[:, None] >= 0), around, near[:, :1])
    candidates = np.concatenate([near, around], axis=1)
    width = candidates.shape[1]

    flat = candidates.reshape(-1)
    points = np.repeat(fine, width, axis=0)
    closest = closest_point(tri[flat], points)
    dist = np.einsum("ij,ij->i", closest - points, closest - points).reshape(num_fine, width)
    best = np.argmin(dist, axis=1)  # first minimum: ties resolve deterministically
    best_face = candidates[np.arange(num_fine), best]
    best_point = closest.reshape(num_fine, width, 3)[np.arange(num_fine), best]

    with np.errstate(invalid="ignore", divide="ignore"):
        weights = points_to_barycentric(tri[best_face], best_point)
    weights = np.clip(np.nan_to_num(weights, nan=0.0), 0.0, None)
    total = weights.sum(axis=1, keepdims=True)
    degenerate = total[:, 0] <= 1e-12
    if np.any(degenerate):
        # A degenerate (zero-area) triangle has no barycentric frame: take its corner
        # closest to the fine vertex.
        corners = tri[best_face[degenerate]]
        nearest = np.argmin(np.linalg.norm(corners - fine[degenerate][:, None], axis=2), axis=1)
        weights[degenerate] = np.eye(3)[nearest]
        total[degenerate] = 1.0
    weights = weights / total

    rows = np.repeat(np.arange(num_fine, dtype=np.int64), 3)
    cols = coarse_f[best_face].reshape(-1)
    return rows, cols, weights.reshape(-1)


def _incident_faces(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """int64 ``[V, max_degree]``: faces around each vertex, padded with -1."""
    corner_vertex = faces.reshape(-1)
    corner_face = np.repeat(np.arange(len(faces), dtype=np.int64), 3)
    order = np.argsort(corner_vertex, kind="stable")
    corner_vertex, corner_face = corner_vertex[order], corner_face[order]
    counts = np.bincount(corner_vertex, minlength=num_vertices)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(corner_vertex)) - starts[corner_vertex]
    table = np.full((num_vertices, max(1, int(counts.max(initial=0)))), -1, dtype=np.int64)
    table[corner_vertex, slot] = corner_face
    return table


def _sparse(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int]) -> "torch.Tensor":
    import torch

    indices = torch.from_numpy(np.stack([np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)]))
    values = torch.from_numpy(np.asarray(vals, dtype=np.float32))
    # Invariant checks are cheap at these sizes and turn a corrupt cache file into an
    # error instead of a crash; coalesce sums repeated (row, col) pairs.
    size = tuple(int(s) for s in shape)
    return torch.sparse_coo_tensor(indices, values, size, check_invariants=True).coalesce()


# ---- validation --------------------------------------------------------------------
def _check_inputs(
    vertices: np.ndarray, faces: np.ndarray, factors: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    vertices = np.ascontiguousarray(vertices, dtype=np.float32)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise VoxmeshError(f"Pyramid vertices have shape {vertices.shape}; pass float [V, 3] positions.")
    if not np.all(np.isfinite(vertices)):
        raise VoxmeshError("Pyramid vertices hold NaN or infinite values; pass a finite template.")
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise VoxmeshError(f"Pyramid faces have shape {faces.shape}; pass int [F, 3] triangles.")
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    if faces.min() < 0 or faces.max() >= len(vertices):
        bad = int(faces.min()) if faces.min() < 0 else int(faces.max())
        raise VoxmeshError(
            f"Faces index vertex {bad} but the mesh has {len(vertices)} vertices; use faces that match the vertices."
        )
    try:
        factors = tuple(float(x) for x in factors)
    except (TypeError, ValueError):
        raise VoxmeshError(f"Pyramid factors {factors!r} are not numbers; pass for example (4, 4, 4).") from None
    if not factors or any(not np.isfinite(x) or x <= 1 for x in factors):
        raise VoxmeshError(f"Pyramid factors {list(factors)} must each be greater than 1; pass for example (4, 4, 4).")
    return vertices, faces, factors


# ---- cache -------------------------------------------------------------------------
def _save_pyramid(path: Path, pyramid: MeshPyramid) -> None:
    arrays: dict[str, np.ndarray] = {
        "format": np.array(_PYRAMID_FORMAT),
        "factors": np.asarray(pyramid.factors, dtype=np.float64),
    }
    for i, (v, f) in enumerate(pyramid.levels):
        arrays[f"vertices_{i}"] = v
        arrays[f"faces_{i}"] = f
    for name, mats in (("down", pyramid.down), ("up", pyramid.up)):
        for i, mat in enumerate(mats):
            arrays[f"{name}_{i}_indices"] = mat.indices().numpy()
            arrays[f"{name}_{i}_values"] = mat.values().numpy()
            arrays[f"{name}_{i}_shape"] = np.asarray(mat.shape, dtype=np.int64)
    with atomic_path(path, sweep=False) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load_pyramid(path: Path, factors: tuple[float, ...]) -> MeshPyramid | None:
    """The cached pyramid, or None when absent, unreadable or of another format."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) != _PYRAMID_FORMAT or tuple(data["factors"].tolist()) != factors:
                return None
            count = len(factors) + 1
            levels = [(data[f"vertices_{i}"], data[f"faces_{i}"]) for i in range(count)]
            mats = {
                name: [
                    _sparse(
                        data[f"{name}_{i}_indices"][0],
                        data[f"{name}_{i}_indices"][1],
                        data[f"{name}_{i}_values"],
                        tuple(data[f"{name}_{i}_shape"].tolist()),
                    )
                    for i in range(count - 1)
                ]
                for name in ("down", "up")
            }
    except (OSError, EOFError, KeyError, ValueError, RuntimeError, zipfile.BadZipFile):
        return None
    return MeshPyramid(levels, mats["down"], mats["up"], factors)
