"""GLDiTalker's stage 2: the space-time denoiser over quantised motion latents.

Tokens are the latents ``[B, T', P, D]``: one token per latent frame and part ("space"),
embedded by a linear layer plus a learned part embedding. Each block (adaLN-Zero
conditioned on the diffusion step and the speaker style) runs

* ``attention="factorized"`` (default): attention in time within each part (symmetric
  ALiBi bias, no positional encoding, so any window length works), then attention
  across the parts within each time step; cost ``O(P T'^2 + T' P^2)``;
* ``attention="joint"``: one attention over all ``T' x P`` tokens with the same time
  bias (parts of one frame are at distance 0); cost ``O((T' P)^2)``;

then cross-attention from every token to the speech context with the alignment bias
``-m_h |t - tau|`` (steep for the first head, wider for the others), then a feed-forward
layer. The output layer is zero-initialised: an untrained denoiser predicts the mean
latent.

The speech context (:class:`SpeechContext`) is the encoder's aligned features projected
to ``d_model``, averaged down to the latent rate when stage 1 down-samples time, and
mixed by a small transformer; a learned null vector stands for "no audio"
(classifier-free guidance), and the style table has one more row for "no style".
"""

from __future__ import annotations

import torch
from torch import nn

from voxmesh.errors import VoxmeshError
from voxmesh.models.gldi.blocks import (
    AdaptiveModulation,
    FeedForward,
    MultiHeadAttention,
    TransformerBlock,
    alignment_slopes,
    distance_bias,
    gated,
    modulate,
    timestep_embedding,
)
from voxmesh.models.layers.attention import alibi_slopes

ATTENTION_MODES = ("factorized", "joint")


