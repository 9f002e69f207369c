"""EmoFace (Lin et al., "EmoFace: Emotion-Content Disentangled Speech-Driven 3D Talking
Face with Mesh Attention", 2024), built from the paper (no official code exists).

Two streams share the speech encoder and read its features through their own linear
projection:

* the **content stream**: a FaceFormer decoder (:class:`BiasedCausalDecoder`: period-
  biased causal self-attention, cross-attention to the aligned speech frame) conditioned
  on the speaker style (a linear map of a one-hot over the training speakers), predicting
  vertex offsets ΔM_c;
* the **emotion stream**: the same kind of decoder conditioned on the speaker style, the
  intensity (one-hot of 2 levels) and an emotion vector, predicting ΔM_e. It also
  classifies the emotion from the audio (cross-entropy over the model's ``emotions``):
  its projected features go through a temporal convolution, mean-and-standard-deviation
  pooling over the real frames, and a two-layer MLP.

The emotion vector is the heard emotion (the classifier's detached probabilities, or
their arg-max one-hot with ``heard_emotion: hard``) unless an explicit label overrides it
(beyond the paper: a happy face on a neutral recording). In training, an item with a
label is conditioned on the label's one-hot with chance ``label_conditioning`` and on
what is heard otherwise, so that both ways in are learnt.

**Mesh Attention** fuses the streams per vertex and per frame: each stream's decoder
output is reduced to ``attention_reduce`` numbers, the two are fused into one feature a
frame, broadcast against a learned per-vertex embedding (added), and passed through
SpiralConv3D layers (spiral over the mesh, causal over δ = ``temporal_kernel`` frames)
to one logit a vertex; α = sigmoid(logit) and ΔM = α ΔM_e + (1 - α) ΔM_c. The layers run
on the coarsest level of a mesh pyramid (``attention_factors``; ``[]`` = full
resolution) and the logits are upsampled to every vertex by the pyramid's barycentric
matrices, because full-resolution spatio-temporal graph layers are what the compute
budget cannot pay on a CPU. ``fusion: add`` replaces it by the sum (the paper's
ablation), here halved: ΔM = (ΔM_e + ΔM_c) / 2, so that the per-stream supervision below
keeps one target for both fusions (the linear output layers absorb the factor).

Both decoders are autoregressive on the **fused** motion: token 0 is the stream's
condition embedding, token t > 0 the shared motion encoder's embedding of the fused
offsets of frame t-1 plus that condition embedding (FaceFormer's scheme; in teacher
forcing the ground truth is the only per-frame motion known, and it is the fused one).

**Training** (``forward``): a teacher-forced pass on the ground truth, then, with
``self_growing``, a second pass whose decoder inputs mix per frame the ground truth (with
probability ``ground_truth_share(progress)``) and the detached first-pass predictions;
the share is 1 during the warm-up θ (``self_growing_warmup``, a fraction of training),
then follows a cosine to 0 at ``self_growing_end`` (the midpoint) and stays 0. The two
passes' reconstruction losses are averaged (the second pass is skipped while the share is
1: it would equal the first). The model learns where training stands from
:meth:`EmoFace.set_progress` (the trainer calls it each step) or ``batch.progress``.

Losses (weights ``self_weight`` 1000, ``cross_weight`` 1000, ``velocity_weight`` 500,
``emotion_weight`` 1e-4 by default): L1 self-reconstruction and L1 velocity on the fused
output plus ``stream_weight`` times the L1 of each stream's output (intermediate
supervision); L1 cross-reconstruction when the batch carries a partner (the same subject
and sentence in another emotion, aligned to this sequence's frames by
:mod:`voxmesh.train.pairs`): content from this sequence's audio, emotion stream on the
partner's audio, emotion and intensity, teacher-forced on the partner's motion, target
the partner's motion; cross-entropy of the emotion classifier on items with a label.

Batch fields read beyond the standard ones (all optional; see docs/methods/emoface.md):
``pair_vertices [B, T, V, 3]``, ``pair_mask [B, T]``, ``pair_emotion_ids [B]``,
``pair_intensity_ids [B]`` and either ``pair_audio_features [B, T, C]`` (already at this
item's frames) or ``pair_audio [B, S]``, ``pair_audio_mask [B, S]``, ``pair_num_frames
[B]``, ``pair_frame_positions [B, T]``; and ``progress`` (a float in [0, 1]).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voxmesh.data.batching import Batch
from voxmesh.errors import VoxmeshError
from voxmesh.models.base import TalkingFaceModel, ground_truth_share
from voxmesh.models.faceformer import (
    check_features,
    resolve_config,
    speaker_indices,
    style_vectors,
)
from voxmesh.models.layers.attention import BiasedCausalDecoder, decode_autoregressively
from voxmesh.models.layers.spiral_conv3d import SpiralConv3D
from voxmesh.models.layers.stats import RunningStats
from voxmesh.models.registry import register

EMOFACE_DEFAULTS: dict[str, Any] = {
    # the two FaceFormer-style decoders
    "d_model": 64,
    "num_heads": 4,
    "num_layers": 1,
    "ff_dim": None,  # None: 2 * d_model
    "period": 25,  # frames, ~1 s
    "dropout": 0.1,
    "norm_first": False,
    # the emotion classifier and the emotion condition
    "classifier_hidden": None,  # None: d_model
    "classifier_kernel": 5,  # frames of the temporal convolution before pooling
    # Not in the paper: standardise the classifier's input per channel (running statistics
    # of the training frames) and layer-normalise its pooled statistics. Without them the
    # synthetic run's classifier stayed at the majority class (see docs/methods/emoface.md).
    "classifier_norm": False,
    "label_conditioning": 0.5,  # training: chance an item with a label is conditioned on it, else on what is heard
    "heard_emotion": "soft",  # soft: the classifier's probabilities; hard: a one-hot of its best class
    # fusion
    "fusion": "attention",  # attention (Mesh Attention) | add (the paper's ablation)
    "attention_reduce": 16,  # numbers a stream keeps a frame before fusion
    "attention_channels": [8, 8],  # SpiralConv3D widths before the one-logit layer (narrow: see HEAD.md's budget)
    "attention_factors": [4, 4],  # mesh pyramid factors; Mesh Attention runs on the coarsest level ([] = full mesh)
    "spiral_length": 9,
    "spiral_dilation": 1,
    "temporal_kernel": 3,  # δ: the current frame and δ - 1 before it
    # training
    "self_growing": True,
    "self_growing_warmup": 0.1,  # θ, as a fraction of training: ground truth only until then
    "self_growing_end": 0.5,  # where the ground-truth share reaches 0 (the midpoint of training)
    "self_weight": 1000.0,
    "cross_weight": 1000.0,
    "velocity_weight": 500.0,
    "emotion_weight": 1.0e-4,
    "stream_weight": 1.0,  # intermediate supervision of each stream, relative to the fused output
}

INTENSITY_LEVELS = 2


def intensity_vectors(intensity_ids: torch.Tensor | None, batch: int, device: torch.device | str) -> torch.Tensor:
    """``[B, 2]`` one-hot intensity (0 normal, 1 strong); unknown (-1, or no ids) is the
    uniform mixture."""
    if intensity_ids is None:
        return torch.full((batch, INTENSITY_LEVELS), 1.0 / INTENSITY_LEVELS, device=device)
    ids = intensity_ids.long().reshape(-1).to(device)
    known = (ids >= 0) & (ids < INTENSITY_LEVELS)
    one_hot = F.one_hot(ids.clamp(0, INTENSITY_LEVELS - 1), INTENSITY_LEVELS).float()
    return torch.where(known[:, None], one_hot, torch.full_like(one_hot, 1.0 / INTENSITY_LEVELS))


def masked_frame_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-frame values ``[B, T]`` over the frames where ``mask [B, T]`` is True."""
    weight = mask.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


