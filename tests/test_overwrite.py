"""No command replaces an existing output without --overwrite.

For every command that writes: run it once, run it again without --overwrite (exit
status 2, one `error:` line that names the output and says "pass --overwrite", the first
output untouched to the byte and the mtime, nothing new beside it), then with --overwrite
(it succeeds and leaves no temporary file). One tiny FaceFormer is trained for the
module through `voxmesh train`; every other input is a few tenths of a second.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from miniature import write_dataset
from test_trainer import tiny_config, write_run_dataset
from typer.testing import CliRunner

from voxmesh.cli import app

pytestmark = pytest.mark.usefixtures("torch_one_thread")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_torch_thread_each_test():
    """Rendering an .mp4 sets torch back to one thread per core (see test_animate)."""
    torch.set_num_threads(1)


# ---- what a refusal must look like ----------------------------------------------------------

def snapshot(path: Path) -> dict[str, tuple[str, int]]:
    """Every file of ``path`` (a file or a folder): its sha256 and its mtime in ns."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in files}


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def no_leftovers(*folders: Path) -> None:
    """No temporary file or moved-aside folder of atomic_path / atomic_folder."""
    for folder in folders:
        hidden = [n for n in names(folder) if n.startswith(".") and (".tmp" in n or ".old-" in n or ".partial" in n)]
        assert not hidden, f"left behind in {folder}: {hidden}"


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def succeeds(*args: object):
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def refused(args: tuple, named: Path, *untouched: Path) -> str:
    """Run ``args``; it must be refused naming ``named``, and leave ``named`` and
    ``untouched`` (outputs that exist, or must not appear) as they were."""
    watched = (named, *untouched)
    before = {p: snapshot(p) if p.exists() else None for p in watched}
    around = {p.parent: names(p.parent) for p in watched}
    result = cli(*args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert result.stdout.strip() == ""  # the line went to stderr
    message = lines[0]
    assert str(named) in message and "pass --overwrite" in message and message.endswith("."), message
    assert "Traceback" not in result.output
    for path in watched:
        assert (snapshot(path) if path.exists() else None) == before[path], f"{path} changed"
    for folder, listed in around.items():
        assert names(folder) == listed, f"new entries in {folder}: {names(folder) - listed}"
    return message


def speech(path: Path, seconds: float = 0.4, frequency: float = 180.0) -> Path:
    t = np.arange(int(seconds * 16000)) / 16000
    soundfile.write(path, 0.2 * np.sin(2 * np.pi * frequency * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)), 16000)
    return path


# ---- fixtures: one dataset, one run (trained by the command itself) -----------------------------

@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("overwrite")


@pytest.fixture(scope="module")
def dataset(root) -> Path:
    return write_run_dataset(root / "data")


