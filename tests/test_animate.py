"""`voxmesh animate` and `voxmesh.load_model(...).animate(...)` on a tiny trained model:
every output format, short, long, silent, stereo 44.1 kHz audio, and clear errors."""

from __future__ import annotations

import numpy as np
import pygltflib
import pytest
import soundfile
from test_trainer import tiny_config, write_run_dataset
from typer.testing import CliRunner

import voxmesh
from voxmesh.animate import plan_windows
from voxmesh.cli import app
from voxmesh.errors import VoxmeshError
from voxmesh.render import probe_media
from voxmesh.train.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")
runner = CliRunner()


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
    assert array.shape == (15, 42, 3)
    info = probe_media(tmp_path / "out.mp4")
    assert "h264" in info["video"] and "aac" in info["audio"] and abs(info["duration"] - 0.5) < 0.1
    glb = pygltflib.GLTF2().load(str(tmp_path / "out.glb"))
    assert glb.animations[0].channels[0].target.path == "weights" and len(glb.meshes[0].primitives[0].targets) >= 1
    assert len(list((tmp_path / "frames_obj").glob("frame_*.obj"))) == 15
    assert len(list((tmp_path / "frames_ply").glob("frame_*.ply"))) == 15
    # the glb's morph targets reproduce the motion
    times = glb.accessors[glb.animations[0].samplers[0].input]
    assert times.count == 15 and abs(times.max[0] - 14 / 30) < 1e-6


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
    with pytest.raises(VoxmeshError, match="does not take an emotion"):
        voxmesh.load_model(run).animate(wav, emotion="happy")
    with pytest.raises(VoxmeshError, match="not one of this model's speakers"):
        voxmesh.load_model(run).animate(wav, speaker="nobody")
