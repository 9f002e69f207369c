"""`voxmesh animate` and `voxmesh.load_model(...).animate(...)` on a tiny trained model:
every output format, short, long, silent, stereo 44.1 kHz audio, and clear errors."""

from __future__ import annotations

import numpy as np
import pygltflib
import pytest
import soundfile
import torch
from test_trainer import tiny_config, write_run_dataset
from typer.testing import CliRunner

import voxmesh
from voxmesh.animate import AnimationModel, plan_windows
from voxmesh.audio import load_audio
from voxmesh.cli import app
from voxmesh.errors import VoxmeshError
from voxmesh.mesh.template import load_mesh, save_mesh
from voxmesh.render import probe_media
from voxmesh.train.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_torch_thread_each_test():
    """Rendering an .mp4 sets torch back to one thread per core (numba's OpenMP pool calls
    omp_set_num_threads in the libgomp torch uses), which makes later tests 10-20x slower
    on a busy machine; pin one thread again before every test."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = write_run_dataset(tmp_path_factory.mktemp("data"))
    folder = tmp_path_factory.mktemp("run") / "run"
    train(tiny_config(epochs=2), data, folder, progress=False)
    return folder


def speech(path, seconds, rate=16000, channels=1, silent=False):
    t = np.arange(int(seconds * rate)) / rate
    wave = np.zeros_like(t) if silent else 0.2 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    soundfile.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate)
    return path


def animate_cli(*args):
    return runner.invoke(app, ["animate", *map(str, args)])


def one_error_line(result) -> str:
    """The single line a user error prints (on stderr), with exit status 2."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert result.stdout.strip() == ""  # the line went to stderr
    return lines[0]


def glb_array(glb: pygltflib.GLTF2, index: int, width: int) -> np.ndarray:
    accessor = glb.accessors[index]
    view = glb.bufferViews[accessor.bufferView]
    data = glb.binary_blob()[view.byteOffset: view.byteOffset + view.byteLength]
    return np.frombuffer(data, dtype=np.float32).reshape(accessor.count, width) if width > 1 else \
        np.frombuffer(data, dtype=np.float32)


def test_python_api_lengths_and_determinism(run, tmp_path):
    model = voxmesh.load_model(run)
    wav = speech(tmp_path / "a.wav", 1.0)
    first = model.animate(wav, seed=0)
    assert first.shape == (30, model.template.num_vertices, 3) and first.dtype == np.float32
    np.testing.assert_array_equal(first, model.animate(wav, seed=0))
    assert model.animate(speech(tmp_path / "short.wav", 0.2)).shape[0] == 6
    silent = model.animate(speech(tmp_path / "silent.wav", 1.0, silent=True))
    assert silent.shape[0] == 30 and np.isfinite(silent).all()
    stereo = model.animate(speech(tmp_path / "stereo.wav", 1.0, rate=44100, channels=2))
    assert stereo.shape[0] == 30


def test_long_audio_in_windows_with_cross_fade(run, tmp_path):
    model = voxmesh.load_model(run, window_seconds=2.0, overlap_seconds=0.5)
    wav = speech(tmp_path / "long.wav", 65.0)
    vertices = model.animate(wav)
    assert vertices.shape[0] == 65 * 30 and np.isfinite(vertices).all()
    steps = np.abs(np.diff(vertices, axis=0)).max(axis=(1, 2))
    assert steps.max() < 10 * np.median(steps) + 1e-4  # no jump at window seams
    plan = plan_windows(1950, 60, 15)
    assert plan.windows[0] == (0, 60) and plan.windows[1] == (45, 105) and plan.windows[-1][1] == 1950


