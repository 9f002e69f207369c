"""Datasets as they are downloaded, written in the shared layout (``voxmesh data import``).

VOCASET ships its training data as four files:

```
data_verts.npy         float32 [N, 5023, 3]: every frame of every sequence at 60 fps
raw_audio_fixed.pkl    {subject: {sentence: {"audio": samples, "sample_rate": rate}}}
subj_seq_to_idx.pkl    {subject: {sentence: {frame index: row of data_verts.npy}}}
templates.pkl          {subject: [5023, 3]} neutral faces
```

(the pickles written by Python 2). :func:`import_vocaset` writes ``wav/<subject>_<sentence>.wav``,
``vertices_npy/<subject>_<sentence>.npy`` (float32 ``[T, 5023*3]`` at 60 fps, as on disk),
``templates.pkl``, ``manifest.jsonl``, ``import.json`` (what was found) and, from FLAME's
``FLAME_masks.pkl``, ``regions.json``.

data_verts.npy is read memory-mapped, one sequence at a time, and the pages read are
handed back after each sequence: memory stays at about one sequence (plus the audio
pickle) whatever the file's size.

Everything is checked before anything is written: a missing file, a pickle that asks to
run code, index rows beyond data_verts.npy or a subject without a template stop the
import with one sentence and leave nothing behind.

The output appears whole or not at all, and an interrupted import continues where it
stopped. It is built in ``OUT.partial`` beside ``OUT``, each sequence's two files written
atomically (a file there is complete or absent); a rerun with the same downloaded files
keeps the sequences already there and writes the rest, then ``OUT.partial`` is renamed to
``OUT``. A staging folder made from other files (their sizes or times differ) is started
afresh.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from tqdm import tqdm

from voxmesh.data.check import frames_disagree
from voxmesh.data.presets import sentence_number
from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_folder, atomic_path, read_data_pickle, refuse_existing
from voxmesh.mesh.template import check_indices, load_flame_masks, load_templates, save_regions, save_templates

VOCASET_FILES = ("data_verts.npy", "raw_audio_fixed.pkl", "subj_seq_to_idx.pkl", "templates.pkl")
VOCASET_DISK_FPS = 60.0
IMPORT_REPORT = "import.json"
STAGING_SUFFIX = ".partial"
# The fingerprint of the downloaded files a staging folder was made from.
SOURCE_FILE = ".import-source.json"
# What an imported folder holds: what --overwrite may replace.
IMPORT_ENTRIES = frozenset({"wav", "vertices_npy", "templates.pkl", "regions.json", "manifest.jsonl", IMPORT_REPORT})
STAGING_ENTRIES = IMPORT_ENTRIES | {SOURCE_FILE}
# Integer PCM as soundfile writes it, without rescaling.
PCM_SUBTYPES = {np.dtype(np.int16): "PCM_16", np.dtype(np.int32): "PCM_32", np.dtype(np.uint8): "PCM_U8"}


@dataclass
class PlannedSequence:
    """One sequence to import: its rows of data_verts.npy in frame order ``[T]`` and
    its audio as the pickle holds it."""

    subject: str
    sentence: str
    rows: np.ndarray
    audio: np.ndarray
    sample_rate: int

    @property
    def name(self) -> str:
        return f"{self.subject}_{self.sentence}"

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / float(self.sample_rate)


@dataclass
class ImportReport:
    """What an import found and wrote."""

    source: Path
    out: Path
    subjects: dict[str, int] = field(default_factory=dict)  # subject -> sequences imported
    sentences: int = 0  # distinct sentence ids
    sequences: int = 0
    frames: int = 0  # at 60 fps, as on disk
    seconds: float = 0.0
    written: int = 0
    kept: int = 0  # complete in OUT.partial from an interrupted run
    restarted: bool = False  # OUT.partial was made from other files and started afresh
    regions: list[str] = field(default_factory=list)
    # Sequences whose audio lasts more than a frame longer or shorter than their vertices:
    # imported as they are (`data check` lists them too), never dropped silently.
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    without_audio: list[str] = field(default_factory=list)  # in subj_seq_to_idx.pkl only: not imported
    without_vertices: list[str] = field(default_factory=list)  # in raw_audio_fixed.pkl only: not imported

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source), "subjects": self.subjects, "sentences": self.sentences,
            "sequences": self.sequences, "frames": self.frames, "fps": VOCASET_DISK_FPS,
            "seconds": round(self.seconds, 3), "regions": self.regions, "mismatched": self.mismatched,
            "without_audio": self.without_audio, "without_vertices": self.without_vertices,
        }

    def summary_lines(self) -> list[str]:
        resumed = f" ({self.kept} kept from an interrupted import)" if self.kept else ""
        audio = f"{self.seconds / 60:.1f} min" if self.seconds >= 60 else f"{self.seconds:.1f} s"
        lines = [
            f"imported  {self.sequences} sequences{resumed} to {self.out}",
            f"subjects  {len(self.subjects)}: " + ", ".join(f"{s} ({n})" for s, n in sorted(self.subjects.items())),
            f"sentences {self.sentences} distinct; {self.frames} frames at {VOCASET_DISK_FPS:g} fps, "
            f"{audio} of audio",
            f"regions   {', '.join(self.regions) if self.regions else 'none (give --masks FLAME_masks.pkl for LVE/FDD)'}",
        ]
        if self.restarted:
            lines.append("note      the unfinished import found beside the output came from other files; started afresh")
        for row in self.mismatched:
            lines.append(f"mismatch  {row['name']}: {row['frames']} frames but the audio lasts {row['audio_seconds']:.3f} s, "
                         f"{row['expected_frames']:.1f} frames at {VOCASET_DISK_FPS:g} fps (imported as it is)")
        for name in self.without_audio:
            lines.append(f"skipped   {name}: vertices in subj_seq_to_idx.pkl but no audio in raw_audio_fixed.pkl")
        for name in self.without_vertices:
            lines.append(f"skipped   {name}: audio in raw_audio_fixed.pkl but no frames in subj_seq_to_idx.pkl")
        return lines


# ---- reading the download ------------------------------------------------------------------

def _text(key: Any) -> str:
    """A pickle key as text: Python 2 byte strings are read as latin1 str; bytes kept by
    other writers are decoded the same way."""
    return key.decode("latin1") if isinstance(key, bytes) else str(key)


def _source_files(raw: Path) -> dict[str, Path]:
    if not raw.is_dir():
        raise VoxmeshError(f"VOCASET folder {raw} does not exist; give the folder holding data_verts.npy, "
                           "raw_audio_fixed.pkl, subj_seq_to_idx.pkl and templates.pkl.")
    files = {name: raw / name for name in VOCASET_FILES}
    for name, path in files.items():
        if not path.is_file():
            raise VoxmeshError(f"VOCASET file {path} is missing; download VOCASET's training data and put "
                               f"{', '.join(VOCASET_FILES)} in {raw}.")
    return files


def open_vertex_rows(path: Path) -> np.memmap:
    """data_verts.npy memory-mapped (never read whole): ``[N, V, 3]``."""
    try:
        verts = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise VoxmeshError(f"Cannot read VOCASET file {path} ({type(exc).__name__}: it is truncated or not a .npy "
                           "array); download data_verts.npy again.") from None
    if verts.ndim != 3 or verts.shape[2] != 3 or verts.shape[0] == 0 or verts.dtype.kind != "f":
        raise VoxmeshError(f"VOCASET file {path} holds a {verts.dtype} array of shape {verts.shape}, not float "
                           "[frames, vertices, 3]; download data_verts.npy again.")
    return verts


def _index_rows(path: Path, num_rows: int) -> dict[tuple[str, str], np.ndarray]:
    """``{(subject, sentence): rows [T] in frame order}`` from subj_seq_to_idx.pkl,
    every row checked to lie inside data_verts.npy."""
    store = "a dict of subject to sentence to frame index to row of data_verts.npy"
    index = read_data_pickle(path, "VOCASET index file", store)
    sequences: dict[tuple[str, str], np.ndarray] = {}
    if not isinstance(index, dict):
        raise VoxmeshError(f"VOCASET index file {path} holds a {type(index).__name__}, not {store}; download "
                           "subj_seq_to_idx.pkl again.")
    for subject, sentences in index.items():
        if not isinstance(sentences, dict):
            raise VoxmeshError(f"VOCASET index file {path} holds a {type(sentences).__name__} for subject "
                               f"'{_text(subject)}', not a dict of sentences; download subj_seq_to_idx.pkl again.")
        for sentence, frames in sentences.items():
            try:
                ordered = sorted((int(frame), int(row)) for frame, row in frames.items())
            except (AttributeError, TypeError, ValueError):
                raise VoxmeshError(f"VOCASET index file {path} does not map frame numbers to rows for "
                                   f"{_text(subject)} {_text(sentence)}; download subj_seq_to_idx.pkl again.") from None
            if not ordered:
                continue
            rows = np.asarray([row for _, row in ordered], dtype=np.int64)
            bad = rows[(rows < 0) | (rows >= num_rows)]
            if bad.size:
                frame = ordered[int(np.flatnonzero((rows < 0) | (rows >= num_rows))[0])][0]
                raise VoxmeshError(f"VOCASET index file {path} maps {_text(subject)} {_text(sentence)} frame {frame} "
                                   f"to row {int(bad[0])}, but data_verts.npy has {num_rows} rows; both files must "
                                   "come from one VOCASET download, so download them again.")
            sequences[(_text(subject), _text(sentence))] = rows
    return sequences


def _audio_entries(path: Path) -> dict[tuple[str, str], tuple[np.ndarray, int]]:
    """``{(subject, sentence): (samples, sample_rate)}`` from raw_audio_fixed.pkl."""
    store = "a dict of subject to sentence to {'audio': samples, 'sample_rate': rate}"
    raw = read_data_pickle(path, "VOCASET audio file", store)
    if not isinstance(raw, dict):
        raise VoxmeshError(f"VOCASET audio file {path} holds a {type(raw).__name__}, not {store}; download "
                           "raw_audio_fixed.pkl again.")
    entries = {}
    for subject, sentences in raw.items():
        if not isinstance(sentences, dict):
            raise VoxmeshError(f"VOCASET audio file {path} holds a {type(sentences).__name__} for subject "
                               f"'{_text(subject)}', not a dict of sentences; download raw_audio_fixed.pkl again.")
        for sentence, entry in sentences.items():
            fields = {_text(k): v for k, v in entry.items()} if isinstance(entry, dict) else {}
            samples = np.asarray(fields.get("audio", []))
            rate = fields.get("sample_rate")
            if (samples.dtype.kind not in "fiu" or samples.ndim not in (1, 2) or samples.shape[0] == 0
                    or isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0):
                raise VoxmeshError(f"VOCASET audio file {path} holds no samples and sample rate for {_text(subject)} "
                                   f"{_text(sentence)}; download raw_audio_fixed.pkl again.")
            entries[(_text(subject), _text(sentence))] = (samples, int(rate))
    return entries


def plan_vocaset(raw_dir: str | Path, masks: str | Path | None = None) -> tuple[list[PlannedSequence], dict, dict, ImportReport]:
    """Read and check the download: the sequences to write, the templates, the regions
    (``{}`` without ``masks``) and a report of what was found. Nothing is written."""
    raw = Path(raw_dir)
    files = _source_files(raw)
    verts = open_vertex_rows(files["data_verts.npy"])
    num_rows, num_vertices = verts.shape[0], verts.shape[1]
    del verts
    index = _index_rows(files["subj_seq_to_idx.pkl"], num_rows)
    templates = load_templates(files["templates.pkl"])
    audio = _audio_entries(files["raw_audio_fixed.pkl"])
    regions: dict[str, np.ndarray] = {}
    if masks is not None:
        if not Path(masks).is_file():
            raise VoxmeshError(f"Masks file {masks} does not exist; give the path of FLAME's FLAME_masks.pkl.")
        regions = load_flame_masks(masks)
        for name, indices in regions.items():
            check_indices(indices, num_vertices, f"Masks file {masks}: region '{name}'")
    report = ImportReport(source=raw, out=Path())
    planned = []
    for (subject, sentence), rows in sorted(index.items()):
        if (subject, sentence) not in audio:
            report.without_audio.append(f"{subject}_{sentence}")
            continue
        template = templates.get(subject)
        if template is None:
            raise VoxmeshError(f"VOCASET templates file {files['templates.pkl']} has no template for subject "
                               f"'{subject}'; download templates.pkl again.")
        if template.shape[0] != num_vertices:
            raise VoxmeshError(f"VOCASET templates file {files['templates.pkl']} gives '{subject}' {template.shape[0]} "
                               f"vertices but data_verts.npy has {num_vertices}; download both again.")
        samples, rate = audio[(subject, sentence)]
        planned.append(PlannedSequence(subject, sentence, rows, samples, rate))
    report.without_vertices = sorted(f"{s}_{n}" for s, n in audio if (s, n) not in index)
    for sequence in planned:
        report.subjects[sequence.subject] = report.subjects.get(sequence.subject, 0) + 1
        report.frames += len(sequence.rows)
        report.seconds += sequence.seconds
        if frames_disagree(len(sequence.rows), sequence.seconds, VOCASET_DISK_FPS):
            report.mismatched.append({"name": sequence.name, "frames": len(sequence.rows),
                                      "audio_seconds": round(sequence.seconds, 4),
                                      "expected_frames": round(sequence.seconds * VOCASET_DISK_FPS, 2)})
    report.sequences = len(planned)
    report.sentences = len({s.sentence for s in planned})
    report.regions = sorted(regions)
    if not planned:
        raise VoxmeshError(f"VOCASET folder {raw} holds no sequence with both frames in subj_seq_to_idx.pkl and audio "
                           "in raw_audio_fixed.pkl; download both again.")
    unnamed = [s.name for s in planned if sentence_number(s.sentence) is None]
    if unnamed:
        raise VoxmeshError(f"VOCASET sequence '{unnamed[0]}' has no sentence number (sentence01-sentence40), so the "
                           "standard splits cannot place it; keep VOCASET's names.")
    return planned, templates, regions, report


# ---- writing ---------------------------------------------------------------------------------

def _fingerprint(raw: Path, masks: str | Path | None) -> dict[str, Any]:
    """Names, sizes and modification times of the downloaded files: a staging folder
    made from other files is not continued."""
    paths = [raw / name for name in VOCASET_FILES] + ([Path(masks)] if masks is not None else [])
    return {"format": "vocaset", "files": {str(p.resolve()): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}}


def _open_staging(staging: Path, fingerprint: dict[str, Any]) -> bool:
    """Make or continue the staging folder; True when an old one was started afresh."""
    restarted = False
    if staging.exists() or staging.is_symlink():
        # Only a folder of what this import writes is continued or cleared.
        refuse_existing(staging, overwrite=True, folder_of=STAGING_ENTRIES.__contains__)
        try:
            same = json.loads((staging / SOURCE_FILE).read_text()) == fingerprint
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(staging)
            restarted = True
    for folder in (staging / "wav", staging / "vertices_npy"):
        folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(staging / SOURCE_FILE) as tmp:
        tmp.write_text(json.dumps(fingerprint))
    return restarted


def _complete(sequence: PlannedSequence, wav: Path, npy: Path, values_per_frame: int) -> bool:
    """Whether an earlier run wrote both files of ``sequence`` (each written atomically,
    so a file that is there is whole; its header is checked all the same)."""
    if not (wav.is_file() and npy.is_file()):
        return False
    try:
        shape = np.load(npy, mmap_mode="r", allow_pickle=False).shape
        return shape == (len(sequence.rows), values_per_frame) and soundfile.info(str(wav)).frames == len(sequence.audio)
    except Exception:
        return False


def _release(verts: np.memmap, rows: np.ndarray) -> None:
    """Hand the pages of data_verts.npy that ``rows`` were read from back to the OS, so
    the import's memory does not grow with the file (the pages stay in the page cache)."""
    handle = getattr(verts, "_mmap", None)
    if handle is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    # numpy maps from the allocation boundary before the array's first byte.
    base = verts.offset % mmap.ALLOCATIONGRANULARITY
    start = base + int(rows.min()) * verts.strides[0]
    stop = min(len(handle), base + (int(rows.max()) + 1) * verts.strides[0])
    start -= start % mmap.PAGESIZE
    handle.madvise(mmap.MADV_DONTNEED, start, stop - start)


