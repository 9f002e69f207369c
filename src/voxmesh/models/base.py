"""What every method is: a plain ``torch.nn.Module`` with ``forward(batch) -> losses``
for training and ``generate(...) -> vertices`` for inference. Model code never reads
files or parses arguments; everything it needs arrives in its constructor."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from voxmesh.data.batching import Batch


def ground_truth_share(progress: float, warmup: float = 0.1, end: float = 0.5) -> float:
    """The share of ground-truth frames in a second, self-fed pass's decoder inputs at
    ``progress`` (fraction of training done): 1 up to ``warmup``, a half cosine down to 0
    at ``end``, 0 after. EmoFace's self-growing schedule; CodeTalker's self-feeding uses it too."""
    progress = float(progress)
    if progress <= warmup:
        return 1.0
    if progress >= end:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / (end - warmup)))


class TalkingFaceModel(nn.Module):
    """Base class of the methods.

    Constructor context (the same for every method, saved beside the weights):
    ``config`` (the method's section of the YAML), ``num_vertices``, ``speakers`` (the
    training subjects, in order: speaker style index i is ``speakers[i]``), ``fps``,
    ``encoder`` (a :class:`voxmesh.audio.SpeechEncoder` spec), and optionally
    ``faces`` int64 ``[F, 3]`` and ``neutral`` float32 ``[V, 3]`` for graph models, and
    ``emotions`` (class names) for emotion-aware ones, and ``regions`` (name -> vertex
    indices, the dataset's regions.json) for losses that weight regions.
    """

    method: ClassVar[str] = ""
    # Methods trained in stages (a VQ-VAE first, then a predictor) name them in order.
    stages: ClassVar[tuple[str, ...]] = ("main",)

    def __init__(self, config: dict[str, Any], *, num_vertices: int, speakers: list[str], fps: float,
                 encoder: dict | str, faces: np.ndarray | None = None, neutral: np.ndarray | None = None,
                 emotions: list[str] | None = None, regions: dict[str, np.ndarray] | None = None):
        super().__init__()
        from voxmesh.audio import build_encoder

        self.config = dict(config)
        self.num_vertices = int(num_vertices)
        self.speakers = list(speakers)
        self.fps = float(fps)
        self.emotions = list(emotions) if emotions else []
        # Named vertex sets of the topology (regions.json), for losses that weight regions.
        self.regions = {name: np.asarray(indices, dtype=np.int64) for name, indices in (regions or {}).items()}
        self.audio_encoder = build_encoder(encoder)
        self.progress = 0.0  # fraction of training done, set by set_progress()

    def set_progress(self, fraction: float) -> None:
        """Tell the model how far training is (``step / total_steps`` of the stage, in
        [0, 1]); schedules inside a model (EmoFace's self-growing, CodeTalker's
        self-feeding) read it. The trainer calls it before each training step."""
        self.progress = min(1.0, max(0.0, float(fraction)))

    # ---- audio -----------------------------------------------------------------------
    def audio_features(self, batch: Batch) -> torch.Tensor:
        """Speech features aligned to the mesh frames, ``[B, T, C]``: the cached ones the
        trainer put in the batch, or the encoder's output interpolated to the frames."""
        if batch.audio_features is not None:
            return batch.audio_features
        from voxmesh.audio import align_features

        features, feature_mask = self.audio_encoder(batch.audio, batch.audio_mask)
        return align_features(features, batch.frame_mask.sum(dim=1), feature_mask=feature_mask,
                              total_frames=batch.frame_mask.shape[1])

    # ---- the two entry points --------------------------------------------------------
    def forward(self, batch: Batch, stage: str = "main") -> dict[str, torch.Tensor]:
        """Training losses for one batch; ``"loss"`` is what the optimiser minimises."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, audio_features: torch.Tensor, template: torch.Tensor, speaker_ids: torch.Tensor,
                 seed: int | None = None, **options: Any) -> torch.Tensor:
        """Vertices ``[B, T, V, 3]`` for aligned features ``[B, T, C]``, neutral faces
        ``[B, V, 3]`` and speaker style indices ``[B]``."""
        raise NotImplementedError

    def trainable_parameters(self, stage: str = "main"):
        """Parameters the optimiser updates in a stage (all by default)."""
        return [p for p in self.parameters() if p.requires_grad]
