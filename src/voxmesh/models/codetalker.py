"""CodeTalker (Xing et al., "CodeTalker: Speech-Driven 3D Facial Animation with Discrete
Motion Prior", CVPR 2023).

Stage ``"vqvae"`` learns a discrete motion prior. Motion (vertices minus template,
``V*3`` a frame) is embedded per frame by a linear layer, mixed in time by a 1-D
convolution and a transformer encoder, and projected to ``num_parts`` vectors of
``code_dim`` a frame (the paper's "face components"), each quantised against one
shared codebook of ``num_codes`` entries. A mirrored decoder maps codes back to motion.
Loss: L1 reconstruction + codebook loss + 0.25 x commitment loss.

Stage ``"predictor"`` learns speech -> codes with the frozen VQ-VAE. A FaceFormer-style
decoder (style token first, then the previous frame's motion embedded plus style;
period-biased causal self-attention; alignment-masked cross-attention to the speech)
regresses each frame's code features. Loss, as in the paper: ``reg_weight`` x MSE between
the predicted features and the ground-truth motion's quantised codes (from the frozen
encoder), plus ``motion_weight`` x MSE between the ground-truth motion and the motion the
frozen decoder makes from the quantised predictions (gradient straight through the
quantiser and through the frozen decoder's weights, which are not updated).

Choices the paper leaves open, or that differ from its code:

* No temporal down-sampling (one set of codes a frame, the paper's setting for both
  datasets) and no instance normalisation in the conv blocks: instance norm pools over
  time, which would make a frame's code depend on the window length and on padding.
* The transformers in the VQ-VAE use the periodic positional encoding with the same
  ``period`` as the predictor.
* The predictor trains with teacher forcing on ground-truth previous frames (and, with
  ``self_feeding``, a second pass on its own decoded frames); ``generate``
  feeds back its own frames: at each step the codes so far are decoded by the frozen
  decoder and the last decoded frame is the next input (the decoder is not causal, so a
  frame decoded later, with more context, can differ slightly; the returned motion is the
  final decode of the whole code sequence). ``decode_context`` bounds that per-step
  decode to the last N frames for long inputs. With ``feedback: codes`` (not the paper's)
  the previous frame's code vectors are fed back instead: no step decodes, and generation
  feeds exactly what training's self-fed pass does.
* The VQ-VAE is kept in eval mode (no dropout, no codebook updates) during the
  predictor stage, whatever mode the model is in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.func import functional_call

from voxmesh.data.batching import Batch
from voxmesh.errors import VoxmeshError
from voxmesh.models.base import TalkingFaceModel, ground_truth_share
from voxmesh.models.faceformer import (
    check_features,
    masked_mean,
    resolve_config,
    speaker_indices,
    style_vectors,
)
from voxmesh.models.layers.attention import BiasedCausalDecoder, PeriodicPositionalEncoding, decode_autoregressively
from voxmesh.models.layers.quantizer import Quantized, VectorQuantizer
from voxmesh.models.registry import register

CODETALKER_DEFAULTS: dict[str, Any] = {
    # stage 1: the motion VQ-VAE (paper: hidden 1024, 6 layers, 8 heads, ff 1536)
    "vq_hidden_dim": 1024,
    "vq_layers": 6,
    "vq_heads": 8,
    "vq_ff_dim": 1536,
    "vq_kernel_size": 5,  # temporal convolution, odd so it stays centred
    "vq_dropout": 0.1,
    "num_parts": 16,  # codes a frame ("face components"): 16 VOCASET, 8 BIWI
    "code_dim": 64,  # size of a code: 64 VOCASET, 128 BIWI
    "num_codes": 256,  # codebook entries
    "beta": 0.25,  # commitment weight
    "ema_decay": None,  # None: codebook learned by gradient, as the paper
    "dead_code_threshold": 0.0,  # 0: no restarts, as the paper
    # Not in the paper; what a small CPU run needs (see configs/codetalker_synthetic.yaml):
    "motion_scale": 1.0,  # motion multiplied by this inside the VQ-VAE and its L1 loss (100: metres -> cm)
    "codebook_init": "random",  # "data": codes start at the first training batch's latents
    "normalize_latents": False,  # layer-normalise each latent vector before quantising
    "vq_warmup_steps": 0,  # first stage-1 steps trained as a plain autoencoder (codes then start from its latents)
    "negative_slope": 0.2,  # LeakyReLU
    # stage 2: the speech-to-code predictor
    "d_model": 1024,
    "num_heads": 4,
    "num_layers": 6,
    "ff_dim": None,  # None: 2 * d_model
    "dropout": 0.1,
    "norm_first": False,
    "period": 25,  # frames, ~1 s: 30 VOCASET, 25 BIWI
    "reg_weight": 1.0,  # feature regression to the ground-truth codes
    "motion_weight": 1.0,  # motion through the frozen decoder
    "decode_context": None,  # frames decoded a generation step; None: all so far
    # Not in the paper (which trains teacher-forced only): a second, self-fed predictor pass
    # whose inputs are, per frame, the ground truth or the decoded motion of the first pass's
    # own codes; the ground-truth share follows the self-growing schedule (1 until
    # self_feeding_warmup, a half cosine to 0 at self_feeding_end, 0 after).
    "self_feeding": False,
    "self_feeding_warmup": 0.1,
    "self_feeding_end": 0.5,
    # What the predictor reads of the previous frame: "motion" (the paper: the frozen decoder's
    # motion, decoded from the codes so far at every generation step) or "codes" (the code
    # vectors themselves: what generation feeds back is then exactly what training's
    # self-fed pass feeds, and no step decodes).
    "feedback": "motion",
}


class TemporalConv(nn.Module):
    """``[B, T, C] -> [B, T, C]`` 1-D convolution over time, zero-padded at both ends,
    with padded frames zeroed first so they look exactly like the zero padding."""

    def __init__(self, channels: int, kernel_size: int, negative_slope: float):
        super().__init__()
        if kernel_size % 2 == 0:
            raise VoxmeshError(f"vq_kernel_size must be odd, got {kernel_size}.")
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.activation = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        if frame_mask is not None:
            x = x * frame_mask[..., None].to(x.dtype)
        return self.activation(self.conv(x.transpose(1, 2)).transpose(1, 2))


class MotionTransformer(nn.Module):
    """Periodic positional encoding + a bidirectional transformer encoder over frames,
    ``[B, T, C] -> [B, T, C]``, padded frames excluded as keys."""

    def __init__(self, channels: int, layers: int, heads: int, ff_dim: int, period: int, dropout: float):
        super().__init__()
        if channels % heads:
            raise VoxmeshError(f"vq_hidden_dim {channels} is not divisible by vq_heads {heads}.")
        self.positional = PeriodicPositionalEncoding(channels, period, dropout)
        layer = nn.TransformerEncoderLayer(channels, heads, ff_dim, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        padding = None if frame_mask is None else ~frame_mask.bool()
        return self.encoder(self.positional(x, start), src_key_padding_mask=padding)


class MotionEncoder(nn.Module):
    """Motion ``[B, T, V*3]`` -> continuous latents ``[B, T, num_parts, code_dim]``:
    per-frame linear embedding, temporal convolution, transformer encoder, projection."""

    def __init__(self, vertex_dim: int, cfg: dict[str, Any]):
        super().__init__()
        hidden = int(cfg["vq_hidden_dim"])
        self.num_parts = int(cfg["num_parts"])
        self.code_dim = int(cfg["code_dim"])
        slope = float(cfg["negative_slope"])
        self.embedding = nn.Sequential(nn.Linear(vertex_dim, hidden), nn.LeakyReLU(slope))
        self.conv = TemporalConv(hidden, int(cfg["vq_kernel_size"]), slope)
        self.transformer = MotionTransformer(hidden, int(cfg["vq_layers"]), int(cfg["vq_heads"]),
                                             int(cfg["vq_ff_dim"]), int(cfg["period"]), float(cfg["vq_dropout"]))
        self.projection = nn.Linear(hidden, self.num_parts * self.code_dim)

    def forward(self, motion: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(self.embedding(motion), frame_mask)
        z = self.projection(self.transformer(x, frame_mask))
        return z.reshape(z.shape[0], z.shape[1], self.num_parts, self.code_dim)


class MotionDecoder(nn.Module):
    """Code vectors ``[B, T, num_parts, code_dim]`` -> motion ``[B, T, V*3]``: the
    encoder mirrored (projection, transformer, temporal convolution, linear)."""

    def __init__(self, vertex_dim: int, cfg: dict[str, Any]):
        super().__init__()
        hidden = int(cfg["vq_hidden_dim"])
        slope = float(cfg["negative_slope"])
        self.projection = nn.Linear(int(cfg["num_parts"]) * int(cfg["code_dim"]), hidden)
        self.transformer = MotionTransformer(hidden, int(cfg["vq_layers"]), int(cfg["vq_heads"]),
                                             int(cfg["vq_ff_dim"]), int(cfg["period"]), float(cfg["vq_dropout"]))
        self.conv = TemporalConv(hidden, int(cfg["vq_kernel_size"]), slope)
        self.output = nn.Linear(hidden, vertex_dim)
        # Zero output layer: an untrained VQ-VAE reconstructs the template (zero motion).
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, codes: torch.Tensor, frame_mask: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        """``start``: absolute frame index of ``codes[:, 0]`` (for the positional encoding)."""
        x = self.projection(codes.reshape(codes.shape[0], codes.shape[1], -1))
        x = self.conv(self.transformer(x, frame_mask, start), frame_mask)
        return self.output(x)


class MotionVQVAE(nn.Module):
    """CodeTalker's stage 1: motion ``[B, T, V*3]`` <-> codes ``[B, T, num_parts, code_dim]``."""

    def __init__(self, vertex_dim: int, cfg: dict[str, Any]):
        super().__init__()
        self.encoder = MotionEncoder(vertex_dim, cfg)
        self.quantizer = VectorQuantizer(int(cfg["num_codes"]), int(cfg["code_dim"]), beta=float(cfg["beta"]),
                                         ema_decay=cfg["ema_decay"],
                                         dead_code_threshold=float(cfg["dead_code_threshold"]))
        self.decoder = MotionDecoder(vertex_dim, cfg)
        self.num_parts = self.encoder.num_parts
        self.code_dim = self.encoder.code_dim
        self.motion_scale = float(cfg["motion_scale"])
        self.normalize_latents = bool(cfg["normalize_latents"])
        if cfg["codebook_init"] not in ("random", "data"):
            raise VoxmeshError(f"CodeTalker codebook_init is '{cfg['codebook_init']}'; use 'random' or 'data'.")
        self.data_init = cfg["codebook_init"] == "data"
        if self.data_init:  # only then: checkpoints of random-init configs keep their tensors
            self.register_buffer("codebook_initialised", torch.zeros((), dtype=torch.bool))
        self.warmup_steps = int(cfg["vq_warmup_steps"])
        if self.warmup_steps > 0:  # likewise: stage-1 steps taken, for the warm-up
            self.register_buffer("training_steps", torch.zeros((), dtype=torch.long))

    @property
    def warming_up(self) -> bool:
        """True during the first ``vq_warmup_steps`` training steps of stage 1: the
        autoencoder trains without its quantiser, so the codebook (``codebook_init:
        data``) starts from latents that already tell frames apart."""
        return self.warmup_steps > 0 and int(self.training_steps) < self.warmup_steps

    def encode(self, motion: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Continuous latents ``[B, T, num_parts, code_dim]`` for ``motion [B, T, V*3]`` (metres)."""
        z = self.encoder(motion * self.motion_scale, frame_mask)
        return F.layer_norm(z, (self.code_dim,)) if self.normalize_latents else z

    def quantize(self, z: torch.Tensor, frame_mask: torch.Tensor | None = None, update: bool = True) -> Quantized:
        """Quantise ``z [B, T, P, D]`` (see :class:`VectorQuantizer`)."""
        mask = None if frame_mask is None else frame_mask[..., None].expand(z.shape[:3])
        if self.data_init and self.training and update and not bool(self.codebook_initialised):
            flat = z.detach().reshape(-1, self.code_dim)
            if self.quantizer.initialise_from(flat if mask is None else flat[mask.reshape(-1)]):
                self.codebook_initialised.fill_(True)
        return self.quantizer(z, mask, update=update)

    def decode(self, codes: torch.Tensor, frame_mask: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        """Motion ``[B, T, V*3]`` in metres from code vectors ``[B, T, P, D]``."""
        return self.decoder(codes, frame_mask, start) / self.motion_scale


@register("codetalker", title="CodeTalker",
          configs={"vocaset": "codetalker_vocaset", "biwi": "codetalker_biwi", "synthetic": "codetalker_synthetic"},
          quick_overrides=("model.vq_hidden_dim=16", "model.vq_layers=1", "model.vq_heads=2", "model.vq_ff_dim=32",
                           "model.num_parts=2", "model.code_dim=8", "model.num_codes=16", "model.d_model=16",
                           "model.num_heads=2", "model.num_layers=1", "model.period=15"),
          benchmark_overrides=("stages.vqvae.epochs=20", "stages.predictor.epochs=25", "stages.predictor.val_every=25"))
class CodeTalker(TalkingFaceModel):
    """CodeTalker. Config keys: see :data:`CODETALKER_DEFAULTS`."""

    stages = ("vqvae", "predictor")

    def __init__(self, config: dict[str, Any], **context: Any):
        super().__init__(config, **context)
        cfg = resolve_config("codetalker", CODETALKER_DEFAULTS, self.config)
        self.settings = cfg
        self.vertex_dim = self.num_vertices * 3
        self.num_styles = max(1, len(self.speakers))
        self.reg_weight = float(cfg["reg_weight"])
        self.motion_weight = float(cfg["motion_weight"])
        self.decode_context = None if cfg["decode_context"] is None else int(cfg["decode_context"])
        self.feedback = str(cfg["feedback"])
        if self.feedback not in ("motion", "codes"):
            raise VoxmeshError(f"CodeTalker feedback '{self.feedback}' is unknown; use motion (the paper's) or codes.")

        self.vqvae = MotionVQVAE(self.vertex_dim, cfg)

        d_model = int(cfg["d_model"])
        ff_dim = int(cfg["ff_dim"] or 2 * d_model)
        latent = self.vqvae.num_parts * self.vqvae.code_dim
        self.audio_projection = nn.Linear(self.audio_encoder.output_dim, d_model)
        self.style_embedding = nn.Linear(self.num_styles, d_model, bias=False)
        # the previous frame's embedding: its motion [V*3] or its code vectors [P*D] (feedback)
        self.motion_encoder = nn.Linear(self.vertex_dim if self.feedback == "motion" else latent, d_model)
        self.decoder = BiasedCausalDecoder(d_model, int(cfg["num_heads"]), int(cfg["num_layers"]), ff_dim,
                                           int(cfg["period"]), float(cfg["dropout"]), bool(cfg["norm_first"]))
        self.feature_head = nn.Linear(d_model, latent)

    # ---- parameters by stage -----------------------------------------------------------
    def _predictor_modules(self) -> list[nn.Module]:
        return [self.audio_projection, self.style_embedding, self.motion_encoder, self.decoder, self.feature_head]

    def trainable_parameters(self, stage: str = "predictor") -> list[nn.Parameter]:
        """``"vqvae"``: the VQ-VAE's parameters; ``"predictor"``: the predictor's and the
        speech encoder's trainable ones (the VQ-VAE stays frozen)."""
        if stage == "vqvae":
            modules = [self.vqvae]
        elif stage == "predictor":
            modules = [self.audio_encoder, *self._predictor_modules()]
        else:
            raise VoxmeshError(f"CodeTalker trains in stages 'vqvae' then 'predictor', not '{stage}'.")
        return [p for module in modules for p in module.parameters() if p.requires_grad]

    # ---- the frozen decoder ------------------------------------------------------------
    def _frozen_decode(self, codes: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The VQ-VAE decoder with its weights detached: gradients reach ``codes`` but
        never the decoder's parameters, which stay frozen in the predictor stage."""
        decoder = self.vqvae.decoder
        weights = {name: value.detach() for name, value in decoder.named_parameters()}
        return functional_call(decoder, weights, (codes, frame_mask), strict=False) / self.vqvae.motion_scale

    # ---- training ----------------------------------------------------------------------
    def forward(self, batch: Batch, stage: str = "main") -> dict[str, torch.Tensor]:
        """Stage ``"vqvae"``: ``loss``, ``reconstruction_loss`` (L1), ``codebook_loss``,
        ``commitment_loss``, ``perplexity``. Stage ``"predictor"``: ``loss``,
        ``feature_loss`` (MSE to the ground-truth codes), ``motion_loss`` (MSE of the
        decoded motion), ``vertex_loss`` (the same, for comparison with other methods)."""
        if stage not in self.stages:
            raise VoxmeshError(f"CodeTalker trains in stages 'vqvae' then 'predictor', not '{stage}'.")
        frames = batch.vertices.shape[1]
        motion = (batch.vertices - batch.template[:, None]).reshape(len(batch), frames, self.vertex_dim)
        motion = motion * batch.frame_mask[..., None].to(motion.dtype)
        if stage == "vqvae":
            self.vqvae.train(self.training)
            return self._vqvae_losses(motion, batch.frame_mask)
        self.vqvae.eval()
        features = self.audio_features(batch)
        check_features(features, frames, self.audio_encoder.output_dim)
        style = style_vectors(speaker_indices(batch, self.speakers), self.num_styles).to(features.device)
        return self._predictor_losses(features, motion, style, batch.frame_mask)

    def _vqvae_losses(self, motion: torch.Tensor, frame_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.vqvae.encode(motion, frame_mask)
        # Only training steps skip the quantiser: validation always scores the quantised
        # reconstruction, so a warm-up checkpoint (no codebook yet) never becomes "best",
        # the weights the next stage starts from.
        warming_up = self.training and self.vqvae.warming_up
        # While warming up the quantiser only reports (no losses, no codebook updates) and
        # the decoder reads the continuous latents.
        quantized = self.vqvae.quantize(z, frame_mask, update=not warming_up)
        if self.training and self.vqvae.warmup_steps > 0:
            self.vqvae.training_steps += 1
        reconstruction = self.vqvae.decode(z if warming_up else quantized.quantized, frame_mask)
        # In the VQ-VAE's own units (motion_scale): with metres and millimetre motion the
        # L1 term would be too small beside the quantisation losses and the codebook collapses.
        reconstruction_loss = masked_mean((reconstruction - motion).abs(), frame_mask) * self.vqvae.motion_scale
        return {
            "loss": reconstruction_loss + (0.0 if warming_up else 1.0) * quantized.losses["total"],
            "reconstruction_loss": reconstruction_loss,
            "codebook_loss": quantized.losses["codebook"],
            "commitment_loss": quantized.losses["commitment"],
            "perplexity": quantized.perplexity.detach(),
        }

    def predict_features(self, audio_features: torch.Tensor, previous: torch.Tensor, style: torch.Tensor,
                         frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced code features ``[B, T, P, D]`` from ``audio_features [B, T, C]``,
        the frames fed back ``previous`` (motion ``[B, T, V*3]``, or code vectors ``[B, T,
        P*D]`` with ``feedback: codes``; frame ``t`` is predicted from frames ``< t``) and
        ``style [B, n_speakers]``."""
        style_embedding = self.style_embedding(style)[:, None]
        tokens = torch.cat([style_embedding, self.motion_encoder(previous[:, :-1]) + style_embedding], dim=1)
        hidden = self.decoder(tokens, self.audio_projection(audio_features), frame_mask)
        return self._features(hidden)

    def _features(self, hidden: torch.Tensor) -> torch.Tensor:
        z = self.feature_head(hidden)
        return z.reshape(z.shape[0], z.shape[1], self.vqvae.num_parts, self.vqvae.code_dim)

    def _predictor_losses(self, features: torch.Tensor, motion: torch.Tensor, style: torch.Tensor,
                          frame_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():  # the targets: the ground truth's codes from the frozen encoder
            target = self.vqvae.encode(motion, frame_mask)
            target_codes = self.vqvae.quantize(target, frame_mask, update=False).quantized
        teacher = motion if self.feedback == "motion" else target_codes.flatten(2)
        predicted = self.predict_features(features, teacher, style, frame_mask)
        feature_loss, motion_loss, decoded, quantized = self._pass_losses(predicted, target_codes, motion, frame_mask)
        share = self.ground_truth_share() if self.settings["self_feeding"] and self.training else 1.0
        if share < 1.0:
            # Per frame: the ground truth with probability `share`, else what generation would
            # feed back of the first pass's own codes (their decoded motion, or the codes), so
            # that the predictor learns to continue from its output (teacher forcing alone drifts).
            own = decoded if self.feedback == "motion" else quantized.flatten(2)
            keep = torch.rand(motion.shape[:2], device=motion.device) < share
            mixed = torch.where(keep[..., None], teacher, own.detach() * frame_mask[..., None].to(own.dtype))
            second = self.predict_features(features, mixed, style, frame_mask)
            second_feature, second_motion, _, _ = self._pass_losses(second, target_codes, motion, frame_mask)
            feature_loss = 0.5 * (feature_loss + second_feature)
            motion_loss = 0.5 * (motion_loss + second_motion)
        return {
            "loss": self.reg_weight * feature_loss + self.motion_weight * motion_loss,
            "feature_loss": feature_loss,
            "motion_loss": motion_loss,
            "vertex_loss": motion_loss.detach(),
            "ground_truth_share": motion.new_tensor(share),
        }

    def _pass_losses(self, predicted: torch.Tensor, target_codes: torch.Tensor, motion: torch.Tensor,
                     frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Feature MSE, motion MSE, the decoded motion and the quantised codes of one
        predictor pass."""
        feature_loss = masked_mean((predicted - target_codes) ** 2, frame_mask)
        quantized = self.vqvae.quantize(predicted, frame_mask, update=False).quantized
        decoded = self._frozen_decode(quantized, frame_mask)
        return feature_loss, masked_mean((decoded - motion) ** 2, frame_mask), decoded, quantized

    def ground_truth_share(self, progress: float | None = None) -> float:
        """The self-feeding schedule at ``progress`` (default: the last set)."""
        return ground_truth_share(self.progress if progress is None else progress,
                                  float(self.settings["self_feeding_warmup"]), float(self.settings["self_feeding_end"]))

    # ---- inference ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, audio_features: torch.Tensor, template: torch.Tensor, speaker_ids: torch.Tensor | None,
                 seed: int | None = None, style_weights: torch.Tensor | None = None,
                 frame_mask: torch.Tensor | None = None, return_indices: bool = False,
                 **options: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Vertices ``[B, T, V, 3]`` from aligned features ``[B, T, C]``, templates
        ``[B, V, 3]`` and style indices ``[B]`` (-1: uniform mixture) or soft
        ``style_weights [B, n_speakers]``. Deterministic (``seed`` unused); eval mode.

        ``frame_mask [B, T]`` (True on real frames) keeps the frames past a shorter
        item's end out of its final, bidirectional decode; without it a batch of unequal
        lengths gives each item slightly different frames near its end than alone. With
        ``return_indices`` also the code indices ``[B, T, P]``."""
        batch, frames = audio_features.shape[:2]
        check_features(audio_features, frames, self.audio_encoder.output_dim)
        if frames == 0:
            empty = template[:, None].expand(batch, 0, -1, -1).clone()
            no_codes = torch.zeros(batch, 0, self.vqvae.num_parts, dtype=torch.long, device=template.device)
            return (empty, no_codes) if return_indices else empty
        was_training = self.training
        self.eval()
        try:
            style = style_vectors(speaker_ids, self.num_styles, style_weights)
            style_embedding = self.style_embedding(style.to(audio_features.device))[:, None]
            memory = self.audio_projection(audio_features)
            codes: list[torch.Tensor] = []
            indices: list[torch.Tensor] = []

            def advance(t: int, hidden: list[torch.Tensor]) -> list[torch.Tensor] | None:
                quantized = self.vqvae.quantize(self._features(hidden[0]), update=False)
                codes.append(quantized.quantized)
                indices.append(quantized.indices)
                if t + 1 == frames:
                    return None
                if self.feedback == "codes":
                    previous = quantized.quantized.flatten(2)
                else:
                    start = 0 if self.decode_context is None else max(0, t + 1 - self.decode_context)
                    previous = self.vqvae.decode(torch.cat(codes[start:], dim=1), start=start)[:, -1:]
                return [self.motion_encoder(previous) + style_embedding]

            decode_autoregressively([self.decoder], [style_embedding], [memory], frames, advance)
            motion = self.vqvae.decode(torch.cat(codes, dim=1), frame_mask)
        finally:
            self.train(was_training)
        vertices = template[:, None] + motion.reshape(batch, frames, self.num_vertices, 3)
        if return_indices:
            return vertices, torch.cat(indices, dim=1)
        return vertices


__all__ = ["CODETALKER_DEFAULTS", "CodeTalker", "MotionDecoder", "MotionEncoder", "MotionVQVAE"]
