"""Encoder features at mesh frame rate, and an on-disk cache of a frozen encoder's
features.

Alignment follows FaceFormer and its descendants: linear interpolation with
``align_corners=True``, so the first and last encoder frames land exactly on the first
and last mesh frames and everything between is spread evenly (a linear ramp of features
stays an exact linear ramp).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from voxmesh.audio.io import SAMPLE_RATE
from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path, cache_dir, content_hash

__all__ = ["mesh_frames", "align_features", "FeatureCache", "length_mask", "sample_lengths"]


def sample_lengths(audio: Tensor, audio_mask: Tensor | None) -> Tensor:
    """Real samples per item, ``[B]`` long (padding is assumed to be at the end)."""
    if audio_mask is None:
        return torch.full((audio.shape[0],), audio.shape[1], dtype=torch.long, device=audio.device)
    if audio_mask.shape != audio.shape:
        raise VoxmeshError(f"audio_mask has shape {tuple(audio_mask.shape)} but audio has {tuple(audio.shape)}; pass one mask value per sample.")
    return audio_mask.to(torch.bool).sum(dim=1)


def length_mask(lengths: Tensor, size: int) -> Tensor:
    """``[B, size]`` bool, True where index < length."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def mesh_frames(num_samples: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Mesh frames that cover ``num_samples`` of audio at ``fps``:
    ``round(num_samples / sample_rate * fps)``, halves rounded up (not to even)."""
    return int(math.floor(num_samples * float(fps) / sample_rate + 0.5))


def align_features(
    features: Tensor,
    num_frames: int | Sequence[int] | Tensor | None = None,
    *,
    feature_mask: Tensor | None = None,
    frame_rate: float | None = None,
    fps: float | None = None,
    total_frames: int | None = None,
) -> Tensor:
    """Resample encoder features to mesh frames by linear interpolation
    (``align_corners=True``), item by item over each item's real frames.

    features ``[B, F, C]`` or ``[F, C]``; feature_mask ``[B, F]`` bool marks each item's
    real frames (all frames when None). ``num_frames`` gives the mesh frames per item
    (one int for all, or one per item); when it is None, each item gets
    ``round(real_frames / frame_rate * fps)`` frames (the real audio length in seconds
    times fps). Returns ``[B, T, C]`` with T = ``total_frames`` when given (e.g. a
    padded batch's frame count), else the largest count; frames past an item's own count
    are zero.
    """
    if features.dim() == 2:
        features = features[None]
    if features.dim() != 3:
        raise VoxmeshError(f"Features have shape {tuple(features.shape)}; expected [B, F, C] or [F, C].")
    batch, length, channels = features.shape
    if feature_mask is None:
        lengths = [length] * batch
    else:
        if feature_mask.dim() == 1:
            feature_mask = feature_mask[None]
        if tuple(feature_mask.shape) != (batch, length):
            raise VoxmeshError(f"feature_mask has shape {tuple(feature_mask.shape)} but features have {batch} items of {length} frames; pass one mask value per frame.")
        lengths = [int(n) for n in feature_mask.to(torch.bool).sum(dim=1).tolist()]
    if num_frames is None:
        if frame_rate is None or fps is None:
            raise VoxmeshError("align_features needs num_frames, or frame_rate and fps to derive it from the audio length.")
        targets = [int(math.floor(n / float(frame_rate) * float(fps) + 0.5)) for n in lengths]
    elif isinstance(num_frames, int):
        targets = [num_frames] * batch
    else:
        targets = [int(n) for n in (num_frames.tolist() if isinstance(num_frames, Tensor) else num_frames)]
    if len(targets) != batch or min(targets, default=0) < 0:
        raise VoxmeshError(f"num_frames {targets} does not give one non-negative count for each of the {batch} items.")
    width = max(targets, default=0)
    if total_frames is not None:
        if int(total_frames) < width:
            raise VoxmeshError(f"total_frames {total_frames} is shorter than the longest item's {width} mesh frames; pass at least {width}.")
        width = int(total_frames)
    out = features.new_zeros(batch, width, channels)
    for index, (real, target) in enumerate(zip(lengths, targets)):
        if real == 0 or target == 0:
            continue
        item = features[index, :real].transpose(0, 1)[None]  # [1, C, real]
        if real == 1:  # one frame: nothing to interpolate between
            out[index, :target] = item[0, :, 0]
            continue
        out[index, :target] = F.interpolate(item, size=target, mode="linear", align_corners=True)[0].transpose(0, 1)
    return out


class FeatureCache:
    """Features of a frozen encoder stored as .npy files, one per clip, under
    ``root/<encoder key>/<audio hash>.npy``: the key of an entry is the content hash of
    its audio samples and the encoder's identity (its ``name``, which holds the kind and
    the settings that shape its output such as the layer, and the content hash of its
    weights). Changed audio misses only its own entry; another encoder or other weights
    miss every entry, and features of different encoders never mix.

    Safe with concurrent writers (processes computing the same or different entries at
    once, e.g. the processes of a multi-GPU run, or a training and an evaluation): each
    entry is written under a temporary name and renamed into place, so a reader sees a
    whole file or none, and two writers of one entry write the same bytes. A file that
    does not read back as this encoder's features (damaged, e.g. by a crash of the
    machine) is computed again and replaced.

    ``hits`` and ``misses`` count lookups. A trainable encoder cannot be cached: its
    features change as it trains.
    """

    def __init__(self, encoder: torch.nn.Module, root: str | Path | None = None):
        self._refuse_trainable(encoder)
        self.encoder = encoder
        self.encoder_key = content_hash(encoder.name, encoder.weights_hash())
        self.root = (Path(root) if root is not None else cache_dir("features")) / self.encoder_key
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _refuse_trainable(encoder: torch.nn.Module) -> None:
        if encoder.trainable:
            raise VoxmeshError(
                f"Encoder {encoder.name} has trainable parameters, so its features change during training and cannot be "
                "cached; freeze it (\"freeze\": true) or compute features on the fly."
            )

    def path_for(self, audio: np.ndarray) -> Path:
        """Where the features of ``audio`` ``[S]`` are (or will be) stored."""
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        return self.root / f"{content_hash(samples.tobytes())}.npy"

    def get(self, audio: np.ndarray) -> np.ndarray:
        """Features of one clip, from disk when already computed.

        audio ``[S]`` float 16 kHz -> float32 ``[F, C]``.
        """
        self._refuse_trainable(self.encoder)  # it may have been unfrozen since
        path = self.path_for(audio)
        features = self._read(path)
        if features is not None:
            self.hits += 1
            return features
        self.misses += 1
        features = np.ascontiguousarray(self.encoder.encode(audio), dtype=np.float32)
        with atomic_path(path, sweep=False) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, features)
        return features

    def _read(self, path: Path) -> np.ndarray | None:
        """The entry at ``path``, or None when it is absent or does not read back as
        float32 ``[F, output_dim]`` features (empty, cut short, damaged)."""
        try:
            features = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            return None  # unreadable (e.g. a disk error): recompute and overwrite
        channels = getattr(self.encoder, "output_dim", None)
        if (not isinstance(features, np.ndarray) or features.dtype != np.float32 or features.ndim != 2
                or (channels is not None and features.shape[1] != int(channels))):
            return None
        return features
