"""Reading the on-disk layout shared by FaceFormer, CodeTalker and their peers:

    DATASET/wav/<name>.wav, vertices_npy/<name>.npy, templates.pkl,
    topology.ply|.obj, regions.json (or FLAME_masks.pkl), regions/lve.txt|fdd.txt,
    manifest.jsonl (all but the first three optional)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from voxmesh.audio.io import SAMPLE_RATE, load_audio
from voxmesh.data.presets import SPLITS, Preset, canonical_split, get_preset, split_by_subject
from voxmesh.errors import VoxmeshError
from voxmesh.mesh.template import Template, check_indices, load_mesh, load_regions, load_templates, split_regions

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
REGION_FILES = ("regions.json", "FLAME_masks.pkl")
# CodeTalker's BIWI masks: where present they are the metrics' lip (LVE) and upper-face
# (FDD) vertices, over regions.json's, so numbers compare with CodeTalker's table.
CODETALKER_REGION_FILES = {"lips": "regions/lve.txt", "upper_face": "regions/fdd.txt"}


@dataclass
class Phoneme:
    symbol: str
    start: float  # seconds
    end: float


@dataclass
class SequenceRecord:
    """One sequence as found on disk, before anything heavy is read."""

    name: str
    subject: str
    sequence: str
    audio_path: Path | None
    vertices_path: Path | None
    sentence: int | None = None
    split: str | None = None
    emotion: str | None = None
    intensity: int | None = None
    text: str | None = None
    phonemes: list[Phoneme] | None = None
    disk_fps: float | None = None  # a manifest row may give its own rate


@dataclass
class Sequence:
    """A loaded sequence: ``audio [samples]`` mono 16 kHz float32, ``vertices [T, V, 3]``
    float32 at ``fps``, ``template [V, 3]`` the subject's neutral face."""

    name: str
    subject: str
    audio: np.ndarray
    vertices: np.ndarray
    template: np.ndarray
    fps: float
    split: str | None = None
    sentence: int | None = None
    emotion: str | None = None
    intensity: int | None = None
    text: str | None = None
    phonemes: list[Phoneme] | None = None
    sample_rate: int = SAMPLE_RATE

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def duration(self) -> float:
        return len(self.audio) / float(self.sample_rate)


def find_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """``{stem: path}`` of the files with the given suffixes. Two files of one stem
    (``a_01.wav`` and ``a_01.flac``) are an error: which one is meant cannot be told."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            if path.stem in found:
                raise VoxmeshError(
                    f"{folder} holds both {found[path.stem].name} and {path.name} for sequence '{path.stem}'; "
                    "keep one of them."
                )
            found[path.stem] = path
    return found


def read_manifest(path: Path) -> dict[str, dict]:
    """``{name: row}`` from manifest.jsonl; a row needs ``name`` or ``subject`` and
    ``sentence``; a name may appear once, a ``split`` must be a known split and an
    ``fps`` a positive number."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise VoxmeshError(f"{path} is not UTF-8 text; write it as JSON lines, one object a sequence.") from None
    rows: dict[str, dict] = {}
    lines: dict[str, int] = {}
    # JSON Lines ends rows at "\n" only: str.splitlines would also split inside a row at
    # characters JSON leaves unescaped (U+2028, U+0085) in text written with ensure_ascii=False.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise VoxmeshError(f"Line {number} of {path} is not valid JSON; write one JSON object a line.") from None
        if not isinstance(row, dict):
            raise VoxmeshError(
                f"Line {number} of {path} is a JSON {type(row).__name__}, not an object; write one JSON object a line."
            )
        name = row.get("name") or (f"{row['subject']}_{row['sentence']}" if "subject" in row and "sentence" in row else None)
        if not name:
            raise VoxmeshError(f"Line {number} of {path} has no 'name' (or 'subject' and 'sentence'); add one.")
        name = str(name)
        if name in rows:
            raise VoxmeshError(f"Lines {lines[name]} and {number} of {path} both describe '{name}'; keep one of them.")
        if row.get("split") is not None:
            try:
                canonical_split(str(row["split"]))
            except VoxmeshError:
                raise VoxmeshError(
                    f"Line {number} of {path} has split '{row['split']}'; use one of {', '.join(SPLITS)}."
                ) from None
        if "fps" in row:
            fps = row["fps"]
            if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0 or fps == float("inf"):
                raise VoxmeshError(f"Line {number} of {path} has fps {fps!r}; give the frame rate as a positive number.")
        rows[name] = row
        lines[name] = number
    return rows