def test_every_output_format(run, tmp_path):
    wav = speech(tmp_path / "a.wav", 0.5)
    for name in ("out.npy", "out.mp4", "out.glb", "frames_obj", "frames_ply"):
        args = ["animate", str(wav), "-o", str(tmp_path / name), "--model", str(run)]
        if name == "frames_ply":
            args += ["--format", "ply"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    array = np.load(tmp_path / "out.npy")
    assert array.shape == (15, 42, 3) and array.dtype == np.float32 and np.isfinite(array).all()
    np.testing.assert_array_equal(array, voxmesh.load_model(run).animate(wav))  # the CLI writes what the API gives
    info = probe_media(tmp_path / "out.mp4")
    assert "h264" in info["video"] and "aac" in info["audio"] and abs(info["duration"] - 0.5) < 0.1
    glb = pygltflib.GLTF2().load(str(tmp_path / "out.glb"))
    assert glb.animations[0].channels[0].target.path == "weights" and len(glb.meshes[0].primitives[0].targets) >= 1
    assert len(list((tmp_path / "frames_obj").glob("frame_*.obj"))) == 15
    assert len(list((tmp_path / "frames_ply").glob("frame_*.ply"))) == 15
    # mesh frames keep the vertex order (and the faces) of the model
    faces = voxmesh.load_model(run).faces
    for folder in ("frames_obj", "frames_ply"):
        for k in (0, 7, 14):
            vertices, frame_faces = load_mesh(next((tmp_path / folder).glob(f"frame_{k:05d}.*")))
            np.testing.assert_allclose(vertices, array[k], atol=1e-6)
            np.testing.assert_array_equal(frame_faces, faces)
    # the glb's morph targets reproduce the motion at the audio's timing
    times = glb.accessors[glb.animations[0].samplers[0].input]
    assert times.count == 15 and abs(times.max[0] - 14 / 30) < 1e-6
    primitive = glb.meshes[0].primitives[0]
    base = glb_array(glb, primitive.attributes.POSITION, 3)
    targets = np.stack([glb_array(glb, t["POSITION"], 3) for t in primitive.targets])
    weights = glb_array(glb, glb.animations[0].samplers[0].output, 1).reshape(15, len(targets))
    rebuilt = base[None] + np.einsum("tk,kvc->tvc", weights, targets)
    motion = np.abs(array - array.mean(axis=0)).max()
    assert motion > 0 and np.abs(rebuilt - array).max() < 0.01 * motion
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_several_inputs_batch_into_a_folder_and_refuse_overwrite(run, tmp_path):
    a, b = speech(tmp_path / "a.wav", 0.4), speech(tmp_path / "b.wav", 0.3)
    out = tmp_path / "outdir"
    result = runner.invoke(app, ["animate", str(a), str(b), "-o", str(out), "--model", str(run), "--format", "npy"])
    assert result.exit_code == 0, result.output
    assert np.load(out / "a.npy").shape[0] == 12 and np.load(out / "b.npy").shape[0] == 9
    result = runner.invoke(app, ["animate", str(a), "-o", str(out / "a.npy"), "--model", str(run)])
    assert result.exit_code == 2 and "--overwrite" in result.output


def test_user_template_and_its_errors(run, tmp_path):
    model = voxmesh.load_model(run)
    wav = speech(tmp_path / "a.wav", 0.5)
    face = model.template.vertices + 0.01
    np.save(tmp_path / "face.npy", face)
    moved = model.animate(wav, template=tmp_path / "face.npy")
    plain = model.animate(wav)
    np.testing.assert_allclose(moved - plain, 0.01, atol=1e-5)  # the motion applied to the user's face
    np.save(tmp_path / "bad.npy", face[:10])
    result = runner.invoke(app, ["animate", str(wav), "-o", str(tmp_path / "x.npy"), "--model", str(run),
                                 "--template", str(tmp_path / "bad.npy")])
    assert result.exit_code == 2 and "has 10 vertices but the model animates 42" in result.output
    assert not (tmp_path / "x.npy").exists()


def test_missing_and_corrupt_audio_leave_nothing(run, tmp_path):
    out = tmp_path / "o.mp4"
    result = runner.invoke(app, ["animate", str(tmp_path / "none.wav"), "-o", str(out), "--model", str(run)])
    assert result.exit_code == 2 and "does not exist" in result.output and len(result.output.strip().splitlines()) == 1
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00junk")
    result = runner.invoke(app, ["animate", str(tmp_path / "bad.wav"), "-o", str(out), "--model", str(run)])
    assert result.exit_code == 2 and "Cannot read audio file" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.wav"]


def test_unknown_model_and_options(run, tmp_path):
    wav = speech(tmp_path / "a.wav", 0.3)
    result = runner.invoke(app, ["animate", str(wav), "-o", str(tmp_path / "o.npy"), "--model", str(tmp_path)])
    assert result.exit_code == 2 and "checkpoint folder" in result.output
    with pytest.raises(VoxmeshError, match="takes no emotion or intensity"):
        voxmesh.load_model(run).animate(wav, emotion="happy")
    with pytest.raises(VoxmeshError, match="not one of this model's speakers"):
        voxmesh.load_model(run).animate(wav, speaker="nobody")


def test_animate_to_file_summary_is_the_same_for_every_format(run, tmp_path):
    from voxmesh.animate import animate_to_file

    model = voxmesh.load_model(run)
    wav = speech(tmp_path / "a.wav", 0.3)
    for out in ("o.npy", "o.glb", "frames"):
        result = animate_to_file(model, wav, tmp_path / out)
        assert result["path"] == str(tmp_path / out) and result["frames"] == 9, result
        assert result["fps"] == 30.0 and abs(result["seconds"] - 0.3) < 1e-9, result
    assert result["format"] == "obj" and animate_to_file(model, wav, tmp_path / "o.mp4")["format"] == "mp4"


def test_cli_short_and_silent_audio(run, tmp_path):
    for name, seconds, silent, frames in (("short", 0.2, False, 6), ("silent", 1.0, True, 30)):
        wav = speech(tmp_path / f"{name}.wav", seconds, silent=silent)
        result = animate_cli(wav, "-o", tmp_path / f"{name}.npy", "--model", run)
        assert result.exit_code == 0, result.output
        array = np.load(tmp_path / f"{name}.npy")
        assert array.shape == (frames, 42, 3) and array.dtype == np.float32 and np.isfinite(array).all()


@pytest.mark.parametrize("seconds", [0.77, 1.25, 2.05])
def test_stereo_and_44k_give_the_frames_of_mono_16k(run, tmp_path, seconds):
    model = voxmesh.load_model(run)
    mono = model.animate(speech(tmp_path / "mono.wav", seconds))
    assert mono.shape[0] == (int(seconds * 16000) * 30 + 8000) // 16000  # round(seconds * fps), halves up
    stereo = model.animate(speech(tmp_path / "stereo.wav", seconds, channels=2))
    np.testing.assert_array_equal(stereo, mono)  # two equal channels mix down to the same mono
    for rate, channels in ((44100, 1), (44100, 2), (22050, 1)):
        resampled = model.animate(speech(tmp_path / f"{rate}_{channels}.wav", seconds, rate=rate, channels=channels))
        assert resampled.shape == mono.shape and np.isfinite(resampled).all()
        # a file streams a window at a time; the same samples as an array give the same frames
        from_array = model.animate(load_audio(tmp_path / f"{rate}_{channels}.wav"))
        np.testing.assert_array_equal(from_array, resampled)
    result = animate_cli(tmp_path / "44100_2.wav", "-o", tmp_path / "cli.npy", "--model", run)
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "cli.npy").shape == mono.shape


