"""Reading speech files into mono float32 at 16 kHz."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import soxr

from voxmesh.errors import VoxmeshError

SAMPLE_RATE = 16_000


def to_mono_16k(samples: np.ndarray, sample_rate: int, *, source: str = "audio") -> np.ndarray:
    """Mix ``[samples]`` or ``[samples, channels]`` down to mono and resample to 16 kHz.

    Returns float32 ``[samples_16k]``.
    """
    samples = _mono(samples, source)
    if sample_rate != SAMPLE_RATE and samples.size:
        samples = soxr.resample(samples, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(samples, dtype=np.float32)


def audio_array(samples: Any, sample_rate: Any) -> np.ndarray:
    """Mono 16 kHz float32 ``[samples_16k]`` from an array as people hand one over:
    float samples in [-1, 1] or integer PCM (int16, int32, uint8; scaled to [-1, 1]),
    ``[samples]``, ``[samples, channels]`` or channels-first ``[channels, samples]``
    (at most 8 channels, fewer than samples), at ``sample_rate``. Anything else is
    refused in one sentence rather than used unscaled or misread."""
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, (int, float, np.integer, np.floating)) \
            or not np.isfinite(sample_rate) or sample_rate <= 0:
        raise VoxmeshError(f"Sample rate {sample_rate!r} is not a positive number of samples a second; give the rate "
                           "the audio was recorded at, such as 16000.")
    try:
        array = np.asarray(samples)
    except (TypeError, ValueError):
        array = np.asarray([], dtype=object)
    if array.dtype.kind not in "fiu" or array.ndim not in (1, 2):
        raise VoxmeshError(f"The audio array is {array.dtype} of shape {array.shape}; give float samples in [-1, 1] "
                           "or integer PCM, as [samples] or [samples, channels].")
    if array.dtype.kind == "i":
        array = array.astype(np.float32) / np.float32(2 ** (8 * array.dtype.itemsize - 1))
    elif array.dtype.kind == "u":
        half = np.float32(2 ** (8 * array.dtype.itemsize - 1))
        array = (array.astype(np.float32) - half) / half
    else:
        peak = float(np.nanmax(np.abs(array))) if array.size and np.isfinite(array).any() else 0.0
        if peak > 2.0:  # integer PCM values stored as floats: used as they are, the face would be wrong
            raise VoxmeshError(f"The audio array peaks at {peak:.4g}, far outside [-1, 1]; divide 16-bit samples by "
                               "32768 (or pass the int16 array itself).")
    if array.ndim == 2 and array.shape[0] <= 8 and array.shape[0] < array.shape[1]:
        array = array.T  # channels first, as torchaudio and librosa give them
    return to_mono_16k(array, int(round(float(sample_rate))), source="The audio array")


def _mono(samples: np.ndarray, source: str) -> np.ndarray:
    """``[samples]`` or ``[samples, channels]`` -> float32 mono ``[samples]`` (channels
    averaged), refusing NaN and infinite samples."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        # One channel is a view, not a copy: a long recording costs its size once.
        samples = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    if samples.ndim != 1:
        raise VoxmeshError(f"{source} has shape {samples.shape}; expected [samples] or [samples, channels].")
    if not np.all(np.isfinite(samples)):
        raise VoxmeshError(f"{source} contains NaN or infinite samples; re-export it from the original recording.")
    return samples


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


def _check_audio_file(path: Path) -> None:
    """A missing or truncated file is a :class:`VoxmeshError`."""
    if not path.is_file():
        raise VoxmeshError(f"Audio file {path} does not exist; check the path.")
    shortfall = wav_shortfall(path)
    if shortfall is not None:
        present, declared = shortfall
        raise VoxmeshError(
            f"Audio file {path} is truncated (its header announces {declared} bytes of samples but {present} are there); "
            "copy or export it again."
        )


def _unreadable(path: str | Path, exc: Exception) -> VoxmeshError:
    """The one sentence for a file libsndfile cannot open or decode."""
    return VoxmeshError(f"Cannot read audio file {path} ({_reason(exc)}); convert it to wav or flac.")


def read_audio_file(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples float32 ``[samples, channels]`` and their rate, as the file holds them;
    a missing, unreadable, truncated or empty file is a :class:`VoxmeshError`."""
    path = Path(path)
    _check_audio_file(path)
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for corrupt or unknown files
        raise _unreadable(path, exc) from None
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


class AudioStream:
    """An audio file as mono 16 kHz float32, decoded and resampled forward in blocks, so
    that memory stays bounded by the span asked for plus one block however long the
    recording is (an hour at 16 kHz is 230 MB as one array). The samples equal
    :func:`load_audio`'s exactly (the same mix-down; soxr's stream resampler gives the
    whole-file resampler's output).

    ``num_samples`` (from the header) is the length at 16 kHz; ``read(first, last)``
    returns samples ``[first, last)``, with ``first`` never moving backwards. Use it as a
    context manager, or call :meth:`close`."""

    def __init__(self, path: str | Path, block_seconds: float = 10.0):
        self.path = Path(path)
        _check_audio_file(self.path)
        try:
            self._file = soundfile.SoundFile(str(self.path))
        except Exception as exc:
            raise _unreadable(self.path, exc) from None
        self.rate = int(self._file.samplerate)
        frames = int(self._file.frames)
        if frames <= 0:
            self._file.close()
            raise VoxmeshError(f"Audio file {self.path} holds no samples; give a recording with speech.")
        self.num_samples = frames if self.rate == SAMPLE_RATE else int(round(frames * SAMPLE_RATE / self.rate))
        self._resampler = (None if self.rate == SAMPLE_RATE else
                           soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ"))
        self._block = max(1, int(block_seconds * self.rate))
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # 16 kHz index of self._buffer[0]
        self._finished = False

    def _pull(self) -> None:
        try:
            block = self._file.read(self._block, dtype="float32", always_2d=True)
        except Exception as exc:
            raise _unreadable(self.path, exc) from None
        last = len(block) < self._block or self._file.tell() >= self._file.frames
        mono = _mono(block, f"Audio file {self.path}")
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(np.ascontiguousarray(mono), last=last)
        self._buffer = np.concatenate([self._buffer, np.asarray(mono, dtype=np.float32)])
        self._finished = last

    def read(self, first: int, last: int) -> np.ndarray:
        """Samples ``[first, last)`` at 16 kHz (zeros past the end of what the file holds)."""
        if first < self._buffer_start:
            raise ValueError(f"AudioStream reads forward only: sample {first} is before {self._buffer_start}.")
        while self._buffer_start + len(self._buffer) < last and not self._finished:
            self._pull()
        self._buffer = self._buffer[first - self._buffer_start:]
        self._buffer_start = first
        piece = self._buffer[: max(0, last - first)].copy()
        if len(piece) < last - first:  # a header that promised more than the decoder gave
            piece = np.concatenate([piece, np.zeros(last - first - len(piece), dtype=np.float32)])
        return piece

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "AudioStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header, without decoding the samples."""
    try:
        info = soundfile.info(str(path))
    except Exception as exc:
        raise _unreadable(path, exc) from None
    return info.frames / float(info.samplerate)
