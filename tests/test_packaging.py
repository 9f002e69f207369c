"""What a pip-installed voxmesh carries and how it picks its device and threads: shipped
configs found by name from any folder, no path of the build machine in the shipped model,
`voxmesh demo` listed, devices this machine lacks refused, thread counts that do not take
busy cores."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from voxmesh.cli import app
from voxmesh.errors import VoxmeshError
from voxmesh.runtime import choose_threads, resolve_device, using_threads
from voxmesh.train.checkpoint import builtin_model_path
from voxmesh.train.config import PACKAGED_CONFIGS, load_config


def test_every_config_ships_inside_the_package_and_loads_by_name(tmp_path, monkeypatch):
    names = sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))
    assert PACKAGED_CONFIGS.parent.name == "voxmesh" and len(names) >= 12
    monkeypatch.chdir(tmp_path)  # another folder: no configs/ here
    for name in names:
        assert load_config(name).method == name.split("_")[0]
    assert load_config("configs/faceformer_synthetic.yaml").method == "faceformer"
    with pytest.raises(VoxmeshError, match="faceformer_synthetic"):  # the refusal lists what ships
        load_config("no_such_config")


def test_the_shipped_model_names_no_path_of_the_build_machine():
    text = (builtin_model_path("default") / "model.json").read_text()
    exported = json.loads(text)["exported"]["from"]
    assert not exported.startswith("/") and "/work/" not in text and "/home/" not in text and "/root/" not in text


def test_demo_is_a_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "demo" in result.output
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0 and "espeak-ng" in result.output


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(VoxmeshError, match="'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(VoxmeshError, match="--device cpu"):
            resolve_device("cuda")


def test_threads_leave_busy_cores_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)))
    monkeypatch.setattr(os, "getloadavg", lambda: (2.3, 2.0, 2.0))  # both cores busy
    assert choose_threads() == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.0, 0.0))
    assert choose_threads() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))
    assert choose_threads() == 4  # at most 4 by default
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads() == 3 and choose_threads(7) == 7
    with pytest.raises(VoxmeshError, match="--threads 0"):
        choose_threads(0)


def test_using_threads_restores_the_callers_setting():
    before = torch.get_num_threads()
    with using_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_readme_says_how_to_get_the_cpu_build():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme and "voxmesh demo" in readme


def test_a_missing_extra_is_named_in_one_sentence(monkeypatch, tmp_path):
    """Without espeakng-loader (the synth extra), speaking says which extra to install;
    without matplotlib (bench) the trainer skips loss.png instead of failing."""
    import importlib.util

    from voxmesh import extras
    from voxmesh.train.plots import plot_losses

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("espeakng_loader", "matplotlib") else real(name, *a))
    with pytest.raises(VoxmeshError) as info:
        extras.require("espeakng_loader", "Speaking with espeak-ng")
    message = str(info.value)
    assert "espeakng-loader" in message and "pip install 'voxmesh[synth]'" in message and message.count(". ") == 0
    (tmp_path / "log.jsonl").write_text('{"stage": "main", "step": 1, "loss": 0.5}\n')
    assert plot_losses(tmp_path / "log.jsonl", tmp_path / "loss.png") is None and not (tmp_path / "loss.png").exists()


def test_the_extras_in_pyproject_match_voxmesh_extras():
    import tomllib

    from voxmesh.extras import OPTIONAL

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for distribution, extra in OPTIONAL.values():
        assert distribution not in core, distribution
        assert any(dep.startswith(distribution) for dep in project["optional-dependencies"][extra]), distribution
