import numpy as np
import torch
import trimesh

from voxmesh.mesh import build_mesh_pyramid, spiral_indices
from voxmesh.models.layers.spiral_conv import SpiralConv, sparse_vertex_matmul, spiral_gather


def test_spiral_conv_equals_a_loop_over_vertices():
    sphere = trimesh.creation.icosphere(1)
    spirals = spiral_indices(np.asarray(sphere.faces), 7, cache=False)
    torch.manual_seed(0)
    conv = SpiralConv(3, 5, spirals)
    x = torch.randn(2, 4, len(sphere.vertices), 3)
    out = conv(x)
    assert out.shape == (2, 4, len(sphere.vertices), 5)
    for v in (0, 11, 41):
        expected = conv.linear(torch.cat([x[..., int(s), :] for s in spirals[v]], dim=-1))
        torch.testing.assert_close(out[..., v, :], expected)
    assert spiral_gather(x, torch.as_tensor(spirals)).shape == (2, 4, len(sphere.vertices), 21)


def test_sparse_vertex_matmul_matches_dense():
    sphere = trimesh.creation.icosphere(3)
    pyramid = build_mesh_pyramid(np.asarray(sphere.vertices), np.asarray(sphere.faces), factors=(4,), cache=False)
    x = torch.randn(3, 2, len(sphere.vertices), 4)
    down = pyramid.down[0]
    torch.testing.assert_close(sparse_vertex_matmul(down, x), torch.einsum("uv,...vc->...uc", down.to_dense(), x))