def test_cross_fade_blends_consecutive_windows_linearly(run, tmp_path, monkeypatch):
    """A stand-in network that outputs the window's seed everywhere: frames of one window
    only keep its value, overlaps ramp linearly from one window's value to the next."""
    model = voxmesh.load_model(run, window_seconds=1.0, overlap_seconds=0.2)

    def generate(features, template, speaker_ids, seed=0, **options):
        return torch.full((1, features.shape[1], *template.shape[1:]), float(seed))

    monkeypatch.setattr(model.model, "generate", generate)
    values = model.animate(speech(tmp_path / "a.wav", 2.5))[:, 0, 0]  # windows (0, 30), (24, 54), (48, 75)
    ramp = np.linspace(0, 1, 8)[1:-1]
    expected = np.concatenate([np.zeros(24), ramp, np.ones(18), 1 + ramp, np.full(21, 2.0)])
    np.testing.assert_allclose(values, expected, atol=1e-6)


def test_long_audio_streams_through_the_cli_in_windows(run, tmp_path, monkeypatch):
    """65 s to .npy: the CLI pulls window-sized blocks from iter_animation and never
    builds the whole animation in memory (the whole-array path would raise here).
    Windows of 2 s keep the autoregressive tiny model fast (the default 10 s take 30 s)."""
    import voxmesh.animate

    blocks: list[int] = []
    load = voxmesh.animate.load_model
    monkeypatch.setattr(voxmesh.animate, "load_model",
                        lambda name, **kw: load(name, window_seconds=2.0, overlap_seconds=0.5, **kw))
    iterate = AnimationModel.iter_animation

    def spy(self, *args, **kwargs):
        for block in iterate(self, *args, **kwargs):
            blocks.append(len(block))
            yield block

    def whole(self, *args, **kwargs):
        raise AssertionError("animate_to_file built the whole animation in memory")

    monkeypatch.setattr(AnimationModel, "iter_animation", spy)
    monkeypatch.setattr(AnimationModel, "animate", whole)
    monkeypatch.setattr(voxmesh.animate, "load_audio", whole)  # nor the whole recording: a window at a time
    wav = speech(tmp_path / "long.wav", 65.0)
    result = animate_cli(wav, "-o", tmp_path / "long.npy", "--model", run)
    assert result.exit_code == 0, result.output
    array = np.load(tmp_path / "long.npy", mmap_mode="r")
    assert array.shape == (65 * 30, 42, 3) and np.isfinite(array).all()
    window = 2 * 30
    assert sum(blocks) == 65 * 30 and len(blocks) == len(plan_windows(65 * 30, window, 15).windows) > 1
    assert max(blocks) <= window


