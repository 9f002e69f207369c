"""A run killed with SIGKILL and resumed with ``voxmesh train --resume`` ends with the
weights of an uninterrupted run: the real thing, through ``python -m voxmesh.cli train``
in subprocesses, FaceFormer and EmoFace (whose self-growing share follows the trainer's
step), three kills a run at steps drawn by a seeded RNG.

A kill lands wherever the trainer is after the log shows the drawn step: between
checkpoints (the steps since the last one are trained again), or in the middle of
writing one (the atomic folder keeps the previous one)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_emoface import CONFIG as EMOFACE_MODEL
from test_emoface import ENCODER as EMOFACE_ENCODER
from test_pairs import write_pair_dataset
from test_trainer import tiny_config, write_run_dataset

from voxmesh.train.config import config_from_dict

pytestmark = pytest.mark.usefixtures("torch_one_thread")

KILLS = 3
TIMEOUT = 120.0


def write_config(path: Path, config) -> Path:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def logged_steps(run: Path) -> list[int]:
    """Train steps in log.jsonl so far (a line cut by a kill, or a file rewritten by a
    resume at this very moment, is skipped)."""
    try:
        text = (run / "log.jsonl").read_text()
    except FileNotFoundError:
        return []
    steps = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("split") == "train":
            steps.append(int(row["step"]))
    return steps


def command(config: Path, data: Path, run: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "voxmesh.cli", "train", str(config), "--data", str(data), "--out", str(run)] + (
        ["--resume"] if resume else [])


def environment() -> dict[str, str]:
    env = dict(os.environ)  # VOXMESH_CACHE (conftest), offline flags
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    return env


def train_to_the_end(config: Path, data: Path, run: Path, resume: bool = False) -> None:
    done = subprocess.run(command(config, data, run, resume), env=environment(), capture_output=True, text=True,
                          check=False, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr


def train_killed(config: Path, data: Path, run: Path, kill_after: list[tuple[int, float]]) -> list[int]:
    """Start (then resume) the run, SIGKILL it ``delay`` seconds after the log shows
    each ``(step, delay)`` of ``kill_after`` (steps increasing), resume it to the end;
    returns the last logged step at each kill."""
    killed_at: list[int] = []
    for number, (step, delay) in enumerate(kill_after):
        process = subprocess.Popen(command(config, data, run, resume=number > 0), env=environment(),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        # Rows past the previous kill can only come from this process (the killed one
        # logged no further), so wait for one of those too.
        wanted = max(step, killed_at[-1] + 1 if killed_at else 0)
        while max(logged_steps(run), default=0) < wanted and process.poll() is None:
            assert time.monotonic() < deadline, f"step {wanted} did not come within {TIMEOUT} s"
            time.sleep(0.002)
        if process.poll() is not None:  # finished: an earlier kill came late, past this point
            output = process.stdout.read().decode(errors="replace")
            process.stdout.close()
            assert process.returncode == 0, output
            break
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
        if process.returncode == 0:
            break  # it finished within the delay
        assert process.returncode == -signal.SIGKILL
        killed_at.append(max(logged_steps(run), default=0))
    assert killed_at, "no kill came before the run finished"
    train_to_the_end(config, data, run, resume=True)
    return killed_at


def assert_same_run(straight: Path, resumed: Path) -> None:
    for folder in ("main/last", "main/best", "model"):
        a = load_file(str(straight / folder / "model.safetensors"))
        b = load_file(str(resumed / folder / "model.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (folder, key, float((a[key] - b[key]).abs().max()))
    a = torch.load(straight / "main" / "last" / "trainer_state.pt", weights_only=True)
    b = torch.load(resumed / "main" / "last" / "trainer_state.pt", weights_only=True)
    assert (a["step"], a["epoch"], a["best"]) == (b["step"], b["epoch"], b["best"])
    for name in ("torch", "numpy", "python"):
        assert repr(a["rng"][0][name]) == repr(b["rng"][0][name]), name

    def train_rows(run: Path) -> list[tuple]:
        rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["lr"]) for r in rows if r["split"] == "train"]

    assert train_rows(resumed) == train_rows(straight)


def kill_points(total_steps: int, seed: int) -> list[tuple[int, float]]:
    """KILLS different steps before the last, each with a delay of up to 30 ms (so kills
    land in a step, in validation or in the middle of writing a checkpoint)."""
    rng = random.Random(seed)
    steps = sorted(rng.sample(range(1, total_steps - 1), KILLS))
    return [(step, round(rng.uniform(0.0, 0.03), 3)) for step in steps]


@pytest.mark.parametrize("method", ["faceformer", "emoface"])
def test_a_run_killed_three_times_ends_like_an_uninterrupted_one(tmp_path, method):
    if method == "faceformer":
        data = write_run_dataset(tmp_path / "data")  # 6 training sequences, batches of 2: 3 steps an epoch
        # dropout, warm-up and cosine decay, validation (and `best`) every other epoch
        config = tiny_config(epochs=6, schedule="cosine", warmup_steps=2, val_every=2)  # dropout 0.1 by default
        total = 18
    else:
        data = write_pair_dataset(tmp_path / "data")  # 3 sequences, 2 with a partner: 2 steps an epoch
        config = config_from_dict({
            "method": "emoface", "encoder": EMOFACE_ENCODER, "model": {**EMOFACE_MODEL, "period": 15, "dropout": 0.1},
            "data": {"window_seconds": 0.4, "batch_size": 2},
            "train": {"epochs": 8, "lr": 1.0e-3, "log_every": 1, "schedule": "cosine", "warmup_steps": 2},
        })
        total = 16
    path = write_config(tmp_path / f"{method}.yaml", config)
    # The uninterrupted run goes on beside the killed one.
    straight = subprocess.Popen(command(path, data, tmp_path / "straight", resume=False), env=environment(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    points = kill_points(total, seed={"faceformer": 7, "emoface": 11}[method])
    killed_at = train_killed(path, data, tmp_path / "killed", points)
    output, _ = straight.communicate(timeout=TIMEOUT)
    assert straight.returncode == 0, output
    assert max(logged_steps(tmp_path / "straight")) == total
    print(f"{method}: kill points {points}, killed after logged steps {killed_at}")
    assert_same_run(tmp_path / "straight", tmp_path / "killed")
    leftovers = [p.name for p in (tmp_path / "killed" / "main").iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers  # temporary folders of a checkpoint cut by a kill are cleaned up
