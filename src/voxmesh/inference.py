"""From speech to vertices, the steps every caller shares: the audio of a span of mesh
frames, the speech features of a sequence (from a feature cache for a frozen encoder),
the options a method's ``generate`` takes, and one sequence's generated vertices.
``voxmesh animate``, ``voxmesh evaluate``, the trainer's validation and the benchmark all
use these, so what is scored is what users get. It sits above the models and data and
below train and eval (neither imports the other for these)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from voxmesh.audio.features import align_features
from voxmesh.audio.io import SAMPLE_RATE
from voxmesh.data.layout import Sequence


def frame_audio(audio: np.ndarray, start_frame: int, num_frames: int, fps: float,
                sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The samples of mesh frames ``[start_frame, start_frame + num_frames)``: ``[S]``
    float32 with S = round(num_frames * sample_rate / fps), zero-padded where the
    recording is shorter than its vertices, so features always span the same time."""
    first = int(round(start_frame * sample_rate / fps))
    last = int(round((start_frame + num_frames) * sample_rate / fps))
    piece = np.asarray(audio[first:last], dtype=np.float32)
    if piece.shape[0] < last - first:
        piece = np.pad(piece, (0, last - first - piece.shape[0]))
    return piece


def intensity_index(intensity: int | None) -> int:
    """RAVDESS-style intensity 1 (normal) / 2 (strong) -> 0 / 1; -1 when unknown."""
    if intensity is None:
        return -1
    return min(max(int(intensity) - 1, 0), 1)


def cached_sequence_features(cache, audio: np.ndarray, num_frames: int, fps: float) -> torch.Tensor:
    """A frozen encoder's features of a whole sequence, from a FeatureCache, aligned to
    its mesh frames: ``[T, C]`` float32 on the CPU."""
    clip = frame_audio(audio, 0, num_frames, fps)
    features = torch.from_numpy(np.asarray(cache.get(clip), dtype=np.float32))
    return align_features(features[None], [num_frames])[0]


@torch.no_grad()
def sequence_features(model, audio: np.ndarray, num_frames: int, fps: float, device: torch.device | str = "cpu",
                      cache=None) -> torch.Tensor:
    """Speech features ``[T, C]`` aligned to ``num_frames`` mesh frames: from ``cache``
    when given (a frozen encoder), else the model's encoder run on the audio."""
    if cache is not None:
        return cached_sequence_features(cache, audio, num_frames, fps)
    encoder = model.audio_encoder
    was_training = encoder.training
    encoder.eval()
    try:
        clip = torch.from_numpy(frame_audio(audio, 0, num_frames, fps))[None].to(device)
        features, mask = encoder(clip, torch.ones_like(clip, dtype=torch.bool))
        aligned = align_features(features.float(), [num_frames], feature_mask=mask)[0]
    finally:
        encoder.train(was_training)
    return aligned.cpu()


def accepted_options(function, options: dict[str, Any]) -> dict[str, Any]:
    """The options a generate() signature takes (all of them if it has **options)."""
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return options
    return {k: v for k, v in options.items() if k in parameters}


@torch.no_grad()
def generate_sequence(model, sequence: Sequence, speaker: int, *, features: torch.Tensor | None = None,
                      seed: int | None = 0, device: torch.device | str = "cpu", cache=None,
                      emotion_source: str = "label", steps: int | None = None) -> np.ndarray:
    """The model's vertices for a whole sequence, float32 ``[T, V, 3]`` with T the
    sequence's frame count, conditioned on speaker style ``speaker`` and, for
    emotion-aware models, the sequence's intensity and emotion: its label
    (``emotion_source="label"``) or the emotion the model hears in the voice
    (``"heard"``). ``steps``: sampling steps of diffusion models (None: the model's)."""
    frames = sequence.num_frames
    if features is None:
        features = sequence_features(model, sequence.audio, frames, sequence.fps, device, cache)
    template = torch.from_numpy(np.asarray(sequence.template, dtype=np.float32))[None].to(device)
    options: dict[str, Any] = {}
    model_emotions = list(getattr(model, "emotions", []) or [])
    if model_emotions:
        emotion = model_emotions.index(sequence.emotion) if sequence.emotion in model_emotions else -1
        if emotion_source == "heard":
            emotion = -1  # unknown: the model conditions on what its classifier hears
        options["emotion_ids"] = torch.tensor([emotion], dtype=torch.long, device=device)
        options["intensity_ids"] = torch.tensor([intensity_index(sequence.intensity)], dtype=torch.long, device=device)
    if steps is not None:
        options["steps"] = int(steps)
    vertices = model.generate(features[None].to(device), template, torch.tensor([speaker], dtype=torch.long, device=device),
                              seed=seed, **accepted_options(model.generate, options))
    return vertices[0, :frames].float().cpu().numpy()


__all__ = ["accepted_options", "cached_sequence_features", "frame_audio", "generate_sequence", "intensity_index",
           "sequence_features"]
