"""scripts/check_glb.py: voxmesh's .glb through the Khronos glTF validator and three.js
in headless Chromium. The end-to-end tests need node, the pinned npm packages already in
the cache and Chromium, and are skipped without them: tests never install anything."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from voxmesh.render.export import write_glb

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_glb.py"
FPS = 30.0
# The user's cache, read when this module is imported: conftest points $VOXMESH_CACHE at an
# empty folder for the test session, where the npm packages are never installed.
USER_CACHE = Path(os.environ.get("VOXMESH_CACHE", Path.home() / ".cache" / "voxmesh")) / "glb-check"


def load_script():
    spec = importlib.util.spec_from_file_location("check_glb", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


# --- always run: arguments and missing tools, no node needed -------------------------------

def test_missing_file_is_a_one_line_error(tmp_path):
    done = run_script(str(tmp_path / "nothing.glb"))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such file" in lines[0] and "nothing.glb" in lines[0]


def test_not_a_glb_is_a_one_line_error(tmp_path):
    path = tmp_path / "fake.glb"
    path.write_text('{"asset": {"version": "2.0"}}')
    done = run_script(str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a binary glTF" in lines[0]


def test_no_arguments_is_a_usage_error():
    done = run_script()
    assert done.returncode == 2
    assert "FILE.glb" in done.stderr


def test_no_install_with_an_empty_cache_says_what_is_missing(tmp_path):
    glb = tmp_path / "tiny.glb"
    write_glb(*moving_sphere(5), glb, FPS)
    done = run_script(str(glb), "--no-install", "--cache", str(tmp_path / "empty-cache"))
    assert done.returncode == 3  # node missing, or the packages not in this cache
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "empty-cache" / "node_modules").exists()


def test_missing_chromium_names_the_install_command():
    check_glb = load_script()
    with pytest.raises(check_glb.SetupError, match="apt-get install chromium"):
        check_glb.find_chromium("/nonexistent/chromium", install=False)


def test_table_marks_failures():
    check_glb = load_script()
    report = {"file": "a.glb", "bytes": 2_000_000, "ok": False, "notes": [],
              "problems": ["the glTF validator reports 1 error(s)"],
              "validator": {"numErrors": 1, "numWarnings": 0, "numInfos": 0, "numHints": 0,
                            "messages": [{"severity": "error", "code": "X", "pointer": "/a", "message": "bad"}]},
              "three": None}
    text = check_glb.table([report])
    assert "FAIL" in text and "2.00 MB" in text and "validator error X at /a: bad" in text


# --- end to end: the validator and three.js ------------------------------------------------

def moving_sphere(frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A head-sized icosphere breathing and nodding: vertices [T, V, 3], faces [F, 3]."""
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.1)
    base = np.asarray(mesh.vertices, dtype=np.float32)
    phase = np.linspace(0.0, 2.0 * np.pi, frames, dtype=np.float32)[:, None, None]
    vertices = base[None] * (1.0 + 0.05 * np.sin(phase)) + np.array([0.0, 0.01, 0.0], np.float32) * np.cos(phase)
    return vertices, np.asarray(mesh.faces)


def tools_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    check_glb = load_script()
    if not check_glb.packages_ready(USER_CACHE):
        return f"the pinned npm packages are not in {USER_CACHE} (run scripts/check_glb.py once to install them)"
    chromium = os.environ.get("CHROMIUM", check_glb.DEFAULT_CHROMIUM)
    if not os.access(chromium, os.X_OK):
        return f"no Chromium at {chromium} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """Four files through one run of the check: two good ones (with and without vertex
    colours), one the validator rejects and one with neither morph targets nor animation."""
    missing = tools_missing()
    if missing:
        pytest.skip(missing)
    import pygltflib

    folder = tmp_path_factory.mktemp("glb_check")
    vertices, faces = moving_sphere(24)
    written = {"plain": write_glb(vertices, faces, folder / "plain.glb", FPS)}
    colors = np.tile(np.array([[0.8, 0.6, 0.5]], np.float32), (vertices.shape[1], 1))
    written["colored"] = write_glb(vertices, faces, folder / "colored.glb", FPS, vertex_colors=colors)

    broken = pygltflib.GLTF2().load(str(folder / "plain.glb"))
    broken.accessors[broken.meshes[0].primitives[0].attributes.POSITION].count *= 10  # runs past its buffer view
    broken.save_binary(str(folder / "broken.glb"))

    still = pygltflib.GLTF2().load(str(folder / "plain.glb"))
    still.meshes[0].primitives[0].targets = []
    still.meshes[0].weights = []
    still.animations = []
    still.save_binary(str(folder / "still.glb"))

    names = ["plain", "colored", "broken", "still"]
    report_path = folder / "report.json"
    done = run_script(*(str(folder / f"{n}.glb") for n in names), "--no-install", "--cache", str(USER_CACHE),
                      "--json", str(report_path))
    report = json.loads(report_path.read_text())
    return done, dict(zip(names, report["results"])), written, vertices, report["tools"]


def test_check_fails_overall_when_one_file_fails(checked):
    done, results, *_ = checked
    assert done.returncode == 1
    assert [r["ok"] for r in results.values()] == [True, True, False, False]
    assert "morph targets" in done.stdout and "FAIL" in done.stdout


@pytest.mark.parametrize("name", ["plain", "colored"])
def test_voxmesh_glb_passes_the_validator(checked, name):
    _, results, *_ = checked
    validator = results[name]["validator"]
    assert validator["numErrors"] == 0, validator["messages"]
    assert validator["info"]["hasMorphTargets"] and validator["info"]["animationCount"] == 1


@pytest.mark.parametrize("name", ["plain", "colored"])
def test_three_js_loads_morph_targets_and_the_animation(checked, name):
    _, results, written, vertices, _ = checked
    three = results[name]["three"]
    assert three["meshes"] == 1
    assert three["vertices"] == vertices.shape[1]
    assert three["morphTargets"] == written[name]["morph_targets"] >= 1
    assert three["animations"] == 1 and three["channels"] == 1
    assert three["keyframes"] == len(vertices)
    assert three["duration"] == pytest.approx((len(vertices) - 1) / FPS, abs=1e-4)
    assert three["maxInfluenceChange"] > 0.1  # the weights track binds to the mesh and moves it


def test_validator_errors_fail_the_check(checked):
    _, results, *_ = checked
    broken = results["broken"]
    assert broken["validator"]["numErrors"] > 0
    assert any("validator reports" in p for p in broken["problems"])


def test_a_glb_without_motion_fails_the_check(checked):
    _, results, *_ = checked
    still = results["still"]
    assert still["validator"]["numErrors"] == 0
    assert still["three"]["morphTargets"] == 0 and still["three"]["channels"] == 0
    assert still["problems"] == ["three.js finds neither morph targets nor animation channels"]


def test_report_names_the_pinned_tools(checked):
    *_, tools = checked
    check_glb = load_script()
    assert {f"npm:{k}": v for k, v in check_glb.pinned_packages().items()}.items() <= tools.items()
    assert tools["chromium"] and tools["node"].startswith("v")
