"""SpiralConv3D: a spatio-temporal spiral convolution on mesh sequences (EmoFace's
building block for Mesh Attention).

For vertex ``v`` at frame ``t`` the input features of ``v``'s spiral (``L`` vertices,
from :func:`voxmesh.mesh.spiral_indices`) at frames ``t - δ + 1 .. t`` are concatenated,
oldest frame first and spiral order within a frame, into one vector of ``δ * L * C``
numbers and mapped by one linear layer. Frames before the first are zeros (causal left
padding), so output ``t`` never depends on input frames after ``t``.

Efficient form, same numbers: gather every vertex's spiral once per frame
(:func:`voxmesh.models.layers.spiral_conv.spiral_gather`, ``[B, T, V, L*C]``), map the
gathered vector by the ``δ`` temporal taps at once (one matmul to ``[B, T, V, δ, out]``),
then sum the taps shifted in time: a causal temporal convolution of kernel ``δ`` done as
a matmul and ``δ - 1`` shifted adds. Applying the taps before shifting works on the narrow
outputs rather than on the wide gathered inputs, and it needs no transpose of the
gathered tensor to the channels-first layout ``conv1d`` wants.

Memory: the gather materialises ``B*T*V*L*C`` numbers (4 bytes each in float32), the
dominant cost at full mesh resolution; see ``benchmarks/bench_emoface.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from voxmesh.models.layers.spiral_conv import spiral_gather


class SpiralConv3D(nn.Module):
    """``[B, T, V, in_channels] -> [B, T, V, out_channels]`` over fixed spirals ``[V, L]``
    and ``temporal_kernel`` = δ frames (the current one and δ - 1 before it).

    ``weight [out, δ * L * in]`` is the one linear layer of the definition, its input the
    concatenation ``[frame t-δ+1 (spiral order), ..., frame t (spiral order)]``.
    """

    def __init__(self, in_channels: int, out_channels: int, spirals: np.ndarray | torch.Tensor,
                 temporal_kernel: int = 3, bias: bool = True):
        super().__init__()
        spirals = torch.as_tensor(np.asarray(spirals), dtype=torch.long)
        if spirals.ndim != 2:
            raise ValueError(f"spirals must be [V, L], got {tuple(spirals.shape)}")
        if int(temporal_kernel) < 1:
            raise ValueError(f"temporal_kernel must be at least 1 frame, got {temporal_kernel}")
        self.register_buffer("spirals", spirals, persistent=False)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.temporal_kernel = int(temporal_kernel)
        fan_in = self.temporal_kernel * spirals.shape[1] * self.in_channels
        self.weight = nn.Parameter(torch.empty(self.out_channels, fan_in))
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None
        # Xavier as SpiralConv: the fan-in is the whole concatenated neighbourhood.
        bound = math.sqrt(6.0 / (fan_in + self.out_channels))
        nn.init.uniform_(self.weight, -bound, bound)

    @property
    def spiral_length(self) -> int:
        return int(self.spirals.shape[1])

    @property
    def num_vertices(self) -> int:
        return int(self.spirals.shape[0])

    def tap_weights(self) -> torch.Tensor:
        """The weight split by temporal tap: ``[δ * out, L * in]``, rows of tap ``k``
        (frame ``t - δ + 1 + k``) at ``k*out .. (k+1)*out - 1``."""
        width = self.spiral_length * self.in_channels
        return (self.weight.reshape(self.out_channels, self.temporal_kernel, width)
                .transpose(0, 1).reshape(self.temporal_kernel * self.out_channels, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, V, in]`` -> ``[B, T, V, out]``; output ``t`` depends on ``x[:, :t+1]`` only."""
        if x.dim() != 4 or x.shape[2] != self.num_vertices or x.shape[3] != self.in_channels:
            raise ValueError(
                f"SpiralConv3D expects [batch, frames, {self.num_vertices}, {self.in_channels}], got {tuple(x.shape)}"
            )
        batch, frames, vertices, _ = x.shape
        delta, out = self.temporal_kernel, self.out_channels
        gathered = spiral_gather(x, self.spirals)  # [B, T, V, L*C]
        taps = torch.nn.functional.linear(gathered, self.tap_weights())  # [B, T, V, δ*out]
        # unbind, not indexing: its backward stacks the taps' gradients into one tensor
        # instead of zero-filling a full-size gradient for each tap.
        taps = taps.reshape(batch, frames, vertices, delta, out).unbind(dim=3)
        y = taps[delta - 1]  # the current frame's tap
        for k in range(delta - 1):
            lag = delta - 1 - k  # tap k looks lag frames back
            if lag >= frames:
                continue  # that far back there is only the zero padding
            # Shift by lag frames: zeros in front, the last lag frames fall off.
            y = y + torch.nn.functional.pad(taps[k][:, : frames - lag], (0, 0, 0, 0, lag, 0))
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, vertices={self.num_vertices}, "
                f"spiral_length={self.spiral_length}, temporal_kernel={self.temporal_kernel}")


__all__ = ["SpiralConv3D"]
