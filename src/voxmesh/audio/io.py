"""Reading speech files into mono float32 at 16 kHz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from voxmesh.errors import VoxmeshError

SAMPLE_RATE = 16_000


def to_mono_16k(samples: np.ndarray, sample_rate: int, *, source: str = "audio") -> np.ndarray:
    """Mix ``[samples]`` or ``[samples, channels]`` down to mono and resample to 16 kHz.

    Returns float32 ``[samples_16k]``.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise VoxmeshError(f"{source} has shape {samples.shape}; expected [samples] or [samples, channels].")
    if not np.all(np.isfinite(samples)):
        raise VoxmeshError(f"{source} contains NaN or infinite samples; re-export it from the original recording.")
    if sample_rate != SAMPLE_RATE and samples.size:
        samples = soxr.resample(samples, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


def load_audio(path: str | Path) -> np.ndarray:
    """Read any file soundfile can decode (wav, flac, ogg, mp3) as mono 16 kHz float32.

    Returns ``[samples]``.
    """
    path = Path(path)
    if not path.is_file():
        raise VoxmeshError(f"Audio file {path} does not exist; check the path.")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt or unknown files
        raise VoxmeshError(
            f"Cannot read audio file {path} ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
            "convert it to wav or flac."
        ) from None
    return to_mono_16k(samples, rate, source=f"Audio file {path}")


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header, without decoding the samples."""
    try:
        info = soundfile.info(str(path))
    except Exception:
        raise VoxmeshError(f"Cannot read audio file {path}; convert it to wav or flac.") from None
    return info.frames / float(info.samplerate)
