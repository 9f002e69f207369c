"""Attention pieces of FaceFormer (Fan et al., CVPR 2022), reused by CodeTalker and EmoFace.

* :class:`PeriodicPositionalEncoding`: sinusoidal encoding of ``t mod p`` instead of
  ``t``, so sequences longer than any seen in training get encodings seen in training.
* :func:`period_bias`: the ALiBi-style bias of FaceFormer's causal self-attention. Query
  ``i`` attends to key ``j <= i`` with the additive bias ``-m_h * floor((i - j) / p)``
  (``m_h`` a per-head slope), and not at all to ``j > i``: recent frames weigh more,
  in steps of one period.
* :func:`alignment_mask`: cross-attention mask that lets mesh frame ``t`` see only the
  audio frames aligned with it. voxmesh's encoders already interpolate speech features
  to the mesh rate, so with ``audio_frames_per_frame=1`` this is the diagonal.
* :class:`BiasedCausalDecoder`: the decoder stack built from the three.

Masks here are additive float masks (``0`` allowed, ``-inf`` forbidden), the form
:class:`torch.nn.MultiheadAttention` accepts together with per-head biases.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Per-head slopes ``[H]`` of ALiBi (Press et al., 2022): the geometric sequence
    ``2^(-8/H), 2^(-16/H), ...`` for a power of two; otherwise the slopes of the nearest
    lower power of two followed by every other slope of the next one."""
    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (k + 1) for k in range(n)]

    if num_heads < 1:
        raise ValueError(f"num_heads must be positive, got {num_heads}")
    if math.log2(num_heads).is_integer():
        slopes = power_of_two(num_heads)
    else:
        lower = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two(lower) + power_of_two(2 * lower)[0::2][: num_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


def causal_mask(num_frames: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``[T, T]`` additive mask: ``0`` on and below the diagonal, ``-inf`` above."""
    upper = torch.ones(num_frames, num_frames, dtype=torch.bool, device=device).triu(diagonal=1)
    return torch.zeros(num_frames, num_frames, device=device).masked_fill(upper, float("-inf"))


def period_bias(num_frames: int, num_heads: int, period: int, *, slopes: torch.Tensor | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """FaceFormer's biased causal mask ``[H, T, T]``.

    ``bias[h, i, j] = -slopes[h] * floor((i - j) / period)`` for ``j <= i`` and ``-inf``
    for ``j > i``. Frames less than one period back get no penalty; each further period
    costs one more ``slopes[h]``. ``slopes`` defaults to :func:`alibi_slopes`.
    """
    if period < 1:
        raise ValueError(f"period must be a positive number of frames, got {period}")
    if slopes is None:
        slopes = alibi_slopes(num_heads)
    slopes = slopes.to(device=device, dtype=torch.float32)
    positions = torch.arange(num_frames, device=device)
    distance = positions[:, None] - positions[None, :]  # i - j
    steps = torch.div(distance.clamp(min=0), period, rounding_mode="floor").float()
    bias = -slopes[:, None, None] * steps[None]
    return bias + causal_mask(num_frames, device=device)[None]


def alignment_mask(num_frames: int, num_audio_frames: int | None = None, audio_frames_per_frame: int = 1,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Cross-attention mask ``[T, S]``: mesh frame ``t`` may attend to the audio frames
    ``t*r .. t*r + r - 1`` (``r = audio_frames_per_frame``) and nothing else.

    With features already interpolated to the mesh rate (``r = 1``, what
    :func:`voxmesh.audio.align_features` produces) this is the diagonal. Frames past the
    end of the audio attend to the last ``r`` audio frames, so no row is fully masked
    (a fully masked row would give NaN).
    """
    r = int(audio_frames_per_frame)
    if r < 1:
        raise ValueError(f"audio_frames_per_frame must be at least 1, got {r}")
    num_audio = num_frames * r if num_audio_frames is None else int(num_audio_frames)
    if num_audio < 1:
        raise ValueError("alignment_mask needs at least one audio frame")
    starts = (torch.arange(num_frames, device=device) * r).clamp(max=max(num_audio - r, 0))
    columns = torch.arange(num_audio, device=device)
    allowed = (columns[None] >= starts[:, None]) & (columns[None] < starts[:, None] + r)
    return torch.zeros(num_frames, num_audio, device=device).masked_fill(~allowed, float("-inf"))


def expand_for_heads(mask: torch.Tensor, batch_size: int, num_heads: int,
                     key_valid: torch.Tensor | None = None) -> torch.Tensor:
    """A per-head ``[H, Tq, Tk]`` (or shared ``[Tq, Tk]``) additive mask as the
    ``[B*H, Tq, Tk]`` mask :class:`torch.nn.MultiheadAttention` takes (batch-major), with
    keys where ``key_valid [B, Tk]`` is False (padding) set to ``-inf``.

    Padding is folded in here rather than passed as ``key_padding_mask`` because torch
    deprecates mixing a float ``attn_mask`` with a boolean padding mask.
    """
    if mask.dim() == 2:
        mask = mask[None].expand(num_heads, -1, -1)
    if mask.shape[0] != num_heads:
        raise ValueError(f"mask has {mask.shape[0]} heads, expected {num_heads}")
    full = mask[None].expand(batch_size, -1, -1, -1)
    if key_valid is not None:
        padding = torch.zeros(key_valid.shape, dtype=mask.dtype, device=mask.device)
        padding = padding.masked_fill(~key_valid.bool(), float("-inf"))
        full = full + padding[:, None, None, :]
    return full.reshape(batch_size * num_heads, mask.shape[1], mask.shape[2])


class PeriodicPositionalEncoding(nn.Module):
    """Adds ``PPE(t, 2i) = sin((t mod p) / 10000^(2i/d))``, ``PPE(t, 2i+1) = cos(...)`` to
    ``x [B, T, d]`` then applies dropout. Computed on the fly, so any length works.

    ``period`` is in frames: FaceFormer uses 30 for VOCASET (30 fps) and 25 for BIWI
    (25 fps), i.e. about one second.
    """

    def __init__(self, dim: int, period: int, dropout: float = 0.1):
        super().__init__()
        if period < 1:
            raise ValueError(f"period must be a positive number of frames, got {period}")
        self.dim = int(dim)
        self.period = int(period)
        self.dropout = nn.Dropout(dropout)

    def encoding(self, num_frames: int, start: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
        """``[T, d]`` encodings of frames ``start .. start + T - 1``."""
        position = ((torch.arange(num_frames, device=device) + start) % self.period).float()[:, None]
        frequencies = torch.exp(torch.arange(0, self.dim, 2, device=device).float() * (-math.log(10000.0) / self.dim))
        table = torch.zeros(num_frames, self.dim, device=device)
        table[:, 0::2] = torch.sin(position * frequencies)
        table[:, 1::2] = torch.cos(position * frequencies[: self.dim // 2])
        return table

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``x [B, T, d]`` -> ``[B, T, d]``; ``start`` is the absolute index of ``x[:, 0]``."""
        return self.dropout(x + self.encoding(x.shape[1], start, x.device).to(x.dtype)[None])


class BiasedCausalDecoder(nn.Module):
    """FaceFormer's decoder: periodic positional encoding, then ``num_layers`` of
    biased causal self-attention, aligned cross-attention to the audio and a
    feed-forward block (``torch.nn.TransformerDecoderLayer``, post-norm, ReLU, as the
    paper's reference setting).

    ``forward(tokens [B, T, d], memory [B, S, d], frame_mask [B, T]) -> [B, T, d]``.
    Output ``t`` depends only on ``tokens[:, :t+1]`` and on the memory frames aligned
    with ``t``; padded frames at the end therefore never change real frames' outputs.
    """

    def __init__(self, d_model: int, num_heads: int, num_layers: int, ff_dim: int, period: int,
                 dropout: float = 0.1, norm_first: bool = False):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.num_heads = int(num_heads)
        self.period = int(period)
        self.positional = PeriodicPositionalEncoding(d_model, period, dropout)
        layer = nn.TransformerDecoderLayer(d_model, num_heads, ff_dim, dropout, batch_first=True,
                                           norm_first=norm_first)
        self.layers = nn.TransformerDecoder(layer, num_layers)
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, frame_mask: torch.Tensor | None = None,
                audio_frames_per_frame: int = 1) -> torch.Tensor:
        batch, frames, _ = tokens.shape
        x = self.positional(tokens)
        self_mask = expand_for_heads(
            period_bias(frames, self.num_heads, self.period, slopes=self.slopes, device=tokens.device),
            batch, self.num_heads, key_valid=frame_mask,
        ).to(x.dtype)
        # No memory padding mask: the alignment mask already confines each frame to its own
        # audio frames, and masking padded ones too would leave padded frames' rows empty (NaN).
        cross_mask = alignment_mask(frames, memory.shape[1], audio_frames_per_frame, device=tokens.device).to(x.dtype)
        return self.layers(x, memory, tgt_mask=self_mask, memory_mask=cross_mask)


__all__ = [
    "BiasedCausalDecoder", "PeriodicPositionalEncoding", "alibi_slopes", "alignment_mask", "causal_mask",
    "expand_for_heads", "period_bias",
]
