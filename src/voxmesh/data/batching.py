"""Batching sequences of different lengths: zero padding plus boolean masks."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from voxmesh.data.layout import Sequence


@dataclass
class Batch:
    """A padded batch. ``audio [B, S]`` with ``audio_mask [B, S]``; ``vertices
    [B, T, V, 3]`` with ``frame_mask [B, T]`` (True where real); ``template [B, V, 3]``."""

    audio: torch.Tensor
    audio_mask: torch.Tensor
    vertices: torch.Tensor
    frame_mask: torch.Tensor
    template: torch.Tensor
    names: list[str]
    subjects: list[str]
    emotions: list[str | None]
    intensities: list[int | None]
    fps: float
    sample_rate: int
    # Filled by the trainer, not by the data code: speech features already aligned to
    # the mesh frames ``[B, T, C]`` (from a frozen encoder's cache), and integer labels.
    audio_features: torch.Tensor | None = None
    speaker_ids: torch.Tensor | None = None  # [B] index into the model's speakers, -1 unknown
    emotion_ids: torch.Tensor | None = None  # [B] index into the model's emotions, -1 none
    intensity_ids: torch.Tensor | None = None  # [B] 0 normal, 1 strong
    # Cross-reconstruction partners (EmoFace): the same sentence in another emotion, read
    # at this batch's frames; see voxmesh.train.pairs.collate_pair_windows for the shapes.
    pair_vertices: torch.Tensor | None = None
    pair_mask: torch.Tensor | None = None
    pair_emotion_ids: torch.Tensor | None = None
    pair_intensity_ids: torch.Tensor | None = None
    pair_audio: torch.Tensor | None = None
    pair_audio_mask: torch.Tensor | None = None
    pair_num_frames: torch.Tensor | None = None
    pair_frame_positions: torch.Tensor | None = None
    pair_audio_features: torch.Tensor | None = None
    progress: float | None = None  # fraction of training done when the batch was made

    @property
    def num_frames(self) -> torch.Tensor:
        """``[B]`` real frame counts."""
        return self.frame_mask.sum(dim=1)

    def to(self, device: torch.device | str) -> "Batch":
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return Batch(**moved)

    def __len__(self) -> int:
        return len(self.names)


def pad_stack(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad arrays along their first axis: ``[B, N_max, ...]`` and mask ``[B, N_max]``."""
    lengths = [a.shape[0] for a in arrays]
    longest = max(lengths)
    out = torch.zeros((len(arrays), longest) + tuple(arrays[0].shape[1:]), dtype=torch.float32)
    mask = torch.zeros((len(arrays), longest), dtype=torch.bool)
    for i, (array, n) in enumerate(zip(arrays, lengths)):
        out[i, :n] = torch.from_numpy(np.asarray(array, dtype=np.float32))
        mask[i, :n] = True
    return out, mask


def collate_sequences(sequences: list[Sequence]) -> Batch:
    """Pad a list of sequences (same topology and fps) into one :class:`Batch`."""
    if not sequences:
        raise ValueError("collate_sequences needs at least one sequence")
    fps = {s.fps for s in sequences}
    if len(fps) != 1:
        raise ValueError(f"sequences of different frame rates {sorted(fps)} cannot share a batch")
    audio, audio_mask = pad_stack([s.audio for s in sequences])
    vertices, frame_mask = pad_stack([s.vertices for s in sequences])
    template = torch.from_numpy(np.stack([np.asarray(s.template, dtype=np.float32) for s in sequences]))
    return Batch(
        audio=audio, audio_mask=audio_mask, vertices=vertices, frame_mask=frame_mask, template=template,
        names=[s.name for s in sequences], subjects=[s.subject for s in sequences],
        emotions=[s.emotion for s in sequences], intensities=[s.intensity for s in sequences],
        fps=fps.pop(), sample_rate=sequences[0].sample_rate,
    )
