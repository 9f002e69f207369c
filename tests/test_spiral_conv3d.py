"""SpiralConv3D: equal to the definition computed by a slow loop, causal in time."""

import numpy as np
import pytest
import torch
import trimesh

from voxmesh.mesh import spiral_indices
from voxmesh.models.layers.spiral_conv import SpiralConv
from voxmesh.models.layers.spiral_conv3d import SpiralConv3D

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def small_mesh_spirals(length: int = 7, dilation: int = 1) -> np.ndarray:
    sphere = trimesh.creation.icosphere(1)  # 42 vertices
    return spiral_indices(np.asarray(sphere.faces), length, dilation, cache=False)


def reference_loop(conv: SpiralConv3D, x: torch.Tensor) -> torch.Tensor:
    """The definition, one output at a time: for vertex v at frame t, concatenate the
    spiral's features at frames t-δ+1 .. t (zeros before frame 0), oldest first, and apply
    the one linear layer."""
    batch, frames, vertices, channels = x.shape
    spirals = conv.spirals.tolist()
    out = torch.zeros(batch, frames, vertices, conv.out_channels, dtype=x.dtype)
    for b in range(batch):
        for t in range(frames):
            for v in range(vertices):
                pieces = []
                for s in range(t - conv.temporal_kernel + 1, t + 1):
                    for u in spirals[v]:
                        pieces.append(x[b, s, u] if s >= 0 else torch.zeros(channels, dtype=x.dtype))
                out[b, t, v] = conv.weight @ torch.cat(pieces) + conv.bias
    return out


@pytest.mark.parametrize("temporal_kernel, dilation", [(3, 1), (2, 2), (1, 1)])
def test_equals_the_slow_reference_loop(temporal_kernel, dilation):
    spirals = small_mesh_spirals(7, dilation)
    torch.manual_seed(0)
    conv = SpiralConv3D(3, 4, spirals, temporal_kernel=temporal_kernel).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 5, len(spirals), 3, dtype=torch.float64)
    torch.testing.assert_close(conv(x), reference_loop(conv, x))


def test_one_frame_kernel_is_the_plain_spiral_conv():
    spirals = small_mesh_spirals()
    torch.manual_seed(1)
    conv3d = SpiralConv3D(3, 5, spirals, temporal_kernel=1)
    conv = SpiralConv(3, 5, spirals)
    with torch.no_grad():
        conv.linear.weight.copy_(conv3d.weight)
        conv.linear.bias.copy_(conv3d.bias)
    x = torch.randn(2, 4, len(spirals), 3)
    torch.testing.assert_close(conv3d(x), conv(x))


def test_kernel_longer_than_the_clip_sees_zeros_before_it():
    spirals = small_mesh_spirals()
    torch.manual_seed(2)
    conv = SpiralConv3D(2, 3, spirals, temporal_kernel=6).double()
    x = torch.randn(1, 3, len(spirals), 2, dtype=torch.float64)
    torch.testing.assert_close(conv(x), reference_loop(conv, x))


def test_causal_changing_frame_t_leaves_earlier_frames_unchanged():
    spirals = small_mesh_spirals()
    torch.manual_seed(3)
    conv = SpiralConv3D(3, 4, spirals, temporal_kernel=3)
    x = torch.randn(2, 8, len(spirals), 3)
    t = 4
    changed = x.clone()
    changed[:, t] += torch.randn_like(changed[:, t])
    before, after = conv(x), conv(changed)
    assert torch.equal(before[:, :t], after[:, :t])
    # frames t .. t + δ - 1 see the change; later frames no longer do
    for s in range(t, t + 3):
        assert not torch.allclose(before[:, s], after[:, s])
    assert torch.equal(before[:, t + 3:], after[:, t + 3:])


def test_gradients_reach_input_and_weights_and_bad_shapes_are_refused():
    spirals = small_mesh_spirals()
    conv = SpiralConv3D(3, 2, spirals, temporal_kernel=2)
    x = torch.randn(1, 4, len(spirals), 3, requires_grad=True)
    conv(x).square().sum().backward()
    assert x.grad.abs().sum() > 0 and conv.weight.grad.abs().sum() > 0 and conv.bias.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expects"):
        conv(torch.randn(1, 4, len(spirals) + 1, 3))
    with pytest.raises(ValueError, match="temporal_kernel"):
        SpiralConv3D(3, 2, spirals, temporal_kernel=0)
