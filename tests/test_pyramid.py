"""Mesh pyramid: level sizes, sampling matrices, reconstruction, cache, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from voxmesh.errors import VoxmeshError
from voxmesh.files import cache_dir
from voxmesh.mesh.pyramid import MeshPyramid, build_mesh_pyramid


@pytest.fixture(scope="module")
def sphere() -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.creation.icosphere(subdivisions=4)  # 2562 vertices, unit radius
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)


@pytest.fixture(scope="module")
def pyramid(sphere) -> MeshPyramid:
    return build_mesh_pyramid(*sphere, factors=(4, 4), cache=False)


def open_grid(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.meshgrid(np.arange(n), np.arange(n), indexing="xy")
    vertices = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], axis=1).astype(np.float32) / n
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            faces += [(a, b, e), (a, e, d)]
    return vertices, np.asarray(faces, np.int64)


def dense(matrix: torch.Tensor) -> np.ndarray:
    return matrix.to_dense().numpy()


def test_levels_shrink_by_the_factors(pyramid, sphere):
    assert len(pyramid.levels) == 3 and len(pyramid.down) == 2 and len(pyramid.up) == 2
    np.testing.assert_array_equal(pyramid.levels[0][0], sphere[0])
    np.testing.assert_array_equal(pyramid.levels[0][1], sphere[1])
    counts = pyramid.num_vertices
    for fine, coarse in zip(counts, counts[1:]):
        assert abs(coarse - fine / 4) <= 0.1 * fine / 4
    for v, f in pyramid.levels:
        assert v.dtype == np.float32 and v.shape[1] == 3
        assert f.dtype == np.int64 and f.min() >= 0 and f.max() < len(v)


def test_coarse_levels_keep_the_outward_orientation(pyramid):
    for v, f in pyramid.levels[1:]:
        corners = v[f]
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        assert np.all(np.einsum("ij,ij->i", normals, corners.mean(axis=1)) > 0)


def test_down_rows_are_averages(pyramid):
    for i, down in enumerate(pyramid.down):
        assert down.layout == torch.sparse_coo and down.dtype == torch.float32
        assert tuple(down.shape) == (pyramid.num_vertices[i + 1], pyramid.num_vertices[i])
        matrix = dense(down)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
        # Every fine vertex goes to exactly one coarse vertex, with equal weights per row.
        assert np.all((matrix > 0).sum(axis=0) == 1)
        for row in matrix[:20]:
            weights = row[row > 0]
            np.testing.assert_allclose(weights, weights[0])


def test_up_rows_are_convex_weights(pyramid):
    for i, up in enumerate(pyramid.up):
        assert tuple(up.shape) == (pyramid.num_vertices[i], pyramid.num_vertices[i + 1])
        matrix = dense(up)
        assert matrix.min() >= 0.0
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)
        assert np.all((matrix > 0).sum(axis=1) <= 3)


@pytest.mark.parametrize(
    "field",
    [lambda x: x[:, 0] + 2 * x[:, 1] - x[:, 2], lambda x: np.sin(2 * x[:, 0]) * np.cos(x[:, 1]) + x[:, 2]],
)
def test_down_then_up_reproduces_a_smooth_field(pyramid, field):
    fine_vertices = pyramid.levels[0][0]
    values = torch.from_numpy(field(fine_vertices).astype(np.float32))[:, None]
    rebuilt = pyramid.up[0] @ (pyramid.down[0] @ values)
    error = (rebuilt - values).abs()
    # The fields span 4 to 5 units on the unit sphere; measured: mean 0.010, max 0.05.
    assert float(error.mean()) < 0.02
    assert float(error.max()) < 0.1


def test_up_of_coarse_positions_lands_on_the_fine_surface(pyramid):
    for i in range(len(pyramid.up)):
        fine = pyramid.levels[i][0]
        lifted = (pyramid.up[i] @ torch.from_numpy(pyramid.levels[i + 1][0])).numpy()
        # Distance from the unit sphere, and from the fine vertex it stands for
        # (measured on level 0: 0.007 and 0.002).
        assert np.abs(np.linalg.norm(lifted, axis=1) - 1).max() < 0.03 * (i + 1)
        assert np.linalg.norm(lifted - fine, axis=1).mean() < 0.01 * (i + 1)


def test_open_grid_pyramid():
    vertices, faces = open_grid(30)
    pyramid = build_mesh_pyramid(vertices, faces, factors=(4,), cache=False)
    assert abs(pyramid.num_vertices[1] - 900 / 4) <= 0.15 * 900 / 4
    np.testing.assert_allclose(dense(pyramid.down[0]).sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(dense(pyramid.up[0]).sum(axis=1), 1.0, atol=1e-5)
    values = torch.from_numpy(vertices[:, 0] + 2 * vertices[:, 1])[:, None]
    rebuilt = pyramid.up[0] @ (pyramid.down[0] @ values)
    assert float((rebuilt - values).abs().mean()) < 0.01  # measured 0.002 on a field of range 3
    lifted = (pyramid.up[0] @ torch.from_numpy(pyramid.levels[1][0])).numpy()
    assert np.abs(lifted[:, 2]).max() < 1e-6  # stays in the plane


def test_spirals_per_level(pyramid):
    spirals = pyramid.spirals(9, cache=False)
    assert [s.shape for s in spirals] == [(n, 9) for n in pyramid.num_vertices]
    for s in spirals:
        np.testing.assert_array_equal(s[:, 0], np.arange(len(s)))


def test_cache_round_trip(sphere):
    before = set(cache_dir("pyramids").glob("*.npz"))
    built = build_mesh_pyramid(*sphere, factors=(4, 3))
    written = set(cache_dir("pyramids").glob("*.npz")) - before
    assert len(written) == 1
    loaded = build_mesh_pyramid(*sphere, factors=(4, 3))
    assert loaded.factors == built.factors == (4.0, 3.0)
    for (v1, f1), (v2, f2) in zip(built.levels, loaded.levels):
        np.testing.assert_array_equal(v1, v2)
        np.testing.assert_array_equal(f1, f2)
    for a, b in zip(built.down + built.up, loaded.down + loaded.up):
        assert b.layout == torch.sparse_coo and b.dtype == torch.float32
        np.testing.assert_array_equal(dense(a), dense(b))
    # Other positions of the same topology get their own pyramid, not the cached one.
    other = build_mesh_pyramid(sphere[0] * 2, sphere[1], factors=(4, 3))
    np.testing.assert_allclose(other.levels[0][0], sphere[0] * 2)
    # A damaged cache file is rebuilt rather than trusted.
    path = written.pop()
    path.write_bytes(b"broken")
    rebuilt = build_mesh_pyramid(*sphere, factors=(4, 3))
    np.testing.assert_array_equal(dense(rebuilt.up[0]), dense(built.up[0]))


def test_construction_is_deterministic(sphere):
    a = build_mesh_pyramid(*sphere, factors=(4,), cache=False)
    b = build_mesh_pyramid(*sphere, factors=(4,), cache=False)
    np.testing.assert_array_equal(a.levels[1][1], b.levels[1][1])
    np.testing.assert_array_equal(dense(a.up[0]), dense(b.up[0]))


@pytest.mark.parametrize("factors", [(1,), (4, 4, 4, 4, 4, 4, 4), ("x",), ()])
def test_bad_factors_raise(sphere, factors):
    with pytest.raises(VoxmeshError):
        build_mesh_pyramid(*sphere, factors=factors, cache=False)


def test_faces_out_of_range_raise(sphere):
    vertices, faces = sphere
    with pytest.raises(VoxmeshError, match="2562 vertices"):
        build_mesh_pyramid(vertices, faces + 1, cache=False)
