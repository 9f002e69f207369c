"""voxmesh's .glb: what the writer puts in it (weights in [0, 1], linear colours, normals,
target names, the frame rate), and scripts/check_glb.py, which runs it through the Khronos
glTF validator, three.js in headless Chromium and Blender's glTF importer. The end-to-end
tests need node, the pinned npm packages already in the cache and Chromium, or Blender,
and are skipped without them: tests never install anything."""

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

from voxmesh.errors import VoxmeshError
from voxmesh.render.export import unit_weight_targets, write_glb, write_morph_glb

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


@pytest.mark.parametrize("finder, tool, command", [
    ("find_chromium", "/nonexistent/chromium", "apt-get install chromium"),
    ("find_blender", "/nonexistent/blender", "apt-get install --no-install-recommends blender python3-numpy"),
])
def test_a_missing_tool_names_the_install_command(finder, tool, command):
    check_glb = load_script()
    with pytest.raises(check_glb.SetupError, match=command):
        getattr(check_glb, finder)(tool, install=False)


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
                      "--json", str(report_path), "--no-blender")
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


# --- what the writer puts in the file (pygltflib reads it back; no tools needed) -----------

def read_accessor(glb, index: int) -> np.ndarray:
    """An accessor's float32 or uint32 values [count, width], sparse ones applied."""
    import pygltflib

    accessor = glb.accessors[index]
    width = {"SCALAR": 1, "VEC3": 3}[accessor.type]
    types = {pygltflib.FLOAT: np.float32, pygltflib.UNSIGNED_INT: np.uint32}
    blob = glb.binary_blob()

    def view(number, dtype, count, columns):
        v = glb.bufferViews[number]
        return np.frombuffer(blob[v.byteOffset: v.byteOffset + v.byteLength], dtype=dtype).reshape(count, columns)

    if accessor.bufferView is not None:
        values = view(accessor.bufferView, types[accessor.componentType], accessor.count, width).copy()
    else:
        values = np.zeros((accessor.count, width), types[accessor.componentType])
    if accessor.sparse is not None:
        sparse = accessor.sparse
        rows = view(sparse.indices.bufferView, types[sparse.indices.componentType], sparse.count, 1)[:, 0]
        values[rows] = view(sparse.values.bufferView, types[accessor.componentType], sparse.count, width)
    return values


