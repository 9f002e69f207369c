"""Face motion from phoneme timings: visemes with coarticulation, a jaw that opens with
vowel openness, emotion with an onset and small fluctuations, random blinks.

Everything is driven by exact phoneme start/end times, so the rig's lips close during
every bilabial and open during every open vowel: the ground truth a model must learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Largest jaw rotation of a fully open vowel, before speaker and emotion scaling.
MAX_JAW_RADIANS = np.deg2rad(16.0)
# How strongly a class holds the lips against its neighbours (Cohen-Massaro dominance):
# lip-produced consonants win, tongue-produced ones let the vowels around them shape the lips.
DOMINANCE = {
    "rest": 3.0, "bilabial": 2.0, "labiodental": 2.0, "dental": 1.2, "alveolar": 0.5,
    "postalveolar": 2.0, "velar": 0.4, "r": 1.5, "open_vowel": 1.0, "mid_vowel": 1.0,
    "close_vowel": 1.0, "rounded_vowel": 1.6, "w": 2.5,
}
# Rounding is anticipated: these classes reach further back in time than forward.
ANTICIPATED = {"rounded_vowel": 2.2, "w": 2.0, "postalveolar": 1.5}
# Level of an emotion's expression at RAVDESS intensity 1 (normal) and 2 (strong).
INTENSITY_LEVEL = {1: 0.6, 2: 1.0}
# Emotions change how much the jaw moves while speaking.
EMOTION_JAW_GAIN = {"neutral": 1.0, "calm": 0.85, "happy": 1.1, "sad": 0.8, "angry": 1.2,
                    "fearful": 0.95, "disgust": 0.9, "surprised": 1.15}


@dataclass(frozen=True)
class PhonemeTarget:
    """What one timed phoneme asks of the face. ``viseme2`` is the end of a diphthong."""

    start: float
    end: float
    viseme: str
    jaw: float  # openness 0..1
    viseme2: str | None = None
    jaw2: float | None = None


@dataclass
class MotionTrack:
    """Rig controls a frame: ``jaw [T]`` radians, ``visemes [T, n_visemes]``,
    ``expressions [T, n_expressions]``, ``blink [T]`` in [0, 1]."""

    jaw: np.ndarray
    visemes: np.ndarray
    expressions: np.ndarray
    blink: np.ndarray


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """Time of each frame in seconds (frame k shows the instant k / fps)."""
    return np.arange(num_frames, dtype=np.float64) / fps


def num_frames_for(duration: float, fps: float) -> int:
    """Frames for ``duration`` seconds at ``fps``: ``round(duration * fps)``, as the layout's check expects."""
    return max(1, int(round(duration * fps)))


def split_diphthongs(targets: list[PhonemeTarget]) -> list[PhonemeTarget]:
    """A diphthong glides: its first 55% is the first viseme, the rest the second."""
    out = []
    for t in targets:
        if t.viseme2 is None or t.viseme2 == t.viseme:
            out.append(t)
            continue
        middle = t.start + 0.55 * (t.end - t.start)
        out.append(PhonemeTarget(t.start, middle, t.viseme, t.jaw))
        out.append(PhonemeTarget(middle, t.end, t.viseme2, t.jaw2 if t.jaw2 is not None else t.jaw))
    return out