class SpeechContext(nn.Module):
    """Aligned speech features ``[B, T, C]`` -> context ``[B, T / factor, d]``.

    Linear projection, average over each group of ``factor`` frames (the latent rate),
    then ``layers`` pre-norm transformer blocks with the symmetric ALiBi bias.
    :meth:`null` is the learned "no audio" context."""

    def __init__(self, input_dim: int, dim: int, layers: int, num_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.projection = nn.Linear(input_dim, dim)
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads, ff_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.null_context = nn.Parameter(torch.randn(dim) * 0.02)
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor, factor: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """``features [B, T, C]`` with ``T`` a multiple of ``factor``, ``frame_mask [B, T]``
        -> (context ``[B, T / factor, d]``, mask ``[B, T / factor]``)."""
        x = self.projection(features) * frame_mask[..., None].to(features.dtype)
        mask = frame_mask.bool()
        if factor > 1:
            batch, frames, dim = x.shape
            counts = mask.reshape(batch, frames // factor, factor).sum(-1, keepdim=True).clamp(min=1)
            x = x.reshape(batch, frames // factor, factor, dim).sum(2) / counts.to(x.dtype)
            mask = mask.reshape(batch, frames // factor, factor).any(-1)
        times = torch.arange(x.shape[1], device=x.device)
        bias = distance_bias(times, times, self.slopes)
        for block in self.blocks:
            x = block(x, bias, mask)
        return self.norm(x), mask

    def null(self, batch: int, frames: int) -> torch.Tensor:
        """The "no audio" context ``[batch, frames, d]``."""
        return self.null_context.expand(batch, frames, -1)


class DenoiserBlock(nn.Module):
    """One block of the denoiser on tokens ``x [B, T, P, d]`` (see the module docstring)."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float, attention: str):
        super().__init__()
        self.attention_mode = attention
        self.modulation = AdaptiveModulation(dim, dim, 9)
        self.norm_time = nn.LayerNorm(dim, elementwise_affine=False)
        self.time_attention = MultiHeadAttention(dim, num_heads, dropout)
        if attention == "factorized":
            self.norm_part = nn.LayerNorm(dim, elementwise_affine=False)
            self.part_attention = MultiHeadAttention(dim, num_heads, dropout)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attention = MultiHeadAttention(dim, num_heads, dropout)
        self.norm_ff = nn.LayerNorm(dim, elementwise_affine=False)
        self.ff = FeedForward(dim, ff_dim, dropout)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, context: torch.Tensor, context_valid: torch.Tensor,
                latent_valid: torch.Tensor, time_bias: torch.Tensor, cross_bias: torch.Tensor) -> torch.Tensor:
        """``x [B, T, P, d]``, ``cond [B, d]``, ``context [B, Tc, d]`` with ``context_valid
        [B, Tc]``, ``latent_valid [B, T]``; ``time_bias`` ``[H, T, T]`` (factorized) or
        ``[H, T*P, T*P]`` (joint); ``cross_bias [H, T*P, Tc]``."""
        batch, frames, parts, dim = x.shape
        shift_t, scale_t, gate_t, shift_p, scale_p, gate_p, shift_f, scale_f, gate_f = self.modulation(cond)
        h = modulate(self.norm_time(x), shift_t, scale_t)
        if self.attention_mode == "factorized":
            # time attention within each part: sequences [B*P, T, d], batch-major
            h = h.permute(0, 2, 1, 3).reshape(batch * parts, frames, dim)
            valid = latent_valid.repeat_interleave(parts, dim=0)
            h = self.time_attention(h, bias=time_bias, key_valid=valid)
            x = x + gated(h.reshape(batch, parts, frames, dim).permute(0, 2, 1, 3), gate_t)
            # part attention within each time step: sequences [B*T, P, d]
            h = modulate(self.norm_part(x), shift_p, scale_p).reshape(batch * frames, parts, dim)
            x = x + gated(self.part_attention(h).reshape(batch, frames, parts, dim), gate_p)
        else:
            valid = latent_valid.repeat_interleave(parts, dim=1)  # token (t, p) at t * P + p
            h = self.time_attention(h.reshape(batch, frames * parts, dim), bias=time_bias, key_valid=valid)
            x = x + gated(h.reshape(batch, frames, parts, dim), gate_t)
        h = self.norm_cross(x).reshape(batch, frames * parts, dim)
        h = self.cross_attention(h, context, bias=cross_bias, key_valid=context_valid)
        x = x + h.reshape(batch, frames, parts, dim)
        return x + gated(self.ff(modulate(self.norm_ff(x), shift_f, scale_f)), gate_f)


class SpaceTimeDenoiser(nn.Module):
    """``x_t [B, T', P, D]`` (normalised latents), steps ``[B]``, style embeddings
    ``[B, d]``, speech context ``[B, T', d]`` -> predicted clean latents ``[B, T', P, D]``."""

    def __init__(self, num_parts: int, code_dim: int, dim: int, num_heads: int, num_layers: int, ff_dim: int,
                 dropout: float, attention: str, align_slope: float):
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise VoxmeshError(f"GLDiTalker attention '{attention}' is unknown; use one of {', '.join(ATTENTION_MODES)}.")
        self.dim = int(dim)
        self.attention_mode = attention
        self.input = nn.Linear(code_dim, dim)
        self.part_embedding = nn.Parameter(torch.randn(num_parts, dim) * 0.02)
        self.step_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(DenoiserBlock(dim, num_heads, ff_dim, dropout, attention) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.final_modulation = AdaptiveModulation(dim, dim, 2)
        self.output = nn.Linear(dim, code_dim)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        self.register_buffer("time_slopes", alibi_slopes(num_heads), persistent=False)
        self.register_buffer("align_slopes", alignment_slopes(num_heads, align_slope), persistent=False)

    def forward(self, x_t: torch.Tensor, timesteps: torch.Tensor, style: torch.Tensor, context: torch.Tensor,
                context_valid: torch.Tensor, latent_valid: torch.Tensor | None = None) -> torch.Tensor:
        batch, frames, parts, _ = x_t.shape
        if latent_valid is None:
            latent_valid = torch.ones(batch, frames, dtype=torch.bool, device=x_t.device)
        x = self.input(x_t) + self.part_embedding[None, None]
        cond = self.step_mlp(timestep_embedding(timesteps, self.dim).to(x.dtype)) + style
        times = torch.arange(frames, device=x.device)
        token_times = times.repeat_interleave(parts)  # token (t, p) at t * P + p
        if self.attention_mode == "factorized":
            time_bias = distance_bias(times, times, self.time_slopes)
        else:
            time_bias = distance_bias(token_times, token_times, self.time_slopes)
        # Speech context frames are at the latent rate, so context frame tau aligns with latent frame tau.
        cross_bias = distance_bias(token_times, torch.arange(context.shape[1], device=x.device), self.align_slopes)
        for block in self.blocks:
            x = block(x, cond, context, context_valid, latent_valid, time_bias, cross_bias)
        shift, scale = self.final_modulation(cond)
        return self.output(modulate(self.final_norm(x), shift, scale))


__all__ = ["ATTENTION_MODES", "DenoiserBlock", "SpaceTimeDenoiser", "SpeechContext"]
