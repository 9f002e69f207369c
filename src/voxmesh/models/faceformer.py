"""FaceFormer (Fan et al., "FaceFormer: Speech-Driven 3D Facial Animation with
Transformers", CVPR 2022).

Speech features aligned to the mesh frames are projected to ``d_model`` and serve as
the decoder's memory. The decoder input is autoregressive: the first token is the
speaker-style embedding (a linear map of a one-hot over the training speakers); token
``t > 0`` is the motion encoder's embedding of frame ``t-1``'s displacement from the
template plus the style embedding. A periodic positional encoding is added, then
decoder layers with the period-biased causal self-attention and the alignment-masked
cross-attention (:mod:`voxmesh.models.layers.attention`). A linear motion decoder maps
each output to ``V*3`` displacements added to the template; it is zero-initialised as
in the paper, so an untrained model outputs the template.

Choices the paper leaves open, or that differ from its code:

* Training uses teacher forcing (ground-truth previous frames), one pass per batch;
  ``generate`` runs frame by frame on its own outputs. The paper's code can also train
  autoregressively; teacher forcing is far cheaper and is what the paper describes.
* Speech features arrive already interpolated to the mesh rate, so the alignment mask
  is the diagonal (frame ``t`` sees audio frame ``t`` only). The paper's code keeps two
  audio frames a mesh frame for VOCASET/BIWI; one interpolated frame carries the same
  information.
* ``period`` (frames) is ~1 s: 30 for VOCASET at 30 fps, 25 for BIWI at 25 fps (the
  paper's values); default 25.
* Unknown speakers (index -1) are conditioned on the uniform mixture of the training
  styles. The benchmark's "average over all training speakers' outputs" is the
  evaluator's job: it calls ``generate`` once a speaker.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from voxmesh.data.batching import Batch
from voxmesh.errors import VoxmeshError
from voxmesh.models.base import TalkingFaceModel
from voxmesh.models.layers.attention import BiasedCausalDecoder, decode_autoregressively
from voxmesh.models.registry import register

FACEFORMER_DEFAULTS: dict[str, Any] = {
    "d_model": 64,  # feature_dim of the paper: 64 for VOCASET, 128 for BIWI
    "num_heads": 4,
    "num_layers": 1,
    "ff_dim": None,  # None: 2 * d_model, as the paper
    "period": 25,  # frames; ~1 s (30 VOCASET, 25 BIWI)
    "dropout": 0.1,
    "norm_first": False,
    "velocity_weight": 0.0,  # weight of the MSE of frame-to-frame differences (0: the paper's loss)
}


def resolve_config(method: str, defaults: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid by ``config``; an unknown key is an error (a typo would
    otherwise silently fall back to a default)."""
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise VoxmeshError(
            f"Unknown {method} setting(s) {', '.join(unknown)}; use only {', '.join(sorted(defaults))}."
        )
    return {**defaults, **config}


def speaker_indices(batch: Batch, speakers: list[str]) -> torch.Tensor:
    """``[B]`` int64 style indices: ``batch.speaker_ids`` when the trainer set them,
    otherwise each subject's position in ``speakers`` (-1 when absent)."""
    if batch.speaker_ids is not None:
        return batch.speaker_ids.long().to(batch.vertices.device)
    lookup = {name: i for i, name in enumerate(speakers)}
    return torch.tensor([lookup.get(s, -1) for s in batch.subjects], dtype=torch.long, device=batch.vertices.device)


def style_vectors(speaker_ids: torch.Tensor | None, num_styles: int,
                  style_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, num_styles]`` style conditioning: ``style_weights`` as given (rows are
    mixing weights, normally summing to 1), else one-hot rows for indices in range and
    the uniform mixture for -1 or out-of-range ones."""
    if style_weights is not None:
        if style_weights.dim() != 2 or style_weights.shape[1] != num_styles:
            raise VoxmeshError(
                f"style_weights has shape {tuple(style_weights.shape)}; give [batch, {num_styles}] "
                f"(one weight a training speaker)."
            )
        return style_weights.float()
    if speaker_ids is None:
        raise VoxmeshError("Give speaker_ids (one style index an item, -1 for unknown) or style_weights.")
    ids = speaker_ids.long().reshape(-1)
    known = (ids >= 0) & (ids < num_styles)
    one_hot = torch.nn.functional.one_hot(ids.clamp(0, num_styles - 1), num_styles).float()
    uniform = torch.full_like(one_hot, 1.0 / num_styles)
    return torch.where(known[:, None], one_hot, uniform)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B, T, ...]`` over the frames where ``mask [B, T]`` is True."""
    weight = mask.to(values.dtype).reshape(mask.shape + (1,) * (values.dim() - mask.dim()))
    per_frame = values[0, 0].numel() if values.dim() > 2 else 1
    return (values * weight).sum() / (weight.sum().clamp(min=1.0) * per_frame)


