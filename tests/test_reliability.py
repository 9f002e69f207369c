"""The bad-input corpus, round two: no code from data files, no hang, no output lost or
replaced, one sentence for every mistake.

Each case is a mistake a user (or a hostile dataset) makes, and the promise it checks:
exit status 2 with one `error:` sentence (1 with a `problem:` line for `voxmesh data
check`), no output or temporary left, nothing of the user's lost. The signal and
concurrency cases run the real command in child processes. One tiny FaceFormer is
trained for the module (seconds).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import yaml
from test_bad_inputs import (  # noqa: F401 (dataset and run are the corpus's module fixtures)
    api_error,
    check_fails,
    cli,
    dataset,
    error_line,
    listing,
    nothing_left,
    run,
    tone,
    write_wav,
)
from test_trainer import tiny_config

import voxmesh
from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_folder, atomic_path, remove_stale_temporaries
from voxmesh.mesh import load_regions, load_templates
from voxmesh.render.video import SCRATCH_PREFIX, count_video_frames, encode_video

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name)


# ---- 1. no code from data files -------------------------------------------------------------

class Payload:
    """A pickle that runs a command when loaded: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_pickle(path: Path, marker: Path, wrap: bool = True) -> Path:
    content = {"s0": Payload(marker)} if wrap else Payload(marker)
    path.write_bytes(pickle.dumps(content, protocol=2))
    return path


def test_a_malicious_templates_pkl_is_refused_by_the_loader(tmp_path):
    marker = tmp_path / "ran"
    path = malicious_pickle(tmp_path / "templates.pkl", marker)
    message = api_error(lambda: load_templates(path), path)
    assert ".system" in message and not marker.exists()


@pytest.mark.parametrize("command", ["data check", "train", "evaluate", "evaluate-predictions"])
def test_a_malicious_dataset_never_runs(dataset, run, tmp_path, command):
    """The payload is in the dataset's templates.pkl (or the --lips mask): no command runs it."""
    import shutil

    marker = tmp_path / "ran"
    root = tmp_path / "data"
    shutil.copytree(dataset, root)
    if command == "evaluate-predictions":
        predictions = tmp_path / "pred"
        predictions.mkdir()
        lips = malicious_pickle(tmp_path / "masks.pkl", marker, wrap=False)
        before = listing(tmp_path)
        error_line(cli("evaluate-predictions", predictions, root, "--lips", lips), lips)
    else:
        malicious_pickle(root / "templates.pkl", marker)
        before = listing(tmp_path)
        if command == "data check":
            problems = check_fails(root, 1)
            assert "templates.pkl" in problems[0] and ".system" in problems[0]
        elif command == "train":
            config = tmp_path / "config.yaml"
            config.write_text(yaml.safe_dump(tiny_config(epochs=1).to_dict(), sort_keys=False))
            before = listing(tmp_path)
            error_line(cli("train", config, "--data", root, "--out", tmp_path / "newrun"), "templates.pkl")
        else:
            error_line(cli("evaluate", run, "--data", root, "--out", tmp_path / "report"), "templates.pkl")
    assert not marker.exists(), "the pickle's code ran"
    nothing_left(tmp_path, before)


def python2_pickle(content: object) -> bytes:
    """Bytes as Python 2 wrote VOCASET's pickles: protocol 2, byte strings as STRING
    opcodes (read back with latin1) and numpy's arrays under numpy.core.multiarray."""

    class Py2Pickler(pickle._Pickler):
        dispatch = dict(pickle._Pickler.dispatch)

        def save_bytes(self, obj: bytes) -> None:
            if len(obj) < 256:
                self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
            else:
                self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
            self.memoize(obj)

        dispatch[bytes] = save_bytes

    import io

    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(content)
    data = buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"_codecs" not in data and b"numpy.core.multiarray" in data
    return data


