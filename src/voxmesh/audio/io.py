"""Reading speech files into mono float32 at 16 kHz."""

from __future__ import annotations

import re
import struct
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
        # One channel is a view, not a copy: a long recording costs its size once.
        samples = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    if samples.ndim != 1:
        raise VoxmeshError(f"{source} has shape {samples.shape}; expected [samples] or [samples, channels].")
    if not np.all(np.isfinite(samples)):
        raise VoxmeshError(f"{source} contains NaN or infinite samples; re-export it from the original recording.")
    if sample_rate != SAMPLE_RATE and samples.size:
        samples = soxr.resample(samples, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(samples, dtype=np.float32)


def wav_shortfall(path: str | Path) -> tuple[int, int] | None:
    """``(bytes present, bytes declared)`` of the sample data of a RIFF/WAVE file cut
    short (a copy or download that stopped), else None. libsndfile reads such a file
    without complaint and returns only the samples that are there, so the header's
    ``data`` size is compared with the file's length here. Files of other formats, and
    streamed WAVs whose header leaves the size open (0 or 0xFFFFFFFF), give None."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            chunk, length = struct.unpack("<4sI", fh.read(8))
            if chunk == b"data":
                present = size - offset - 8
                if length in (0, 0xFFFFFFFF) or present >= length:
                    return None
                return present, length
            offset += 8 + length + (length & 1)  # chunks are padded to even sizes
    return None


def _reason(exc: Exception) -> str:
    """libsndfile's complaint as a lower-case clause without the path it repeats:
    "Error opening 'x.wav': Format not recognised." -> "format not recognised"."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^Error opening .*?: ", "", text).strip().rstrip(".")
    text = text.replace(". ", ", ")
    return text[:1].lower() + text[1:] if text else type(exc).__name__


def read_audio_file(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples float32 ``[samples, channels]`` and their rate, as the file holds them;
    a missing, unreadable, truncated or empty file is a :class:`VoxmeshError`."""
    path = Path(path)
    if not path.is_file():
        raise VoxmeshError(f"Audio file {path} does not exist; check the path.")
    shortfall = wav_shortfall(path)
    if shortfall is not None:
        present, declared = shortfall
        raise VoxmeshError(
            f"Audio file {path} is truncated (its header announces {declared} bytes of samples but {present} are there); "
            "copy or export it again."
        )
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt or unknown files
        raise VoxmeshError(f"Cannot read audio file {path} ({_reason(exc)}); convert it to wav or flac.") from None
    if samples.shape[0] == 0:
        raise VoxmeshError(f"Audio file {path} holds no samples; give a recording with speech.")
    return samples, int(rate)


def load_audio(path: str | Path) -> np.ndarray:
    """Read any file soundfile can decode (wav, flac, ogg, mp3; the content decides,
    not the extension) as mono 16 kHz float32. Channels are averaged; any rate is
    resampled.

    Returns ``[samples]``.
    """
    samples, rate = read_audio_file(path)
    return to_mono_16k(samples, rate, source=f"Audio file {path}")


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header, without decoding the samples."""
    try:
        info = soundfile.info(str(path))
    except Exception as exc:
        raise VoxmeshError(f"Cannot read audio file {path} ({_reason(exc)}); convert it to wav or flac.") from None
    return info.frames / float(info.samplerate)
