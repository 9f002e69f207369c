"""SpiralConv (SpiralNet++, Gong et al. 2019): for each vertex, the features of its
spiral of neighbours are concatenated and mapped by one linear layer. The spiral
indices come from :func:`voxmesh.mesh.spiral_indices` (fixed per topology)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def spiral_gather(x: torch.Tensor, spirals: torch.Tensor) -> torch.Tensor:
    """Features of every vertex's spiral, concatenated: ``x [..., V, C]`` and
    ``spirals [V, L]`` (int64) give ``[..., V, L * C]``."""
    vertices, length = spirals.shape
    gathered = x.index_select(-2, spirals.reshape(-1))  # [..., V * L, C]
    return gathered.reshape(*x.shape[:-2], vertices, length * x.shape[-1])


class SpiralConv(nn.Module):
    """``[..., V, in_channels] -> [..., V, out_channels]`` over fixed spirals ``[V, L]``.

    Memory note: the gather materialises ``[..., V, L * C]``; keep full-resolution
    layers narrow and move width to coarse pyramid levels (HEAD.md's compute budget)."""

    def __init__(self, in_channels: int, out_channels: int, spirals: np.ndarray | torch.Tensor, bias: bool = True):
        super().__init__()
        spirals = torch.as_tensor(np.asarray(spirals), dtype=torch.long)
        if spirals.ndim != 2:
            raise ValueError(f"spirals must be [V, L], got {tuple(spirals.shape)}")
        # A buffer: moves with .to(device) and is saved, but is not trained.
        self.register_buffer("spirals", spirals, persistent=False)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.linear = nn.Linear(in_channels * spirals.shape[1], out_channels, bias=bias)
        nn.init.xavier_uniform_(self.linear.weight)
        if bias:
            nn.init.zeros_(self.linear.bias)

    @property
    def spiral_length(self) -> int:
        return int(self.spirals.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(spiral_gather(x, self.spirals))


def sparse_vertex_matmul(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a sparse ``[V_out, V_in]`` matrix (a pyramid's down- or up-sampling) to
    ``x [..., V_in, C]``, giving ``[..., V_out, C]``."""
    leading, (vertices, channels) = x.shape[:-2], x.shape[-2:]
    flat = x.reshape(-1, vertices, channels).permute(1, 0, 2).reshape(vertices, -1)  # [V_in, N*C]
    out = torch.sparse.mm(matrix, flat)  # [V_out, N*C]
    return out.reshape(matrix.shape[0], -1, channels).permute(1, 0, 2).reshape(*leading, matrix.shape[0], channels)