def _write_audio(path: Path, samples: np.ndarray, rate: int) -> None:
    """The samples as they are: integer PCM at its own width, float samples as 32-bit float."""
    subtype = PCM_SUBTYPES.get(samples.dtype)
    if subtype is None:
        samples, subtype = samples.astype(np.float32), "FLOAT"
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), samples, rate, subtype=subtype, format="WAV")


def import_vocaset(raw_dir: str | Path, out_dir: str | Path, masks: str | Path | None = None,
                   overwrite: bool = False, progress: bool = False) -> ImportReport:
    """Write VOCASET as downloaded (``raw_dir``) to ``out_dir`` in the shared layout and
    return what was found. ``masks``: FLAME_masks.pkl, written as regions.json for the
    metrics. Resumable and atomic (see the module's notes)."""
    raw, out = Path(raw_dir), Path(out_dir)
    if not (out.is_dir() and not any(out.iterdir())):  # an empty folder is taken without asking
        refuse_existing(out, overwrite=overwrite, instead="choose a new folder", folder_of=IMPORT_ENTRIES.__contains__)
    planned, templates, regions, report = plan_vocaset(raw, masks)
    report.out = out
    staging = out.parent / (out.name + STAGING_SUFFIX)
    report.restarted = _open_staging(staging, _fingerprint(raw, masks))
    verts = open_vertex_rows(raw / "data_verts.npy")
    values_per_frame = verts.shape[1] * 3
    for sequence in tqdm(planned, desc="importing VOCASET", unit="seq", disable=not progress):
        wav = staging / "wav" / f"{sequence.name}.wav"
        npy = staging / "vertices_npy" / f"{sequence.name}.npy"
        if _complete(sequence, wav, npy, values_per_frame):
            report.kept += 1
            continue
        rows = sequence.rows
        first = int(rows[0])
        if np.array_equal(rows, np.arange(first, first + len(rows))):
            frames = verts[first:first + len(rows)]  # one contiguous read
        else:
            frames = verts[rows]
        frames = np.asarray(frames, dtype=np.float32).reshape(len(rows), values_per_frame)
        with atomic_path(npy) as tmp, open(tmp, "wb") as handle:
            np.save(handle, frames)
        _write_audio(wav, sequence.audio, sequence.sample_rate)
        report.written += 1
        del frames
        _release(verts, rows)
    del verts
    save_templates(staging / "templates.pkl", templates)
    if regions:
        save_regions(staging / "regions.json", regions)
    manifest = "".join(json.dumps({"name": s.name, "subject": s.subject, "sentence": sentence_number(s.sentence),
                                   "fps": VOCASET_DISK_FPS}) + "\n" for s in planned)
    with atomic_path(staging / "manifest.jsonl") as tmp:
        tmp.write_text(manifest)
    with atomic_path(staging / IMPORT_REPORT) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=1))
    (staging / SOURCE_FILE).unlink()
    # The finished staging folder takes the output's place in one rename (an older
    # output, with --overwrite, is moved aside first).
    with atomic_folder(out, replace=overwrite) as final:
        os.rename(staging, final)
    return report


__all__ = ["ImportReport", "PlannedSequence", "import_vocaset", "open_vertex_rows", "plan_vocaset"]