def test_python2_pickles_of_arrays_still_load(tmp_path):
    faces = {"FaceTalk_170725_00137_TA": np.arange(30, dtype=np.float32).reshape(10, 3) / 100,
             "FaceTalk_170728_03272_TA": np.ones((10, 3), np.float64) / 10}
    (tmp_path / "templates.pkl").write_bytes(python2_pickle(faces))
    loaded = load_templates(tmp_path / "templates.pkl")
    for name, vertices in faces.items():
        np.testing.assert_allclose(loaded[name], vertices, rtol=1e-6)
    masks = {"lips": np.array([3, 1, 2], np.int64), "eye_region": np.array([5, 6]), "forehead": np.array([7])}
    (tmp_path / "FLAME_masks.pkl").write_bytes(python2_pickle(masks))
    regions = load_regions(tmp_path / "FLAME_masks.pkl")
    assert regions["lips"].tolist() == [3, 1, 2] and regions["upper_face"].tolist() == [5, 6, 7]


def test_the_checkpoint_trainer_state_is_read_without_pickled_code():
    import inspect

    from voxmesh.train import checkpoint

    source = inspect.getsource(checkpoint)
    assert "weights_only=True" in source and "pickle.load" not in source


# ---- 2. no hang: every condition is checked before ffmpeg starts ------------------------------

def scratch_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*")}


BAD_CONDITIONS = {
    "speaker": (["--speaker", "nobody"], "nobody"),
    "emotion": (["--emotion", "happy"], "emotion"),
    "steps": (["--steps", "-1"], "-1"),
    "intensity": (["--intensity", "5"], "intensity"),
    "negative_seed": (["--seed", "-1"], "-1"),
    "huge_seed": (["--seed", "99999999999999999999"], "99999999999999999999"),
    "fps_zero": (["--fps", "0"], "--fps 0"),
    "fps_negative": (["--fps", "-30"], "--fps -30"),
    "fps_nan": (["--fps", "nan"], "--fps nan"),
    "fps_inf": (["--fps", "inf"], "--fps inf"),
}


@pytest.mark.parametrize("output", ["out.mp4", "out.npy", "out.glb", "frames"])
@pytest.mark.parametrize("case", sorted(BAD_CONDITIONS))
def test_bad_conditions_are_refused_before_any_output(run, tmp_path, case, output):
    arguments, words = BAD_CONDITIONS[case]
    wav = write_wav(tmp_path / "a.wav")
    before, scratch = listing(tmp_path), scratch_folders()
    message = error_line(cli("animate", wav, "-o", tmp_path / output, "--model", run, *arguments))
    assert words in message, message
    nothing_left(tmp_path, before)
    assert scratch_folders() <= scratch


def test_an_error_while_frames_are_made_stops_ffmpeg_at_once(tmp_path):
    """The frame source fails after three frames: encode_video returns the error within
    seconds (it used to wait on ffmpeg forever) and leaves no file and no scratch folder."""

    def frames():
        for index in range(100):
            if index == 3:
                raise VoxmeshError("Speaker 'nobody' is not one of this model's speakers; pick one.")
            yield np.zeros((32, 32, 3), np.uint8)

    outcome: dict = {}

    def encode():
        try:
            encode_video(frames(), tmp_path / "x.mp4", 30, 32, 32, tone(0.5))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=encode, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "encode_video hung"
    assert isinstance(outcome.get("error"), VoxmeshError)
    assert listing(tmp_path) == [] and not any(f"{SCRATCH_PREFIX}{os.getpid()}-" in n for n in scratch_folders())


def test_ffmpeg_stopped_midway_publishes_nothing(tmp_path):
    """ffmpeg runs in a session of its own, so a Ctrl-C to voxmesh's process group (a
    background job's) never reaches it; and when ffmpeg dies anyway after three frames,
    the video is refused, not published short or empty as a success."""
    import psutil

    sessions = {}

    def frames():
        for index in range(60):
            if index == 3:
                for child in psutil.Process().children():
                    if "ffmpeg" in child.name():
                        sessions["ffmpeg"] = os.getsid(child.pid)
                        child.kill()
                        child.wait(timeout=20)
            yield np.full((32, 32, 3), index, np.uint8)

    with pytest.raises(VoxmeshError) as info:
        encode_video(frames(), tmp_path / "x.mp4", 30, 32, 32, tone(2.0))
    assert "x.mp4" in str(info.value) and "nothing was kept" in str(info.value)
    assert sessions["ffmpeg"] != os.getsid(0)
    assert listing(tmp_path) == []


