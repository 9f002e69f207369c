"""Cross-reconstruction pairs: another rendition of the same subject and sentence in
another emotion, aligned in time with a training sequence (EmoFace's cross loss).

A pair is found by its key, the subject plus the sentence (the manifest's or preset's
sentence id, else the text), among sequences whose emotions are known and differ. The
partner is aligned to the sequence frame by frame:

* **phoneme timings** when both have them (the synthetic dataset's manifest): the two
  phoneme sequences are matched symbol by symbol (:class:`difflib.SequenceMatcher`, so
  an inserted or dropped phoneme does not derail the rest), every matched phoneme's start
  and end give a knot ``(time in the sequence, time in the partner)``, and time is warped
  piecewise-linearly between the knots;
* **dynamic time warping** of audio features otherwise (3D-RAVDESS): MFCCs of both
  recordings at the mesh frame rate, aligned by ``dtw-python`` (symmetric2 steps), each
  frame taking the mean partner frame it is matched with.

Either way the alignment is ``positions``, float ``[T]``: for each frame of the sequence,
the (fractional) partner frame that says the same thing. :func:`warp_frames` reads any
per-frame partner array (vertices, features) at those positions by linear interpolation.

This is data code: it imports no model. The trainer's hook (see
``docs/methods/emoface.md``): build one :class:`PairIndex` over the training records,
call :meth:`PairIndex.window` for each training window and
:func:`collate_pair_windows` in the collate function, then set the returned tensors as
``batch.pair_*`` fields.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from voxmesh.audio.io import SAMPLE_RATE
from voxmesh.data.layout import Phoneme, Sequence, SequenceRecord
from voxmesh.errors import VoxmeshError

# MFCCs for DTW: 25 ms windows every 10 ms, 40 mel bands, coefficients 1..13 (c0, the
# loudness, is left out: emotion changes loudness, not what is said).
_MFCC_WINDOW = 400
_MFCC_HOP = 160
_MFCC_BANDS = 40
_MFCC_COEFFICIENTS = 13


# ---- finding partners -------------------------------------------------------------------

def rendition_key(record: SequenceRecord) -> tuple[str, str] | None:
    """``(subject, sentence)`` that renditions of one sentence share, or None when the
    record says neither its sentence id nor its text."""
    if record.sentence is not None:
        return record.subject, f"sentence:{record.sentence}"
    if record.text:
        return record.subject, f"text:{record.text.strip().lower()}"
    return None


def find_partners(records: Iterable[SequenceRecord]) -> dict[str, list[str]]:
    """``{name: [partner names]}``: the same subject and sentence in another known
    emotion, partners sorted by name. Sequences without a partner are left out."""
    groups: dict[tuple[str, str], list[SequenceRecord]] = {}
    for record in records:
        key = rendition_key(record)
        if key is not None and record.emotion:
            groups.setdefault(key, []).append(record)
    partners: dict[str, list[str]] = {}
    for group in groups.values():
        for record in group:
            others = sorted(r.name for r in group if r.emotion != record.emotion)
            if others:
                partners[record.name] = others
    return partners


# ---- alignment by phonemes -----------------------------------------------------------------

def phoneme_time_knots(source: list[Phoneme], partner: list[Phoneme], source_duration: float | None = None,
                       partner_duration: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Knots of the piecewise-linear time warp from ``source`` to ``partner``: two float64
    arrays ``[K]`` (seconds), both strictly increasing.

    Matched phonemes (same symbols in the longest common blocks) contribute their start
    and end; a source instant given several partner times takes their mean, and a knot
    that would make time run backwards is dropped. ``(0, 0)`` and, when
    both durations are given, ``(source_duration, partner_duration)`` pin the ends."""
    matcher = difflib.SequenceMatcher(a=[p.symbol for p in source], b=[p.symbol for p in partner], autojunk=False)
    candidates = [(0.0, 0.0)]
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            s, p = source[block.a + k], partner[block.b + k]
            candidates += [(s.start, p.start), (s.end, p.end)]
    if source_duration is not None and partner_duration is not None:
        candidates.append((float(source_duration), float(partner_duration)))
    # One source instant with several partner times (a phoneme inserted in the partner
    # between two matched ones) takes their mean: the insertion is squeezed into it.
    by_time: dict[float, list[float]] = {}
    for x, y in candidates:
        by_time.setdefault(x, []).append(y)
    xs, ys = [], []
    for x in sorted(by_time):
        y = float(np.mean(by_time[x]))
        if not xs or (x > xs[-1] and y > ys[-1]):
            xs.append(x)
            ys.append(y)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def warp_times(times: np.ndarray, knots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Source times (seconds) to partner times through the knots; past the last knot the
    last segment's slope continues (a slope of 1 when there is a single knot)."""
    xs, ys = knots
    times = np.asarray(times, dtype=np.float64)
    warped = np.interp(times, xs, ys)
    if len(xs) >= 2:
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    else:
        slope = 1.0
    beyond = times > xs[-1]
    warped[beyond] = ys[-1] + slope * (times[beyond] - xs[-1])
    return warped


def phoneme_frame_positions(source: list[Phoneme], partner: list[Phoneme], source_frames: int, partner_frames: int,
                            fps: float) -> np.ndarray:
    """For each of ``source_frames`` frames (frame ``i`` at time ``i / fps``), the partner
    frame saying the same thing: float64 ``[source_frames]`` in ``[0, partner_frames - 1]``."""
    knots = phoneme_time_knots(source, partner, source_frames / fps, partner_frames / fps)
    positions = warp_times(np.arange(source_frames) / fps, knots) * fps
    return np.clip(positions, 0.0, max(partner_frames - 1, 0))


# ---- alignment by DTW of audio features ----------------------------------------------------

def alignment_features(audio: np.ndarray, num_frames: int, fps: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MFCCs 1..13 of mono ``audio [S]`` resampled to ``num_frames`` mesh frames, each
    coefficient normalised to zero mean and unit variance over the clip (so a louder or
    higher voice still matches): float32 ``[num_frames, 13]``."""
    from scipy.fft import dct

    from voxmesh.audio.encoders import mel_filterbank

    if sample_rate != SAMPLE_RATE:
        raise VoxmeshError(f"Alignment features need {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; load it with load_audio.")
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    padded = np.pad(audio, (_MFCC_WINDOW // 2, _MFCC_WINDOW // 2))
    count = max(1, 1 + (len(padded) - _MFCC_WINDOW) // _MFCC_HOP)
    if len(padded) < _MFCC_WINDOW:
        padded = np.pad(padded, (0, _MFCC_WINDOW - len(padded)))
    index = np.arange(_MFCC_WINDOW)[None] + _MFCC_HOP * np.arange(count)[:, None]
    frames = padded[index] * np.hanning(_MFCC_WINDOW + 1)[:-1]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    filters = mel_filterbank(_MFCC_WINDOW, _MFCC_BANDS, SAMPLE_RATE).numpy().astype(np.float64)
    log_mel = np.log(power @ filters + 1e-10)
    mfcc = dct(log_mel, type=2, axis=1, norm="ortho")[:, 1:_MFCC_COEFFICIENTS + 1]
    # Feature frame k is centred on sample k * hop; mesh frame i on second i / fps.
    feature_times = np.arange(count) * _MFCC_HOP / SAMPLE_RATE
    frame_times = np.arange(num_frames) / fps
    resampled = np.stack([np.interp(frame_times, feature_times, mfcc[:, c]) for c in range(mfcc.shape[1])], axis=1)
    resampled = (resampled - resampled.mean(0)) / (resampled.std(0) + 1e-6)
    return resampled.astype(np.float32)


def dtw_frame_positions(source_features: np.ndarray, partner_features: np.ndarray) -> np.ndarray:
    """Partner frame for each source frame by DTW (dtw-python, Euclidean distance,
    symmetric2 steps, both ends pinned): float64 ``[T_source]``, non-decreasing; a
    source frame matched to several partner frames takes their mean."""
    try:
        with _quiet():
            from dtw import dtw
    except ImportError:
        raise VoxmeshError(
            "Aligning cross-reconstruction pairs without phoneme timings needs the dtw-python package; install it with "
            "pip install dtw-python."
        ) from None

    source_features = np.asarray(source_features, dtype=np.float64)
    partner_features = np.asarray(partner_features, dtype=np.float64)
    if len(source_features) == 0 or len(partner_features) == 0:
        raise VoxmeshError("DTW needs at least one frame on each side; the sequence or its partner is empty.")
    if len(partner_features) == 1 or len(source_features) == 1:
        return np.full(len(source_features), (len(partner_features) - 1) / 2.0)
    alignment = dtw(source_features, partner_features, step_pattern="symmetric2")
    sums = np.bincount(alignment.index1, weights=alignment.index2, minlength=len(source_features))
    counts = np.bincount(alignment.index1, minlength=len(source_features))
    return np.maximum.accumulate(sums / np.maximum(counts, 1))


class _quiet:
    """dtw-python prints a citation banner on its first import; library code stays silent."""

    def __enter__(self):
        import contextlib
        import io

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False


# ---- reading partner frames at positions ---------------------------------------------------

def warp_frames(frames: np.ndarray | torch.Tensor, positions: np.ndarray) -> np.ndarray | torch.Tensor:
    """``frames [T_partner, ...]`` read at fractional ``positions [T]`` by linear
    interpolation between neighbouring frames: ``[T, ...]`` (numpy in, numpy out; torch
    in, torch out). Positions are clamped to the partner's frames."""
    positions = np.clip(np.asarray(positions, dtype=np.float64), 0.0, max(len(frames) - 1, 0))
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, len(frames) - 1)
    weight = positions - lower
    if isinstance(frames, torch.Tensor):
        shape = (-1,) + (1,) * (frames.dim() - 1)
        w = torch.as_tensor(weight, dtype=frames.dtype, device=frames.device).reshape(shape)
        lo, hi = torch.as_tensor(lower, device=frames.device), torch.as_tensor(upper, device=frames.device)
        return frames[lo] * (1 - w) + frames[hi] * w
    frames = np.asarray(frames)
    w = weight.reshape((-1,) + (1,) * (frames.ndim - 1))
    return (frames[lower] * (1 - w) + frames[upper] * w).astype(frames.dtype, copy=False)


# ---- the index the trainer uses ------------------------------------------------------------

@dataclass(frozen=True)
class PairAlignment:
    """``positions`` float64 ``[T_source]``: partner frame of each frame of ``source``;
    ``method``: ``"phonemes"`` or ``"dtw"``."""

    source: str
    partner: str
    positions: np.ndarray
    method: str


@dataclass
class PairWindow:
    """The partner of one training window of ``length`` frames.

    vertices ``[length, V, 3]``: the partner's vertices at this window's instants (the
    cross-reconstruction target). audio ``[S]``: the partner's samples over its frames
    ``first .. first + num_frames - 1`` (what a trainable encoder hears); positions
    ``[length]``: each window frame's position among those ``num_frames`` partner frames;
    features ``[length, C]`` or None: a frozen encoder's cached partner features read at
    the positions."""

    partner: str
    vertices: np.ndarray
    audio: np.ndarray
    num_frames: int
    positions: np.ndarray
    emotion: str | None
    intensity: int | None
    features: torch.Tensor | None = None


class PairIndex:
    """Partners and alignments of the training sequences.

    records: the sequences pairs are drawn from (the training split); load: reads a
    record's :class:`Sequence` (the trainer's ``SequenceStore.get``). Alignments are
    computed on first use and kept."""

    def __init__(self, records: list[SequenceRecord], load: Callable[[SequenceRecord], Sequence]):
        self.records = {r.name: r for r in records}
        self.load = load
        self.partners = find_partners(records)
        self._alignments: dict[tuple[str, str], PairAlignment] = {}
        self._dtw_features: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        """How many sequences have at least one partner."""
        return len(self.partners)

    def has_partner(self, name: str) -> bool:
        return name in self.partners

    def choose(self, name: str, draw: int) -> str | None:
        """Partner number ``draw`` (cyclically) of ``name``, None without partners."""
        options = self.partners.get(name)
        return options[int(draw) % len(options)] if options else None

    def alignment(self, name: str, partner: str) -> PairAlignment:
        key = (name, partner)
        if key not in self._alignments:
            source_record, partner_record = self.records[name], self.records[partner]
            source, other = self.load(source_record), self.load(partner_record)
            if source.fps != other.fps:
                raise VoxmeshError(f"Sequences {name} and {partner} have different frame rates; they cannot be paired.")
            if source_record.phonemes and partner_record.phonemes:
                positions = phoneme_frame_positions(source_record.phonemes, partner_record.phonemes,
                                                    source.num_frames, other.num_frames, source.fps)
                method = "phonemes"
            else:
                positions = dtw_frame_positions(self._features(source), self._features(other))
                method = "dtw"
            self._alignments[key] = PairAlignment(name, partner, positions, method)
        return self._alignments[key]

    def _features(self, sequence: Sequence) -> np.ndarray:
        if sequence.name not in self._dtw_features:
            self._dtw_features[sequence.name] = alignment_features(sequence.audio, sequence.num_frames, sequence.fps,
                                                                   sequence.sample_rate)
        return self._dtw_features[sequence.name]

    def window(self, name: str, start: int, length: int, draw: int = 0,
               features: dict[str, torch.Tensor] | None = None) -> PairWindow | None:
        """The partner of frames ``start .. start + length - 1`` of ``name`` (None when it
        has none). ``features``: a frozen encoder's whole-sequence aligned features
        ``{name: [T, C]}``, as the trainer caches them."""
        from voxmesh.inference import frame_audio

        partner = self.choose(name, draw)
        if partner is None:
            return None
        alignment = self.alignment(name, partner)
        other = self.load(self.records[partner])
        positions = alignment.positions[start:start + length]
        if len(positions) == 0:
            return None
        first = int(np.floor(positions.min()))
        last = min(int(np.ceil(positions.max())), other.num_frames - 1)
        count = last - first + 1
        window_features = None
        if features is not None and partner in features:
            window_features = warp_frames(features[partner], positions)
        return PairWindow(
            partner=partner,
            vertices=warp_frames(other.vertices, positions),
            audio=frame_audio(other.audio, first, count, other.fps, other.sample_rate),
            num_frames=count,
            positions=positions - first,
            emotion=other.emotion,
            intensity=other.intensity,
            features=window_features,
        )


def collate_pair_windows(windows: list[PairWindow | None], frames: int, emotions: list[str]) -> dict[str, torch.Tensor]:
    """Batch fields of the partners of a batch of ``frames``-frame windows (None where an
    item has no partner): ``pair_vertices [B, T, V, 3]``, ``pair_mask [B, T]`` (True on
    frames with a partner), ``pair_emotion_ids [B]`` (index into ``emotions``, -1 unknown),
    ``pair_intensity_ids [B]`` (0 normal, 1 strong, -1 unknown), ``pair_audio [B, S]``,
    ``pair_audio_mask [B, S]``, ``pair_num_frames [B]``, ``pair_frame_positions [B, T]``
    and, when every partner has cached features, ``pair_audio_features [B, T, C]``.
    Empty dict when no item has a partner."""
    from voxmesh.data.batching import pad_stack
    from voxmesh.inference import intensity_index

    present = [w for w in windows if w is not None]
    if not present:
        return {}
    batch = len(windows)
    vertex_shape = present[0].vertices.shape[1:]
    vertices = torch.zeros((batch, frames) + tuple(vertex_shape))
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    positions = torch.zeros(batch, frames)
    emotion_ids = torch.full((batch,), -1, dtype=torch.long)
    intensity_ids = torch.full((batch,), -1, dtype=torch.long)
    num_frames = torch.ones(batch, dtype=torch.long)
    audio_items = []
    for i, window in enumerate(windows):
        if window is None:
            audio_items.append(np.zeros(1, dtype=np.float32))
            continue
        n = min(frames, len(window.vertices))
        vertices[i, :n] = torch.from_numpy(np.asarray(window.vertices[:n], dtype=np.float32))
        mask[i, :n] = True
        positions[i, :n] = torch.from_numpy(np.asarray(window.positions[:n], dtype=np.float32))
        emotion_ids[i] = emotions.index(window.emotion) if window.emotion in emotions else -1
        intensity_ids[i] = intensity_index(window.intensity)
        num_frames[i] = window.num_frames
        audio_items.append(window.audio)
    audio, audio_mask = pad_stack(audio_items)
    fields: dict[str, torch.Tensor] = {
        "pair_vertices": vertices, "pair_mask": mask, "pair_emotion_ids": emotion_ids,
        "pair_intensity_ids": intensity_ids, "pair_audio": audio, "pair_audio_mask": audio_mask,
        "pair_num_frames": num_frames, "pair_frame_positions": positions,
    }
    if all(w.features is not None for w in present):
        width = present[0].features.shape[-1]
        features = torch.zeros(batch, frames, width)
        for i, window in enumerate(windows):
            if window is not None:
                n = min(frames, len(window.features))
                features[i, :n] = window.features[:n]
        fields["pair_audio_features"] = features
    return fields


__all__ = [
    "PairAlignment", "PairIndex", "PairWindow", "alignment_features", "collate_pair_windows", "dtw_frame_positions",
    "find_partners", "phoneme_frame_positions", "phoneme_time_knots", "rendition_key", "warp_frames", "warp_times",
]