def articulation(targets: list[PhonemeTarget], num_frames: int, fps: float, viseme_names: list[str],
                 coarticulation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Viseme weights ``[T, n_visemes]`` and jaw openness ``[T]`` (0..1) by dominance
    blending of the timed targets, then hard closure on bilabials.

    ``coarticulation`` (a speaker trait, ~0.7-1.4) widens or narrows each phoneme's reach.
    """
    targets = split_diphthongs(targets)
    times = frame_times(num_frames, fps)[:, None]  # [T, 1]
    index = {name: i for i, name in enumerate(viseme_names)}
    starts = np.array([t.start for t in targets])
    ends = np.array([t.end for t in targets])
    centres = 0.5 * (starts + ends)
    half = np.maximum(0.5 * (ends - starts), 0.025)
    strength = np.array([DOMINANCE[t.viseme] for t in targets])
    reach_back = np.array([ANTICIPATED.get(t.viseme, 1.0) for t in targets])
    width = half * 1.3 * coarticulation
    # A pause holds the face at rest over its whole length but lets go quickly at its
    # edges, so speech next to it keeps its full shape.
    is_rest = np.array([t.viseme == "rest" for t in targets])
    width = np.where(is_rest, 0.03 * coarticulation, width)
    # Each target holds fully over a plateau around its centre (all of a pause, so the
    # face rests in silence; 40% of a phoneme) and fades outside it. Before the centre
    # the fade is wider for anticipated classes (rounding).
    plateau = np.array([1.0 if t.viseme == "rest" else 0.4 for t in targets]) * half
    offset = times - centres[None, :]
    beyond = np.maximum(np.abs(offset) - plateau, 0.0)
    scale = np.where(offset < 0, width * reach_back, width)
    dominance = strength * np.exp(-(beyond / scale) ** 1.5) + 1e-9  # [T, P]
    onehot = np.zeros((len(targets), len(viseme_names)))
    for p, t in enumerate(targets):
        onehot[p, index[t.viseme]] = 1.0
    jaw_targets = np.array([t.jaw for t in targets])
    weights = dominance / dominance.sum(axis=1, keepdims=True)
    visemes = weights @ onehot
    jaw = weights @ jaw_targets
    # Lips must meet on every p/b/m: hold the closure on each frame inside the phoneme
    # (and on the nearest frame when the phoneme is shorter than a frame).
    bilabial = index["bilabial"]
    for t in targets:
        if t.viseme != "bilabial":
            continue
        frames = np.nonzero((times[:, 0] >= t.start) & (times[:, 0] <= t.end))[0]
        if frames.size == 0:
            frames = np.array([min(num_frames - 1, int(round(0.5 * (t.start + t.end) * fps)))])
        visemes[frames] = 0.0
        visemes[frames, bilabial] = 1.0
        jaw[frames] = np.minimum(jaw[frames], 0.08)
    return visemes.astype(np.float32), jaw.astype(np.float32)


def smooth_noise(num_frames: int, fps: float, rng: np.random.Generator, period: float = 1.5) -> np.ndarray:
    """Slow random fluctuation in [-1, 1]: a few random sinusoids, ``[T]``."""
    t = frame_times(num_frames, fps)
    out = np.zeros(num_frames)
    for k in range(3):
        freq = rng.uniform(0.5, 1.5) / (period * (k + 1))
        out += np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) / (k + 1)
    return out / 1.84


def emotion_track(emotion: str, intensity: int, num_frames: int, fps: float, expression_names: list[str],
                  rng: np.random.Generator, onset_seconds: float = 0.4) -> np.ndarray:
    """Expression weights ``[T, n_expressions]``: the emotion rises over ``onset_seconds``
    to its intensity level and then fluctuates by about 10%."""
    weights = np.zeros((num_frames, len(expression_names)), dtype=np.float32)
    if emotion == "neutral":
        return weights
    t = frame_times(num_frames, fps)
    x = np.clip((t - rng.uniform(0.0, 0.15)) / onset_seconds, 0.0, 1.0)
    onset = x * x * (3 - 2 * x)
    level = INTENSITY_LEVEL[int(intensity)]
    weights[:, expression_names.index(emotion)] = level * onset * (1.0 + 0.1 * smooth_noise(num_frames, fps, rng))
    return weights


def blink_track(num_frames: int, fps: float, rng: np.random.Generator, rate_per_second: float = 0.3) -> np.ndarray:
    """Random blinks ``[T]`` in [0, 1]: about one every 3 s; each closes in 50-80 ms,
    stays shut for at least one frame (so every blink is visible at any fps) and opens
    more slowly, in 80-140 ms."""
    blink = np.zeros(num_frames, dtype=np.float32)
    t = frame_times(num_frames, fps)
    moment = rng.uniform(0.3, 2.5)
    while moment < t[-1] + 0.2:
        closing, hold, opening = rng.uniform(0.05, 0.08), max(0.04, 1.0 / fps), rng.uniform(0.08, 0.14)
        rel = t - moment
        shape = np.where(rel < closing, rel / closing,
                         np.where(rel < closing + hold, 1.0, 1.0 - (rel - closing - hold) / opening))
        shape = np.clip(shape, 0.0, 1.0) * (rel >= 0)
        blink = np.maximum(blink, shape.astype(np.float32))
        moment += closing + hold + opening + rng.exponential(1.0 / rate_per_second) + 0.4
    return blink


def motion_from_phonemes(targets: list[PhonemeTarget], duration: float, fps: float, emotion: str, intensity: int,
                         viseme_names: list[str], expression_names: list[str], rng: np.random.Generator,
                         coarticulation: float = 1.0) -> MotionTrack:
    """All rig controls for one utterance of ``duration`` seconds at ``fps``."""
    num_frames = num_frames_for(duration, fps)
    visemes, openness = articulation(targets, num_frames, fps, viseme_names, coarticulation)
    jaw = openness * MAX_JAW_RADIANS * EMOTION_JAW_GAIN.get(emotion, 1.0)
    expressions = emotion_track(emotion, intensity, num_frames, fps, expression_names, rng)
    blink = blink_track(num_frames, fps, rng)
    return MotionTrack(jaw.astype(np.float32), visemes, expressions, blink)