def test_a_video_is_published_only_with_every_frame(tmp_path):
    frames = [np.full((32, 32, 3), k * 20, np.uint8) for k in range(12)]
    assert encode_video(iter(frames), tmp_path / "x.mp4", 30, 32, 32, tone(0.4)) == 12
    assert count_video_frames(tmp_path / "x.mp4") == 12
    with pytest.raises(VoxmeshError, match="No frames"):
        encode_video(iter([]), tmp_path / "empty.mp4", 30, 32, 32)
    assert listing(tmp_path) == ["x.mp4"]


# ---- 3. outputs never replaced without consent ---------------------------------------------------

def test_two_writers_to_one_file_exactly_one_wins(tmp_path):
    """Both finish writing before either publishes: the second is refused in one sentence
    and the first file is the one kept."""
    target = tmp_path / "out.npy"
    ready = threading.Barrier(2)
    results: dict[int, object] = {}

    def writer(number: int) -> None:
        try:
            with atomic_path(target, replace=False) as tmp:
                np.save(tmp, np.full(4, number))
                ready.wait(timeout=10)
                if number == 1:
                    time.sleep(0.2)  # the second publishes after the first
            results[number] = "won"
        except VoxmeshError as exc:
            results[number] = exc

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert results[0] == "won" and isinstance(results[1], VoxmeshError)
    assert "another run" in str(results[1]) and "--overwrite" in str(results[1])
    assert np.load(target).tolist() == [0] * 4 and listing(tmp_path) == ["out.npy"]


def test_two_folder_writers_exactly_one_wins(tmp_path):
    """The inner writer publishes first and wins; the outer one is refused."""
    target = tmp_path / "frames"
    with pytest.raises(VoxmeshError, match="another run"):
        with atomic_folder(target, replace=False) as first:
            (first / "frame_00000.obj").write_text("first")
            with atomic_folder(target, replace=False) as second:
                (second / "frame_00000.obj").write_text("second")
    assert (target / "frame_00000.obj").read_text() == "second"
    assert listing(tmp_path) == ["frames", "frames/frame_00000.obj"]


def voxmesh_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "voxmesh.cli", *map(str, args)]


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_two_animate_runs_to_one_output_at_once(run, tmp_path):
    wav = write_wav(tmp_path / "a.wav", 2.0)
    target = tmp_path / "out.npy"
    children = [subprocess.Popen(voxmesh_command("animate", wav, "-o", target, "--model", run),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
                for _ in range(2)]
    outcomes = [(child.returncode, child.communicate(timeout=120)[1]) for child in children]
    outcomes = [(child.returncode, err) for child, (_, err) in zip(children, outcomes)]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    loser = next(err for code, err in outcomes if code == 2)
    assert str(target) in loser and ("already exists" in loser or "another run" in loser), loser
    assert np.load(target).shape == (60, 42, 3)
    assert listing(tmp_path) == ["a.wav", "out.npy"]


def test_overwrite_replaces_only_what_voxmesh_wrote(run, tmp_path):
    """`-o v --overwrite` on a folder of the user's own files is refused; a folder of
    frames voxmesh wrote is replaced."""
    wav = write_wav(tmp_path / "a.wav")
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    message = error_line(cli("animate", wav, "-o", folder, "--model", run, "--overwrite"), folder, "notes.txt")
    assert "did not write" in message and (folder / "notes.txt").read_text() == "mine"
    (folder / "notes.txt").unlink()
    for _ in range(2):  # written, then replaced
        result = cli("animate", wav, "-o", folder, "--model", run, "--overwrite")
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir())[:2] == ["frame_00000.obj", "frame_00001.obj"]
    (folder / "notes.txt").write_text("mine again")
    error_line(cli("animate", wav, "-o", folder, "--model", run, "--overwrite"), "notes.txt")
    assert (folder / "notes.txt").read_text() == "mine again"


