"""Spiral neighbourhoods of mesh vertices (the SpiralNet++ ordering), in numpy.

A spiral starts at the vertex, walks its one-ring in the faces' counter-clockwise
orientation, then the following rings, so that a spiral convolution can apply one
weight per spiral position. Everything here depends on the topology only (plus the
vertex positions for the fallback described in :func:`spiral_indices`), and results
are cached on disk per topology.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path, cache_dir
from voxmesh.mesh.template import topology_hash

# Marks spiral positions that the rings of a vertex could not fill (small components).
_MISSING = -1


def spiral_indices(
    faces: np.ndarray,
    length: int,
    dilation: int = 1,
    vertices: np.ndarray | None = None,
    cache: bool = True,
) -> np.ndarray:
    """Spiral vertex indices int64 ``[V, length]`` for a triangle mesh.

    faces: int ``[F, 3]``, counter-clockwise seen from outside; vertices: optional
    float ``[V, 3]`` (gives ``V`` and positions for the fallback; without it ``V`` is
    ``faces.max() + 1``).

    Row ``v`` is ``v`` itself, then its one-ring in the faces' cyclic orientation
    (a boundary vertex starts at the neighbour where its fan begins, so the fan is
    walked in one pass; an interior vertex starts at its lowest-index neighbour;
    a non-manifold vertex walks its open fans from their ends, then its closed fans,
    each from the lowest index, then appends leftovers in index order), then the
    next rings. A ring is gathered by walking the previous ring in order and
    appending each vertex's unvisited neighbours in its cyclic order, starting just
    after an already visited neighbour so that the spiral keeps turning the same way.
    The sequence is cut to ``length * dilation`` entries and strided by ``dilation``.
    The result does not depend on the order of the faces or on which corner each
    face lists first.

    Fallback when the rings run out (components smaller than the spiral): with
    ``vertices``, the remaining places take the nearest vertices in space that are not
    yet in the spiral (ties by index); without it, or when the mesh itself is too small,
    the spiral found so far repeats cyclically. Either way every row is full and
    deterministic.

    The topological part is cached under ``cache_dir("spirals")``, keyed by the
    topology hash, ``length`` and ``dilation``; ``cache=False`` bypasses the cache.
    """
    faces, num_vertices, positions = _check_inputs(faces, length, dilation, vertices)
    spirals = None
    path = None
    if cache:
        key = f"{topology_hash(faces, num_vertices)}_L{int(length)}_D{int(dilation)}"
        path = cache_dir("spirals") / f"{key}.npy"
        spirals = _load_cached(path, (num_vertices, int(length)))
    if spirals is None:
        spirals = _topological_spirals(faces, num_vertices, int(length), int(dilation))
        if path is not None:
            with atomic_path(path, sweep=False) as tmp, open(tmp, "wb") as fh:
                np.save(fh, spirals)
    return _fill_missing(spirals, positions)


def ordered_one_rings(faces: np.ndarray, num_vertices: int) -> list[list[int]]:
    """Each vertex's neighbours in the faces' counter-clockwise order (see
    :func:`spiral_indices` for where each ring starts). faces: int64 ``[F, 3]``."""
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    # Degenerate triangles carry no orientation; leave them out of the fans.
    good = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[good]
    # In face (a, b, c) the counter-clockwise walk around a goes b -> c, around b
    # goes c -> a and around c goes a -> b: one "wedge" (centre, from, to) a corner.
    centre = faces.reshape(-1)
    src = faces[:, [1, 2, 0]].reshape(-1)
    dst = faces[:, [2, 0, 1]].reshape(-1)
    order = np.lexsort((dst, src, centre))
    centre, src, dst = centre[order], src[order], dst[order]
    bounds = np.searchsorted(centre, np.arange(num_vertices + 1)).tolist()
    src_list, dst_list = src.tolist(), dst.tolist()

    rings: list[list[int]] = []
    for v in range(num_vertices):
        lo, hi = bounds[v], bounds[v + 1]
        if lo == hi:
            rings.append([])
            continue
        s, d = src_list[lo:hi], dst_list[lo:hi]
        succ = dict(zip(s, d))
        if len(succ) == len(s) and len(set(d)) == len(d):
            # Manifold (the usual case): at most one open end.
            starts = set(s).difference(d)
            # One closed fan (interior) or one open fan (boundary); anything else,
            # e.g. two closed fans meeting at a pinched vertex, goes the slow way.
            if not starts:
                ring = _walk(succ, min(s), hi - lo)
                if len(ring) == hi - lo:
                    rings.append(ring)
                    continue
            elif len(starts) == 1:
                ring = _walk(succ, starts.pop(), hi - lo + 1)
                if len(ring) == hi - lo + 1:
                    rings.append(ring)
                    continue
        rings.append(_non_manifold_ring(s, d))
    return rings


def _walk(succ: dict[int, int], start: int, count: int) -> list[int]:
    ring = [start]
    current = start
    for _ in range(count - 1):
        current = succ.get(current)
        if current is None or current == start:
            break
        ring.append(current)
    return ring


def _non_manifold_ring(s: list[int], d: list[int]) -> list[int]:
    """Walk every open fan from its end (lowest index first), then every closed fan
    from its lowest unseen vertex, then add what is left (vertices reached only by
    repeated edges) in index order."""
    succ: dict[int, int] = {}
    for a, b in zip(s, d):
        succ.setdefault(a, b)
    starts = sorted(set(s).difference(d)) + sorted(set(s))
    ring: list[int] = []
    seen: set[int] = set()
    for start in starts:
        current: int | None = start
        while current is not None and current not in seen:
            ring.append(current)
            seen.add(current)
            current = succ.get(current)
    ring.extend(sorted(set(d).difference(seen)))
    return ring


def _topological_spirals(faces: np.ndarray, num_vertices: int, length: int, dilation: int) -> np.ndarray:
    """``[V, length]`` spirals with ``_MISSING`` where the rings ran out."""
    rings = ordered_one_rings(faces, num_vertices)
    needed = length * dilation
    out = np.full((num_vertices, needed), _MISSING, dtype=np.int64)
    # stamp[u] == v marks u as visited by the spiral of v: no per-vertex set to clear.
    stamp = [-1] * num_vertices
    for v in range(num_vertices):
        spiral = [v]
        stamp[v] = v
        for u in rings[v]:
            if stamp[u] != v:
                stamp[u] = v
                spiral.append(u)
        frontier_start = 1
        while len(spiral) < needed and frontier_start < len(spiral):
            frontier_end = len(spiral)
            for position in range(frontier_start, frontier_end):
                ring = rings[spiral[position]]
                count = len(ring)
                if count == 0:
                    continue
                # Start just after a visited neighbour followed by an unvisited one,
                # so the new vertices continue the turn of the previous ring.
                start = 0
                for k in range(count):
                    if stamp[ring[k - 1]] == v and stamp[ring[k]] != v:
                        start = k
                        break
                for k in range(start, start + count):
                    u = ring[k % count]
                    if stamp[u] != v:
                        stamp[u] = v
                        spiral.append(u)
                if len(spiral) >= needed:
                    break
            frontier_start = frontier_end
        spiral = spiral[:needed]
        out[v, : len(spiral)] = spiral
    return np.ascontiguousarray(out[:, ::dilation][:, :length])


def _fill_missing(spirals: np.ndarray, positions: np.ndarray | None) -> np.ndarray:
    """Replace ``_MISSING`` places by the nearest unused vertices (with positions) or
    by repeating the row (without)."""
    spirals = spirals.copy()
    short_rows = np.flatnonzero((spirals == _MISSING).any(axis=1))
    if short_rows.size == 0:
        return spirals
    length = spirals.shape[1]
    num_vertices = spirals.shape[0]
    tree = None
    if positions is not None and num_vertices > 1:
        from scipy.spatial import cKDTree

        tree = cKDTree(positions)
    for v in short_rows.tolist():
        row = spirals[v]
        known = row[row != _MISSING].tolist()
        if tree is not None:
            k = min(num_vertices, 2 * length + 1)
            while True:
                dist, idx = tree.query(positions[v], k=k)
                candidates = np.atleast_1d(idx)[np.lexsort((np.atleast_1d(idx), np.atleast_1d(dist)))]
                used = set(known)
                extra = [int(c) for c in candidates.tolist() if c not in used and c < num_vertices]
                if len(known) + len(extra) >= length or k >= num_vertices:
                    break
                k = min(num_vertices, 2 * k)
            known = known + extra[: length - len(known)]
        # Mesh smaller than the spiral (or no positions): repeat what there is.
        spirals[v] = np.resize(np.asarray(known, dtype=np.int64), length)
    return spirals


def _check_inputs(
    faces: np.ndarray, length: int, dilation: int, vertices: np.ndarray | None
) -> tuple[np.ndarray, int, np.ndarray | None]:
    if int(length) < 1 or int(length) != length:
        raise VoxmeshError(f"Spiral length {length} is not a positive integer; use for example 9 or 12.")
    if int(dilation) < 1 or int(dilation) != dilation:
        raise VoxmeshError(f"Spiral dilation {dilation} is not a positive integer; use 1 for no dilation.")
    faces = np.asarray(faces)
    if faces.size == 0:
        faces = faces.reshape(0, 3)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise VoxmeshError(f"Faces of shape {faces.shape} are not triangles; pass an int array of shape [F, 3].")
    if not np.issubdtype(faces.dtype, np.integer):
        if not np.all(np.isfinite(faces)) or not np.all(faces == np.round(faces)):
            raise VoxmeshError("Faces hold non-integer vertex indices; pass an int array of shape [F, 3].")
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    positions = None
    if vertices is not None:
        positions = np.asarray(vertices, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 3:
            raise VoxmeshError(f"Vertices of shape {positions.shape} are not [V, 3]; pass one xyz row a vertex.")
        num_vertices = len(positions)
    else:
        num_vertices = int(faces.max()) + 1 if faces.size else 0
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        bad = int(faces.min()) if faces.min() < 0 else int(faces.max())
        raise VoxmeshError(
            f"Faces index vertex {bad} but the mesh has {num_vertices} vertices; use faces that match the vertices."
        )
    if num_vertices == 0:
        raise VoxmeshError("The mesh has no vertices, so it has no spirals; pass faces or vertices of a real mesh.")
    return faces, num_vertices, positions


def _load_cached(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """A cached array of the expected shape, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        cached = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError):
        return None
    if cached.shape != shape or cached.dtype != np.int64:
        return None
    return cached
