"""A corpus of bad inputs, written by the tests themselves.

Every case either fails the way a user error must, or works because the input is only
unusual. Failing means: exit status 2 through the CLI (1 with a `problem:` line for
`voxmesh data check`, which lists problems rather than stopping at one) or a
VoxmeshError through the Python API; one line that names the offending file or value
and, after a semicolon, what to do; no traceback; and no output or temporary file left
behind. Unusual but valid inputs (8 kHz, 96 kHz, six channels, a wav named .mp3, a
non-manifold topology, mixed frame rates the manifest declares) must work.

One tiny FaceFormer is trained for the module (a few seconds on CPU).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import trimesh
import yaml
from miniature import tiny_topology, write_dataset
from test_trainer import tiny_config, write_run_dataset
from typer.testing import CliRunner

import voxmesh
from voxmesh.audio.io import load_audio
from voxmesh.cli import app
from voxmesh.data import FaceDataset, check_dataset
from voxmesh.errors import VoxmeshError
from voxmesh.mesh import Template, load_face, load_mesh, load_templates, save_mesh, save_templates, spiral_indices
from voxmesh.train.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")
runner = CliRunner()


class LeftBehind(AssertionError):
    """A failed command left output (or a temporary file) behind."""


# ---- what every failure must look like ---------------------------------------------------

def one_sentence(message: str) -> None:
    assert "\n" not in message and message.strip() == message, message
    assert message.endswith("."), message
    assert "; " in message, message  # what is wrong; what to do
    assert "Traceback" not in message and not re.search(r"\.\s+[A-Z]", message), message


def error_line(result, *names: object) -> str:
    """The single `error: ...` line of a CLI user error (exit 2), naming each of ``names``."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"uncaught {type(result.exception).__name__}: {result.exception}"
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    message = lines[0][len("error: "):]
    one_sentence(message)
    for name in names:
        assert str(name) in message, message
    return message


def api_error(call, *names: object) -> str:
    with pytest.raises(VoxmeshError) as info:
        call()
    message = str(info.value)
    one_sentence(message)
    for name in names:
        assert str(name) in message, message
    return message


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def nothing_left(folder: Path, before: list[str]) -> None:
    """No new file or folder in ``folder`` (outputs, temporary files, hidden partials)."""
    new = sorted(set(listing(folder)) - set(before))
    if new:
        raise LeftBehind(f"left behind in {folder}: {new}")


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


# ---- shared material -------------------------------------------------------------------------

