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
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
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

    def new_cache(self) -> DecoderCache:
        return DecoderCache(len(self.layers.layers))

    def step(self, token: torch.Tensor, memory: torch.Tensor, cache: DecoderCache,
             audio_frames_per_frame: int = 1) -> torch.Tensor:
        """The output ``[B, 1, d]`` for the next frame ``t = cache.frames`` from its input
        ``token [B, 1, d]``, given the memory ``[B, S, d]``: what :meth:`forward` gives at
        ``t`` for the tokens so far, in time that grows with ``t`` (earlier frames' keys
        and values come from ``cache``) rather than with ``t**2``. Eval mode (no dropout)."""
        t = cache.frames
        x = token + self.positional.encoding(1, t, token.device).to(token.dtype)[None]
        steps = torch.div(t - torch.arange(t + 1, device=token.device), self.period, rounding_mode="floor")
        bias = -self.slopes[:, None] * steps[None].float()  # [H, t + 1]
        # The frame's aligned audio frames: the only keys the cross-attention mask allows.
        rate = int(audio_frames_per_frame)
        start = min(t * rate, max(memory.shape[1] - rate, 0))
        aligned = memory[:, start:start + rate]
        for index, layer in enumerate(self.layers.layers):
            if layer.norm_first:
                x = x + _self_attention_step(layer.self_attn, layer.norm1(x), cache, index, bias)
                normed = layer.norm2(x)
                x = x + layer.multihead_attn(normed, aligned, aligned, need_weights=False)[0]
                x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
            else:
                x = layer.norm1(x + _self_attention_step(layer.self_attn, x, cache, index, bias))
                x = layer.norm2(x + layer.multihead_attn(x, aligned, aligned, need_weights=False)[0])
                x = layer.norm3(x + layer.linear2(layer.activation(layer.linear1(x))))
        if self.layers.norm is not None:
            x = self.layers.norm(x)
        cache.frames += 1
        return x


class DecoderCache:
    """What :meth:`BiasedCausalDecoder.step` keeps between frames: each layer's projected
    self-attention keys and values ``[B, H, t, d/H]`` of the frames decoded so far."""

    def __init__(self, num_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.frames = 0


def _self_attention_step(attention: nn.MultiheadAttention, x: torch.Tensor, cache: DecoderCache, layer: int,
                         bias: torch.Tensor) -> torch.Tensor:
    """Self-attention of the newest frame ``x [B, 1, d]`` over every frame so far, with the
    keys and values of earlier frames taken from ``cache`` (and this frame's added to it).
    ``bias [H, t]``: the period bias of this query against each key."""
    batch, _, dim = x.shape
    heads = attention.num_heads
    query, key, value = F.linear(x, attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)

    def split(tensor: torch.Tensor) -> torch.Tensor:  # [B, 1, d] -> [B, H, 1, d/H]
        return tensor.reshape(batch, 1, heads, dim // heads).transpose(1, 2)

    keys, values = split(key), split(value)
    if cache.keys[layer] is not None:
        keys = torch.cat([cache.keys[layer], keys], dim=2)
        values = torch.cat([cache.values[layer], values], dim=2)
    cache.keys[layer], cache.values[layer] = keys, values
    mixed = F.scaled_dot_product_attention(split(query), keys, values, attn_mask=bias[None, :, None, :].to(x.dtype))
    return attention.out_proj(mixed.transpose(1, 2).reshape(batch, 1, dim))


def decode_autoregressively(decoders: Sequence[BiasedCausalDecoder], first_tokens: Sequence[torch.Tensor],
                            memories: Sequence[torch.Tensor], frames: int,
                            advance: Callable[[int, list[torch.Tensor]], Sequence[torch.Tensor] | None]) -> None:
    """The one autoregressive loop of every method built on :class:`BiasedCausalDecoder`
    (FaceFormer, CodeTalker's predictor, EmoFace's two streams). Each frame ``t``, every
    decoder takes its token ``[B, 1, d]`` and gives its output ``[B, 1, d]`` through
    :meth:`BiasedCausalDecoder.step` (a key/value cache: cost linear in the length, not
    quadratic); ``advance(t, outputs)`` makes the frame's result (kept by the caller) and
    returns the next tokens, one a decoder (ignored after the last frame)."""
    caches = [decoder.new_cache() for decoder in decoders]
    tokens = list(first_tokens)
    for t in range(frames):
        outputs = [decoder.step(token, memory, cache)
                   for decoder, token, memory, cache in zip(decoders, tokens, memories, caches)]
        tokens = advance(t, outputs)


__all__ = [
    "BiasedCausalDecoder", "DecoderCache", "PeriodicPositionalEncoding", "alibi_slopes", "alignment_mask", "causal_mask",
    "decode_autoregressively",
    "expand_for_heads", "period_bias",
]