def test_synth_overwrite_refuses_a_folder_it_did_not_make(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    error_line(cli("synth", folder, "--overwrite"), folder, "notes.txt")
    assert listing(folder) == ["notes.txt"]


def test_a_batch_whose_inputs_share_a_stem_is_refused_whole(run, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, second = write_wav(tmp_path / "one" / "x.wav"), write_wav(tmp_path / "two" / "x.wav")
    before = listing(tmp_path)
    message = error_line(cli("animate", first, second, "-o", tmp_path / "out", "--format", "npy", "--model", run),
                         first, second)
    assert "both write" in message
    nothing_left(tmp_path, before)


@pytest.mark.parametrize("output", ["x.npy", "x.glb", "x.mp4"])
def test_an_existing_folder_named_like_a_file_is_never_replaced(run, tmp_path, output):
    wav = write_wav(tmp_path / "a.wav")
    (tmp_path / output).mkdir()
    (tmp_path / output / "keep.txt").write_text("mine")
    error_line(cli("animate", wav, "-o", tmp_path / output, "--model", run, "--overwrite"), tmp_path / output)
    assert (tmp_path / output / "keep.txt").read_text() == "mine"


# ---- 4. leftovers and signals -----------------------------------------------------------------

def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_later_run_removes_stale_temporaries_of_its_output(run, tmp_path):
    wav = write_wav(tmp_path / "a.wav")
    stale = tmp_path / f".out.mp4.{dead_pid()}-abcd_123.tmp.mp4"
    stale.write_bytes(b"half a video")
    live = tmp_path / f".out.mp4.{os.getpid()}-live_123.tmp.mp4"  # a writer that is still running
    live.write_bytes(b"being written")
    other = tmp_path / f".other.mp4.{dead_pid()}-abcd_123.tmp.mp4"  # another output's: not ours to judge
    other.write_bytes(b"")
    scratch = Path(tempfile.gettempdir()) / f"{SCRATCH_PREFIX}{dead_pid()}-zzzz"
    scratch.mkdir()
    result = cli("animate", wav, "-o", tmp_path / "out.mp4", "--model", run)
    assert result.exit_code == 0, result.output
    assert not stale.exists() and live.exists() and other.exists() and not scratch.exists()
    assert remove_stale_temporaries(tmp_path / "other.mp4") == [other]


def whole(path: Path, kind: str) -> bool:
    """Whether ``path`` is a complete output of 6 s at 30 fps."""
    if kind == "npy":
        return np.load(path).shape == (180, 42, 3)
    if kind == "mp4":
        return count_video_frames(path) == 180
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(path))
    return gltf.accessors[gltf.animations[0].samplers[0].input].count == 180


# (format, signal, moment): "early" is during start-up and model loading, "writing" is as
# soon as the output's temporary file appears.
SIGNAL_CASES = [("mp4", signal.SIGTERM, "writing"), ("mp4", signal.SIGINT, "early"),
                ("npy", signal.SIGTERM, "early"), ("npy", signal.SIGINT, "writing"),
                ("glb", signal.SIGTERM, "writing"), ("glb", signal.SIGINT, "writing")]


@pytest.mark.parametrize("kind, signum, moment", SIGNAL_CASES,
                         ids=[f"{k}-{signal.Signals(s).name}-{m}" for k, s, m in SIGNAL_CASES])
def test_a_signal_leaves_nothing_that_looks_whole_and_a_rerun_succeeds(run, tmp_path, kind, signum, moment):
    wav = write_wav(tmp_path / "a.wav", 6.0)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / f"talk.{kind}"
    child = subprocess.Popen(voxmesh_command("animate", wav, "-o", target, "--model", run),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env())
    deadline = time.monotonic() + 60
    if moment == "early":
        time.sleep(1.0)
    else:
        while child.poll() is None and not any(out_dir.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.005)
    if child.poll() is None:
        child.send_signal(signum)
    stderr = child.communicate(timeout=60)[1]  # no hang
    code = child.returncode
    if code == 0 or target.exists():  # published before the signal arrived: then it must be whole
        assert whole(target, kind), f"exit {code} left a partial {target}"
    assert hidden_leftovers(out_dir) == [], stderr
    assert not any(name.startswith(f"{SCRATCH_PREFIX}{child.pid}-") for name in scratch_folders())
    result = cli("animate", wav, "-o", target, "--model", run, "--overwrite")
    assert result.exit_code == 0, result.output
    assert whole(target, kind) and hidden_leftovers(out_dir) == []


# ---- 5. empty results are refused, not reported as success ---------------------------------------

@pytest.mark.parametrize("output", ["out.npy", "out.mp4", "out.glb", "frames"])
@pytest.mark.parametrize("seconds", [0.01, 1 / 16000])
def test_audio_shorter_than_a_frame(run, tmp_path, output, seconds):
    wav = write_wav(tmp_path / "a.wav", seconds)
    before = listing(tmp_path)
    message = error_line(cli("animate", wav, "-o", tmp_path / output, "--model", run), wav)
    assert "shorter than one frame" in message
    nothing_left(tmp_path, before)


def test_an_empty_array_through_the_python_api(run):
    model = voxmesh.load_model(run)
    assert "shorter than one frame" in api_error(lambda: model.animate(np.zeros(0, np.float32)))


# ---- 6. numbers are checked -----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["data check", "evaluate", "evaluate-predictions"])
def test_a_frame_rate_of_zero(dataset, run, tmp_path, command):
    if command == "data check":
        args = ("data", "check", dataset, "--fps", "0")
    elif command == "evaluate":
        args = ("evaluate", run, "--data", dataset, "--fps", "0", "--out", tmp_path / "r")
    else:
        (tmp_path / "pred").mkdir()
        args = ("evaluate-predictions", tmp_path / "pred", dataset, "--fps", "0")
    before = listing(tmp_path)
    assert "--fps 0" in error_line(cli(*args))
    nothing_left(tmp_path, before)


def test_a_checkpoint_with_fps_zero(run, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(run / "model", folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["fps"] = 0
    (folder / "model.json").write_text(json.dumps(meta))
    wav = write_wav(tmp_path / "a.wav")
    before = listing(tmp_path)
    assert "fps 0" in error_line(cli("animate", wav, "-o", tmp_path / "o.npy", "--model", folder), folder / "model.json")
    nothing_left(tmp_path, before)


def test_synth_with_no_workers(tmp_path):
    assert "--workers 0" in error_line(cli("synth", tmp_path / "d", "--workers", "0"))
    assert listing(tmp_path) == []


def test_a_config_that_sets_a_key_twice(dataset, tmp_path):
    config = tmp_path / "config.yaml"
    text = yaml.safe_dump(tiny_config(epochs=1).to_dict(), sort_keys=False)
    config.write_text(text.replace("train:\n", "train:\n  lr: 0.5\n", 1))
    before = listing(tmp_path)
    message = error_line(cli("train", config, "--data", dataset, "--out", tmp_path / "r"), config)
    assert "'lr' twice" in message
    nothing_left(tmp_path, before)


# ---- 7. operating-system failures are one sentence ------------------------------------------------

def mounted_tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A tmpfs at ``folder`` with mount ``options`` (root only; skipped elsewhere)."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    yield from mounted_tmpfs(tmp_path / "disk", "size=256k")


@pytest.fixture
def read_only(tmp_path):
    yield from mounted_tmpfs(tmp_path / "ro", "ro,size=64k")


@pytest.mark.parametrize("output", ["out.npy", "out.glb", "frames"])
def test_a_full_disk(run, tmp_path, small_disk, output):
    wav = write_wav(tmp_path / "a.wav", 4.0)  # 120 frames of 42 vertices: 60 KB as .npy, more as frames
    (small_disk / "filler").write_bytes(b"\0" * 250_000)  # 12 KB left
    message = error_line(cli("animate", wav, "-o", small_disk / output, "--model", run))
    assert "no space left" in message
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


@pytest.mark.parametrize("command", ["animate", "evaluate", "train", "synth"])
def test_a_read_only_folder(dataset, run, tmp_path, read_only, command):
    if command == "animate":
        args = ("animate", write_wav(tmp_path / "a.wav"), "-o", read_only / "x.npy", "--model", run)
    elif command == "evaluate":
        args = ("evaluate", run, "--data", dataset, "--out", read_only / "report")
    elif command == "train":
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(tiny_config(epochs=1).to_dict(), sort_keys=False))
        args = ("train", config, "--data", dataset, "--out", read_only / "run")
    else:
        args = ("synth", read_only / "data")
    assert "read-only" in error_line(cli(*args), read_only)


def test_long_output_names(run, tmp_path):
    wav = write_wav(tmp_path / "a.wav")
    fits = tmp_path / ("n" * 245 + ".npy")  # 249 characters: its temporary name is cut to fit
    result = cli("animate", wav, "-o", fits, "--model", run)
    assert result.exit_code == 0, result.output
    assert np.load(fits).shape == (15, 42, 3) and hidden_leftovers(tmp_path) == []
    too_long = tmp_path / ("n" * 260 + ".npy")
    assert "shorter name" in error_line(cli("animate", wav, "-o", too_long, "--model", run))


def test_train_out_is_a_file(dataset, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(epochs=1).to_dict(), sort_keys=False))
    (tmp_path / "run").write_text("a file")
    error_line(cli("train", config, "--data", dataset, "--out", tmp_path / "run"), tmp_path / "run")
    assert (tmp_path / "run").read_text() == "a file"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only message")
def test_evaluate_on_cuda_without_a_gpu(dataset, run, tmp_path):
    assert "--device cpu" in error_line(cli("evaluate", run, "--data", dataset, "--device", "cuda",
                                             "--out", tmp_path / "r"), "cuda")
    assert listing(tmp_path) == []


# ---- 8. the Python API takes nothing silently -------------------------------------------------------

def test_integer_and_channels_first_arrays(run):
    model = voxmesh.load_model(run)
    wave = tone(0.5)
    reference = model.animate(wave, sample_rate=16000)
    pcm = np.round(wave * 32767).astype(np.int16)
    np.testing.assert_allclose(model.animate(pcm, sample_rate=16000), reference, atol=2e-4)
    stereo_first = np.stack([wave, wave])  # [2, N]
    np.testing.assert_allclose(model.animate(stereo_first, sample_rate=16000), reference, atol=1e-5)
    assert "32768" in api_error(lambda: model.animate(pcm.astype(np.float32), sample_rate=16000))


def test_bad_values_through_the_python_api(run, tmp_path):
    model = voxmesh.load_model(run)
    wave = tone(0.5)
    face = model.template.vertices
    assert "millimetres" in api_error(lambda: model.animate(wave, template=face * 1000))
    api_error(lambda: model.animate(wave, speaker=True), "True")
    api_error(lambda: model.animate(wave, seed=None), "None")
    api_error(lambda: model.animate(wave, sample_rate=0), "Sample rate 0")
    api_error(lambda: model.animate(wave, steps=0), "0")
    wav = write_wav(tmp_path / "a.wav")
    assert model.animate(os.fsencode(wav)).shape == (15, 42, 3)  # a bytes path is a path


# ---- 9. small ones ------------------------------------------------------------------------------------

def test_evaluate_out_a_folder_writes_inside_it(dataset, run, tmp_path):
    (tmp_path / "oe").mkdir()
    result = cli("evaluate", run, "--data", dataset, "--out", tmp_path / "oe")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "oe").iterdir()) == ["eval_test.json", "eval_test.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oe"]


