"""Training across processes: two CPU processes (gloo) started by `accelerate launch`
train a tiny FaceFormer, each on its own batches, with one writer of checkpoints and
logs, resume, and log what one process at twice the batch size logs.

`accelerate launch --cpu --num_processes 2` starts one process only (Accelerate's CPU
launcher runs several through mpirun alone); `--multi_gpu` starts them through torchrun,
and on a machine without a GPU each process trains on the CPU with the gloo backend.

Where the two runs must differ, they are made not to: dropout is 0 (each process draws
its own masks), and the six training windows fill whole batches on both processes
(otherwise the last batches of an epoch are completed with its first windows, which a
single process does not repeat)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_trainer import rows, tiny_config, write_run_dataset

from voxmesh.train.checkpoint import WEIGHTS_FILE
from voxmesh.train.config import config_from_dict
from voxmesh.train.trainer import TRACE_ENV, WindowBatchSampler, train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def launch_two(config: Path, data: Path, out: Path, *extra: str) -> None:
    """`accelerate launch --multi_gpu --num_processes 2 -m voxmesh.cli train ...`."""
    accelerate = Path(sys.executable).parent / "accelerate"
    env = {**os.environ, TRACE_ENV: "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               "-m", "voxmesh.cli", "train", str(config), "--data", str(data), "--out", str(out), *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr


def trace(run: Path, process: int) -> list[dict]:
    path = run / f"trace-{process}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def batches(run: Path, process: int) -> dict[int, list[str]]:
    """Step -> the sequences of the batch a process trained on (the last time, for steps repeated)."""
    return {row["step"]: row["names"] for row in trace(run, process) if "names" in row}


def config_dict(batch_size: int, max_steps: int) -> dict:
    config = tiny_config(max_steps=max_steps, epochs=None).to_dict()
    config["model"] = {**config["model"], "dropout": 0.0}
    config["data"] = {**config["data"], "batch_size": batch_size}
    return config


def weights(run: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(run / "model" / WEIGHTS_FILE))


def test_two_processes_train_their_own_batches_write_once_resume_and_match_one_process(tmp_path, monkeypatch):
    data = write_run_dataset(tmp_path / "data")  # six training windows, one validation sequence

    # One process at batch size 2: what two processes at batch size 1 compute together.
    monkeypatch.setenv(TRACE_ENV, "1")
    single = tmp_path / "single"
    train(config_from_dict(config_dict(batch_size=2, max_steps=6)), data, single, progress=False)

    # Two processes, stopped after one epoch (3 steps), then resumed to 6.
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(config_dict(batch_size=1, max_steps=3)))
    two = tmp_path / "two"
    launch_two(config, data, two)
    first_leg = [batches(two, 0), batches(two, 1)]
    assert {row["processes"] for row in trace(two, 0) + trace(two, 1)} == {2}  # really two processes
    for step in (1, 2, 3):  # each its own sequence; together the single process's batch
        assert len(first_leg[0][step]) == len(first_leg[1][step]) == 1
        assert sorted(first_leg[0][step] + first_leg[1][step]) == sorted(batches(single, 0)[step])
    seen = first_leg[0][1] + first_leg[0][2] + first_leg[0][3] + first_leg[1][1] + first_leg[1][2] + first_leg[1][3]
    assert len(set(seen)) == 6  # the epoch covers every training window once
    # Checkpoints and the final model are written by process 0 alone, once each.
    written = Counter((r["checkpoint"], r["step"]) for p in (0, 1) for r in trace(two, p) if "checkpoint" in r)
    assert written == {("last", 3): 1, ("best", 3): 1, ("model", 3): 1}
    assert not any("checkpoint" in r for r in trace(two, 1))
    assert sorted(p.name for p in (two / "main").iterdir()) == ["best", "last"]
    assert [r["step"] for r in rows(two) if r["split"] == "train"] == [1, 2, 3]  # one row a step, not two

    launch_two(config, data, two, "--resume", "--set", "train.max_steps=6")
    assert [sorted(batches(two, 0)[s] + batches(two, 1)[s]) for s in (4, 5, 6)] == \
        [sorted(batches(single, 0)[s]) for s in (4, 5, 6)]
    written = Counter((r["checkpoint"], r["step"]) for p in (0, 1) for r in trace(two, p) if "checkpoint" in r)
    assert written[("last", 6)] == 1 and written[("model", 6)] == 1 and not any("checkpoint" in r for r in trace(two, 1))

    # The logged losses, learning rate, epoch and validation equal the single process's within
    # float tolerance (the gradients are averaged in another order).
    single_rows = {(r["split"], r["step"]): r for r in rows(single)}
    two_rows = {(r["split"], r["step"]): r for r in rows(two)}
    for step in range(1, 7):
        one, both = single_rows[("train", step)], two_rows[("train", step)]
        assert both["loss"] == pytest.approx(one["loss"], rel=1e-5), step  # measured: 2e-7
        assert (both["lr"], both["epoch"]) == (one["lr"], one["epoch"])
    one, both = single_rows[("val", 6)], two_rows[("val", 6)]
    assert both["loss"] == pytest.approx(one["loss"], rel=1e-5)
    for key, value in one["metrics"].items():
        assert both["metrics"][key] == pytest.approx(value, rel=1e-5), key
    expected, got = weights(single), weights(two)
    assert sorted(expected) == sorted(got)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)  # measured: 3e-8


@pytest.mark.parametrize("items, batch_size", [(6, 2), (5, 1), (3, 2), (1, 1)])
def test_a_resumed_epoch_deals_the_batches_of_an_uninterrupted_one_on_two_processes(items, batch_size):
    """The sampler's own padding, dealt as Accelerate deals batches (batch k to process
    k mod 2): every batch full, as many for each process, and a resume that skips the
    batches already trained on continues with the same ones."""
    from accelerate.data_loader import BatchSamplerShard

    def dealt(skip: int) -> list[list[list]]:
        sampler = WindowBatchSampler(items, batch_size, seed=3, processes=2)
        sampler.start_epoch(1, skip=skip)
        return [list(BatchSamplerShard(sampler, num_processes=2, process_index=p)) for p in (0, 1)]

    whole = dealt(0)
    assert len(whole[0]) == len(whole[1]) == len(WindowBatchSampler(items, batch_size, 3, processes=2)) // 2
    assert all(len(batch) == batch_size for process in whole for batch in process)
    keys = {key for process in whole for batch in process for key in batch}
    assert {index for index, _ in keys} == set(range(items))
    for done in range(len(whole[0])):
        resumed = dealt(skip=2 * done)
        assert resumed == [whole[0][done:], whole[1][done:]]