@pytest.mark.parametrize("output", ["x.npy", "x.mp4", "x.glb", "frames"])
@pytest.mark.parametrize("kind", ["npy", "obj"])
def test_template_of_wrong_vertex_count_is_one_error_line(run, tmp_path, output, kind):
    model = voxmesh.load_model(run)
    wav = speech(tmp_path / "a.wav", 0.4)
    bad = tmp_path / f"bad.{kind}"
    if kind == "npy":
        np.save(bad, model.template.vertices[:10])
    else:
        save_mesh(bad, model.template.vertices[:10], np.array([[0, 1, 2]]))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = animate_cli(wav, "-o", tmp_path / output, "--model", run, "--template", bad)
    line = one_error_line(result)
    assert str(bad) in line and "has 10 vertices" in line and "animates 42" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary file


@pytest.mark.parametrize("output", ["o.npy", "o.mp4", "o.glb", "frames"])
def test_missing_and_corrupt_audio_are_one_error_line_and_leave_nothing(run, tmp_path, output):
    rng = np.random.default_rng(0)
    (tmp_path / "random.wav").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "empty.wav").write_bytes(b"")
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, message in (("none.wav", "does not exist"), ("random.wav", "Cannot read audio file"),
                          ("empty.wav", "Cannot read audio file")):
        result = animate_cli(tmp_path / name, "-o", tmp_path / output, "--model", run)
        line = one_error_line(result)
        assert str(tmp_path / name) in line and message in line
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary file
