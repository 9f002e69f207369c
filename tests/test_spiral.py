"""Spiral indices: ring order, orientation, boundaries, fallback, cache, errors."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from voxmesh.errors import VoxmeshError
from voxmesh.files import cache_dir
from voxmesh.mesh.spiral import ordered_one_rings, spiral_indices
from voxmesh.mesh.template import topology_hash


def icosphere(subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces, np.int64)


def open_grid(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """An n x n vertex grid in the z=0 plane, counter-clockwise seen from +z."""
    x, y = np.meshgrid(np.arange(n), np.arange(n), indexing="xy")
    vertices = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], axis=1).astype(np.float32)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            faces += [(a, b, e), (a, e, d)]
    return vertices, np.asarray(faces, np.int64)


def neighbours(faces: np.ndarray, v: int) -> set[int]:
    rows = faces[(faces == v).any(axis=1)]
    return set(rows.ravel().tolist()) - {v}


def oriented_edges(faces: np.ndarray, v: int) -> set[tuple[int, int]]:
    """(x, y) such that some face is a rotation of (v, x, y)."""
    edges = set()
    for a, b, c in faces.tolist():
        for p, q, r in ((a, b, c), (b, c, a), (c, a, b)):
            if p == v:
                edges.add((q, r))
    return edges


def graph_distances(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adj = csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices, num_vertices))
    return shortest_path(adj, unweighted=True, directed=False)


def test_first_entry_is_vertex_and_shape_is_fixed():
    vertices, faces = icosphere()
    spirals = spiral_indices(faces, 12, cache=False)
    assert spirals.dtype == np.int64
    assert spirals.shape == (len(vertices), 12)
    np.testing.assert_array_equal(spirals[:, 0], np.arange(len(vertices)))
    # The sphere is large enough that no vertex repeats inside a spiral.
    assert all(len(set(row.tolist())) == 12 for row in spirals)


def test_one_ring_is_the_neighbours_in_face_orientation():
    vertices, faces = icosphere()
    spirals = spiral_indices(faces, 9, cache=False)
    for v in range(len(vertices)):
        ring_set = neighbours(faces, v)
        ring = spirals[v, 1 : 1 + len(ring_set)].tolist()
        assert set(ring) == ring_set
        assert ring[0] == min(ring_set)  # interior start: lowest index
        edges = oriented_edges(faces, v)
        for k in range(len(ring)):  # cyclically, the fan closes on an interior vertex
            assert (ring[k], ring[(k + 1) % len(ring)]) in edges


def test_later_rings_follow_graph_distance():
    vertices, faces = icosphere()
    spirals = spiral_indices(faces, 24, cache=False)
    dist = graph_distances(faces, len(vertices))
    steps = dist[np.arange(len(vertices))[:, None], spirals]
    assert np.all(np.diff(steps, axis=1) >= 0)
    # One-ring (5 or 6) + two-ring (10 to 12) fill 24 places with 3-ring vertices.
    assert steps.max() == 3


def test_second_ring_continues_the_turn():
    # On a regular grid the two-ring of an interior vertex is walked in one direction.
    vertices, faces = open_grid(7)
    v = 3 * 7 + 3
    spiral = spiral_indices(faces, 1 + 6 + 12, cache=False)[v]
    second = spiral[7:]
    centre = vertices[v, :2]
    angles = np.unwrap(np.arctan2(*(vertices[second, :2] - centre).T[::-1]))
    assert np.all(np.diff(angles) > 0)  # counter-clockwise, like the one-ring
    assert angles[-1] - angles[0] < 2 * np.pi


def test_boundary_vertices_walk_their_fan_in_one_pass():
    vertices, faces = open_grid(6)
    spirals = spiral_indices(faces, 9, cache=False)
    dist = graph_distances(faces, len(vertices))
    boundary = [v for v in range(len(vertices)) if v % 6 in (0, 5) or v // 6 in (0, 5)]
    for v in boundary:
        ring_set = neighbours(faces, v)
        ring = spirals[v, 1 : 1 + len(ring_set)].tolist()
        assert set(ring) == ring_set
        edges = oriented_edges(faces, v)
        # Open fan: every consecutive pair is a face, none closes the loop, and the
        # first neighbour has no face before it.
        assert all((ring[k], ring[k + 1]) in edges for k in range(len(ring) - 1))
        assert not any(b == ring[0] for _, b in edges)
        assert np.all(np.diff(dist[v, spirals[v]]) >= 0)
    # The corner (0, 0) has the two triangles (0,1,7), (0,7,6): fan 1 -> 7 -> 6.
    np.testing.assert_array_equal(spirals[0, :4], [0, 1, 7, 6])


def test_ordering_ignores_face_order_and_rotation():
    vertices, faces = icosphere()
    rng = np.random.default_rng(0)
    shuffled = faces[rng.permutation(len(faces))]
    shift = rng.integers(0, 3, len(faces))
    rotated = np.stack([np.roll(row, s) for row, s in zip(shuffled, shift)])
    np.testing.assert_array_equal(spiral_indices(faces, 12, cache=False), spiral_indices(rotated, 12, cache=False))
    np.testing.assert_array_equal(spiral_indices(faces, 12, cache=False), spiral_indices(faces, 12, cache=False))


def test_dilation_strides_the_long_spiral():
    _, faces = icosphere()
    long = spiral_indices(faces, 24, cache=False)
    dilated = spiral_indices(faces, 8, dilation=3, cache=False)
    assert dilated.shape == (len(long), 8)
    np.testing.assert_array_equal(dilated, long[:, ::3])


def test_cache_hit_returns_the_same_array():
    vertices, faces = icosphere(1)
    first = spiral_indices(faces, 9, dilation=2)
    path = cache_dir("spirals") / f"{topology_hash(faces, len(vertices))}_L9_D2.npy"
    assert path.is_file()
    np.testing.assert_array_equal(np.load(path), first)
    again = spiral_indices(faces, 9, dilation=2)
    np.testing.assert_array_equal(again, first)
    # A corrupt cache file is rebuilt, not trusted.
    path.write_bytes(b"not an array")
    np.testing.assert_array_equal(spiral_indices(faces, 9, dilation=2), first)
    np.testing.assert_array_equal(np.load(path), first)


def test_small_component_falls_back_to_nearest_vertices():
    vertices, faces = icosphere(1)
    n = len(vertices)
    # A lone triangle floating beside the sphere: its rings hold only 3 vertices.
    lone = np.array([[1.5, 0.0, 0.0], [1.6, 0.1, 0.0], [1.6, -0.1, 0.0]], np.float32)
    vertices = np.concatenate([vertices, lone])
    faces = np.concatenate([faces, [[n, n + 1, n + 2]]])
    spirals = spiral_indices(faces, 9, vertices=vertices, cache=False)
    for v in (n, n + 1, n + 2):
        row = spirals[v].tolist()
        assert row[0] == v and set(row[:3]) == {n, n + 1, n + 2}
        dist = np.linalg.norm(vertices[:n] - vertices[v], axis=1)
        expected = np.lexsort((np.arange(n), dist))[:6]
        assert row[3:] == expected.tolist()
    # Sphere vertices are untouched by the lone triangle.
    np.testing.assert_array_equal(spirals[:n], spiral_indices(faces[:-1], 9, cache=False))
    # Without positions the short spiral repeats cyclically.
    repeated = spiral_indices(faces, 9, cache=False)
    np.testing.assert_array_equal(repeated[n], np.resize(repeated[n, :3], 9))
    # The cached (topological) part serves both calls with and without positions.
    cached_with = spiral_indices(faces, 9, vertices=vertices)
    cached_without = spiral_indices(faces, 9)
    np.testing.assert_array_equal(cached_with, spirals)
    np.testing.assert_array_equal(cached_without, repeated)


def test_non_manifold_vertex_walks_each_fan():
    # Two triangles touching only at vertex 0 (a bow tie).
    faces = np.array([[0, 3, 4], [0, 1, 2]])
    rings = ordered_one_rings(faces, 5)
    assert rings[0] == [1, 2, 3, 4]
    spirals = spiral_indices(faces, 5, cache=False)
    np.testing.assert_array_equal(spirals[0], [0, 1, 2, 3, 4])


def test_pinched_vertex_keeps_both_closed_fans():
    # Two tetrahedra sharing only vertex 0: two closed fans around it.
    tetra = np.array([[0, 2, 1], [0, 3, 2], [0, 1, 3], [1, 2, 3]])
    faces = np.concatenate([tetra, np.where(tetra == 0, 0, tetra + 3)])
    ring = ordered_one_rings(faces, 7)[0]
    assert ring == [1, 3, 2, 4, 6, 5]  # each fan walked in face orientation
    assert spiral_indices(faces, 7, cache=False)[0].tolist()[1:] == ring


def test_isolated_vertex_gets_a_full_row():
    vertices, faces = icosphere(1)
    vertices = np.concatenate([vertices, [[3.0, 0.0, 0.0]]]).astype(np.float32)
    spirals = spiral_indices(faces, 4, vertices=vertices, cache=False)
    assert spirals[-1, 0] == len(vertices) - 1
    assert len(set(spirals[-1].tolist())) == 4


@pytest.mark.parametrize(
    "faces, vertices, length",
    [
        (np.array([[0, 1, 5]]), np.zeros((3, 3)), 9),
        (np.array([[0, -1, 2]]), None, 9),
        (np.array([[0, 1]]), None, 9),
        (np.array([[0, 1, 2]]), None, 0),
    ],
)
def test_bad_input_raises_one_sentence(faces, vertices, length):
    with pytest.raises(VoxmeshError) as info:
        spiral_indices(faces, length, vertices=vertices, cache=False)
    message = str(info.value)
    assert message.endswith(".") and message.count(". ") == 0
