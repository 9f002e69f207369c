"""`voxmesh data check`: what a dataset folder holds and everything wrong with it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from voxmesh.audio.io import wav_shortfall
from voxmesh.data.layout import FaceDataset
from voxmesh.data.presets import Preset, get_preset
from voxmesh.errors import VoxmeshError
from voxmesh.mesh.template import scale_problem

# Vertices and audio may disagree by this many frames (rounding at both ends); more is a
# problem `data check` lists and `data import` reports.
FRAME_TOLERANCE = 1.0


def frames_disagree(frames: int, seconds: float, fps: float) -> bool:
    """Whether ``frames`` at ``fps`` and audio of ``seconds`` differ by more than FRAME_TOLERANCE frames."""
    return abs(frames - seconds * fps) > FRAME_TOLERANCE + 1e-6


@dataclass
class CheckReport:
    root: Path
    preset: str
    fps: float
    sequences: int = 0
    subjects: int = 0
    split_counts: dict[str, int] = field(default_factory=dict)
    total_seconds: float = 0.0
    shortest_seconds: float = 0.0
    longest_seconds: float = 0.0
    num_vertices: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary_lines(self) -> list[str]:
        splits = ", ".join(f"{k} {v}" for k, v in sorted(self.split_counts.items())) or "none"
        mean = self.total_seconds / self.sequences if self.sequences else 0.0
        return [
            f"dataset   {self.root} (preset {self.preset}, {self.fps:g} fps)",
            f"sequences {self.sequences} from {self.subjects} subjects; splits: {splits}",
            f"audio     {self.total_seconds / 60:.1f} min in all; {self.shortest_seconds:.2f}-"
            f"{self.longest_seconds:.2f} s, mean {mean:.2f} s",
            f"vertices  {self.num_vertices if self.num_vertices is not None else 'unknown'} per frame",
            f"problems  {len(self.problems)}",
        ]


def check_dataset(root: str | Path, preset: str | Preset = "generic", fps: float | None = None,
                  progress: bool = False) -> CheckReport:
    """Read every file of a dataset folder and list each problem in one line."""
    root = Path(root)
    problems: list[str] = []
    try:
        dataset = FaceDataset(root, preset=preset, fps=fps)
    except VoxmeshError as exc:
        try:
            shown = get_preset(preset, fps)
            report = CheckReport(root, shown.name, shown.fps)
        except VoxmeshError:  # the preset itself was the problem
            report = CheckReport(root, str(getattr(preset, "name", preset)), fps or 0.0)
        report.problems.append(str(exc))
        return report
    report = CheckReport(root, dataset.preset.name, dataset.preset.fps)
    template_sizes = Counter(t.shape[0] for t in dataset.templates.values())
    if len(template_sizes) > 1:
        problems.append(f"templates.pkl: subjects have different vertex counts {sorted(template_sizes)}; use one topology.")
    report.num_vertices = template_sizes.most_common(1)[0][0] if template_sizes else None
    # load_templates already refused NaN and malformed templates; units it cannot tell.
    for subject, template in dataset.templates.items():
        problem = scale_problem(template, f"templates.pkl: subject '{subject}'")
        if problem:
            problems.append(problem.replace("its coordinates", "the coordinates in templates.pkl and vertices_npy"))
    try:
        dataset.topology()
    except VoxmeshError as exc:
        problems.append(str(exc))

    durations = []
    subjects = set()
    for record in tqdm(dataset.all_records, desc="checking", unit="seq", disable=not progress):
        rel_wav = f"wav/{record.audio_path.name}" if record.audio_path else None
        rel_npy = f"vertices_npy/{record.vertices_path.name}" if record.vertices_path else None
        if record.audio_path is None and record.vertices_path is None:
            problems.append(f"manifest.jsonl: '{record.name}' has neither audio in wav/ nor vertices in vertices_npy/.")
            continue
        if record.audio_path is None:
            problems.append(f"{rel_npy}: no audio wav/{record.name}.wav for these vertices.")
        if record.vertices_path is None:
            problems.append(f"{rel_wav}: no vertices vertices_npy/{record.name}.npy for this audio.")
        subjects.add(record.subject)
        template = dataset.templates.get(record.subject)
        if template is None:
            problems.append(f"{rel_npy or rel_wav}: subject '{record.subject}' has no template in templates.pkl.")
        seconds = None
        shortfall = wav_shortfall(record.audio_path) if record.audio_path is not None else None
        if shortfall is not None:
            problems.append(f"{rel_wav}: truncated, {shortfall[0]} of the {shortfall[1]} bytes of samples its header "
                            "announces; copy or export it again.")
        elif record.audio_path is not None:
            try:
                samples, rate = soundfile.read(str(record.audio_path), dtype="float32", always_2d=True)
                if samples.shape[0] == 0:
                    problems.append(f"{rel_wav}: the audio is empty.")
                elif not np.all(np.isfinite(samples)):
                    problems.append(f"{rel_wav}: the audio has NaN or infinite samples.")
                else:
                    seconds = samples.shape[0] / float(rate)
                    durations.append(seconds)
            except Exception as exc:
                problems.append(f"{rel_wav}: unreadable audio ({type(exc).__name__}).")
        frames = None
        if record.vertices_path is not None:
            try:
                array = np.load(record.vertices_path, mmap_mode="r", allow_pickle=False)
                frames = array.shape[0] if array.ndim >= 1 else 0
                if array.ndim not in (2, 3) or frames == 0:
                    problems.append(f"{rel_npy}: shape {array.shape} is not [frames, V*3].")
                    frames = None
                else:
                    values_per_frame = int(np.prod(array.shape[1:]))
                    if template is not None and values_per_frame != template.shape[0] * 3:
                        problems.append(
                            f"{rel_npy}: {values_per_frame // 3 if values_per_frame % 3 == 0 else values_per_frame / 3:g} "
                            f"vertices per frame but the template of '{record.subject}' has {template.shape[0]}."
                        )
                    if not np.all(np.isfinite(np.asarray(array))):
                        problems.append(f"{rel_npy}: NaN or infinite vertex values.")
            except Exception as exc:
                problems.append(f"{rel_npy}: unreadable vertices ({type(exc).__name__}).")
        if seconds is not None and frames is not None:
            disk_fps = record.disk_fps or dataset.preset.disk_fps
            expected = seconds * disk_fps
            if frames_disagree(frames, seconds, disk_fps):
                problems.append(
                    f"{rel_npy}: {frames} frames but the audio lasts {seconds:.3f} s, "
                    f"{expected:.1f} frames at {disk_fps:g} fps."
                )
    report.sequences = len(dataset.all_records)
    report.subjects = len(subjects)
    report.split_counts = dict(Counter(r.split or "none" for r in dataset.all_records))
    report.total_seconds = float(sum(durations))
    report.shortest_seconds = float(min(durations)) if durations else 0.0
    report.longest_seconds = float(max(durations)) if durations else 0.0
    report.problems = problems
    return report