def random_motion(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small sphere (42 vertices) shaken at random: vertices [T, V, 3], base, faces."""
    mesh = trimesh.creation.icosphere(subdivisions=1, radius=0.1)
    base = np.asarray(mesh.vertices, dtype=np.float32)
    noise = np.random.default_rng(seed).standard_normal((frames,) + base.shape).astype(np.float32)
    return base[None] + 0.004 * noise, base, np.asarray(mesh.faces)


@pytest.fixture(scope="module")
def random_glb(tmp_path_factory):
    vertices, base, faces = random_motion(10)
    colors = np.tile(np.array([[0.5, 0.2, 0.8]], np.float32), (len(base), 1))
    path = tmp_path_factory.mktemp("glb") / "random.glb"
    written = write_glb(vertices, faces, path, 25.0, base=base, vertex_colors=colors)
    import pygltflib

    return pygltflib.GLTF2().load(str(path)), written, vertices, base, faces, path


def morph_arrays(glb) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    primitive = glb.meshes[0].primitives[0]
    base = read_accessor(glb, primitive.attributes.POSITION)
    targets = np.stack([read_accessor(glb, t["POSITION"]) for t in primitive.targets])
    weights = read_accessor(glb, glb.animations[0].samplers[0].output).reshape(-1, len(targets))
    return base, targets, weights


def test_glb_weights_stay_in_unit_range_and_rebuild_the_motion(random_glb):
    glb, written, vertices, base, *_ = random_glb
    stored_base, targets, weights = morph_arrays(glb)
    assert weights.min() >= 0.0 and weights.max() <= 1.0  # Blender's sliders, Godot and assimp clamp the rest
    assert weights.max(axis=0).min() == 1.0  # every target reaches full weight once: no range is wasted
    assert glb.meshes[0].weights == [0.0] * len(targets)  # at rest: the base face
    np.testing.assert_array_equal(stored_base, base)
    rebuilt = stored_base[None] + np.einsum("tk,kvc->tvc", weights.astype(np.float64), targets)
    error = np.abs(rebuilt - vertices).max()
    assert error < 1e-5 and written["max_error_m"] < 1e-5
    assert written["max_error_m"] == pytest.approx(error, abs=1e-9)
    assert written["morph_targets"] == len(targets) <= 2 * written["components"]


def test_glb_names_its_targets_and_records_the_frame_rate(random_glb):
    glb, written, vertices, *_ = random_glb
    names = glb.meshes[0].extras["targetNames"]
    assert len(names) == written["morph_targets"] and len(set(names)) == len(names)
    assert names[:2] == ["motion_0_pos", "motion_0_neg"] and all(n.endswith(("_pos", "_neg")) for n in names)
    assert glb.asset.extras["fps"] == glb.scenes[0].extras["fps"] == glb.animations[0].extras["fps"] == 25.0
    times = glb.accessors[glb.animations[0].samplers[0].input]
    assert times.count == len(vertices) and times.max[0] == pytest.approx((len(vertices) - 1) / 25.0)
    assert written["fps"] == 25.0


def test_glb_colours_are_stored_linear(random_glb):
    glb, *_ = random_glb
    stored = read_accessor(glb, glb.meshes[0].primitives[0].attributes.COLOR_0)
    srgb = np.array([0.5, 0.2, 0.8])
    linear = ((srgb + 0.055) / 1.055) ** 2.4  # all three above the sRGB curve's linear toe
    np.testing.assert_allclose(stored, np.tile(linear, (len(stored), 1)), atol=1e-6)
    material = glb.materials[glb.meshes[0].primitives[0].material]
    assert material.pbrMetallicRoughness.metallicFactor == 0.0  # glTF's default material is metal


def test_glb_normals_are_smooth_unit_and_follow_each_target(random_glb):
    glb, written, _, base, faces, _ = random_glb
    primitive = glb.meshes[0].primitives[0]
    normals = read_accessor(glb, primitive.attributes.NORMAL).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    radial = base / np.linalg.norm(base, axis=1, keepdims=True)
    assert (np.sum(normals * radial, axis=1) > 0.98).all()  # smooth: a sphere's vertex normals point outward
    _, targets, _ = morph_arrays(glb)
    assert written["normal_targets"] == len(targets) and all("NORMAL" in t for t in primitive.targets)
    for target, morph in zip(targets, primitive.targets):
        moved = trimesh.Trimesh(base + target, faces, process=False).vertex_normals
        blended = normals + read_accessor(glb, morph["NORMAL"])
        blended /= np.linalg.norm(blended, axis=1, keepdims=True)
        assert (np.sum(blended * moved, axis=1) > 0.99).all()


def test_glb_size_is_reported(random_glb):
    glb, written, vertices, *_, path = random_glb
    duration = len(vertices) / 25.0
    assert written["bytes"] == path.stat().st_size
    assert written["bytes_per_second"] == pytest.approx(written["bytes"] / duration)
    per_frame = 4 * (1 + written["morph_targets"])  # a time and a weight per target, float32
    assert written["track_bytes_per_second"] == pytest.approx(per_frame * 25.0)


def test_a_half_that_is_never_used_is_left_out():
    weights = np.array([[0.5, -1.0], [2.0, 1.0], [1.0, -3.0]], np.float32)  # column 0 never negative
    targets = np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32)
    unit, split, names = unit_weight_targets(weights, targets)
    assert names == ["motion_0_pos", "motion_1_pos", "motion_1_neg"]
    assert unit.min() >= 0.0 and unit.max() == 1.0
    np.testing.assert_allclose(np.einsum("tk,kvc->tvc", unit, split), np.einsum("tk,kvc->tvc", weights, targets),
                               atol=1e-5)


def test_a_still_sequence_gets_one_empty_target(tmp_path):
    import pygltflib

    vertices, base, faces = random_motion(1)
    still = np.repeat(base[None], 4, axis=0)
    written = write_glb(still, faces, tmp_path / "still.glb", 30.0, base=base)
    glb = pygltflib.GLTF2().load(str(tmp_path / "still.glb"))
    _, targets, weights = morph_arrays(glb)
    assert written["morph_targets"] == 1 and written["max_error_m"] == 0.0
    assert not targets.any() and not weights.any()


def test_the_generic_writer_keeps_given_names_and_refuses_weights_outside_unit_range(tmp_path):
    import pygltflib

    _, base, faces = random_motion(1)
    targets = np.stack([np.full_like(base, 0.01), np.full_like(base, -0.01)])
    weights = np.array([[0.0, 0.0], [1.0, 0.25], [0.5, 1.0]], np.float32)
    write_morph_glb(base, faces, tmp_path / "named.glb", 60.0, weights, targets, target_names=["jawOpen", "mouthClose"])
    glb = pygltflib.GLTF2().load(str(tmp_path / "named.glb"))
    assert glb.meshes[0].extras["targetNames"] == ["jawOpen", "mouthClose"]
    np.testing.assert_array_equal(morph_arrays(glb)[2], weights)
    with pytest.raises(VoxmeshError, match=r"\[0, 1\]"):
        write_morph_glb(base, faces, tmp_path / "bad.glb", 60.0, weights * 2, targets)
    with pytest.raises(VoxmeshError, match="names"):
        write_morph_glb(base, faces, tmp_path / "bad.glb", 60.0, weights, targets, target_names=["one"])
    assert not (tmp_path / "bad.glb").exists()


# --- Blender: arguments always, the import itself where Blender is installed ----------------

def test_npy_count_must_match_the_files(tmp_path):
    glb = tmp_path / "tiny.glb"
    write_glb(*moving_sphere(5), glb, FPS)
    np.save(tmp_path / "a.npy", np.zeros((5, 2, 3), np.float32))
    done = run_script(str(glb), str(glb), "--npy", str(tmp_path / "a.npy"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "1 --npy for 2 files" in lines[0]
    done = run_script(str(glb), "--npy", str(tmp_path / "missing.npy"))
    assert done.returncode == 2 and "no such file" in done.stderr and "missing.npy" in done.stderr


def test_table_shows_the_blender_figures():
    check_glb = load_script()
    report = {"file": "a.glb", "bytes": 1000, "ok": True, "notes": [], "problems": [], "validator": None,
              "three": None, "blender": {"ok": True, "frames_checked": 12, "max_error_vs_file_m": 2e-8,
                                         "max_error_vs_npy_m": 4.5e-5, "render": {"ok": True, "frame": 7}}}
    text = check_glb.table([report])
    assert "Blender max error (mm)" in text and "0.0450" in text and "vs .npy" in text and "frame 7" in text


@pytest.fixture(scope="module")
def blender():
    check_glb = load_script()
    try:
        return check_glb.find_blender(None, install=False)
    except check_glb.SetupError as err:
        pytest.skip(str(err))


def speaking_sphere(frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """moving_sphere with a 'jaw': the lower half drops and comes back, as in speech."""
    vertices, faces = moving_sphere(frames)
    base = vertices[0].copy()
    lower = (base[:, 1] < 0)[None, :, None]
    phase = np.linspace(0.0, 3.0 * np.pi, frames, dtype=np.float32)[:, None, None]
    vertices = vertices + lower * np.array([0.0, -0.02, 0.005], np.float32) * np.abs(np.sin(phase))
    return vertices.astype(np.float32), base, faces


def test_blender_plays_the_glb_as_the_npy(blender, tmp_path):
    from PIL import Image

    check_glb = load_script()
    vertices, base, faces = speaking_sphere(12)
    glb, npy, png = tmp_path / "talk.glb", tmp_path / "talk.npy", tmp_path / "talk.png"
    write_glb(vertices, faces, glb, FPS, base=base)
    np.save(npy, vertices)
    result, problems, _ = check_glb.check_blender(glb, blender, npy, png, size=64)
    assert problems == [], result
    assert result["frames_checked"] == 12 and result["file_fps"] == FPS == result["scene_fps"]
    assert result["max_error_vs_npy_m"] <= check_glb.BLENDER_TOLERANCE_M
    assert result["max_error_vs_file_m"] < 1e-6  # Blender evaluates the file as written
    assert 0.0 <= result["key_values"][0] and result["key_values"][1] <= 1.0
    assert result["shape_key_names"][0].startswith("motion_0_")
    assert result["imported_scene_fps_property"] == FPS  # scene extras: a custom property in Blender
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape == (64, 64, 3) and np.ptp(image.reshape(-1, 3), axis=0).max() > 50  # something drawn


def test_blender_check_catches_weights_outside_unit_range(blender, tmp_path):
    """The old writer's signed weights: Blender clamps them, and the check says so."""
    import pygltflib

    check_glb = load_script()
    vertices, base, faces = speaking_sphere(12)
    write_glb(vertices, faces, tmp_path / "good.glb", FPS, base=base)
    glb = pygltflib.GLTF2().load(str(tmp_path / "good.glb"))
    blob = bytearray(glb.binary_blob())
    primitive = glb.meshes[0].primitives[0]
    for index, factor in [(t["POSITION"], 0.25) for t in primitive.targets] + [(glb.animations[0].samplers[0].output, 4.0)]:
        accessor = glb.accessors[index]
        view = glb.bufferViews[accessor.bufferView]
        values = np.frombuffer(bytes(blob[view.byteOffset: view.byteOffset + view.byteLength]), np.float32) * factor
        blob[view.byteOffset: view.byteOffset + view.byteLength] = values.astype(np.float32).tobytes()
        if accessor.min:
            accessor.min, accessor.max = [v * factor for v in accessor.min], [v * factor for v in accessor.max]
    glb.set_binary_blob(bytes(blob))
    glb.save_binary(str(tmp_path / "signed.glb"))  # the same motion by the glTF spec, weights up to 4
    result, problems, notes = check_glb.check_blender(tmp_path / "signed.glb", blender)
    assert result["ok"] and result["max_error_vs_file_m"] > 1e-3
    assert any("from what the file says" in p for p in problems)


def test_check_glb_with_blender_end_to_end(blender, tmp_path):
    missing = tools_missing()
    if missing:
        pytest.skip(missing)
    vertices, base, faces = speaking_sphere(12)
    write_glb(vertices, faces, tmp_path / "talk.glb", FPS, base=base)
    np.save(tmp_path / "talk.npy", vertices)
    done = run_script(str(tmp_path / "talk.glb"), "--npy", str(tmp_path / "talk.npy"), "--render", str(tmp_path),
                      "--no-install", "--cache", str(USER_CACHE), "--json", str(tmp_path / "report.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    result = report["results"][0]
    assert result["validator"]["numErrors"] == 0 and result["three"]["morphTargets"] >= 1
    assert result["blender"]["max_error_vs_npy_m"] <= 1e-4 and report["tools"]["blender"]
    assert (tmp_path / "talk_blender.png").stat().st_size > 0
    assert "Blender max error (mm)" in done.stdout