def test_evaluate_takes_the_built_in_name(dataset, tmp_path):
    """`evaluate default` finds the shipped model as `animate` does (here it then refuses the
    42-vertex dataset, naming the model's folder)."""
    message = error_line(cli("evaluate", "default", "--data", dataset, "--out", tmp_path / "r"))
    assert "weights" in message and "vertices" in message


def test_contact_sheet_format_follows_the_name(tmp_path):
    from voxmesh.render.sheet import contact_sheet

    images = [np.full((16, 16, 3), 200, np.uint8)] * 2
    contact_sheet(images, ["a", "b"], columns=2, path=tmp_path / "x.jpg")
    assert (tmp_path / "x.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not PNG bytes
    api_error(lambda: contact_sheet(images, ["a", "b"], columns=2, path=tmp_path / "x.gif"), "x.gif")
    assert "x.gif" in error_line(cli("synth", "--contact-sheet", tmp_path / "x.gif"))


def test_a_failed_write_removes_the_folders_it_made(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new" / "deeper" / "out.npy") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("the generator failed")
    assert listing(tmp_path) == []


def test_a_folder_given_as_audio(run, tmp_path):
    (tmp_path / "clips").mkdir()
    assert "is a folder" in error_line(cli("animate", tmp_path / "clips", "-o", tmp_path / "o.npy", "--model", run))


def test_the_readme_states_each_promise():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Reliability", 1)[1].split("\n## ", 1)[0].lower()
    for promise in ("atomic", "--overwrite", "pickle", "sigterm", "another run", "one sentence"):
        assert promise in section, promise
