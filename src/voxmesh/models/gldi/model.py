"""GLDiTalker (Lin et al., "GLDiTalker: Speech-Driven 3D Facial Animation with Graph
Latent Diffusion Transformer", 2024): the method as voxmesh builds it.

Stage ``"vqvae"`` learns the graph-enhanced quantised motion space
(:class:`~voxmesh.models.gldi.vqvae.GraphMotionVQVAE`): motion (vertices minus template)
-> spiral-conv mesh pyramid per frame -> temporal transformer (optional down-sampling
by ``2^q``) -> ``parts x code_dim`` latents a latent frame -> vector quantisation ->
the mirrored decoder (a Laplacian pyramid of per-level displacement heads, plus
full-resolution displacement slots). Loss: L1 reconstruction + ``velocity_weight`` x L1
of the frame-to-frame velocity (both in ``motion_scale`` units, centimetres by default,
and per vertex weighted by ``region_weights``) + codebook and commitment terms. ``perplexity`` (codebook usage) is logged. The first
``vq_warmup_steps`` train without the quantiser, whose codebook then starts from the
latents of a batch; ``vq_crop_seconds`` trains on random crops of the windows.

Stage ``"diffusion"`` learns speech -> latents with the VQ-VAE frozen
(:class:`~voxmesh.models.gldi.denoiser.SpaceTimeDenoiser`): the ground truth's quantised
latents, normalised per channel by statistics gathered during stage 1, are noised by
the DDPM forward process (1000 steps, scaled-linear betas) and the denoiser predicts
them back (x0-prediction) from the noisy latents, the step, the speaker's style and the
speech context. Loss: ``latent_weight`` x MSE of the latents + ``latent_velocity_weight``
x MSE of their velocity + ``vertex_weight`` x MSE of the motion decoded from the
prediction by the frozen decoder (in ``motion_scale`` units; off by default: it costs a
full decode a step). Style and speech are each replaced by their learned null with
probability ``style_drop`` / ``audio_drop``, for classifier-free guidance.

Generation: DDIM (``sampling_steps``, 50 by default) from Gaussian noise drawn from a
``torch.Generator`` seeded by ``seed``, with classifier-free guidance when ``guidance``
(or ``style_guidance``) differs from 1; the final latents are optionally snapped to
the codebook and decoded by stage 1. Long inputs are cut into windows of
``window_seconds`` overlapping by ``overlap_seconds``: at every DDIM step the windows'
x0 predictions are blended into one sequence with linear cross-fade weights
(MultiDiffusion), so the windows agree and there is no seam; the final decode uses the
same windows and weights.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from voxmesh.data.batching import Batch
from voxmesh.errors import VoxmeshError
from voxmesh.models.base import TalkingFaceModel
from voxmesh.models.faceformer import check_features, masked_mean, resolve_config, speaker_indices, style_vectors
from voxmesh.models.gldi.denoiser import ATTENTION_MODES, SpaceTimeDenoiser, SpeechContext
from voxmesh.models.gldi.vqvae import GraphMotionVQVAE
from voxmesh.models.layers.diffusion import DEFAULT_BETA_END, DEFAULT_BETA_START, LatentDiffusion
from voxmesh.models.registry import register

GLDI_DEFAULTS: dict[str, Any] = {
    # ---- stage 1: mesh pyramid and spiral convolutions
    "pyramid_factors": [4, 4, 4],  # vertex reduction a level: 3 coarser levels (4 in all)
    "spiral_length": 9,
    "spiral_dilation": 1,
    "mesh_channels": [4, 8, 16, 32],  # SpiralConv width a level, fine to coarse (narrow at full resolution)
    "pool_slots": [16, 16, 16, 16],  # learned pooling / scattering slots a level
    "displacement_slots": 64,  # full-resolution displacement slots (encoder readout, decoder directions); 0: none
    "mesh_encoder": "pyramid",  # "pyramid" (spiral convolutions) or "linear" (the ablation: one linear layer a frame)
    "mesh_chunk_frames": None,  # frames through the mesh layers at once, checkpointed in training; None: all
    "motion_scale": 100.0,  # motion is multiplied by this inside stage 1 (metres -> centimetres)
    # ---- stage 1: temporal VQ-VAE
    "hidden_dim": 128,  # the per-frame vector and the temporal transformers' width
    "vq_layers": 2,
    "vq_heads": 4,
    "vq_ff_dim": 256,
    "vq_dropout": 0.1,
    "temporal_downsample": 0,  # q: latents at fps / 2^q
    "num_parts": 8,  # latent vectors a latent frame ("space" tokens)
    "code_dim": 16,
    "num_codes": 256,
    "beta": 0.25,  # commitment weight
    "ema_decay": 0.99,  # None: codebook learned by gradient
    "dead_code_threshold": 1.0,  # restart codes winning under this many inputs a batch (moving average); 0: off
    "velocity_weight": 1.0,  # stage-1 L1 velocity loss
    # Stage-1 L1 weight of named regions (regions.json), e.g. {upper_face: 10}: eyelid and
    # brow motion is a tenth of a millimetre beside the lips' millimetres, and unweighted
    # stage 1 leaves it out of the codes altogether. Empty: every vertex weighs 1.
    "region_weights": {},
    # Latent parts computed from one named region's motion alone, e.g. {upper_face: 2}: of
    # the num_parts vectors a frame, the last 2 then encode the upper face only, so its
    # small motion gets codes of its own (with whole-face parts it is lost in
    # quantisation). Empty: every part sees the whole face, as in the paper.
    "region_parts": {},
    "region_slots": 32,  # displacement slots a region part's encoder reads the region through
    "vq_crop_seconds": None,  # stage 1 trains on a random crop of each window this long (None: whole windows)
    "vq_warmup_steps": 100,  # first stage-1 steps trained as a plain autoencoder, then the codebook starts from its latents
    "latent_stats_momentum": 0.01,
    # ---- stage 2: denoiser
    "d_model": 128,
    "num_heads": 4,
    "num_layers": 4,
    "ff_dim": None,  # None: 4 * d_model
    "dropout": 0.1,
    "attention": "factorized",  # "factorized" (time, then parts) or "joint" (one attention over time x parts)
    "audio_layers": 1,  # transformer blocks of the speech context
    "align_slope": 1.0,  # steepest alignment-bias slope (per latent frame) of the cross-attention heads
    "style_drop": 0.1,  # probability of training with the null style
    "audio_drop": 0.1,  # probability of training with the null speech context
    # ---- stage 2: diffusion
    "num_train_timesteps": 1000,
    "beta_start": DEFAULT_BETA_START,
    "beta_end": DEFAULT_BETA_END,
    "zero_terminal_snr": False,
    "latent_weight": 1.0,
    "latent_velocity_weight": 1.0,
    "vertex_weight": 0.0,  # MSE through the frozen decoder (costs a decode a step)
    # ---- generation
    "sampling_steps": 50,  # DDIM steps
    "eta": 0.0,  # DDIM noise (0: deterministic given the start noise)
    "guidance": 1.0,  # classifier-free guidance on speech and style together; 1: off
    "style_guidance": None,  # separate scale for the style (None: the same as guidance)
    "snap_to_codebook": True,  # replace sampled latents by their nearest codes before decoding
    "window_seconds": 3.0,  # generation window (the training window)
    "overlap_seconds": 0.5,  # overlap of neighbouring windows, cross-faded linearly
}


# ---- windows ------------------------------------------------------------------------------------

def plan_windows(total: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """``[(start, end)]`` windows of ``length`` frames covering ``total`` frames, evenly
    spaced so that neighbours overlap by at least ``overlap`` frames; one window of
    ``total`` frames when it fits in one."""
    if total <= length:
        return [(0, total)]
    stride = max(1, length - overlap)
    count = math.ceil((total - length) / stride) + 1
    starts = [round(k * (total - length) / (count - 1)) for k in range(count)]
    return [(s, s + length) for s in starts]


def crossfade_weights(windows: list[tuple[int, int]], total: int, ramp: int) -> torch.Tensor:
    """``[len(windows), total]`` blending weights that sum to 1 over the windows at every
    frame. A window's weight rises linearly over its first ``ramp`` frames and falls over
    its last ``ramp`` (not at the ends of the sequence), so two windows that overlap by
    ``ramp`` frames cross-fade linearly; ``ramp = 0`` cuts hard."""
    weights = torch.zeros(len(windows), total, dtype=torch.float64)
    for k, (start, end) in enumerate(windows):
        position = torch.arange(start, end, dtype=torch.float64)
        rise = (position - start + 1) / (ramp + 1) if start > 0 else torch.ones_like(position)
        fall = (end - position) / (ramp + 1) if end < total else torch.ones_like(position)
        weights[k, start:end] = torch.minimum(rise, fall).clamp(max=1.0)
    return (weights / weights.sum(0, keepdim=True)).float()


def _blend(pieces: torch.Tensor, windows: list[tuple[int, int]], weights: torch.Tensor, total: int) -> torch.Tensor:
    """Windows ``[n, B, W, ...]`` blended into ``[B, total, ...]`` with ``weights [n, total]``."""
    out = pieces.new_zeros((pieces.shape[1], total) + tuple(pieces.shape[3:]))
    for k, (start, end) in enumerate(windows):
        w = weights[k, start:end].to(pieces.dtype).reshape((1, end - start) + (1,) * (pieces.dim() - 3))
        out[:, start:end] += pieces[k, :, : end - start] * w
    return out


def _cut(x: torch.Tensor, windows: list[tuple[int, int]], scale: int = 1) -> torch.Tensor:
    """``x [B, T, ...]`` cut into ``[n, B, W * scale, ...]`` (windows in units of ``scale`` frames)."""
    return torch.stack([x[:, start * scale:end * scale] for start, end in windows])


@register("gldi", title="GLDiTalker", stochastic=True, sampling_steps=True, aliases=("glditalker",),
          configs={"vocaset": "gldi_vocaset", "biwi": "gldi_biwi", "synthetic": "gldi_synthetic"},
          quick_overrides=("model.mesh_channels=[2,4,4,8]", "model.pool_slots=[4,4,4,4]", "model.hidden_dim=32",
                           "model.vq_layers=1", "model.vq_heads=2", "model.vq_ff_dim=64", "model.num_parts=3",
                           "model.code_dim=8", "model.num_codes=32", "model.vq_warmup_steps=2",
                           "model.displacement_slots=16", "model.d_model=32", "model.num_heads=2", "model.num_layers=1",
                           "model.ff_dim=64", "model.sampling_steps=10", "model.window_seconds=1.0",
                           "model.overlap_seconds=0.2", "model.vq_crop_seconds=null", "model.region_slots=8"))
class GLDiTalker(TalkingFaceModel):
    """GLDiTalker. Config keys: see :data:`GLDI_DEFAULTS`; the constructor needs the mesh
    ``faces`` and ``neutral`` (it builds the mesh pyramid and spirals from them)."""

    stages = ("vqvae", "diffusion")

    def __init__(self, config: dict[str, Any], **context: Any):
        super().__init__(config, **context)
        cfg = resolve_config("gldi", GLDI_DEFAULTS, self.config)
        self.settings = cfg
        faces, neutral = context.get("faces"), context.get("neutral")
        if faces is None or neutral is None:
            raise VoxmeshError(
                "GLDiTalker builds a mesh pyramid and needs the mesh faces and neutral vertices; give the dataset a "
                "topology.ply (or .obj) file."
            )
        neutral = np.asarray(neutral, dtype=np.float32)
        if neutral.shape != (self.num_vertices, 3):
            raise VoxmeshError(
                f"The neutral face has shape {neutral.shape} but the model has {self.num_vertices} vertices; pass the "
                "template of the training topology."
            )
        if cfg["attention"] not in ATTENTION_MODES:
            raise VoxmeshError(f"GLDiTalker attention '{cfg['attention']}' is unknown; use one of {', '.join(ATTENTION_MODES)}.")
        from voxmesh.mesh.pyramid import build_mesh_pyramid

        self.pyramid = build_mesh_pyramid(neutral, np.asarray(faces, dtype=np.int64), tuple(cfg["pyramid_factors"]))
        spirals = self.pyramid.spirals(int(cfg["spiral_length"]), int(cfg["spiral_dilation"]))
        self.num_styles = max(1, len(self.speakers))

        # stage 1
        region_vertices = {name: self._region("region_parts", name) for name in dict(cfg["region_parts"])}
        self.vqvae = GraphMotionVQVAE(self.pyramid, spirals, cfg, region_vertices)
        if cfg["region_weights"]:  # a buffer, so a reloaded model needs no regions to rebuild it
            self.register_buffer("vertex_weights", self._vertex_weights(dict(cfg["region_weights"])))
        self.factor = self.vqvae.factor
        self.motion_scale = self.vqvae.motion_scale

        # stage 2
        d_model = int(cfg["d_model"])
        ff_dim = int(cfg["ff_dim"] or 4 * d_model)
        heads, dropout = int(cfg["num_heads"]), float(cfg["dropout"])
        self.speech_context = SpeechContext(self.audio_encoder.output_dim, d_model, int(cfg["audio_layers"]), heads,
                                            ff_dim, dropout)
        # one row a training speaker, then the null style
        self.style_table = nn.Parameter(torch.randn(self.num_styles + 1, d_model) * 0.02)
        self.denoiser = SpaceTimeDenoiser(self.vqvae.num_parts, self.vqvae.code_dim, d_model, heads,
                                          int(cfg["num_layers"]), ff_dim, dropout, cfg["attention"],
                                          float(cfg["align_slope"]))
        self.diffusion = LatentDiffusion(int(cfg["num_train_timesteps"]), float(cfg["beta_start"]),
                                         float(cfg["beta_end"]), zero_terminal_snr=bool(cfg["zero_terminal_snr"]))

    def _region(self, key: str, name: str) -> np.ndarray:
        """The vertex indices of the region that config ``key`` names (regions.json)."""
        if name not in self.regions or len(self.regions[name]) == 0:
            known = ", ".join(sorted(self.regions)) or "none"
            raise VoxmeshError(
                f"GLDiTalker {key} names region '{name}', which the dataset's regions.json does not have (it has: "
                f"{known}); name one of those or drop the entry."
            )
        return self.regions[name]

    def _vertex_weights(self, region_weights: dict[str, float]) -> torch.Tensor:
        """``[V]`` stage-1 loss weight a vertex: 1, or the named region's weight (the
        largest where regions overlap)."""
        weights = torch.ones(self.num_vertices)
        for name, weight in region_weights.items():
            index = torch.as_tensor(self._region("region_weights", name), dtype=torch.long)
            if not float(weight) > 0:
                raise VoxmeshError(f"GLDiTalker region_weights['{name}'] is {weight}; use a positive weight.")
            weights[index] = torch.maximum(weights[index], torch.tensor(float(weight)))
        return weights

    # ---- parameters by stage -------------------------------------------------------------------
    def trainable_parameters(self, stage: str = "diffusion") -> list[nn.Parameter]:
        """``"vqvae"``: the VQ-VAE's parameters; ``"diffusion"``: the denoiser's, the speech
        context's, the style table and the speech encoder's trainable ones (the VQ-VAE
        stays frozen)."""
        if stage == "vqvae":
            parameters = list(self.vqvae.parameters())
        elif stage == "diffusion":
            parameters = [*self.audio_encoder.parameters(), *self.speech_context.parameters(), self.style_table,
                          *self.denoiser.parameters()]
        else:
            raise VoxmeshError(f"GLDiTalker trains in stages 'vqvae' then 'diffusion', not '{stage}'.")
        return [p for p in parameters if p.requires_grad]

    # ---- conditioning ----------------------------------------------------------------------------
    def style_embedding(self, style: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, d]`` style embeddings of style weights ``[B, n_speakers]`` (one-hot rows for
        known speakers, mixtures otherwise); rows where ``drop [B]`` is True get the null style."""
        table = self.style_table
        embedding = style.to(table.dtype) @ table[: self.num_styles]
        if drop is not None:
            embedding = torch.where(drop[:, None], table[self.num_styles].expand_as(embedding), embedding)
        return embedding

    def _pad_features(self, features: torch.Tensor, frame_mask: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[B, T, C]`` padded in time to a multiple of ``2^q`` by repeating the
        last frame (the last latent frame then averages real speech), and their mask."""
        batch, frames = features.shape[:2]
        if frame_mask is None:
            frame_mask = torch.ones(batch, frames, dtype=torch.bool, device=features.device)
        extra = (-frames) % self.factor
        if extra:
            features = torch.cat([features, features[:, -1:].expand(-1, extra, -1)], dim=1)
            frame_mask = torch.cat([frame_mask, frame_mask[:, -1:].expand(-1, extra)], dim=1)
        return features, frame_mask.bool()

    # ---- training ----------------------------------------------------------------------------------
    def forward(self, batch: Batch, stage: str = "main") -> dict[str, torch.Tensor]:
        """Stage ``"vqvae"``: ``loss``, ``reconstruction_loss`` (L1), ``velocity_loss`` (L1),
        ``codebook_loss``, ``commitment_loss``, ``perplexity``. Stage ``"diffusion"``:
        ``loss``, ``latent_loss``, ``latent_velocity_loss`` and, with ``vertex_weight > 0``,
        ``vertex_loss`` (MSE of the decoded motion in metres, as FaceFormer logs it)."""
        if stage not in self.stages:
            raise VoxmeshError(f"GLDiTalker trains in stages 'vqvae' then 'diffusion', not '{stage}'.")
        motion = (batch.vertices - batch.template[:, None]) * batch.frame_mask[..., None, None].to(batch.vertices.dtype)
        if stage == "vqvae":
            self.vqvae.train(self.training)
            return self._vqvae_losses(motion, batch.frame_mask)
        self.vqvae.eval()
        features = self.audio_features(batch)
        check_features(features, motion.shape[1], self.audio_encoder.output_dim)
        style = style_vectors(speaker_indices(batch, self.speakers), self.num_styles).to(features.device)
        return self._diffusion_losses(features, motion, style, batch.frame_mask)

    def _crop(self, motion: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A random crop of ``vq_crop_seconds`` of each item's real frames (training only):
        the mesh layers cost the same for every frame, so stage 1 sees more batches for
        the same compute; the temporal transformers, with distance biases and no
        positional encoding, still run on windows of any length afterwards."""
        crop = self.settings["vq_crop_seconds"]
        if crop is None or not self.training:
            return motion, frame_mask
        crop_frames = max(1, round(float(crop) * self.fps))
        batch, frames = frame_mask.shape
        if frames <= crop_frames:
            return motion, frame_mask
        free = (frame_mask.sum(dim=1) - crop_frames).clamp(min=0) + 1
        start = (torch.rand(batch, device=motion.device) * free).long().clamp(max=frames - crop_frames)
        index = start[:, None] + torch.arange(crop_frames, device=motion.device)[None]
        motion = motion.gather(1, index[..., None, None].expand(-1, -1, *motion.shape[2:]))
        return motion, frame_mask.gather(1, index)

    def _vqvae_losses(self, motion: torch.Tensor, frame_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        motion, frame_mask = self._crop(motion, frame_mask)
        frames = motion.shape[1]
        z, latent_mask = self.vqvae.encode(motion, frame_mask)
        # Only training steps skip the quantiser: validation always scores the quantised
        # reconstruction, so a warm-up checkpoint (no codebook yet) never becomes "best",
        # the weights the next stage starts from.
        warming_up = self.training and self.vqvae.warming_up
        # While warming up the quantiser only reports (no losses, no codebook updates) and the
        # decoder reads the continuous latents: a VQ-VAE from random weights maps every frame
        # to nearly the same latent, so its first codes are few and carry no motion; after
        # the warm-up the codebook starts from latents that already differ (see quantize).
        quantized = self.vqvae.quantize(z, latent_mask, update=not warming_up)
        codes = z if warming_up else quantized.quantized
        if self.training:
            self.vqvae.training_steps += 1
            if not warming_up:
                self.vqvae.update_latent_stats(codes, latent_mask)
        reconstruction = self.vqvae.decode(codes, latent_mask)[:, :frames]
        error = (reconstruction - motion) * self.motion_scale
        weights = getattr(self, "vertex_weights", None)
        weight = 1.0 if weights is None else weights.to(error.dtype)[:, None]  # [V, 1] against [B, T, V, 3]
        reconstruction_loss = masked_mean(error.abs() * weight, frame_mask)
        if frames > 1:
            pair_mask = frame_mask[:, 1:] & frame_mask[:, :-1]
            velocity_loss = masked_mean((error[:, 1:] - error[:, :-1]).abs() * weight, pair_mask)
        else:
            velocity_loss = error.new_zeros(())
        return {
            "loss": (reconstruction_loss + float(self.settings["velocity_weight"]) * velocity_loss
                     + (0.0 if warming_up else 1.0) * quantized.losses["total"]),
            "reconstruction_loss": reconstruction_loss,
            "velocity_loss": velocity_loss,
            "codebook_loss": quantized.losses["codebook"],
            "commitment_loss": quantized.losses["commitment"],
            "perplexity": quantized.perplexity.detach(),
        }

    def _diffusion_losses(self, features: torch.Tensor, motion: torch.Tensor, style: torch.Tensor,
                          frame_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.settings
        batch, frames = motion.shape[:2]
        with torch.no_grad():  # the targets: the ground truth's codes from the frozen stage 1
            z, latent_mask = self.vqvae.encode(motion, frame_mask)
            x0 = self.vqvae.normalize(self.vqvae.quantize(z, latent_mask, update=False).quantized)
        features, feature_mask = self._pad_features(features, frame_mask)
        context, context_valid = self.speech_context(features, feature_mask, self.factor)
        drop_style = drop_audio = None
        if self.training:
            drop_style = torch.rand(batch, device=x0.device) < float(cfg["style_drop"])
            drop_audio = torch.rand(batch, device=x0.device) < float(cfg["audio_drop"])
            context = torch.where(drop_audio[:, None, None], self.speech_context.null(batch, context.shape[1]), context)
        style_embedding = self.style_embedding(style, drop_style)
        timesteps = self.diffusion.sample_timesteps(batch, device=x0.device)
        noise = torch.randn_like(x0)
        x_t = self.diffusion.add_noise(x0, noise, timesteps)
        predicted = self.denoiser(x_t, timesteps, style_embedding, context, context_valid, latent_mask)

        latent_loss = masked_mean((predicted - x0) ** 2, latent_mask)
        if predicted.shape[1] > 1:
            pair_mask = latent_mask[:, 1:] & latent_mask[:, :-1]
            velocity = (predicted[:, 1:] - predicted[:, :-1]) - (x0[:, 1:] - x0[:, :-1])
            latent_velocity_loss = masked_mean(velocity ** 2, pair_mask)
        else:
            latent_velocity_loss = predicted.new_zeros(())
        losses = {"latent_loss": latent_loss, "latent_velocity_loss": latent_velocity_loss}
        loss = float(cfg["latent_weight"]) * latent_loss + float(cfg["latent_velocity_weight"]) * latent_velocity_loss
        if float(cfg["vertex_weight"]) > 0:
            decoded = self.vqvae.decode(self.vqvae.denormalize(predicted), latent_mask)[:, :frames]
            vertex_loss = masked_mean((decoded - motion) ** 2, frame_mask)
            loss = loss + float(cfg["vertex_weight"]) * vertex_loss * self.motion_scale ** 2
            losses["vertex_loss"] = vertex_loss
        return {"loss": loss, **losses}

    # ---- inference -----------------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, vertices: torch.Tensor, template: torch.Tensor, frame_mask: torch.Tensor | None = None,
                    quantize: bool = True) -> torch.Tensor:
        """Stage 1 alone: vertices ``[B, T, V, 3]`` encoded, quantised (unless
        ``quantize=False``) and decoded back to ``[B, T, V, 3]`` with templates ``[B, V, 3]``;
        how well the motion space holds the motion. Whole sequences in one pass; eval mode."""
        was_training = self.training
        self.eval()
        try:
            frames = vertices.shape[1]
            motion = vertices - template[:, None]
            z, latent_mask = self.vqvae.encode(motion, frame_mask)
            codes = self.vqvae.quantize(z, latent_mask, update=False).quantized if quantize else z
            decoded = self.vqvae.decode(codes, latent_mask)[:, :frames]
        finally:
            self.train(was_training)
        return template[:, None] + decoded.to(template.dtype)

    @torch.no_grad()
    def sample(self, audio_features: torch.Tensor, template: torch.Tensor, speaker_ids: torch.Tensor | None,
               num_samples: int = 1, seed: int | None = None, steps: int | None = None,
               guidance: float | None = None, style_guidance: float | None = None, eta: float | None = None,
               snap_to_codebook: bool | None = None, style_weights: torch.Tensor | None = None,
               window_seconds: float | None = None, overlap_seconds: float | None = None,
               return_latents: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``num_samples`` motions a batch item in one batched call: vertices
        ``[B, S, T, V, 3]`` from aligned features ``[B, T, C]``, templates ``[B, V, 3]`` and
        style indices ``[B]`` (-1: the mixture of all training styles) or soft
        ``style_weights [B, n_speakers]``.

        The start noise ``[B, S, T', P, D]`` (and DDIM's step noise when ``eta > 0``) comes
        from a ``torch.Generator`` seeded with ``seed`` (None: a fresh random seed), so the
        same seed and inputs give the same motion; for one item, sample 0 is what
        :meth:`generate` gives with that seed. Every other option defaults to the config
        (``sampling_steps``, ``guidance``, ``style_guidance``, ``eta``, ``snap_to_codebook``,
        ``window_seconds``, ``overlap_seconds``). With ``return_latents`` also the final
        latents ``[B, S, T', P, D]`` (snapped when snapping). Runs in eval mode."""
        cfg = self.settings
        batch, frames = audio_features.shape[:2]
        check_features(audio_features, frames, self.audio_encoder.output_dim)
        samples = int(num_samples)
        if samples < 1:
            raise VoxmeshError(f"num_samples must be at least 1, got {num_samples}.")
        steps = int(cfg["sampling_steps"] if steps is None else steps)
        audio_scale = float(cfg["guidance"] if guidance is None else guidance)
        style_scale = style_guidance if style_guidance is not None else cfg["style_guidance"]
        style_scale = audio_scale if style_scale is None else float(style_scale)
        eta = float(cfg["eta"] if eta is None else eta)
        snap = bool(cfg["snap_to_codebook"] if snap_to_codebook is None else snap_to_codebook)
        device = audio_features.device
        parts, code_dim = self.vqvae.num_parts, self.vqvae.code_dim
        if frames == 0:
            empty = template[:, None, None].expand(batch, samples, 0, -1, -1).clone()
            no_latents = audio_features.new_zeros(batch, samples, 0, parts, code_dim)
            return (empty, no_latents) if return_latents else empty

        was_training = self.training
        self.eval()
        try:
            generator = torch.Generator(device=device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
            features, feature_mask = self._pad_features(audio_features.float())
            latent_frames = features.shape[1] // self.factor
            window = max(1, round(float(cfg["window_seconds"] if window_seconds is None else window_seconds)
                                  * self.fps / self.factor))
            overlap = round(float(cfg["overlap_seconds"] if overlap_seconds is None else overlap_seconds)
                            * self.fps / self.factor)
            overlap = max(0, min(overlap, window // 2))
            windows = plan_windows(latent_frames, window, overlap)
            weights = crossfade_weights(windows, latent_frames, overlap).to(device)
            count = len(windows)

            # The speech context depends on neither the noise nor the step: once a window.
            cut_features = _cut(features, windows, self.factor).flatten(0, 1)  # [n*B, W*f, C]
            cut_mask = _cut(feature_mask, windows, self.factor).flatten(0, 1)
            context, context_valid = self.speech_context(cut_features, cut_mask, self.factor)
            context = context.reshape(count, batch, *context.shape[1:]).repeat_interleave(samples, dim=1).flatten(0, 1)
            context_valid = context_valid.reshape(count, batch, -1).repeat_interleave(samples, dim=1).flatten(0, 1)
            null_context = self.speech_context.null(context.shape[0], context.shape[1])

            style = style_vectors(speaker_ids, self.num_styles, style_weights).to(device)
            style = self.style_embedding(style).repeat_interleave(samples, dim=0)  # [B*S, d]
            style = style[None].expand(count, -1, -1).flatten(0, 1)  # [n*B*S, d]
            null_style = self.style_table[self.num_styles].expand_as(style)

            # Conditions a pass: (context, style); guidance adds the unconditional pass and, when
            # the style has its own scale, the speech-only one.
            guided = audio_scale != 1.0 or style_scale != 1.0
            separate_style = guided and style_scale != audio_scale
            contexts, styles = [context], [style]
            if guided:
                contexts.append(null_context)
                styles.append(null_style)
            if separate_style:
                contexts.append(context)
                styles.append(null_style)
            passes = len(contexts)
            all_context = torch.cat(contexts)
            all_valid = context_valid.repeat(passes, 1)
            all_style = torch.cat(styles)

            def predict_x0(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                pieces = _cut(x_t, windows).flatten(0, 1)  # [n*B*S, W, P, D]
                inputs = pieces.repeat(passes, 1, 1, 1)
                timesteps = t.to(device).expand(inputs.shape[0])
                out = self.denoiser(inputs, timesteps, all_style, all_context, all_valid).chunk(passes)
                x0 = out[0]
                if guided:
                    unconditional = out[1]
                    speech_only = out[2] if separate_style else out[0]
                    x0 = (unconditional + audio_scale * (speech_only - unconditional)
                          + style_scale * (out[0] - speech_only))
                x0 = x0.reshape(count, batch * samples, *x0.shape[1:])
                return _blend(x0, windows, weights, latent_frames)

            noise = torch.randn((batch, samples, latent_frames, parts, code_dim), generator=generator, device=device)
            x0 = self.diffusion.sample(predict_x0, noise.flatten(0, 1), steps, eta=eta, generator=generator)
            latents = self.vqvae.denormalize(x0)
            if snap:
                latents = self.vqvae.quantizer.lookup(self.vqvae.quantizer.nearest(latents))
            decoded = self.vqvae.decode(_cut(latents, windows).flatten(0, 1))  # [n*B*S, W*f, V, 3]
            decoded = decoded.reshape(count, batch * samples, *decoded.shape[1:])
            motion = _blend(decoded, [(s * self.factor, e * self.factor) for s, e in windows],
                            weights.repeat_interleave(self.factor, dim=1), latent_frames * self.factor)
        finally:
            self.train(was_training)
        motion = motion[:, :frames].reshape(batch, samples, frames, self.num_vertices, 3)
        vertices = template[:, None, None] + motion.to(template.dtype)
        if return_latents:
            return vertices, latents.reshape(batch, samples, latent_frames, parts, code_dim)
        return vertices

    @torch.no_grad()
    def generate(self, audio_features: torch.Tensor, template: torch.Tensor, speaker_ids: torch.Tensor | None,
                 seed: int | None = None, num_samples: int = 1, steps: int | None = None,
                 guidance: float | None = None, **options: Any) -> torch.Tensor:
        """Vertices ``[B, T, V, 3]`` from aligned features ``[B, T, C]``, templates
        ``[B, V, 3]`` and style indices ``[B]`` (the base-class contract). With
        ``num_samples = S > 1`` the samples come stacked as ``[B * S, T, V, 3]``, item ``b``'s
        sample ``s`` at ``b * S + s`` (:meth:`sample` gives ``[B, S, T, V, 3]``). ``options``
        are :meth:`sample`'s (``style_guidance``, ``eta``, ``snap_to_codebook``,
        ``style_weights``, ``window_seconds``, ``overlap_seconds``); others are ignored."""
        known = {"style_guidance", "eta", "snap_to_codebook", "style_weights", "window_seconds", "overlap_seconds"}
        vertices = self.sample(audio_features, template, speaker_ids, num_samples=num_samples, seed=seed, steps=steps,
                               guidance=guidance, **{k: v for k, v in options.items() if k in known})
        return vertices.flatten(0, 1)


__all__ = ["GLDI_DEFAULTS", "GLDiTalker", "crossfade_weights", "plan_windows"]