class _FrameL1(torch.autograd.Function):
    """Per-frame L1 norms of an error ``d [B, T, N]``: ``Σ|d_t|`` ``[B, T]`` and, with
    ``velocity``, ``Σ|d_{t+1} - d_t|`` ``[B, T-1]`` (0-sized otherwise).

    At 5,000 vertices a training step is bound by full-size elementwise passes, not by
    arithmetic; autograd's abs / slice / subtract chain makes about ten such passes for
    the two terms, this backward four to seven."""

    @staticmethod
    def forward(ctx, d: torch.Tensor, velocity: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.velocity = bool(velocity) and d.shape[1] > 1
        ctx.save_for_backward(d)
        position = torch.linalg.vector_norm(d, ord=1, dim=2)
        if ctx.velocity:
            return position, torch.linalg.vector_norm(d[:, 1:] - d[:, :-1], ord=1, dim=2)
        return position, d.new_zeros(d.shape[0], 0)

    @staticmethod
    def backward(ctx, grad_position: torch.Tensor, grad_velocity: torch.Tensor):
        (d,) = ctx.saved_tensors
        grad = torch.sign(d) * grad_position[..., None]
        if ctx.velocity:
            change = torch.sign(d[:, 1:] - d[:, :-1]) * grad_velocity[..., None]
            grad[:, 1:] += change
            grad[:, :-1] -= change
        return grad, None


def l1_terms(predicted: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor,
             velocity: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean absolute error and mean absolute velocity error (frame-to-frame differences,
    over pairs of real frames) of ``[B, T, V, 3]`` offsets or vertices, over the real
    frames of ``frame_mask [B, T]``. (The velocity error Δpred - Δtarget is the
    frame-to-frame difference of the error.)"""
    batch, frames = predicted.shape[:2]
    difference = (predicted - target).reshape(batch, frames, -1)
    per_frame = difference.shape[2]
    position, change = _FrameL1.apply(difference, velocity)
    position = masked_frame_mean(position, frame_mask) / per_frame
    if change.shape[1] == 0:
        return position, predicted.new_zeros(())
    return position, masked_frame_mean(change, frame_mask[:, 1:] & frame_mask[:, :-1]) / per_frame


@dataclass
class StreamOutputs:
    """Offsets from the template ``[B, T, V, 3]`` of the fused output and of each stream,
    and α ``[B, T, V, 1]`` (None for ``fusion: add``)."""

    fused: torch.Tensor
    content: torch.Tensor
    emotion: torch.Tensor
    alpha: torch.Tensor | None


class MeshAttention(nn.Module):
    """Per-vertex, per-frame fusion weight α from the two streams' decoder outputs.

    ``forward(content_hidden [B, T, d], emotion_hidden [B, T, d]) -> α [B, T, V, 1]``.
    ``spirals [V_l, L]`` are those of the level the SpiralConv3D layers run on and
    ``upsample`` a ``[V, V_l]`` matrix to the full mesh (None when ``V_l = V``), kept
    dense: a few MB, it moves, casts and broadcasts (multi-GPU) like any buffer, which
    sparse tensors do not all do, and costs a millisecond-scale matmul.
    α at frame t depends on frames ``t - receptive_frames + 1 .. t`` only.
    """

    def __init__(self, d_model: int, reduce: int, channels: list[int], spirals: np.ndarray, temporal_kernel: int,
                 upsample: torch.Tensor | None):
        super().__init__()
        if not channels:
            raise VoxmeshError("attention_channels is empty; give at least one SpiralConv3D width, e.g. [8].")
        self.content_reduce = nn.Linear(d_model, reduce)
        self.emotion_reduce = nn.Linear(d_model, reduce)
        self.frame_fuse = nn.Linear(2 * reduce, channels[0])
        self.vertex_embedding = nn.Parameter(torch.randn(len(spirals), channels[0]) * 0.1)
        widths = list(channels) + [1]
        self.convs = nn.ModuleList(SpiralConv3D(a, b, spirals, temporal_kernel) for a, b in itertools.pairwise(widths))
        # α starts at 1/2 everywhere: neither stream is preferred before training says so.
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)
        self.register_buffer("upsample", upsample, persistent=False)
        self.receptive_frames = 1 + len(self.convs) * (int(temporal_kernel) - 1)

    def frame_features(self, content_hidden: torch.Tensor, emotion_hidden: torch.Tensor) -> torch.Tensor:
        """The fused per-frame feature ``[B, T, channels[0]]``."""
        reduced = torch.cat([self.content_reduce(content_hidden), self.emotion_reduce(emotion_hidden)], dim=-1)
        return F.gelu(self.frame_fuse(F.gelu(reduced)))

    def alpha_from_features(self, frame_features: torch.Tensor) -> torch.Tensor:
        """``[B, T, c]`` fused frame features -> α ``[B, T, V, 1]``."""
        x = F.elu(frame_features[:, :, None, :] + self.vertex_embedding[None, None])  # [B, T, V_l, c]
        for index, conv in enumerate(self.convs):
            x = conv(x)
            if index < len(self.convs) - 1:
                x = F.elu(x)
        logits = x[..., 0]  # [B, T, V_l]
        if self.upsample is not None:
            logits = logits @ self.upsample.T.to(logits.dtype)  # [B, T, V]
        return torch.sigmoid(logits)[..., None]

    def forward(self, content_hidden: torch.Tensor, emotion_hidden: torch.Tensor) -> torch.Tensor:
        return self.alpha_from_features(self.frame_features(content_hidden, emotion_hidden))


def mesh_attention_level(faces: np.ndarray, neutral: np.ndarray, factors: list[float], spiral_length: int,
                         spiral_dilation: int) -> tuple[np.ndarray, torch.Tensor | None]:
    """Spirals ``[V_l, L]`` of the coarsest level of the pyramid with ``factors`` and the
    dense float32 ``[V, V_l]`` upsampling to the full mesh, rows summing to 1 (None for
    ``factors == []``)."""
    from voxmesh.mesh import build_mesh_pyramid, spiral_indices

    if not factors:
        return spiral_indices(faces, spiral_length, spiral_dilation, vertices=neutral), None
    pyramid = build_mesh_pyramid(neutral, faces, tuple(float(f) for f in factors))
    coarse_vertices, coarse_faces = pyramid.levels[-1]
    spirals = spiral_indices(coarse_faces, spiral_length, spiral_dilation, vertices=coarse_vertices)
    upsample = pyramid.up[0].to_dense()
    for matrix in pyramid.up[1:]:
        upsample = upsample @ matrix.to_dense()
    return spirals, upsample


@register("emoface", title="EmoFace",
          configs={"vocaset": "emoface_vocaset", "ravdess3d": "emoface_ravdess3d", "synthetic": "emoface_synthetic"},
          quick_overrides=("model.d_model=16", "model.num_heads=2", "model.ff_dim=32", "model.period=15",
                           "model.classifier_hidden=16", "model.attention_channels=[4]"),
          benchmark_overrides=("train.val_every=30",))
class EmoFace(TalkingFaceModel):
    """EmoFace. Config keys: see :data:`EMOFACE_DEFAULTS`.

    ``needs_pairs``: the trainer should add cross-reconstruction partners to training
    batches (:mod:`voxmesh.train.pairs`); without them the cross loss is skipped.
    """

    stages = ("main",)
    needs_pairs = True

    def __init__(self, config: dict[str, Any], **context: Any):
        super().__init__(config, **context)
        cfg = resolve_config("emoface", EMOFACE_DEFAULTS, self.config)
        self._check_settings(cfg)
        self.settings = cfg
        d_model = int(cfg["d_model"])
        ff_dim = int(cfg["ff_dim"] or 2 * d_model)
        self.vertex_dim = self.num_vertices * 3
        self.num_styles = max(1, len(self.speakers))
        self.num_emotions = len(self.emotions)

        def decoder() -> BiasedCausalDecoder:
            return BiasedCausalDecoder(d_model, int(cfg["num_heads"]), int(cfg["num_layers"]), ff_dim,
                                       int(cfg["period"]), float(cfg["dropout"]), bool(cfg["norm_first"]))

        feature_dim = self.audio_encoder.output_dim
        # content stream
        self.content_projection = nn.Linear(feature_dim, d_model)
        self.content_style = nn.Linear(self.num_styles, d_model, bias=False)
        self.content_decoder = decoder()
        self.content_motion_decoder = nn.Linear(d_model, self.vertex_dim)
        # emotion stream
        self.emotion_projection = nn.Linear(feature_dim, d_model)
        self.emotion_style = nn.Linear(self.num_styles, d_model, bias=False)
        self.intensity_embedding = nn.Linear(INTENSITY_LEVELS, d_model, bias=False)
        self.emotion_decoder = decoder()
        self.emotion_motion_decoder = nn.Linear(d_model, self.vertex_dim)
        if self.num_emotions:
            hidden = int(cfg["classifier_hidden"] or d_model)
            kernel = int(cfg["classifier_kernel"])
            self.emotion_embedding = nn.Linear(self.num_emotions, d_model, bias=False)
            self.classifier_context = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2)
            self.emotion_classifier = nn.Sequential(
                nn.Linear(2 * d_model, hidden), nn.GELU(), nn.Dropout(float(cfg["dropout"])),
                nn.Linear(hidden, self.num_emotions),
            )
            if cfg["classifier_norm"]:
                self.classifier_input_stats = RunningStats(d_model)
                self.classifier_pooled_norm = nn.LayerNorm(2 * d_model)
        # One motion encoder for both decoders: they both read the same fused previous frame.
        self.motion_encoder = nn.Linear(self.vertex_dim, d_model)
        for layer in (self.content_motion_decoder, self.emotion_motion_decoder):
            # Zero output layers, as FaceFormer: training starts from the template.
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

        self.mesh_attention: MeshAttention | None = None
        if cfg["fusion"] == "attention":
            faces, neutral = context.get("faces"), context.get("neutral")
            if faces is None or neutral is None or len(faces) == 0:
                raise VoxmeshError(
                    "EmoFace's Mesh Attention needs the mesh faces (topology.ply or .obj in the dataset folder); add them "
                    "or set model.fusion to add."
                )
            spirals, upsample = mesh_attention_level(np.asarray(faces), np.asarray(neutral, dtype=np.float32),
                                                     list(cfg["attention_factors"]), int(cfg["spiral_length"]),
                                                     int(cfg["spiral_dilation"]))
            self.mesh_attention = MeshAttention(d_model, int(cfg["attention_reduce"]),
                                                [int(c) for c in cfg["attention_channels"]], spirals,
                                                int(cfg["temporal_kernel"]), upsample)

    @staticmethod
    def _check_settings(cfg: dict[str, Any]) -> None:
        if cfg["fusion"] not in ("attention", "add"):
            raise VoxmeshError(f"EmoFace fusion '{cfg['fusion']}' is unknown; use attention or add.")
        if cfg["heard_emotion"] not in ("soft", "hard"):
            raise VoxmeshError(f"EmoFace heard_emotion '{cfg['heard_emotion']}' is unknown; use soft or hard.")
        if not 0.0 <= float(cfg["self_growing_warmup"]) < float(cfg["self_growing_end"]) <= 1.0:
            raise VoxmeshError(
                f"EmoFace self_growing_warmup {cfg['self_growing_warmup']} and self_growing_end {cfg['self_growing_end']} "
                "must satisfy 0 <= warmup < end <= 1 (fractions of training)."
            )
        if int(cfg["classifier_kernel"]) < 1 or int(cfg["classifier_kernel"]) % 2 == 0:
            # An even kernel with symmetric padding would add a frame.
            raise VoxmeshError(f"EmoFace classifier_kernel {cfg['classifier_kernel']} must be an odd number of frames.")
        if not 0.0 <= float(cfg["label_conditioning"]) <= 1.0:
            raise VoxmeshError(f"EmoFace label_conditioning {cfg['label_conditioning']} must be between 0 and 1.")

    # ---- training progress ---------------------------------------------------------------
    def ground_truth_share(self, progress: float | None = None) -> float:
        """The self-growing schedule at ``progress`` (default: the last set)."""
        return ground_truth_share(self.progress if progress is None else progress,
                                  float(self.settings["self_growing_warmup"]), float(self.settings["self_growing_end"]))

    # ---- emotion -----------------------------------------------------------------------
    def emotion_logits(self, emotion_memory: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Classifier logits ``[B, n_emotions]`` from the emotion stream's projected speech
        ``[B, T, d]`` over the real frames ``frame_mask [B, T]`` (all when None)."""
        if frame_mask is None:
            frame_mask = torch.ones(emotion_memory.shape[:2], dtype=torch.bool, device=emotion_memory.device)
        keep = frame_mask[..., None].to(emotion_memory.dtype)
        stats = getattr(self, "classifier_input_stats", None)
        if stats is not None:
            if self.training:
                stats.update(emotion_memory.detach()[frame_mask.bool()])
            emotion_memory = stats.normalize(emotion_memory)
        context = F.gelu(self.classifier_context((emotion_memory * keep).transpose(1, 2))).transpose(1, 2) * keep
        count = keep.sum(dim=1).clamp(min=1.0)
        mean = context.sum(dim=1) / count
        std = (((context - mean[:, None]) ** 2 * keep).sum(dim=1) / count).clamp(min=1e-8).sqrt()
        pooled = torch.cat([mean, std], dim=-1)
        if stats is not None:
            pooled = self.classifier_pooled_norm(pooled)
        return self.emotion_classifier(pooled)

    @torch.no_grad()
    def classify_emotion(self, audio_features: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Probabilities ``[B, n_emotions]`` of the emotion heard in aligned speech
        features ``[B, T, C]`` (classes in the order of ``model.emotions``)."""
        if not self.num_emotions:
            raise VoxmeshError("This EmoFace model was trained without emotion labels, so it has no emotion classifier.")
        check_features(audio_features, audio_features.shape[1], self.audio_encoder.output_dim)
        was_training = self.training
        self.eval()
        try:
            logits = self.emotion_logits(self.emotion_projection(audio_features), frame_mask)
        finally:
            self.train(was_training)
        return logits.softmax(dim=-1)

    def _heard(self, logits: torch.Tensor) -> torch.Tensor:
        probabilities = logits.detach().softmax(dim=-1)
        if self.settings["heard_emotion"] == "hard":
            return F.one_hot(probabilities.argmax(dim=-1), self.num_emotions).to(probabilities.dtype)
        return probabilities

    def _emotion_vector(self, logits: torch.Tensor, emotion_ids: torch.Tensor | None, use_label_chance: float) -> torch.Tensor:
        """``[B, n_emotions]``: the label's one-hot where known and drawn (chance
        ``use_label_chance``), else the heard emotion."""
        heard = self._heard(logits)
        if emotion_ids is None:
            return heard
        ids = emotion_ids.long().reshape(-1).to(logits.device)
        known = (ids >= 0) & (ids < self.num_emotions)
        if use_label_chance < 1.0:
            known = known & (torch.rand(ids.shape, device=ids.device) < use_label_chance)
        one_hot = F.one_hot(ids.clamp(0, self.num_emotions - 1), self.num_emotions).to(heard.dtype)
        return torch.where(known[:, None], one_hot, heard)

    def emotion_condition(self, style: torch.Tensor, emotion: torch.Tensor | None, intensity: torch.Tensor) -> torch.Tensor:
        """The emotion stream's condition embedding ``[B, d]`` from style ``[B, n_speakers]``,
        emotion ``[B, n_emotions]`` (None without emotions) and intensity ``[B, 2]`` (a
        linear map of their concatenation)."""
        condition = self.emotion_style(style) + self.intensity_embedding(intensity)
        if emotion is not None and self.num_emotions:
            condition = condition + self.emotion_embedding(emotion)
        return condition

    # ---- the network ---------------------------------------------------------------------
    def fuse(self, content_hidden: torch.Tensor, emotion_hidden: torch.Tensor) -> StreamOutputs:
        """Decoder outputs ``[B, T, d]`` of both streams -> :class:`StreamOutputs` (offsets)."""
        batch, frames = content_hidden.shape[:2]
        content = self.content_motion_decoder(content_hidden).reshape(batch, frames, self.num_vertices, 3)
        emotion = self.emotion_motion_decoder(emotion_hidden).reshape(batch, frames, self.num_vertices, 3)
        if self.mesh_attention is None:
            return StreamOutputs(0.5 * (content + emotion), content, emotion, None)
        alpha = self.mesh_attention(content_hidden, emotion_hidden)
        # α ΔM_e + (1 - α) ΔM_c in one fused pass (lerp).
        return StreamOutputs(torch.lerp(content, emotion, alpha.to(content.dtype)), content, emotion, alpha)

    def teacher_forced(self, content_memory: torch.Tensor, emotion_memory: torch.Tensor, offsets: torch.Tensor,
                       content_condition: torch.Tensor, emotion_condition: torch.Tensor,
                       frame_mask: torch.Tensor | None = None) -> StreamOutputs:
        """Both streams in one pass with ``offsets [B, T, V, 3]`` (motion minus template,
        zero on padded frames) as the previous frames: token t reads ``offsets[:, t-1]``.
        Memories ``[B, T, d]`` (projected speech), conditions ``[B, d]``, frame_mask
        ``[B, T]``. Output t depends on ``offsets[:, :t]`` and speech frame t only."""
        batch, frames = offsets.shape[:2]
        # Encode every frame and drop the last embedding: cheaper than slicing (copying)
        # the full-size offsets.
        motion = self.motion_encoder(offsets.reshape(batch, frames, self.vertex_dim))[:, :-1]  # [B, T-1, d]
        content_tokens = torch.cat([content_condition[:, None], motion + content_condition[:, None]], dim=1)
        emotion_tokens = torch.cat([emotion_condition[:, None], motion + emotion_condition[:, None]], dim=1)
        content_hidden = self.content_decoder(content_tokens, content_memory, frame_mask)
        emotion_hidden = self.emotion_decoder(emotion_tokens, emotion_memory, frame_mask)
        return self.fuse(content_hidden, emotion_hidden)

    # ---- training ----------------------------------------------------------------------
    def _pair_features(self, batch: Batch) -> torch.Tensor | None:
        """The partner's speech features at this item's frames ``[B, T, C]``: given by the
        trainer (cached), or encoded from ``pair_audio`` and read at the positions."""
        features = getattr(batch, "pair_audio_features", None)
        if features is not None:
            return features
        audio = getattr(batch, "pair_audio", None)
        if audio is None:
            return None
        from voxmesh.audio import align_features

        counts = batch.pair_num_frames.long()
        encoded, encoded_mask = self.audio_encoder(audio, getattr(batch, "pair_audio_mask", None))
        aligned = align_features(encoded, counts, feature_mask=encoded_mask, total_frames=int(counts.max()))
        positions = batch.pair_frame_positions.to(aligned.dtype)
        last = (counts - 1).clamp(min=0).to(positions.device)[:, None]
        lower = torch.minimum(positions.floor().long().clamp(min=0), last)
        upper = torch.minimum(lower + 1, last)
        weight = (positions - lower.to(positions.dtype)).clamp(0.0, 1.0)[..., None]
        channels = aligned.shape[-1]
        lower_features = aligned.gather(1, lower[..., None].expand(-1, -1, channels))
        upper_features = aligned.gather(1, upper[..., None].expand(-1, -1, channels))
        return lower_features * (1 - weight) + upper_features * weight

    def _reconstruction(self, outputs: StreamOutputs, target: torch.Tensor,
                        frame_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """L1 and velocity L1 of the fused output; L1 of each stream (intermediate
        supervision; no velocity term there, which would cost two more full-size passes
        a stream for a term the fused output already carries)."""
        fused, velocity = l1_terms(outputs.fused, target, frame_mask)
        content, _ = l1_terms(outputs.content, target, frame_mask, velocity=False)
        emotion, _ = l1_terms(outputs.emotion, target, frame_mask, velocity=False)
        return {"self_l1": fused, "velocity_l1": velocity, "content_l1": content, "emotion_l1": emotion}

    def forward(self, batch: Batch, stage: str = "main") -> dict[str, torch.Tensor]:
        """Training losses: ``loss`` (what the optimiser minimises) and its parts
        ``self_l1``, ``velocity_l1`` (fused output), ``content_l1``, ``emotion_l1`` (each
        stream), all averaged over the passes, ``cross_l1`` and ``emotion_ce``; plus
        ``emotion_accuracy``, ``ground_truth_share`` and ``alpha_mean`` for the log.

        In eval mode (validation) only the teacher-forced pass runs and items with a
        label are conditioned on it."""
        if stage not in self.stages:
            raise VoxmeshError(f"EmoFace trains in one stage 'main', not '{stage}'.")
        cfg = self.settings
        features = self.audio_features(batch)
        mask = batch.frame_mask
        check_features(features, batch.vertices.shape[1], self.audio_encoder.output_dim)
        size, device = batch.vertices.shape[0], batch.vertices.device
        # Everything below works on offsets from the template (the decoders' inputs and outputs).
        target = (batch.vertices - batch.template[:, None]) * mask[..., None, None].to(batch.vertices.dtype)
        style = style_vectors(speaker_indices(batch, self.speakers), self.num_styles).to(device)
        intensity = intensity_vectors(batch.intensity_ids, size, device)
        content_memory = self.content_projection(features)
        emotion_memory = self.emotion_projection(features)
        label_chance = float(cfg["label_conditioning"]) if self.training else 1.0
        losses: dict[str, torch.Tensor] = {}
        zero = target.new_zeros(())

        emotion_vector = None
        losses["emotion_ce"], losses["emotion_accuracy"] = zero, zero
        if self.num_emotions:
            logits = self.emotion_logits(emotion_memory, mask)
            emotion_vector = self._emotion_vector(logits, batch.emotion_ids, label_chance)
            if batch.emotion_ids is not None:
                ids = batch.emotion_ids.long().to(device)
                known = (ids >= 0) & (ids < self.num_emotions)
                if known.any():
                    losses["emotion_ce"] = F.cross_entropy(logits[known], ids[known])
                    losses["emotion_accuracy"] = (logits[known].argmax(-1) == ids[known]).float().mean()
        content_condition = self.content_style(style)
        emotion_condition = self.emotion_condition(style, emotion_vector, intensity)

        first = self.teacher_forced(content_memory, emotion_memory, target, content_condition, emotion_condition, mask)
        terms = self._reconstruction(first, target, mask)
        share = self.ground_truth_share(getattr(batch, "progress", None))
        losses["ground_truth_share"] = target.new_tensor(share)
        if cfg["self_growing"] and self.training and share < 1.0:
            # Per frame: the ground truth with probability `share`, else the model's own
            # (detached) first-pass frame, so the decoders learn to continue from their output.
            keep = torch.rand(target.shape[:2], device=device) < share
            mixed = torch.where(keep[..., None, None], target, first.fused.detach())
            second = self.teacher_forced(content_memory, emotion_memory, mixed, content_condition, emotion_condition,
                                         mask)
            second_terms = self._reconstruction(second, target, mask)
            terms = {k: 0.5 * (terms[k] + second_terms[k]) for k in terms}
        losses.update(terms)
        losses["alpha_mean"] = first.alpha.detach().mean() if first.alpha is not None else target.new_tensor(0.5)

        losses["cross_l1"] = zero
        cross = self._cross_reconstruction(batch, content_memory, content_condition, style, label_chance)
        if cross is not None:
            losses["cross_l1"] = cross

        position = terms["self_l1"] + float(cfg["stream_weight"]) * (terms["content_l1"] + terms["emotion_l1"])
        losses["loss"] = (float(cfg["self_weight"]) * position + float(cfg["velocity_weight"]) * terms["velocity_l1"]
                          + float(cfg["cross_weight"]) * losses["cross_l1"]
                          + float(cfg["emotion_weight"]) * losses["emotion_ce"])
        return losses

    def _cross_reconstruction(self, batch: Batch, content_memory: torch.Tensor, content_condition: torch.Tensor,
                              style: torch.Tensor, label_chance: float) -> torch.Tensor | None:
        """L1 of the partner's motion made from this item's content and the partner's
        emotion (speech, emotion, intensity), teacher-forced on the partner's motion; None
        when the batch has no partners or the weight is 0."""
        pair_vertices = getattr(batch, "pair_vertices", None)
        pair_mask = getattr(batch, "pair_mask", None)
        if pair_vertices is None or pair_mask is None or float(self.settings["cross_weight"]) == 0.0:
            return None
        rows = pair_mask.any(dim=1).nonzero().reshape(-1)
        if rows.numel() == 0:
            return None
        pair_features = self._pair_features(batch)
        if pair_features is None:
            raise VoxmeshError("The batch has pair_vertices but neither pair_audio_features nor pair_audio; give one.")
        check_features(pair_features, pair_vertices.shape[1], self.audio_encoder.output_dim)
        device = pair_vertices.device
        mask = pair_mask[rows]
        # The partner is the same subject: the same template.
        target = (pair_vertices[rows] - batch.template[rows][:, None]) * mask[..., None, None].to(pair_vertices.dtype)
        memory = self.emotion_projection(pair_features[rows])
        emotion_ids = getattr(batch, "pair_emotion_ids", None)
        emotion_vector = None
        if self.num_emotions:
            emotion_vector = self._emotion_vector(self.emotion_logits(memory, mask),
                                                  None if emotion_ids is None else emotion_ids[rows], label_chance)
        intensity_ids = getattr(batch, "pair_intensity_ids", None)
        intensity = intensity_vectors(None if intensity_ids is None else intensity_ids[rows], len(rows), device)
        condition = self.emotion_condition(style[rows], emotion_vector, intensity)
        outputs = self.teacher_forced(content_memory[rows], memory, target, content_condition[rows], condition, mask)
        return l1_terms(outputs.fused, target, mask, velocity=False)[0]

    # ---- inference -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, audio_features: torch.Tensor, template: torch.Tensor, speaker_ids: torch.Tensor | None,
                 seed: int | None = None, emotion_ids: torch.Tensor | None = None,
                 intensity_ids: torch.Tensor | None = None, style_weights: torch.Tensor | None = None,
                 emotion_weights: torch.Tensor | None = None, return_parts: bool = False,
                 **options: Any) -> torch.Tensor | dict[str, torch.Tensor]:
        """Autoregressive vertices ``[B, T, V, 3]`` from aligned speech features ``[B, T, C]``,
        templates ``[B, V, 3]`` and style indices ``[B]`` (-1: uniform mixture) or soft
        ``style_weights [B, n_speakers]``.

        Emotion: ``emotion_ids [B]`` overrides what the model hears where >= 0 (None or -1:
        the heard emotion); ``emotion_weights [B, n_emotions]`` gives a blend instead.
        ``intensity_ids [B]``: 0 normal, 1 strong (None / -1: halfway). ``return_parts``:
        a dict with ``vertices``, ``content`` and ``emotion`` (each stream's vertices),
        ``alpha [B, T, V, 1]`` (absent for ``fusion: add``) and ``emotion_probabilities``.
        Deterministic: ``seed`` is accepted for the common interface and unused."""
        batch, frames = audio_features.shape[:2]
        check_features(audio_features, frames, self.audio_encoder.output_dim)
        device = audio_features.device
        if frames == 0:
            empty = template[:, None].expand(batch, 0, -1, -1).clone()
            return {"vertices": empty} if return_parts else empty
        was_training = self.training
        self.eval()
        try:
            style = style_vectors(speaker_ids, self.num_styles, style_weights).to(device)
            intensity = intensity_vectors(intensity_ids, batch, device)
            content_memory = self.content_projection(audio_features)
            emotion_memory = self.emotion_projection(audio_features)
            emotion_vector, probabilities = None, None
            if self.num_emotions:
                logits = self.emotion_logits(emotion_memory)
                probabilities = logits.softmax(dim=-1)
                if emotion_weights is not None:
                    if emotion_weights.shape != (batch, self.num_emotions):
                        raise VoxmeshError(
                            f"emotion_weights has shape {tuple(emotion_weights.shape)}; give [batch, {self.num_emotions}] "
                            f"(one weight for each of {', '.join(self.emotions)})."
                        )
                    emotion_vector = emotion_weights.to(device).float()
                else:
                    emotion_vector = self._emotion_vector(logits, emotion_ids, 1.0)
            content_condition = self.content_style(style)[:, None]
            emotion_condition = self.emotion_condition(style, emotion_vector, intensity)[:, None]
            attention = self.mesh_attention
            frame_features: list[torch.Tensor] = []
            fused_steps, content_steps, emotion_steps, alpha_steps = [], [], [], []

            def advance(t: int, hidden: list[torch.Tensor]) -> list[torch.Tensor]:
                content_hidden, emotion_hidden = hidden
                content = self.content_motion_decoder(content_hidden).reshape(batch, 1, self.num_vertices, 3)
                emotion = self.emotion_motion_decoder(emotion_hidden).reshape(batch, 1, self.num_vertices, 3)
                if attention is None:
                    fused = 0.5 * (content + emotion)
                else:
                    frame_features.append(attention.frame_features(content_hidden, emotion_hidden))
                    # α_t needs only the last receptive_frames frames (SpiralConv3D is causal).
                    window = torch.cat(frame_features[-attention.receptive_frames:], dim=1)
                    alpha = attention.alpha_from_features(window)[:, -1:]
                    fused = torch.lerp(content, emotion, alpha.to(content.dtype))
                    alpha_steps.append(alpha)
                fused_steps.append(fused)
                if return_parts:
                    content_steps.append(content)
                    emotion_steps.append(emotion)
                motion = self.motion_encoder(fused.reshape(batch, 1, self.vertex_dim))
                return [motion + content_condition, motion + emotion_condition]

            decode_autoregressively([self.content_decoder, self.emotion_decoder], [content_condition, emotion_condition],
                                    [content_memory, emotion_memory], frames, advance)
        finally:
            self.train(was_training)
        base = template[:, None]
        vertices = base + torch.cat(fused_steps, dim=1)
        if not return_parts:
            return vertices
        parts = {"vertices": vertices, "content": base + torch.cat(content_steps, dim=1),
                 "emotion": base + torch.cat(emotion_steps, dim=1)}
        if alpha_steps:
            parts["alpha"] = torch.cat(alpha_steps, dim=1)
        if probabilities is not None:
            parts["emotion_probabilities"] = probabilities
        return parts


__all__ = ["EMOFACE_DEFAULTS", "EmoFace", "MeshAttention", "ground_truth_share", "intensity_vectors"]
