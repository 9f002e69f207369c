"""Transformer pieces of GLDiTalker.

* :func:`distance_bias`: the symmetric ALiBi bias ``-m_h * |t_q - t_k|`` (per head slope
  ``m_h``). Attention in time uses it instead of positional encodings, so any window
  length works and nearby frames weigh more; cross-attention to speech uses it with
  steeper slopes as the alignment bias (frame ``t`` looks mostly at the audio around
  ``t``, and each head at another width).
* :class:`MultiHeadAttention`: self- or cross-attention over ``[N, T, d]`` with an
  additive bias and a key padding mask, through ``scaled_dot_product_attention``.
* :class:`TransformerBlock`: pre-norm self-attention (with a distance bias) and
  feed-forward; the temporal transformers of stage 1 and the speech context.
* :class:`AdaptiveModulation`: DiT's adaLN-Zero (shift, scale and gate from a
  conditioning vector, zero-initialised so a new block starts as the identity).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from voxmesh.errors import VoxmeshError
from voxmesh.models.layers.attention import alibi_slopes


def distance_bias(query_times: torch.Tensor, key_times: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """``[H, Tq, Tk]`` additive bias ``-slopes[h] * |query_times[i] - key_times[j]|``
    (times in frames, any dtype; ``slopes [H]``)."""
    distance = (query_times.float()[:, None] - key_times.float()[None, :]).abs()
    return -slopes.float()[:, None, None] * distance[None]


def alignment_slopes(num_heads: int, steepest: float) -> torch.Tensor:
    """``[H]`` slopes of the speech alignment bias: ALiBi's geometric sequence scaled so
    that the first head's slope is ``steepest`` (per frame) and each further head is
    wider."""
    slopes = alibi_slopes(num_heads)
    return slopes / slopes[0] * float(steepest)


class MultiHeadAttention(nn.Module):
    """``forward(x [N, Tq, d], context [N, Tk, d] | None, bias, key_valid) -> [N, Tq, d]``.

    ``bias``: additive ``[H, Tq, Tk]`` or ``[N, H, Tq, Tk]``; ``key_valid [N, Tk]`` bool
    (False: a padded key, never attended). An item whose keys are all padding attends
    to all of them instead of producing NaN (its outputs are padding too)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise VoxmeshError(f"Attention width {dim} is not divisible by {num_heads} heads; change one of them.")
        self.num_heads = int(num_heads)
        self.head_dim = dim // num_heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.output = nn.Linear(dim, dim)
        self.dropout = float(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                key_valid: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        n, tq, _ = x.shape
        tk = context.shape[1]
        q = self.query(x).reshape(n, tq, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.key_value(context).reshape(n, tk, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = None
        if bias is not None:
            mask = bias.to(q.dtype)
            if mask.dim() == 3:
                mask = mask[None]
        if key_valid is not None:
            valid = key_valid.bool() | ~key_valid.bool().any(dim=1, keepdim=True)  # all-padding rows: attend anyway
            padding = torch.zeros(valid.shape, dtype=q.dtype, device=q.device).masked_fill(~valid, float("-inf"))
            padding = padding[:, None, None, :]
            mask = padding if mask is None else mask + padding
        if mask is not None:
            mask = mask.expand(n, self.num_heads, tq, tk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.output(out.transpose(1, 2).reshape(n, tq, -1))


class FeedForward(nn.Sequential):
    """``[..., d] -> [..., d]``: Linear, GELU, dropout, Linear."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + SelfAttention(LN(x), bias)``, then ``x + FFN(LN(x))``.
    ``forward(x [N, T, d], bias [H, T, T] | None, key_valid [N, T] | None)``."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, num_heads, dropout)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None,
                key_valid: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm_attention(x), bias=bias, key_valid=key_valid))
        return x + self.dropout(self.ff(self.norm_ff(x)))


class TemporalTransformer(nn.Module):
    """A stack of :class:`TransformerBlock` over frames with the symmetric ALiBi bias and
    a final layer norm: ``[B, T, d] -> [B, T, d]``, padded frames excluded as keys."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, ff_dim: int, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads, ff_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        times = torch.arange(x.shape[1], device=x.device)
        bias = distance_bias(times, times, self.slopes)
        for block in self.blocks:
            x = block(x, bias, frame_mask)
        return self.norm(x)


class AdaptiveModulation(nn.Module):
    """adaLN-Zero (Peebles & Xie, 2023): ``cond [B, c] -> chunks`` of ``[B, d]`` (shift,
    scale, gate triples). Zero-initialised, so every gate starts at 0 and a new block is
    the identity: the denoiser starts by predicting the mean latent."""

    def __init__(self, cond_dim: int, dim: int, chunks: int):
        super().__init__()
        self.chunks = int(chunks)
        self.linear = nn.Linear(cond_dim, chunks * dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, cond: torch.Tensor) -> list[torch.Tensor]:
        return list(self.linear(F.silu(cond)).chunk(self.chunks, dim=-1))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` with ``shift, scale [B, d]`` broadcast over the
    middle axes of ``x [B, ..., d]``."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    return x * (1 + scale.reshape(shape)) + shift.reshape(shape)


def gated(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``x * gate`` with ``gate [B, d]`` broadcast over the middle axes of ``x``."""
    return x * gate.reshape((x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],))


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of diffusion steps ``[B]`` (as DDPM / DiT)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device).float() / half)
    angles = timesteps.float()[:, None] * frequencies[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


__all__ = [
    "AdaptiveModulation", "FeedForward", "MultiHeadAttention", "TemporalTransformer", "TransformerBlock",
    "alignment_slopes", "distance_bias", "gated", "modulate", "timestep_embedding",
]