@pytest.fixture(scope="module")
def config(root) -> Path:
    path = root / "faceformer.yaml"
    path.write_text(yaml.safe_dump(tiny_config(epochs=1).to_dict(), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def run(root, dataset, config) -> Path:
    """RUNS/faceformer, so that `voxmesh benchmark --runs RUNS` reuses it."""
    folder = root / "runs" / "faceformer"
    succeeds("train", config, "--data", dataset, "--out", folder)
    return folder


# ---- the commands ----------------------------------------------------------------------------

def test_train(run, dataset, config):
    args = ("train", config, "--data", dataset, "--out", run)
    message = refused(args, run)
    assert "--resume" in message  # the other way on
    succeeds(*args, "--overwrite")
    assert (run / "model" / "model.json").is_file()
    no_leftovers(run, run / "main", run.parent)


@pytest.mark.parametrize("output", ["out.npy", "out.glb", "out.mp4", "frames"])
def test_animate(run, tmp_path, output):
    wav = speech(tmp_path / "a.wav")
    target = tmp_path / output
    args = ("animate", wav, "-o", target, "--model", run)
    succeeds(*args)
    refused(args, target)
    speech(wav, frequency=300.0)  # other speech: the replaced output differs
    first = snapshot(target)
    succeeds(*args, "--overwrite")
    assert snapshot(target) != first
    if output == "frames":
        assert len(list(target.glob("frame_*.obj"))) == 12
    no_leftovers(tmp_path)


def test_animate_batch_is_refused_whole(run, tmp_path):
    a, b = speech(tmp_path / "a.wav"), speech(tmp_path / "b.wav", 0.3)
    out = tmp_path / "outdir"
    args = ("animate", a, b, "-o", out, "--model", run, "--format", "npy")
    succeeds(*args)
    (out / "a.npy").unlink()
    # b.npy exists: a.npy is not written either (the batch is checked before the first output)
    refused(args, out / "b.npy", out / "a.npy")
    succeeds(*args, "--overwrite")
    assert np.load(out / "a.npy").shape[0] == 12 and np.load(out / "b.npy").shape[0] == 9
    no_leftovers(tmp_path, out)


def test_synth_dataset_and_contact_sheet(tmp_path):
    data, sheet = tmp_path / "tiny", tmp_path / "sheet.png"
    args = ("synth", data, "--preset", "tiny", "--workers", "1")
    succeeds(*args, "--contact-sheet", sheet)
    refused(args, data)
    refused(("synth", "--contact-sheet", sheet), sheet)
    # each output refused before the other is written
    refused(("synth", data, "--preset", "tiny", "--workers", "1", "--contact-sheet", tmp_path / "new.png"), data,
            tmp_path / "new.png")
    refused(("synth", tmp_path / "new", "--preset", "tiny", "--workers", "1", "--contact-sheet", sheet), sheet,
            tmp_path / "new")
    manifest = snapshot(data / "manifest.jsonl")
    succeeds(*args, "--seed", "1", "--contact-sheet", sheet, "--overwrite")
    assert snapshot(data / "manifest.jsonl") != manifest  # replaced, by another seed's dataset
    no_leftovers(tmp_path)


def test_evaluate_predictions(tmp_path):
    from voxmesh.data import open_dataset

    data = write_dataset(tmp_path / "data", {"a": ["01"]}, seconds=0.5)
    preds = tmp_path / "preds"
    preds.mkdir()
    np.save(preds / "a_01.npy", open_dataset(data)[0].vertices + 0.001)
    succeeds("evaluate-predictions", preds, data)
    report = preds / "metrics.json"
    refused(("evaluate-predictions", preds, data), report)
    custom = tmp_path / "out.json"
    custom.write_text("{}")
    refused(("evaluate-predictions", preds, data, "--json", custom), custom)
    succeeds("evaluate-predictions", preds, data, "--json", custom, "--overwrite")
    assert json.loads(custom.read_text())["sequences"] == 1
    succeeds("evaluate-predictions", preds, data, "--overwrite")
    no_leftovers(tmp_path, preds)


def test_benchmark(run, dataset, tmp_path):
    out = tmp_path / "docs" / "bench.md"
    args = ("benchmark", "--data", dataset, "--runs", run.parent, "--quick", "--out", out, "--method", "faceformer")
    succeeds(*args)
    assert out.is_file() and out.with_suffix(".json").is_file() and (out.parent / "bench" / "quality.png").is_file()
    refused(args, out, out.with_suffix(".json"), out.parent / "bench")
    out.unlink()
    refused(args, out.with_suffix(".json"), out, out.parent / "bench")  # the .json alone is refused too
    succeeds(*args, "--overwrite")
    assert out.is_file()
    no_leftovers(out.parent, out.parent / "bench")


def _evaluate_takes_overwrite() -> bool:
    from voxmesh.cli import evaluate_command
    from voxmesh.eval.evaluate import evaluate_run

    return "overwrite" in inspect.signature(evaluate_run).parameters and \
        "overwrite" in inspect.signature(evaluate_command).parameters


@pytest.mark.skipif(not _evaluate_takes_overwrite(), reason="evaluate_run has no overwrite= yet")
def test_evaluate(run, dataset, tmp_path):
    out = tmp_path / "eval"
    args = ("evaluate", run, "--data", dataset, "--split", "test", "--out", out, "--device", "cpu")
    succeeds(*args)
    markdown, report = Path(f"{out}.md"), Path(f"{out}.json")
    refused(args, markdown, report)
    markdown.unlink()
    refused(args, report, markdown)  # the .json alone is refused too
    succeeds(*args, "--overwrite")
    assert markdown.is_file() and json.loads(report.read_text())["rows"]["model"]
    no_leftovers(tmp_path)
