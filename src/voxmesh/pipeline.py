"""The inference pipeline, in the manner of diffusers' pipelines: a trained model with its
topology and settings, loaded once, that turns speech into vertices.

    pipeline = TalkingFacePipeline.from_pretrained("default")   # or a run / checkpoint folder
    output = pipeline("speech.wav")                              # AnimationOutput: vertices [T, V, 3], fps
    for block in pipeline.stream("speech.wav"): ...              # [n, V, 3] blocks, memory flat in the length
    pipeline.save_pretrained("my_model")                         # a checkpoint folder from_pretrained reads

It owns reading the audio (a file is decoded a window at a time), checking every condition
before any work (:class:`Conditions`), the speech features, windowing with overlap and a
linear cross-fade (any length of audio; memory does not grow with it) and the device.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from voxmesh.audio.io import SAMPLE_RATE, AudioStream, audio_array
from voxmesh.errors import VoxmeshError
from voxmesh.inference import accepted_options, sequence_features
from voxmesh.mesh.template import Template


@dataclass
class Conditions:
    """What a generation is conditioned on, one dataclass for every method (a method
    refuses, in one sentence, what it does not take).

    ``speaker``: a training speaker's name or index (None: a mixture of all); ``emotion``
    and ``intensity`` (1 normal, 2 strong) for emotion-aware methods; ``seed``: the same
    seed gives the same motion; ``steps``: sampling steps of diffusion models (None: the
    model's); ``template``: the neutral face to animate (None: the model's own; an array
    ``[V, 3]`` or a face file of the model's topology)."""

    speaker: str | int | None = None
    emotion: str | None = None
    intensity: int | None = None
    seed: int = 0
    steps: int | None = None
    template: Any = None


@dataclass
class AnimationOutput:
    """What a pipeline call gives: ``vertices [T, V, 3]`` float32 at ``fps`` (T =
    round(seconds * fps)), the mesh ``faces [F, 3]`` and the conditions used."""

    vertices: np.ndarray
    fps: float
    faces: np.ndarray
    conditions: Conditions = field(default_factory=Conditions)

    @property
    def seconds(self) -> float:
        return len(self.vertices) / self.fps


# Seeds are numpy's and torch's: whole numbers below 2**32.
MAX_SEED = 2**32

@dataclass
class WindowPlan:
    """Frames ``[start, end)`` of each window; consecutive windows overlap by ``overlap``."""

    windows: list[tuple[int, int]]
    overlap: int


def plan_windows(total_frames: int, window: int, overlap: int) -> WindowPlan:
    if total_frames <= window:
        return WindowPlan([(0, total_frames)], 0)
    overlap = min(overlap, window // 2)
    hop = window - overlap
    windows, start = [], 0
    while True:
        end = min(start + window, total_frames)
        windows.append((start, end))
        if end == total_frames:
            break
        start += hop
    return WindowPlan(windows, overlap)


class TalkingFacePipeline:
    """A trained model ready to animate speech: the network, its topology and the
    settings it was trained with (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, template: Template, info: dict[str, Any], device: str = "cpu",
                 window_seconds: float = 10.0, overlap_seconds: float = 1.0):
        self.model = model.eval()
        self.template = template
        self.info = info
        self.device = device
        self.fps = float(info.get("fps", getattr(model, "fps", 30.0)))
        if not (math.isfinite(self.fps) and self.fps > 0):  # checkpoints are checked on reading; this is for models built in code
            raise VoxmeshError(f"The model's frame rate {self.fps} is not a positive number; give the fps it was "
                               "trained at, such as 30.")
        self.window_seconds = window_seconds
        self.overlap_seconds = overlap_seconds
        self.folder: Path | None = None  # the checkpoint it was loaded from, if any

    @property
    def faces(self) -> np.ndarray:
        return self.template.faces

    @property
    def speakers(self) -> list[str]:
        return list(getattr(self.model, "speakers", []))

    @property
    def emotions(self) -> list[str]:
        return list(getattr(self.model, "emotions", []) or [])

    @property
    def method(self) -> str:
        return str(self.info.get("method", getattr(self.model, "method", "")))

    # ---- conditions --------------------------------------------------------------------
    def speaker_index(self, speaker: str | int | None) -> int:
        """-1 (a mixture of every training speaker's style) for None."""
        if speaker is None:
            return -1
        if isinstance(speaker, (bool, np.bool_)) or not isinstance(speaker, (str, int, np.integer)):
            raise VoxmeshError(f"Speaker {speaker!r} is not a speaker's name or index; give a name such as "
                               f"'{(self.speakers or ['A'])[0]}', an index from 0, or None for a mixture of all.")
        if isinstance(speaker, (int, np.integer)) or (isinstance(speaker, str) and speaker.lstrip("-").isdigit()):
            index = int(speaker)
            if not -1 <= index < len(self.speakers):
                raise VoxmeshError(f"Speaker {index} is out of range; give an index from 0 to {len(self.speakers) - 1} (this model knows "
                                   f"{len(self.speakers)} speakers) or leave it out.")
            return index
        if speaker not in self.speakers:
            raise VoxmeshError(f"Speaker '{speaker}' is not one of this model's speakers; give one of {', '.join(self.speakers)}, "
                               "or leave it out for a mixture of all.")
        return self.speakers.index(speaker)

    @property
    def takes_emotion(self) -> bool:
        """Whether the method is conditioned on emotion (its generate takes emotion_ids)."""
        return bool(self.emotions) and "emotion_ids" in inspect.signature(self.model.generate).parameters

    def emotion_options(self, emotion: str | None, intensity: int | None) -> dict[str, torch.Tensor]:
        if not self.takes_emotion:
            if emotion is not None or intensity is not None:
                raise VoxmeshError(f"This {self.method} model takes no emotion or intensity; leave out --emotion and "
                                   "--intensity, or use an EmoFace model.")
            return {}
        options: dict[str, torch.Tensor] = {}
        if emotion is not None:
            if emotion not in self.emotions:
                raise VoxmeshError(f"Emotion '{emotion}' is not one of this model's emotions; give one of {', '.join(self.emotions)}.")
            options["emotion_ids"] = torch.tensor([self.emotions.index(emotion)], device=self.device)
        if intensity is not None:
            if isinstance(intensity, bool) or intensity not in (1, 2):
                raise VoxmeshError(f"Intensity {intensity!r} is not one this model knows; give 1 (normal) or 2 (strong).")
            options["intensity_ids"] = torch.tensor([intensity - 1], device=self.device)
        return options

    def neutral_face(self, template: np.ndarray | str | Path | None) -> np.ndarray:
        """The face to animate: the model's own neutral, or the user's of the same topology."""
        if template is None:
            return self.template.vertices
        if isinstance(template, (str, Path)):
            from voxmesh.mesh.template import load_face

            # readable, finite and in metres (a face exported in millimetres is refused)
            vertices, source = load_face(template, reference=self.template.vertices), str(template)
        else:
            from voxmesh.mesh.template import scale_problem

            source = "the template array"
            try:
                vertices = np.asarray(template, dtype=np.float32).reshape(-1, 3)
            except (TypeError, ValueError):
                raise VoxmeshError(f"The template is a {type(template).__name__}, not [V, 3] vertex coordinates; "
                                   "pass a float array or a face file.") from None
            if np.all(np.isfinite(vertices)):  # units are judged on finite faces; NaN is refused below
                problem = scale_problem(vertices, "The template array", self.template.vertices)
                if problem:
                    raise VoxmeshError(problem)
        if vertices.shape[0] != self.template.num_vertices:
            raise VoxmeshError(
                f"{source} has {vertices.shape[0]} vertices but the model animates {self.template.num_vertices}; "
                "use a face of the model's topology."
            )
        if not np.all(np.isfinite(vertices)):
            raise VoxmeshError(f"{source} has NaN or infinite vertices; re-export the face.")
        return vertices

    # ---- animation ---------------------------------------------------------------------
    def check_conditions(self, *, speaker: str | int | None = None, emotion: str | None = None,
                         intensity: int | None = None, seed: int = 0, steps: int | None = None,
                         template: np.ndarray | str | Path | None = None, **ignored: Any) -> dict[str, Any]:
        """Check every condition before any work (a video encoder is not started for a
        speaker the model does not know); return the resolved ones."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < MAX_SEED:
            raise VoxmeshError(f"Seed {seed!r} is not a whole number from 0 to {MAX_SEED - 1}; give one such as 0.")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
            raise VoxmeshError(f"Steps {steps!r} must be a whole number of 1 or more; give one such as 25.")
        return {"speaker_ids": torch.tensor([self.speaker_index(speaker)], device=self.device),
                "options": dict(self.emotion_options(emotion, intensity), **({"steps": int(steps)} if steps else {})),
                "neutral": torch.from_numpy(self.neutral_face(template))[None].to(self.device),
                "seed": int(seed)}

    def iter_animation(self, audio: np.ndarray | str | Path, *, speaker: str | int | None = None,
                       emotion: str | None = None, intensity: int | None = None, seed: int = 0,
                       steps: int | None = None, template: np.ndarray | str | Path | None = None,
                       sample_rate: int = SAMPLE_RATE, progress: bool = False) -> Iterator[np.ndarray]:
        """Blocks of frames ``[n, V, 3]`` (float32) covering the audio in order. The
        audio and every condition are checked when this is called, before the first block."""
        conditions = self.check_conditions(speaker=speaker, emotion=emotion, intensity=intensity, seed=seed,
                                           steps=steps, template=template)
        if isinstance(audio, (str, Path, bytes)):  # decoded a window at a time: memory flat in the file's length
            stream = AudioStream(os.fsdecode(audio))
            self.check_length(stream.num_samples, f"Audio file {stream.path}")
            return self._stream_windows(stream, conditions, progress)
        samples = audio_array(audio, sample_rate)
        self.check_length(len(samples), "The audio array")
        return self._windows(len(samples), lambda first, last: samples[first:last], conditions, progress)

    def check_length(self, num_samples: int, source: str) -> int:
        """The number of frames of ``num_samples`` at 16 kHz; audio shorter than one frame is refused."""
        from voxmesh.audio.features import mesh_frames

        frames = mesh_frames(num_samples, self.fps)
        if frames < 1:
            raise VoxmeshError(f"{source} lasts {num_samples / SAMPLE_RATE:.3f} s, shorter than one frame at "
                               f"{self.fps:g} fps ({0.5 / self.fps:.3f} s); give a longer recording.")
        return frames

    def _stream_windows(self, stream: AudioStream, conditions: dict[str, Any], progress: bool) -> Iterator[np.ndarray]:
        with stream:
            yield from self._windows(stream.num_samples, stream.read, conditions, progress)

    @torch.no_grad()
    def _windows(self, num_samples: int, read, conditions: dict[str, Any], progress: bool) -> Iterator[np.ndarray]:
        """The blocks of :meth:`iter_animation` for audio of ``num_samples`` at 16 kHz
        whose samples ``[first, last)`` ``read(first, last)`` returns (first only grows)."""
        from tqdm import tqdm

        from voxmesh.audio.features import mesh_frames

        total = mesh_frames(num_samples, self.fps)
        neutral, speaker_ids, options, seed = (conditions[k] for k in ("neutral", "speaker_ids", "options", "seed"))
        plan = plan_windows(total, max(1, int(round(self.window_seconds * self.fps))),
                            int(round(self.overlap_seconds * self.fps)))
        pending: np.ndarray | None = None  # the previous window's overlapping tail
        # One bar for the whole recording, in seconds of speech done (rendering and writing
        # the blocks included, as they are taken from this generator).
        bar = tqdm(total=total, unit_scale=1.0 / self.fps, desc="animate", disable=not progress,  # frames shown as s
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of speech [{elapsed}<{remaining}]")
        try:
            for index, (start, end) in enumerate(plan.windows):
                first = int(round(start / self.fps * SAMPLE_RATE))
                last = int(round(end / self.fps * SAMPLE_RATE))
                clip = read(first, last)
                features = sequence_features(self.model, clip, end - start, self.fps, self.device)
                vertices = self.model.generate(features[None].to(self.device), neutral, speaker_ids,
                                               seed=seed + index, **accepted_options(self.model.generate, options))
                block = vertices[0, : end - start].float().cpu().numpy()
                if pending is not None:
                    n = len(pending)
                    # Linear cross-fade over the overlap hides the seam between windows.
                    ramp = np.linspace(0.0, 1.0, n + 2, dtype=np.float32)[1:-1, None, None]
                    block[:n] = (1 - ramp) * pending + ramp * block[:n]
                is_last = index == len(plan.windows) - 1
                keep = 0 if is_last else plan.overlap
                yield block[: len(block) - keep]
                bar.update(len(block) - keep)
                pending = block[len(block) - keep:] if keep else None
        finally:
            bar.close()

    @classmethod
    def from_pretrained(cls, name_or_folder: str | Path = "default", device: str | torch.device | None = "cpu",
                        **settings: Any) -> "TalkingFacePipeline":
        """The pipeline of a built-in model (``"default"``), a training run folder or a
        checkpoint folder, loaded once (``device`` None: cuda when present)."""
        from voxmesh.runtime import resolve_device
        from voxmesh.train.checkpoint import (
            load_checkpoint,
            load_checkpoint_template,
            read_checkpoint_info,
            resolve_checkpoint,
        )

        folder = resolve_checkpoint(name_or_folder)
        device = str(resolve_device(device))
        info = read_checkpoint_info(folder)
        model = load_checkpoint(folder, device=device)
        pipeline = cls(model, load_checkpoint_template(folder), info, device=device, **settings)
        pipeline.folder = folder
        return pipeline

    def save_pretrained(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write the pipeline's checkpoint (weights, model.json, topology) to ``folder``,
        which :meth:`from_pretrained` reads back; an existing folder only with ``overwrite``."""
        from voxmesh.files import refuse_existing
        from voxmesh.train.checkpoint import copy_checkpoint, save_checkpoint

        refuse_existing(folder, overwrite=overwrite, instead="choose another folder", folder_of=lambda name: True)
        if getattr(self, "folder", None) is not None:
            return copy_checkpoint(self.folder, folder)
        return save_checkpoint(self.model, folder, template=self.template, step=int(self.info.get("step", 0)))

    def __call__(self, audio: np.ndarray | str | Path, sample_rate: int = SAMPLE_RATE,
                 conditions: Conditions | None = None, progress: bool = False, **overrides: Any) -> AnimationOutput:
        """Animate ``audio`` (a file, or samples at ``sample_rate``) under ``conditions``
        (fields may also be given as keywords: ``pipeline(wav, speaker="spk01")``)."""
        conditions = _conditions(conditions, overrides)
        vertices = self.animate(audio, sample_rate=sample_rate, progress=progress, **asdict(conditions))
        return AnimationOutput(vertices, self.fps, self.faces, conditions)

    def stream(self, audio: np.ndarray | str | Path, sample_rate: int = SAMPLE_RATE,
               conditions: Conditions | None = None, progress: bool = False, **overrides: Any) -> Iterator[np.ndarray]:
        """The frames of :meth:`__call__` as blocks ``[n, V, 3]`` in order, made a window at
        a time (a file is decoded as it goes): for long audio and for writing as you go."""
        conditions = _conditions(conditions, overrides)
        return self.iter_animation(audio, sample_rate=sample_rate, progress=progress, **asdict(conditions))

    def animate(self, audio: np.ndarray | str | Path, **options: Any) -> np.ndarray:
        """Vertices ``[T, V, 3]`` float32 for the whole audio (T = round(seconds * fps))."""
        blocks = list(self.iter_animation(audio, **options))
        return np.concatenate(blocks, axis=0) if blocks else np.zeros((0, self.template.num_vertices, 3), np.float32)


def load_model(name_or_path: str | Path = "default", device: str = "cpu", **settings: Any) -> TalkingFacePipeline:
    """A built-in model by name (``"default"``) or a checkpoint folder (a training run
    folder, or its ``model`` folder): :meth:`TalkingFacePipeline.from_pretrained`."""
    return TalkingFacePipeline.from_pretrained(name_or_path, device=device, **settings)


def _conditions(conditions: Conditions | None, overrides: dict[str, Any]) -> Conditions:
    known = {f for f in Conditions.__dataclass_fields__}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise VoxmeshError(f"'{unknown[0]}' is not a condition; give one of {', '.join(sorted(known))}.")
    base = asdict(conditions) if conditions is not None else {}
    return Conditions(**{**base, **overrides})


__all__ = ["AnimationOutput", "Conditions", "MAX_SEED", "TalkingFacePipeline", "load_model", "plan_windows"]