def vertex_losses(predicted: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor,
                  velocity_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """MSE over real frames of ``[B, T, V, 3]`` vertices, and the MSE of their
    frame-to-frame differences over pairs of real frames."""
    losses = {"vertex_loss": masked_mean((predicted - target) ** 2, frame_mask)}
    if predicted.shape[1] > 1:
        pair_mask = frame_mask[:, 1:] & frame_mask[:, :-1]
        velocity = (predicted[:, 1:] - predicted[:, :-1]) - (target[:, 1:] - target[:, :-1])
        losses["velocity_loss"] = masked_mean(velocity ** 2, pair_mask)
    else:
        losses["velocity_loss"] = predicted.new_zeros(())
    losses["loss"] = losses["vertex_loss"] + velocity_weight * losses["velocity_loss"]
    return losses


def check_features(features: torch.Tensor, frames: int, width: int) -> None:
    if features.dim() != 3 or features.shape[1] != frames or features.shape[2] != width:
        raise VoxmeshError(
            f"Speech features have shape {tuple(features.shape)}; the model needs [batch, {frames}, {width}] "
            f"(aligned to the mesh frames, width of the encoder it was built with)."
        )


@register("faceformer", title="FaceFormer",
          configs={"vocaset": "faceformer_vocaset", "biwi": "faceformer_biwi", "synthetic": "faceformer_synthetic"},
          quick_overrides=("model.d_model=16", "model.num_heads=2", "model.ff_dim=32", "model.period=15"))
class FaceFormer(TalkingFaceModel):
    """FaceFormer. Config keys: see :data:`FACEFORMER_DEFAULTS`."""

    stages = ("main",)

    def __init__(self, config: dict[str, Any], **context: Any):
        super().__init__(config, **context)
        cfg = resolve_config("faceformer", FACEFORMER_DEFAULTS, self.config)
        self.settings = cfg
        d_model = int(cfg["d_model"])
        ff_dim = int(cfg["ff_dim"] or 2 * d_model)
        self.vertex_dim = self.num_vertices * 3
        self.num_styles = max(1, len(self.speakers))
        self.velocity_weight = float(cfg["velocity_weight"])

        self.audio_projection = nn.Linear(self.audio_encoder.output_dim, d_model)
        self.style_embedding = nn.Linear(self.num_styles, d_model, bias=False)
        self.motion_encoder = nn.Linear(self.vertex_dim, d_model)
        self.decoder = BiasedCausalDecoder(d_model, int(cfg["num_heads"]), int(cfg["num_layers"]), ff_dim,
                                           int(cfg["period"]), float(cfg["dropout"]), bool(cfg["norm_first"]))
        self.motion_decoder = nn.Linear(d_model, self.vertex_dim)
        # Zero output layer, as the paper: training starts from the template.
        nn.init.zeros_(self.motion_decoder.weight)
        nn.init.zeros_(self.motion_decoder.bias)

    # ---- the network -------------------------------------------------------------------
    def teacher_forced(self, audio_features: torch.Tensor, template: torch.Tensor, vertices: torch.Tensor,
                       style: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One pass with the ground-truth previous frames as decoder inputs.

        ``audio_features [B, T, C]``, ``template [B, V, 3]``, ``vertices [B, T, V, 3]``,
        ``style [B, n_speakers]``, ``frame_mask [B, T]`` -> vertices ``[B, T, V, 3]``.
        Output ``t`` depends on ``vertices[:, :t]`` only.
        """
        batch, frames = vertices.shape[:2]
        offsets = (vertices - template[:, None]).reshape(batch, frames, self.vertex_dim)
        if frame_mask is not None:
            offsets = offsets * frame_mask[..., None].to(offsets.dtype)
        style_embedding = self.style_embedding(style)[:, None]  # [B, 1, d]
        tokens = torch.cat([style_embedding, self.motion_encoder(offsets[:, :-1]) + style_embedding], dim=1)
        hidden = self.decoder(tokens, self.audio_projection(audio_features), frame_mask)
        return template[:, None] + self.motion_decoder(hidden).reshape(batch, frames, self.num_vertices, 3)

    def forward(self, batch: Batch, stage: str = "main") -> dict[str, torch.Tensor]:
        """Losses ``loss`` (what the optimiser minimises), ``vertex_loss`` (MSE over real
        frames) and ``velocity_loss`` (weighted into ``loss`` by ``velocity_weight``)."""
        if stage not in self.stages:
            raise VoxmeshError(f"FaceFormer trains in one stage 'main', not '{stage}'.")
        features = self.audio_features(batch)
        check_features(features, batch.vertices.shape[1], self.audio_encoder.output_dim)
        style = style_vectors(speaker_indices(batch, self.speakers), self.num_styles).to(features.device)
        predicted = self.teacher_forced(features, batch.template, batch.vertices, style, batch.frame_mask)
        return vertex_losses(predicted, batch.vertices, batch.frame_mask, self.velocity_weight)

    @torch.no_grad()
    def generate(self, audio_features: torch.Tensor, template: torch.Tensor, speaker_ids: torch.Tensor | None,
                 seed: int | None = None, style_weights: torch.Tensor | None = None, **options: Any) -> torch.Tensor:
        """Autoregressive vertices ``[B, T, V, 3]`` from aligned features ``[B, T, C]``,
        templates ``[B, V, 3]`` and style indices ``[B]`` (-1: uniform mixture), or soft
        ``style_weights [B, n_speakers]``. FaceFormer is deterministic: ``seed`` is
        accepted for a uniform interface and unused. Runs in eval mode (no dropout) and
        restores the previous mode."""
        batch, frames = audio_features.shape[:2]
        check_features(audio_features, frames, self.audio_encoder.output_dim)
        if frames == 0:
            return template[:, None].expand(batch, 0, -1, -1).clone()
        was_training = self.training
        self.eval()
        try:
            style = style_vectors(speaker_ids, self.num_styles, style_weights)
            style_embedding = self.style_embedding(style.to(audio_features.device))[:, None]
            memory = self.audio_projection(audio_features)
            offsets = []

            def advance(t: int, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
                offsets.append(self.motion_decoder(hidden[0]))  # [B, 1, V*3]
                return [self.motion_encoder(offsets[-1]) + style_embedding]

            decode_autoregressively([self.decoder], [style_embedding], [memory], frames, advance)
            motion = torch.cat(offsets, dim=1).reshape(batch, frames, self.num_vertices, 3)
        finally:
            self.train(was_training)
        return template[:, None] + motion


__all__ = ["FACEFORMER_DEFAULTS", "FaceFormer", "speaker_indices", "style_vectors", "vertex_losses"]