def parse_phonemes(raw) -> list[Phoneme] | None:
    if raw is None:
        return None
    out = []
    for item in raw:
        if isinstance(item, dict):
            out.append(Phoneme(str(item["symbol"]), float(item["start"]), float(item["end"])))
        else:
            symbol, start, end = item
            out.append(Phoneme(str(symbol), float(start), float(end)))
    return out


class FaceDataset(torch.utils.data.Dataset):
    """A dataset folder in the shared layout, under a preset's naming and splits.

    ``dataset[i]`` loads a :class:`Sequence`; ``dataset.split("train")`` is the subset
    of one split. Use :func:`collate_sequences` with a DataLoader to batch.
    """

    def __init__(self, root: str | Path, preset: str | Preset = "generic", split: str | None = None,
                 fps: float | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise VoxmeshError(f"Dataset folder {self.root} does not exist; check the path.")
        self.preset = get_preset(preset, fps)
        self.templates = load_templates(self.root / "templates.pkl")
        self.regions: dict[str, np.ndarray] = {}
        self.vertex_pairs: dict[str, np.ndarray] = {}
        # regions.json, else FLAME's FLAME_masks.pkl kept beside FLAME-topology data.
        regions_file = next((name for name in REGION_FILES if (self.root / name).is_file()), None)
        if regions_file is not None:
            self.regions, self.vertex_pairs = split_regions(load_regions(self.root / regions_file))
        # Which file each region came from, relative to the dataset folder (reports name it).
        self.region_sources: dict[str, str] = {name: regions_file for name in [*self.regions, *self.vertex_pairs]}
        for name, relative in CODETALKER_REGION_FILES.items():
            if (self.root / relative).is_file():
                indices = next(iter(load_regions(self.root / relative).values()))  # one region a text file
                if indices.size == 0:
                    raise VoxmeshError(f"Region file {self.root / relative} holds no vertex index; write the "
                                       "region's vertex indices in it (one a line) or remove it.")
                self.regions[name] = indices
                self.region_sources[name] = relative
        manifest_path = self.root / "manifest.jsonl"
        self.manifest = read_manifest(manifest_path) if manifest_path.is_file() else {}
        self.audio_files = find_files(self.root / "wav", AUDIO_SUFFIXES)
        self.vertex_files = find_files(self.root / "vertices_npy", (".npy",))
        self.all_records = self._discover()
        self.records = self.all_records
        if split is not None:
            self.records = [r for r in self.all_records if r.split == canonical_split(split)]

    # ---- discovery -----------------------------------------------------------------
    def _discover(self) -> list[SequenceRecord]:
        subjects = list(self.templates)
        names = sorted(set(self.audio_files) | set(self.vertex_files) | set(self.manifest))
        records = []
        for name in names:
            row = self.manifest.get(name, {})
            parts = self.preset.parse(name, subjects)
            subject = str(row.get("subject", parts.subject))
            split = row.get("split")
            record = SequenceRecord(
                name=name,
                subject=subject,
                sequence=parts.sequence,
                audio_path=self.audio_files.get(name),
                vertices_path=self.vertex_files.get(name),
                sentence=int(row["sentence"]) if isinstance(row.get("sentence"), int) else parts.sentence,
                split=None,
                emotion=row.get("emotion", parts.emotion),
                intensity=row.get("intensity", parts.intensity),
                text=row.get("text"),
                phonemes=parse_phonemes(row.get("phonemes")),
                disk_fps=float(row["fps"]) if "fps" in row else None,
            )
            if record.disk_fps is not None:
                self._check_frame_rate(record)
            rule_split = self.preset.split_rule(parts)
            if rule_split is not None:
                record.split = rule_split
            elif split is not None:
                record.split = canonical_split(str(split))
            records.append(record)
        if self.preset.name == "generic" and not any(r.split for r in records):
            by_subject = split_by_subject(sorted({r.subject for r in records}))
            for record in records:
                record.split = by_subject[record.subject]
        return records

    def _check_frame_rate(self, record: SequenceRecord) -> None:
        """A manifest rate must be a whole multiple of the rate the preset uses, as
        frames are taken every ``disk_fps / fps``-th; anything else would misalign
        motion and speech."""
        step = record.disk_fps / self.preset.fps
        if abs(step - round(step)) > 1e-6 or round(step) < 1:
            raise VoxmeshError(
                f"{self.root / 'manifest.jsonl'} gives '{record.name}' {record.disk_fps:g} fps, which is not a whole "
                f"multiple of the {self.preset.fps:g} fps this dataset is used at; resample its vertices to "
                f"{self.preset.fps:g} fps (or a multiple) or choose another --fps."
            )

    # ---- views ---------------------------------------------------------------------
    def split(self, name: str) -> "FaceDataset":
        """The sequences of one split (``train``, ``val``, ``test``, ``test_unseen``)."""
        key = canonical_split(name)
        view = object.__new__(FaceDataset)
        view.__dict__.update(self.__dict__)
        view.records = [r for r in self.records if r.split == key]
        return view

    @property
    def subjects(self) -> list[str]:
        return sorted({r.subject for r in self.records})

    @property
    def train_subjects(self) -> list[str]:
        """Subjects of the training split: the speaker list a model conditions on."""
        return sorted({r.subject for r in self.all_records if r.split == "train"})

    @property
    def fps(self) -> float:
        return self.preset.fps

    def topology(self) -> Template:
        """The shared topology with regions; vertices are the first subject's template.
        Faces come from topology.ply/.obj; without one they are empty."""
        faces = np.zeros((0, 3), dtype=np.int64)
        source = None
        for candidate in ("topology.ply", "topology.obj"):
            if (self.root / candidate).is_file():
                source = self.root / candidate
                _, faces = load_mesh(source)
                break
        if not self.templates:
            raise VoxmeshError(f"{self.root / 'templates.pkl'} holds no subject; add each subject's neutral face.")
        vertices = next(iter(self.templates.values()))
        if faces.size and faces.max() >= len(vertices):
            raise VoxmeshError(
                f"{source} has faces on vertex {int(faces.max())} but the templates in templates.pkl have {len(vertices)} "
                "vertices; use the topology the templates were made with."
            )
        for name, indices in {**self.regions, **self.vertex_pairs}.items():
            source = self.root / self.region_sources.get(name, "regions.json")
            check_indices(np.asarray(indices), len(vertices), f"{source}: region '{name}'")
        return Template(vertices, faces, dict(self.regions), dict(self.vertex_pairs))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sequence:
        return self.load(self.records[index])

    def template_of(self, subject: str) -> np.ndarray:
        if subject not in self.templates:
            raise VoxmeshError(
                f"Subject '{subject}' has no template in {self.root / 'templates.pkl'}; add its neutral face."
            )
        return self.templates[subject]

    def load(self, record: SequenceRecord) -> Sequence:
        if record.audio_path is None or record.vertices_path is None:
            missing = "audio in wav/" if record.audio_path is None else "vertices in vertices_npy/"
            raise VoxmeshError(f"Sequence '{record.name}' of {self.root} has no {missing}; add it or remove the other file.")
        template = self.template_of(record.subject)
        vertices = load_vertices(record.vertices_path, template.shape[0])
        step = self.preset.frame_step
        if record.disk_fps is not None:
            step = max(1, int(round(record.disk_fps / self.preset.fps)))
        vertices = vertices[::step]
        return Sequence(
            name=record.name, subject=record.subject, audio=load_audio(record.audio_path),
            vertices=np.ascontiguousarray(vertices), template=template, fps=self.preset.fps,
            split=record.split, sentence=record.sentence, emotion=record.emotion,
            intensity=record.intensity, text=record.text, phonemes=record.phonemes,
        )


def load_vertices(path: Path, num_vertices: int) -> np.ndarray:
    """float32 ``[T, V, 3]`` from a vertices_npy file of ``[T, V*3]`` (or ``[T, V, 3]``)."""
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise VoxmeshError(f"Cannot read vertex file {path} ({type(exc).__name__}); re-save it with numpy.save.") from None
    if array.ndim == 2 and array.shape[1] == num_vertices * 3:
        array = array.reshape(array.shape[0], num_vertices, 3)
    if array.ndim != 3 or array.shape[1:] != (num_vertices, 3):
        raise VoxmeshError(
            f"Vertex file {path} has shape {array.shape} but the template has {num_vertices} vertices; "
            f"save it as [frames, {num_vertices * 3}]."
        )
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise VoxmeshError(f"Vertex file {path} holds {array.dtype} values, not coordinates; save float32 vertices.")
    if not np.all(np.isfinite(array)):
        raise VoxmeshError(f"Vertex file {path} holds NaN or infinite values; re-export the sequence.")
    return array.astype(np.float32, copy=False)


def open_dataset(root: str | Path, preset: str | Preset = "generic", split: str | None = None,
                 fps: float | None = None) -> FaceDataset:
    """Open a dataset folder in the shared layout (see :class:`FaceDataset`)."""
    return FaceDataset(root, preset=preset, split=split, fps=fps)


__all__ = ["FaceDataset", "Phoneme", "Sequence", "SequenceRecord", "load_vertices", "open_dataset"]