def tone(seconds: float, rate: int = 16000, channels: int = 1, frequency: float = 180.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.2 * np.sin(2 * np.pi * frequency * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    if channels == 1:
        return wave.astype(np.float32)
    return np.stack([wave * (1 + k) / channels for k in range(channels)], axis=1).astype(np.float32)


def write_wav(path: Path, seconds: float = 0.5, rate: int = 16000, channels: int = 1, **kwargs) -> Path:
    soundfile.write(path, tone(seconds, rate, channels), rate, **kwargs)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_run_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "run"
    train(tiny_config(epochs=2), dataset, folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def face(run) -> np.ndarray:
    """The model's neutral face [42, 3], in metres."""
    return voxmesh.load_model(run).template.vertices.copy()


def animate_fails(run: Path, folder: Path, audio: Path, *names: object, template: Path | None = None,
                  output: str = "out.npy") -> str:
    before = listing(folder)
    args = ["animate", audio, "-o", folder / output, "--model", run]
    if template is not None:
        args += ["--template", template]
    message = error_line(cli(*args), *names)
    nothing_left(folder, before)
    return message


# ---- audio -----------------------------------------------------------------------------------

def pcm_wav(path: Path, seconds: float = 0.5) -> bytes:
    write_wav(path, seconds, subtype="PCM_16")
    return path.read_bytes()


def make_empty(path: Path) -> None:
    path.write_bytes(b"")


def make_zero_length(path: Path) -> None:
    soundfile.write(path, np.zeros(0, np.float32), 16000)


def make_header_only(path: Path) -> None:
    path.write_bytes(pcm_wav(path)[:44])  # the header of a real file, its samples gone


def make_truncated(path: Path) -> None:
    data = pcm_wav(path)
    path.write_bytes(data[: len(data) // 3])


def make_cut_in_header(path: Path) -> None:
    path.write_bytes(pcm_wav(path)[:30])


def make_unsupported_codec(path: Path) -> None:
    data = bytearray(pcm_wav(path))
    data[20:22] = struct.pack("<H", 0x0055)  # format tag: MPEG layer 3 inside RIFF
    path.write_bytes(bytes(data))


def make_garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 6000, dtype=np.uint8).tobytes())


def make_text(path: Path) -> None:
    path.write_text("this is not a recording\n")


def make_nan(path: Path) -> None:
    samples = tone(0.5)
    samples[1000:1010] = np.nan
    soundfile.write(path, samples, 16000, subtype="FLOAT")


def make_infinite(path: Path) -> None:
    samples = tone(0.5)
    samples[5] = np.inf
    soundfile.write(path, samples, 16000, subtype="FLOAT")


BAD_AUDIO = {
    "empty_file": (make_empty, "Cannot read audio file"),
    "zero_length": (make_zero_length, "holds no samples"),
    "header_only": (make_header_only, "is truncated"),
    "truncated": (make_truncated, "is truncated"),
    "cut_in_header": (make_cut_in_header, "Cannot read audio file"),
    "unsupported_codec": (make_unsupported_codec, "Cannot read audio file"),
    "garbage_bytes": (make_garbage, "Cannot read audio file"),
    "text_named_wav": (make_text, "Cannot read audio file"),
    "nan_samples": (make_nan, "NaN or infinite"),
    "infinite_samples": (make_infinite, "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(BAD_AUDIO))
def test_bad_audio_through_the_loader(tmp_path, case):
    make, words = BAD_AUDIO[case]
    path = tmp_path / "speech.wav"
    make(path)
    assert words in api_error(lambda: load_audio(path), path)


@pytest.mark.parametrize("case", ["empty_file", "zero_length", "header_only", "truncated", "unsupported_codec",
                                  "garbage_bytes", "nan_samples"])
def test_bad_audio_through_animate(run, tmp_path, case):
    make, words = BAD_AUDIO[case]
    path = tmp_path / "speech.wav"
    make(path)
    assert words in animate_fails(run, tmp_path, path, path)


def test_missing_audio_through_animate(run, tmp_path):
    assert "does not exist" in animate_fails(run, tmp_path, tmp_path / "nowhere.wav", tmp_path / "nowhere.wav")


@pytest.mark.parametrize("rate, channels", [(8000, 1), (96000, 1), (16000, 6), (44100, 6)])
def test_unusual_rates_and_channels_work(run, tmp_path, rate, channels):
    path = write_wav(tmp_path / "speech.wav", 0.5, rate, channels)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.shape == (8000,) and np.isfinite(samples).all()
    if rate == 16000:  # six channels mix to their mean
        np.testing.assert_allclose(samples, tone(0.5, rate, channels).mean(axis=1), atol=1e-4)  # 16-bit file
    result = cli("animate", path, "-o", tmp_path / "out.npy", "--model", run)
    assert result.exit_code == 0, result.output
    array = np.load(tmp_path / "out.npy")
    assert array.shape == (15, 42, 3) and np.isfinite(array).all()


@pytest.mark.parametrize("content, name", [("WAV", "speech.mp3"), ("MP3", "speech.wav"), ("OGG", "speech.wav")])
def test_wrong_extension_is_read_by_content(run, tmp_path, content, name):
    """The decoder looks at the bytes, not the name: a wav called .mp3 or an mp3/ogg
    called .wav loads as what it is."""
    source = tmp_path / f"source.{content.lower()}"
    soundfile.write(source, tone(1.0), 16000, format=content)
    path = tmp_path / name
    source.rename(path)
    samples = load_audio(path)
    assert samples.shape == (16000,) and np.isfinite(samples).all()
    # lossy codecs change the waveform, not its loudness
    assert abs(np.sqrt(np.mean(samples**2)) - np.sqrt(np.mean(tone(1.0) ** 2))) < 0.02
    result = cli("animate", path, "-o", tmp_path / "out.npy", "--model", run)
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "out.npy").shape == (30, 42, 3)


def silent_wav(path: Path, seconds: int, rate: int) -> Path:
    """A 16-bit mono wav of silence written as a header plus a sparse file: instant, and
    no disk blocks for the zeros."""
    data_bytes = seconds * rate * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(len(header) + data_bytes)
    return path


# Run in a child process, whose peak resident memory (VmHWM) belongs to this load alone.
MEASURE_LOAD = """
import json, sys
import numpy as np
from voxmesh.audio.io import load_audio

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key))

before = status("VmRSS:")
samples = load_audio(sys.argv[1])
# VmHWM, this process image's own peak: ru_maxrss keeps the forking parent's high-water mark
# across exec, so a large test process (hundreds of MB after other tests) showed as this load's.
peak = status("VmHWM:")
print(json.dumps({"extra": peak - before, "length": len(samples), "bytes": samples.nbytes,
                  "dtype": str(samples.dtype), "silent": not np.any(samples)}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_two_hours_of_silence_load_in_bounded_memory(tmp_path):
    """2 h at 8 kHz (115 MB): the loader gives 2 h at 16 kHz, all zeros, holding no
    more than the decoded samples (float32) and the result at once (before: one more
    copy of each, twice the memory)."""
    import subprocess
    import sys

    path = silent_wav(tmp_path / "long.wav", 2 * 3600, 8000)
    done = subprocess.run([sys.executable, "-c", MEASURE_LOAD, str(path)], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["length"] == 2 * 3600 * 16000 and result["dtype"] == "float32" and result["silent"]
    decoded = 2 * 3600 * 8000 * 4
    assert result["extra"] < 1.25 * (decoded + result["bytes"]), f"{result['extra'] / 2**20:.0f} MiB"


# ---- meshes and templates ----------------------------------------------------------------------

def obj_text(vertices: np.ndarray, faces: np.ndarray) -> str:
    lines = [f"v {float(x)!r} {float(y)!r} {float(z)!r}" for x, y, z in np.asarray(vertices, np.float64)]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    return "\n".join(lines) + "\n"


def test_template_of_wrong_vertex_count(run, tmp_path, face):
    path = tmp_path / "face.npy"
    np.save(path, face[:30])
    message = animate_fails(run, tmp_path, write_wav(tmp_path / "a.wav"), path, template=path)
    assert "has 30 vertices" in message and "42" in message


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_mesh_with_faces_out_of_range(tmp_path, suffix):
    vertices, faces = tiny_topology()
    faces = faces.copy()
    faces[5, 1] = 99
    path = tmp_path / f"face{suffix}"
    if suffix == ".obj":
        path.write_text(obj_text(vertices, faces))
    else:
        trimesh.Trimesh(vertices, faces, process=False).export(path)
    api_error(lambda: load_mesh(path), path)
    api_error(lambda: Template.load(path), path)


def test_template_faces_out_of_range_through_animate(run, tmp_path, face):
    _, faces = tiny_topology()
    faces = faces.copy()
    faces[0, 0] = 500
    path = tmp_path / "face.obj"
    path.write_text(obj_text(face, faces))
    animate_fails(run, tmp_path, write_wav(tmp_path / "a.wav"), path, template=path)


def test_non_manifold_topology_works(tmp_path):
    """An edge shared by three faces: loaders keep it and spirals still fill every row;
    the dataset check has nothing against it."""
    vertices, faces = tiny_topology()
    a, b, _ = faces[0]
    extra = np.array([[a, b, len(vertices)]])
    vertices = np.vstack([vertices, [[0.0, 0.0, 0.15]]]).astype(np.float32)
    faces = np.vstack([faces, extra])
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    assert np.unique(edges, axis=0, return_counts=True)[1].max() == 3  # really non-manifold
    save_mesh(tmp_path / "nm.ply", vertices, faces)
    template = Template.load(tmp_path / "nm.ply")
    assert template.num_vertices == 43 and len(template.faces) == 81
    spirals = spiral_indices(template.faces, 9, vertices=template.vertices, cache=False)
    assert spirals.shape == (43, 9) and spirals.min() >= 0

    root = write_dataset(tmp_path / "data", {"a": ["01"], "b": ["01"]})
    save_templates(root / "templates.pkl", {s: vertices for s in ("a", "b")})
    for npy in (root / "vertices_npy").iterdir():
        np.save(npy, np.tile(vertices.reshape(1, -1), (15, 1)))
    save_mesh(root / "topology.ply", vertices, faces)
    assert check_dataset(root).ok


@pytest.mark.parametrize("suffix", [".npy", ".obj"])
def test_template_with_nan_vertices(run, tmp_path, face, suffix):
    bad = face.copy()
    bad[7, 2] = np.nan
    path = tmp_path / f"face{suffix}"
    if suffix == ".npy":
        np.save(path, bad)
    else:
        path.write_text(obj_text(bad, tiny_topology()[1]))
    message = animate_fails(run, tmp_path, write_wav(tmp_path / "a.wav"), path, template=path)
    assert "NaN" in message


@pytest.mark.parametrize("suffix", [".npy", ".ply"])
def test_template_in_millimetres_through_animate(run, tmp_path, face, suffix):
    path = tmp_path / f"face{suffix}"
    if suffix == ".npy":
        np.save(path, face * 1000)
    else:
        save_mesh(path, face * 1000, tiny_topology()[1])
    message = animate_fails(run, tmp_path, write_wav(tmp_path / "a.wav"), path, template=path)
    assert "millimetres" in message and "divide" in message and "1000" in message


def test_template_in_millimetres_through_the_loaders(tmp_path, face):
    vertices, faces = tiny_topology()
    save_mesh(tmp_path / "mm.obj", vertices * 1000, faces)
    message = api_error(lambda: Template.load(tmp_path / "mm.obj"), tmp_path / "mm.obj")
    assert "millimetres" in message and "1000" in message
    np.save(tmp_path / "cm.npy", face * 100)
    message = api_error(lambda: load_face(tmp_path / "cm.npy", reference=face), tmp_path / "cm.npy")
    assert "centimetres" in message and "100" in message
    np.save(tmp_path / "ok.npy", face * 1.5)  # a larger face in metres is fine
    np.testing.assert_allclose(load_face(tmp_path / "ok.npy", reference=face), face * 1.5, rtol=1e-6)


def test_templates_pkl_in_millimetres_is_reported_by_data_check(tmp_path):
    root = write_dataset(tmp_path / "data", {"a": ["01"], "b": ["01"]})
    templates = load_templates(root / "templates.pkl")
    save_templates(root / "templates.pkl", {**templates, "b": templates["b"] * 1000})
    problems = check_fails(root, 1)
    assert problems[0].startswith("templates.pkl: subject 'b'") and "millimetres" in problems[0]
    assert "divide the coordinates in templates.pkl and vertices_npy by 1000" in problems[0]


@pytest.mark.parametrize("content", ["truncated", "garbage", "objects", "strings"])
def test_unreadable_template_npy(run, tmp_path, face, content):
    path = tmp_path / "face.npy"
    if content == "truncated":
        np.save(path, face)
        path.write_bytes(path.read_bytes()[:300])
    elif content == "garbage":
        path.write_bytes(b"\x93NUMPY garbage")
    elif content == "objects":
        np.save(path, np.array([{"v": 1}], dtype=object), allow_pickle=True)
    else:
        np.save(path, np.array(["a", "b", "c"]))
    animate_fails(run, tmp_path, write_wav(tmp_path / "a.wav"), path, template=path)


@pytest.mark.parametrize("content", ["truncated", "millimetres"])
def test_bad_template_through_the_python_api(run, tmp_path, face, content):
    path = tmp_path / "face.npy"
    np.save(path, face * (1000 if content == "millimetres" else 1))
    if content == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    wav = write_wav(tmp_path / "a.wav")
    api_error(lambda: voxmesh.load_model(run).animate(wav, template=path), path)


@pytest.mark.parametrize("content", ["nan", "ragged"])
def test_bad_templates_pkl(tmp_path, content):
    path = tmp_path / "templates.pkl"
    bad = np.full((10, 3), np.nan, np.float32) if content == "nan" else np.zeros(10, np.float32)
    with open(path, "wb") as fh:
        pickle.dump({"a": np.zeros((10, 3), np.float32), "b": bad}, fh)
    assert "'b'" in api_error(lambda: load_templates(path), path)


def test_topology_of_another_vertex_count(tmp_path):
    root = write_dataset(tmp_path / "data", {"a": ["01"], "b": ["01"]})
    vertices, faces = tiny_topology(2)  # 162 vertices; templates have 42
    save_mesh(root / "topology.ply", vertices, faces)
    api_error(lambda: FaceDataset(root).topology(), root / "topology.ply")
    assert str(root / "topology.ply") in check_fails(root, 1)[0]


def test_regions_out_of_range(tmp_path):
    root = write_dataset(tmp_path / "data", {"a": ["01"], "b": ["01"]})
    (root / "regions.json").write_text(json.dumps({"lips": [0, 1, 500], "inner_lip_pairs": [[0, 3]]}))
    message = check_fails(root, 1)[0]
    assert str(root / "regions.json") in message and "lips" in message and "500" in message


# ---- datasets ---------------------------------------------------------------------------------

SUBJECTS = {f"s{i}": ["a0", "a1", "a2"] for i in range(3)}
SPLIT_OF = {"a0": "train", "a1": "val", "a2": "test"}


def manifest_rows() -> list[dict]:
    return [{"name": f"{s}_{q}", "split": SPLIT_OF[q]} for s, seqs in SUBJECTS.items() for q in seqs]


def write_manifest(root: Path, rows: list[dict]) -> None:
    (root / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def check_fails(root: Path, problems: int) -> list[str]:
    """`voxmesh data check` lists ``problems`` problems, one a line, exit 1, and writes nothing."""
    before = listing(root)
    result = cli("data", "check", root)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"uncaught {type(result.exception).__name__}: {result.exception}"
    assert result.exit_code == 1, result.output
    lines = [line[len("problem: "):] for line in result.output.splitlines() if line.startswith("problem: ")]
    assert len(lines) == problems, result.output
    for line in lines:
        assert "Traceback" not in line and line.endswith("."), line
    nothing_left(root, before)
    return lines


def damage_duplicate_manifest_name(root: Path) -> None:
    write_manifest(root, manifest_rows() + [{"name": "s0_a0", "split": "test"}])


def damage_audio_twice(root: Path) -> None:
    write_wav(root / "wav" / "s0_a0.flac", 0.5, format="FLAC")


def damage_manifest_frame_rate(root: Path) -> None:
    rows = manifest_rows()
    rows[0]["fps"] = 25  # not a multiple of the 30 fps the dataset is used at
    write_manifest(root, rows)


def damage_subject_without_template(root: Path) -> None:
    for folder, suffix in (("wav", ".wav"), ("vertices_npy", ".npy")):
        (root / folder / f"s0_a0{suffix}").rename(root / folder / f"zz_a0{suffix}")
    rows = manifest_rows()
    rows[0]["name"] = "zz_a0"
    write_manifest(root, rows)


def damage_truncated_npy(root: Path) -> None:
    path = root / "vertices_npy" / "s0_a0.npy"
    path.write_bytes(path.read_bytes()[:400])


def damage_wav_missing(root: Path) -> None:
    (root / "wav" / "s0_a0.wav").unlink()


def damage_truncated_wav(root: Path) -> None:
    path = root / "wav" / "s0_a0.wav"
    path.write_bytes(path.read_bytes()[:3000])


def damage_manifest_not_json(root: Path) -> None:
    (root / "manifest.jsonl").write_text('{"name": "s0_a0", "split": "train"\n')


def damage_manifest_row_not_object(root: Path) -> None:
    (root / "manifest.jsonl").write_text('["s0_a0", "train"]\n')


def damage_manifest_not_text(root: Path) -> None:
    (root / "manifest.jsonl").write_bytes(b"\xff\xfe\x00\x01 binary")


def damage_manifest_unknown_split(root: Path) -> None:
    rows = manifest_rows()
    rows[4]["split"] = "training"
    write_manifest(root, rows)


def damage_nan_vertices(root: Path) -> None:
    path = root / "vertices_npy" / "s0_a0.npy"
    array = np.load(path)
    array[2, 7] = np.nan
    np.save(path, array)


def damage_vertex_count(root: Path) -> None:
    np.save(root / "vertices_npy" / "s0_a0.npy", np.zeros((15, 40 * 3), np.float32))


def damage_templates_missing(root: Path) -> None:
    (root / "templates.pkl").unlink()


def damage_templates_nan(root: Path) -> None:
    templates = load_templates(root / "templates.pkl")
    templates["s1"][0, 0] = np.nan
    with open(root / "templates.pkl", "wb") as fh:
        pickle.dump(templates, fh)


def damage_topology_faces(root: Path) -> None:
    vertices, faces = tiny_topology()
    faces = faces.copy()
    faces[3, 2] = 99
    trimesh.Trimesh(vertices, faces, process=False).export(root / "topology.ply")


# name -> (damage, the file or value each message must name (relative to the dataset), words)
DATASET_FAULTS = {
    "duplicate_manifest_name": (damage_duplicate_manifest_name, "manifest.jsonl", "s0_a0"),
    "audio_twice": (damage_audio_twice, "wav", "s0_a0.flac"),
    "manifest_frame_rate": (damage_manifest_frame_rate, "manifest.jsonl", "25 fps"),
    "subject_without_template": (damage_subject_without_template, "templates.pkl", "'zz'"),
    "truncated_npy": (damage_truncated_npy, "s0_a0.npy", "s0_a0.npy"),
    "wav_missing": (damage_wav_missing, "s0_a0", "audio"),
    "truncated_wav": (damage_truncated_wav, "s0_a0.wav", "truncated"),
    "manifest_not_json": (damage_manifest_not_json, "manifest.jsonl", "not valid JSON"),
    "manifest_row_not_object": (damage_manifest_row_not_object, "manifest.jsonl", "not an object"),
    "manifest_not_text": (damage_manifest_not_text, "manifest.jsonl", "UTF-8"),
    "manifest_unknown_split": (damage_manifest_unknown_split, "manifest.jsonl", "'training'"),
    "nan_vertices": (damage_nan_vertices, "s0_a0.npy", "NaN"),
    "vertex_count": (damage_vertex_count, "s0_a0.npy", "42"),
    "templates_missing": (damage_templates_missing, "templates.pkl", "does not exist"),
    "templates_nan": (damage_templates_nan, "templates.pkl", "'s1'"),
    "topology_faces": (damage_topology_faces, "topology.ply", "99"),
}


def damaged(tmp_path: Path, fault: str) -> Path:
    root = write_dataset(tmp_path / "data", SUBJECTS, seconds=0.5, sample_rate=16000, manifest=manifest_rows())
    DATASET_FAULTS[fault][0](root)
    return root


@pytest.mark.parametrize("fault", sorted(DATASET_FAULTS))
def test_data_check_reports_the_fault(tmp_path, fault):
    _, names, words = DATASET_FAULTS[fault]
    problems = check_fails(damaged(tmp_path, fault), 1)
    assert names in problems[0] and words in problems[0], problems


def test_data_check_reports_an_undeclared_frame_rate(tmp_path):
    root = write_dataset(tmp_path / "data", SUBJECTS, seconds=0.5, sample_rate=16000, manifest=manifest_rows())
    path = root / "vertices_npy" / "s1_a0.npy"
    np.save(path, np.repeat(np.load(path), 2, axis=0))  # 60 fps in a 30 fps dataset
    problem = check_fails(root, 1)[0]
    assert problem.startswith("vertices_npy/s1_a0.npy: 30 frames") and "15.0 frames at 30 fps" in problem


def test_frame_rates_the_manifest_declares_work(tmp_path):
    root = write_dataset(tmp_path / "data", SUBJECTS, seconds=0.5, sample_rate=16000, manifest=manifest_rows())
    rows = manifest_rows()
    rows[0]["fps"] = 60
    write_manifest(root, rows)
    path = root / "vertices_npy" / "s0_a0.npy"
    np.save(path, np.repeat(np.load(path), 2, axis=0))
    assert check_dataset(root).ok
    dataset = FaceDataset(root)
    sequence = dataset.load(next(r for r in dataset.all_records if r.name == "s0_a0"))
    assert sequence.vertices.shape == (15, 42, 3) and sequence.fps == 30.0


@pytest.mark.parametrize("fault", sorted(DATASET_FAULTS))
def test_train_refuses_the_fault_and_writes_nothing(tmp_path, fault):
    _, names, words = DATASET_FAULTS[fault]
    root = damaged(tmp_path, fault)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(epochs=1).to_dict(), sort_keys=False))
    before = listing(tmp_path)
    message = error_line(cli("train", config, "--data", root, "--out", tmp_path / "run"), names)
    assert words in message, message
    nothing_left(tmp_path, before)


# ---- checkpoints ------------------------------------------------------------------------------

def edit_meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / "model.json").read_text())
    meta.update(changes)
    (folder / "model.json").write_text(json.dumps(meta))


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def truncate_weights_unsized(folder: Path) -> None:
    cut_in_half(folder / "model.safetensors")
    meta = json.loads((folder / "model.json").read_text())
    meta.pop("weights_bytes")
    (folder / "model.json").write_text(json.dumps(meta))


def swap_topology(folder: Path) -> None:
    from safetensors.torch import save_file

    vertices, faces = tiny_topology(2)
    save_file({"faces": torch.from_numpy(faces), "neutral": torch.from_numpy(vertices)},
              str(folder / "topology.safetensors"))


def swap_topology_unverified(folder: Path) -> None:
    """As a checkpoint written before model.json recorded checksums."""
    swap_topology(folder)
    meta = json.loads((folder / "model.json").read_text())
    meta.pop("sha256", None)
    (folder / "model.json").write_text(json.dumps(meta))


CHECKPOINT_FAULTS = {
    "truncated_weights": (lambda f: cut_in_half(f / "model.safetensors"), "model.safetensors", "truncated"),
    "truncated_weights_unsized": (truncate_weights_unsized, "model.safetensors", "truncated"),
    "truncated_topology": (lambda f: cut_in_half(f / "topology.safetensors"), "topology.safetensors", "truncated"),
    "another_methods_config": (
        lambda f: edit_meta(f, config={"vq_hidden_dim": 16, "num_codes": 16, "code_dim": 8}), "model.json", "config"),
    "another_method": (lambda f: edit_meta(f, method="codetalker"), "model.json", "codetalker"),
    "unknown_method": (lambda f: edit_meta(f, method="nosuch"), "", "'nosuch'"),
    "newer_format": (lambda f: edit_meta(f, format_version=99, voxmesh_version="9.0"), "", "upgrade voxmesh"),
    "model_json_missing": (lambda f: (f / "model.json").unlink(), "", "model"),
    "model_json_not_json": (lambda f: (f / "model.json").write_text("{oops"), "model.json", "not valid JSON"),
    "weights_missing": (lambda f: (f / "model.safetensors").unlink(), "", "model.safetensors"),
    "another_topology_file": (swap_topology, "topology.safetensors", "topology"),
    "another_topology_file_unverified": (swap_topology_unverified, "topology.safetensors", "topology"),
}


@pytest.mark.parametrize("fault, command", [(f, c) for f in sorted(CHECKPOINT_FAULTS) for c in ("animate", "evaluate")])
def test_bad_checkpoint(run, dataset, tmp_path, fault, command):
    damage, name, words = CHECKPOINT_FAULTS[fault]
    folder = tmp_path / "checkpoint"
    shutil.copytree(run / "model", folder)
    damage(folder)
    wav = write_wav(tmp_path / "a.wav")
    before = listing(tmp_path)
    if command == "animate":
        result = cli("animate", wav, "-o", tmp_path / "out.npy", "--model", folder)
    else:
        result = cli("evaluate", folder, "--data", dataset, "--out", tmp_path / "report")
    message = error_line(result, folder / name if name else folder)
    assert words in message, message
    nothing_left(tmp_path, before)


def test_evaluate_on_another_topology(run, tmp_path):
    root = write_dataset(tmp_path / "data", {"s0": ["a0"], "s1": ["a0"], "s2": ["a0"]}, seconds=0.5,
                         sample_rate=16000)
    vertices, faces = tiny_topology(2)
    save_templates(root / "templates.pkl", {s: vertices for s in ("s0", "s1", "s2")})
    save_mesh(root / "topology.ply", vertices, faces)
    for npy in (root / "vertices_npy").iterdir():
        np.save(npy, np.tile(vertices.reshape(1, -1), (15, 1)))
    before = listing(tmp_path)
    message = error_line(cli("evaluate", run, "--data", root, "--out", tmp_path / "report"), run / "model")
    assert "42 vertices" in message and "162 vertices" in message
    nothing_left(tmp_path, before)
