"""Dataset presets: how a dataset's file names map to subjects and sentences, its
frame rates, and the standard splits the papers use."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from voxmesh.errors import VoxmeshError

SPLITS = ("train", "val", "test", "test_unseen")
# Other names people use for the same splits.
SPLIT_ALIASES = {"valid": "val", "validation": "val", "test_a": "test", "test-a": "test",
                 "test_b": "test_unseen", "test-b": "test_unseen", "unseen": "test_unseen"}

RAVDESS_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
RAVDESS_CODE = re.compile(r"(?:^|_)(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def canonical_split(name: str) -> str:
    """``"Test-B"`` -> ``"test_unseen"``; unknown names raise a clear error."""
    key = name.strip().lower()
    key = SPLIT_ALIASES.get(key, key)
    if key not in SPLITS:
        raise VoxmeshError(f"Unknown split '{name}'; use one of {', '.join(SPLITS)}.")
    return key


@dataclass(frozen=True)
class NameParts:
    """What a preset reads out of a sequence name."""

    subject: str
    sequence: str
    sentence: int | None = None
    emotion: str | None = None
    intensity: int | None = None


def sentence_number(sequence: str) -> int | None:
    """The first integer in a sequence id: ``sentence07`` -> 7, ``e12`` -> 12,
    ``s012-happy-2`` -> 12."""
    digits = re.findall(r"\d+", sequence)
    return int(digits[0]) if digits else None


def split_name(name: str, subjects: list[str]) -> tuple[str, str]:
    """Split ``<subject>_<sequence>``; subjects may contain underscores (VOCASET), so
    the longest known subject that prefixes the name wins, else the first underscore."""
    for subject in sorted(subjects, key=len, reverse=True):
        if name.startswith(subject + "_") and len(name) > len(subject) + 1:
            return subject, name[len(subject) + 1:]
    if "_" in name:
        subject, sequence = name.split("_", 1)
        return subject, sequence
    return name, ""


@dataclass(frozen=True)
class Preset:
    """A dataset's conventions. ``disk_fps`` is the rate of vertices_npy; ``fps`` the
    rate used for training and evaluation (``disk_fps / fps`` must be an integer)."""

    name: str
    disk_fps: float
    fps: float
    description: str
    split_rule: Callable[[NameParts], str | None] = field(repr=False)
    parse: Callable[[str, list[str]], NameParts] = field(repr=False)

    @property
    def frame_step(self) -> int:
        return int(round(self.disk_fps / self.fps))


def _default_parse(name: str, subjects: list[str]) -> NameParts:
    subject, sequence = split_name(name, subjects)
    return NameParts(subject, sequence, sentence_number(sequence))


# ---- VOCASET (FaceFormer / CodeTalker split) -----------------------------------------
VOCASET_TRAIN = (
    "FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
    "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
    "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA",
)
VOCASET_VAL = ("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA")
VOCASET_TEST = ("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA")


def _vocaset_split(parts: NameParts) -> str | None:
    n = parts.sentence
    if n is None:
        return None
    if parts.subject in VOCASET_TRAIN and 1 <= n <= 40:
        return "train"
    if parts.subject in VOCASET_VAL and 21 <= n <= 40:
        return "val"
    if parts.subject in VOCASET_TEST and 21 <= n <= 40:
        return "test"
    return None


def _vocaset_parse(name: str, subjects: list[str]) -> NameParts:
    return _default_parse(name, list(subjects) + list(VOCASET_TRAIN + VOCASET_VAL + VOCASET_TEST))


# ---- BIWI (FaceFormer split; Test-A seen subjects, Test-B unseen) --------------------
BIWI_TRAIN = ("F2", "F3", "F4", "M3", "M4", "M5")
BIWI_UNSEEN = ("F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6")


def _biwi_split(parts: NameParts) -> str | None:
    n = parts.sentence
    if n is None:
        return None
    if parts.subject in BIWI_TRAIN:
        if 1 <= n <= 32:
            return "train"
        if 33 <= n <= 36:
            return "val"
        if 37 <= n <= 40:
            return "test"
    elif parts.subject in BIWI_UNSEEN and 37 <= n <= 40:
        return "test_unseen"
    return None


# ---- 3D-RAVDESS (actors 1-20 train, 21-22 val, 23-24 test) ---------------------------
def _ravdess_parse(name: str, subjects: list[str]) -> NameParts:
    match = RAVDESS_CODE.search(name)
    if not match:
        raise VoxmeshError(
            f"Sequence name '{name}' is not a RAVDESS name (03-01-EE-II-SS-RR-AA); rename it or use the generic preset."
        )
    _, _, emotion, intensity, statement, repetition, actor = (int(g) for g in match.groups())
    if not 1 <= emotion <= 8:
        raise VoxmeshError(f"Sequence name '{name}' has emotion code {emotion:02d}; RAVDESS codes are 01-08.")
    prefix = name[: match.start()].rstrip("_")
    subject = prefix or _ravdess_actor_subject(actor, subjects)
    return NameParts(subject, match.group(0).lstrip("_"), statement, RAVDESS_EMOTIONS[emotion - 1], intensity)


def _ravdess_actor_subject(actor: int, subjects: list[str]) -> str:
    """The subject of a bare RAVDESS name (``03-01-05-01-02-01-12``): the one of
    ``subjects`` (templates.pkl's keys) numbered like the actor, whatever its spelling
    (``Actor_12``, ``actor12``, ``12``), else ``Actor_12``."""
    for subject in subjects:
        digits = re.search(r"(\d+)$", subject)
        if digits and int(digits.group(1)) == actor and re.fullmatch(r"(?i)(actor)?[_ -]?\d+", subject):
            return subject
    return f"Actor_{actor:02d}"


def _ravdess_actor(parts: NameParts) -> int:
    return int(parts.sequence.split("-")[-1])


def _ravdess_split(parts: NameParts) -> str | None:
    actor = _ravdess_actor(parts)
    if 1 <= actor <= 20:
        return "train"
    if actor in (21, 22):
        return "val"
    if actor in (23, 24):
        return "test"
    return None


def _no_rule(parts: NameParts) -> str | None:  # generic: manifest or subject split
    return None


PRESETS: dict[str, Preset] = {
    "vocaset": Preset("vocaset", 60.0, 30.0,
                      "VOCASET: 60 fps on disk used at 30, 8/2/2 subjects, sentences 1-40 / 21-40 / 21-40",
                      _vocaset_split, _vocaset_parse),
    "biwi": Preset("biwi", 25.0, 25.0,
                   "BIWI: 25 fps, subjects F2 F3 F4 M3 M4 M5 on 1-32 train, 33-36 val, 37-40 test (Test-A); "
                   "the other 8 on 37-40 as test_unseen (Test-B)",
                   _biwi_split, _default_parse),
    "ravdess3d": Preset("ravdess3d", 30.0, 30.0,
                        "3D-RAVDESS: 30 fps, RAVDESS names, actors 1-20 train, 21-22 val, 23-24 test",
                        _ravdess_split, _ravdess_parse),
    "generic": Preset("generic", 30.0, 30.0,
                      "any folder in the layout: splits from manifest.jsonl, else by subject",
                      _no_rule, _default_parse),
}


def check_fps(fps: Any, option: str = "--fps") -> float:
    """A frame rate given by a user: a positive, finite number."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(fps, bool) or not (math.isfinite(value) and value > 0):
        shown = f"{fps:g}" if isinstance(fps, float) else fps
        raise VoxmeshError(f"{option} {shown} is not a positive frame rate; give one such as 30.")
    return value


def get_preset(name: str | Preset, fps: float | None = None) -> Preset:
    """A preset by name; ``fps`` overrides the generic preset's frame rate (disk and use)."""
    if fps is not None:
        fps = check_fps(fps)
    if isinstance(name, Preset):
        return name
    key = name.lower().replace("-", "").replace("_", "")
    key = {"3dravdess": "ravdess3d", "ravdess": "ravdess3d", "voca": "vocaset"}.get(key, key)
    if key not in PRESETS:
        raise VoxmeshError(f"Unknown dataset preset '{name}'; use one of {', '.join(PRESETS)}.")
    preset = PRESETS[key]
    if fps is not None and key == "generic":
        preset = Preset(preset.name, float(fps), float(fps), preset.description, preset.split_rule, preset.parse)
    elif fps is not None and abs(fps - preset.fps) > 1e-6:
        if preset.disk_fps % fps:
            raise VoxmeshError(f"The {preset.name} preset stores {preset.disk_fps:g} fps; --fps {fps:g} must divide it.")
        preset = Preset(preset.name, preset.disk_fps, float(fps), preset.description, preset.split_rule, preset.parse)
    return preset


def split_by_subject(subjects: list[str], seed: int = 0) -> dict[str, str]:
    """Deterministic subject split for a dataset without a manifest: about 80/10/10,
    at least one validation and one test subject when there are three or more."""
    import random

    ordered = sorted(subjects)
    random.Random(seed).shuffle(ordered)
    n = len(ordered)
    if n < 3:
        return {s: "train" for s in ordered}
    n_held = max(1, round(0.1 * n))
    assignment = {}
    for i, subject in enumerate(ordered):
        assignment[subject] = "test" if i < n_held else "val" if i < 2 * n_held else "train"
    return assignment
