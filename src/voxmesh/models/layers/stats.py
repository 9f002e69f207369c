"""Running per-channel statistics kept as buffers, so a checkpoint normalises as training did."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_running_stats(mean: torch.Tensor, std: torch.Tensor, count: torch.Tensor, vectors: torch.Tensor,
                       momentum: float) -> None:
    """Fold ``vectors [N, C]`` into the buffers ``mean [C]``, ``std [C]`` and the update
    ``count`` in place: a plain average over the first ``1 / momentum`` updates, then an
    exponential one with ``momentum``. Fewer than 2 vectors are ignored."""
    if vectors.shape[0] < 2:
        return
    count += 1
    rate = max(float(momentum), 1.0 / float(count))
    mean.lerp_(vectors.float().mean(0), rate)
    std.lerp_(vectors.float().std(0).clamp(min=1e-6), rate)


class RunningStats(nn.Module):
    """Per-channel mean and standard deviation of the vectors shown to :meth:`update`."""

    def __init__(self, channels: int, momentum: float = 0.01):
        super().__init__()
        self.momentum = float(momentum)
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.register_buffer("count", torch.zeros(()))

    def update(self, vectors: torch.Tensor) -> None:
        """Fold ``[N, channels]`` vectors into the statistics."""
        fold_running_stats(self.mean, self.std, self.count, vectors, self.momentum)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., channels]`` -> zero mean, unit variance per channel. Copies of the
        buffers enter the graph: a later update in the same step changes them in place."""
        return (x - self.mean.to(x.dtype, copy=True)) / self.std.to(x.dtype, copy=True)


__all__ = ["RunningStats", "fold_running_stats"]
