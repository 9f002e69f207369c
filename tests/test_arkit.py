"""ARKit's 52 blendshapes on the procedural head: the canonical order and name matching,
each shape moving what it names, the solve from motion to weights, the synthetic ground
truth, the Live Link CSV / JSON / ARKit .glb writers and `voxmesh animate`'s new outputs."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pygltflib
import pytest
from typer.testing import CliRunner

from voxmesh.animate import animate_to_file, output_format
from voxmesh.cli import app
from voxmesh.errors import VoxmeshError
from voxmesh.mesh.arkit import (
    ARKIT_GROUPS,
    ARKIT_NAMES,
    LIVE_LINK_NAMES,
    OCULUS_VISEMES,
    RPM_VISEMES,
    ArkitShapes,
    arkit_index,
    match_names,
)
from voxmesh.render.arkit_files import (
    LIVE_LINK_HEADER,
    live_link_timecode,
    write_arkit,
    write_arkit_json,
    write_live_link_csv,
)

runner = CliRunner()

# The header of a Live Link Face CSV, as the issue gives it (and the app writes it).
EXPECTED_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
)
TIMECODE = re.compile(r"^(\d{2}):([0-5]\d):([0-5]\d):(\d{2})\.(\d{3})$")


@pytest.fixture(scope="module")
def shapes() -> ArkitShapes:
    return ArkitShapes()


def one_shape(shapes, **weights) -> np.ndarray:
    w = np.zeros((1, len(ARKIT_NAMES)), np.float32)
    for name, value in weights.items():
        w[0, ARKIT_NAMES.index(name)] = value
    return shapes.rebuild(w)[0]


def speech_motion(shapes, frames=90, seed=0) -> np.ndarray:
    """A talking-like motion of the rig: the jaw and a few visemes moving smoothly."""
    rig = shapes.rig
    t = np.arange(frames) / 30.0
    rng = np.random.default_rng(seed)
    jaw = np.radians(8.0) * (1 + np.sin(2 * np.pi * 2.5 * t)) / 2
    visemes = np.zeros((frames, rig.n_visemes), np.float32)
    for k, name in enumerate(("open_vowel", "rounded_vowel", "close_vowel")):
        visemes[:, rig.viseme_names.index(name)] = np.clip(np.sin(2 * np.pi * (0.7 + 0.4 * k) * t
                                                                  + rng.uniform(0, 6)), 0, 1)
    return rig.pose(shapes.neutral, jaw, visemes, np.zeros((frames, rig.n_expressions)), np.zeros(frames))


# ---- names ----------------------------------------------------------------------------------

def test_canonical_order_is_live_link_faces():
    assert len(ARKIT_NAMES) == 52 == len(set(ARKIT_NAMES))
    assert ",".join(LIVE_LINK_HEADER) == EXPECTED_HEADER
    assert ARKIT_NAMES[0] == "eyeBlinkLeft" and ARKIT_NAMES[-1] == "tongueOut"
    # Live Link Face's order, not the ARKit docs' or Unreal's enum: Right before Left here
    assert ARKIT_NAMES.index("jawRight") + 1 == ARKIT_NAMES.index("jawLeft")
    assert ARKIT_NAMES.index("mouthRight") + 1 == ARKIT_NAMES.index("mouthLeft")
    assert all(a[0].upper() + a[1:] == b for a, b in zip(ARKIT_NAMES, LIVE_LINK_NAMES))
    assert sorted(n for g in ARKIT_GROUPS.values() for n in g) == sorted(ARKIT_NAMES)


def test_name_matching_tolerates_case_and_separators_and_reports_the_rest():
    match = match_names(["JawOpen", "jawopen", "MOUTH_CLOSE", "eyeBlink_L", "blendShape1.eyeBlinkRight",
                         "viseme_aa", "Head"])
    assert match.index == {"JawOpen": 17, "jawopen": 17, "MOUTH_CLOSE": 18, "eyeBlink_L": 0,
                           "blendShape1.eyeBlinkRight": 7}
    assert match.unknown == ["viseme_aa", "Head"]
    assert match.found == ["eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthClose"]
    assert len(match.missing) == 48 and "tongueOut" in match.missing and "jawOpen" not in match.missing
    assert match_names(LIVE_LINK_NAMES).missing == [] and arkit_index("TONGUEOUT") == 51
    with pytest.raises(VoxmeshError, match="'jawOpened' is not one of ARKit's 52"):
        arkit_index("jawOpened")
    assert RPM_VISEMES[12:] == ("viseme_I", "viseme_O", "viseme_U") and len(OCULUS_VISEMES) == 15


# ---- the shapes ---------------------------------------------------------------------------------

def test_jaw_open_opens_and_mouth_close_closes(shapes):
    rig = shapes.rig
    rest = float(rig.mouth_opening(shapes.neutral))
    opened = float(rig.mouth_opening(one_shape(shapes, jawOpen=1.0)))
    closed = float(rig.mouth_opening(one_shape(shapes, jawOpen=1.0, mouthClose=1.0)))
    half = float(rig.mouth_opening(one_shape(shapes, jawOpen=1.0, mouthClose=0.5)))
    assert opened - rest >= 0.005  # at least 5 mm
    assert closed < 0.1 * (opened - rest) + rest and closed < half < opened  # the lips meet again
    chin = np.argmin(shapes.neutral[:, 1] + 10 * (shapes.neutral[:, 2] < 0.05))
    assert one_shape(shapes, jawOpen=1.0)[chin, 1] < shapes.neutral[chin, 1] - 0.012  # the chin drops


def test_blinks_close_one_eye_each(shapes):
    pairs = shapes.template.vertex_pairs["eyelid_pairs"]
    left = shapes.neutral[pairs[:, 0], 0] > 0  # the subject's left is +x

    def gaps(v):
        return np.linalg.norm(v[pairs[:, 0]] - v[pairs[:, 1]], axis=1)

    rest = gaps(shapes.neutral)
    blink = gaps(one_shape(shapes, eyeBlinkLeft=1.0))
    assert blink[left].max() < 0.15 * rest[left].max()  # closed
    np.testing.assert_allclose(blink[~left], rest[~left], atol=1e-7)  # the right eye stays open
    moved = np.abs(one_shape(shapes, eyeBlinkLeft=1.0) - shapes.neutral).max(axis=1) > 1e-6
    assert np.all(shapes.neutral[moved, 0] > 0.0)


# Where each group of shapes moves the face most (a point near the region) and how far at
# most that largest motion may lie from it (metres).
REGION_CENTRES = {
    "eye": ((0.0315, 0.025, 0.075), 0.025), "brow": ((0.03, 0.045, 0.085), 0.03),
    "mouth": ((0.0, -0.047, 0.1), 0.035),
    "cheek": ((0.035, -0.03, 0.075), 0.035), "nose": ((0.012, -0.01, 0.1), 0.025),
    "tongue": ((0.0, -0.047, 0.1), 0.035),
}


@pytest.mark.parametrize("name", ARKIT_NAMES)
def test_each_shape_moves_the_region_it_names_on_its_side(shapes, name):
    displacement = shapes.basis[ARKIT_NAMES.index(name)].astype(np.float64)
    size = np.linalg.norm(displacement, axis=1)
    assert 0.002 <= size.max() <= 0.05  # visible at weight 1, never wild
    prefix = re.match(r"[a-z]+", name).group(0)
    peak = shapes.neutral[np.argmax(size)]
    if prefix == "jaw":  # the jaw moves, the upper face does not
        assert shapes.rig.jaw_weight[np.argmax(size)] > 0.3
        assert size[shapes.rig.jaw_weight == 0.0].max() == 0.0
    else:
        centre, reach = REGION_CENTRES[prefix]
        target = np.array(centre) * (np.array([np.sign(peak[0]) or 1.0, 1, 1]))  # either side
        assert np.linalg.norm(peak - target) < reach, (name, peak)
    strong = size > 0.5 * size.max()
    side = np.average(shapes.neutral[strong, 0], weights=size[strong])
    if name.endswith("Left") and not name.startswith(("jaw", "mouthLeft")):
        assert side > 0.004  # the subject's left, +x
    elif name.endswith("Right") and not name.startswith(("jaw", "mouthRight")):
        assert side < -0.004
    if name in ("jawLeft", "mouthLeft"):  # the whole jaw or mouth goes to the subject's left
        assert np.average(displacement[strong, 0], weights=size[strong]) > 0
    if name in ("jawRight", "mouthRight"):
        assert np.average(displacement[strong, 0], weights=size[strong]) < 0


# ---- the solve ----------------------------------------------------------------------------------

def test_solve_recovers_known_weights_and_stays_in_range(shapes):
    rng = np.random.default_rng(0)
    truth = (rng.uniform(0, 1, (300, 52)) * (rng.uniform(size=(300, 52)) < 0.3)).astype(np.float32)
    motion = shapes.rebuild(truth)
    exact = shapes.solve(motion, smoothing=0.0, ridge=0.0, antagonists=0.0)
    assert np.abs(exact.weights - truth).mean() < 0.02 and exact.explained > 0.9999
    fit = shapes.solve(motion)  # the defaults: smoothing and the small priors
    assert fit.weights.dtype == np.float32 and fit.weights.shape == (300, 52)
    assert fit.weights.min() >= 0.0 and fit.weights.max() <= 1.0
    # beyond the range: weights are clipped to [0, 1]
    wild = shapes.solve(shapes.rebuild(np.full((3, 52), 1.6, np.float32)), smoothing=0.0)
    assert wild.weights.max() <= 1.0 and wild.weights.min() >= 0.0


def test_solve_of_speech_explains_it_smoothly_on_any_neutral(shapes):
    rig = shapes.rig
    neutral = rig.identity_shape(np.linspace(-0.8, 0.8, rig.n_identity))
    motion = speech_motion(shapes) - shapes.neutral + neutral
    fit = shapes.solve(motion, neutral)
    assert fit.explained > 0.99 and fit.lip_explained > 0.99 and fit.vertex_rms_mm < 0.5
    jaw = fit.weights[:, ARKIT_NAMES.index("jawOpen")]
    assert jaw.max() > 0.25 and jaw.min() < 0.05  # follows the jaw (8 degrees of the 25 of jawOpen = 1)
    # noise (1 mm a coordinate on a still face) jitters the weights less with smoothing
    still = neutral[None] + np.random.default_rng(1).normal(0, 1e-3, (60,) + neutral.shape).astype(np.float32)
    rough = np.abs(np.diff(shapes.solve(still, neutral, smoothing=0.0).weights, axis=0)).mean()
    smooth = np.abs(np.diff(shapes.solve(still, neutral, smoothing=0.5).weights, axis=0)).mean()
    assert smooth < 0.5 * rough
    with pytest.raises(VoxmeshError, match="procedural head"):
        shapes.solve(np.zeros((4, 42, 3), np.float32))


def test_visemes_follow_the_mouth(shapes):
    rig = shapes.rig

    def viseme_of(name, degrees):
        vis = np.zeros((1, rig.n_visemes))
        vis[0, rig.viseme_names.index(name)] = 1.0
        face = rig.pose(shapes.neutral, [np.radians(degrees)], vis, np.zeros((1, rig.n_expressions)), [0.0])
        return shapes.visemes(shapes.solve(face, smoothing=0.0).weights)[0]

    for rig_name, degrees, expected in (("bilabial", 1, "PP"), ("open_vowel", 13, "aa"), ("w", 3, "ou"),
                                        ("labiodental", 4, "FF")):
        track = viseme_of(rig_name, degrees)
        assert OCULUS_VISEMES[int(np.argmax(track))] == expected and abs(track.sum() - 1) < 1e-5
    assert viseme_of("rest", 0)[0] > 0.95  # silence


def test_synthetic_dataset_writes_ground_truth_weights(tmp_path_factory, shapes):
    from voxmesh.data.synthetic.dataset import synthesize_dataset
    from voxmesh.mesh.template import load_templates

    root = tmp_path_factory.mktemp("synth") / "tiny"
    synthesize_dataset(root, preset="tiny", seed=0, progress=False, workers=1)
    meta = json.loads((root / "blendshapes.json").read_text())
    assert meta["names"] == list(ARKIT_NAMES) and meta["explained"]["face"] > 0.99
    templates = load_templates(root / "templates.pkl")
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    errors = {group: [] for group in ARKIT_GROUPS}
    for row in rows[:6]:
        vertices = np.load(root / "vertices_npy" / f"{row['name']}.npy")
        truth = np.load(root / "blendshapes_npy" / f"{row['name']}.npy")
        assert truth.dtype == np.float32 and truth.shape == (len(vertices), 52)
        assert truth.min() >= 0.0 and truth.max() <= 1.0
        solved = shapes.solve(vertices, templates[row["subject"]]).weights
        for group, names in ARKIT_GROUPS.items():
            columns = [ARKIT_NAMES.index(n) for n in names]
            errors[group].append(np.abs(solved[:, columns] - truth[:, columns]).mean())
    assert np.mean(errors["jaw"]) < 0.05 and np.mean(errors["mouth"]) < 0.05


# ---- files --------------------------------------------------------------------------------------

def test_live_link_timecodes():
    assert live_link_timecode(0, 60) == "00:00:00:00.000"
    assert live_link_timecode(61, 60) == "00:00:01:01.000"
    assert live_link_timecode(60 * 3661 + 59, 60) == "01:01:01:59.000"
    assert live_link_timecode(15, 30) == "00:00:00:15.000"
    for k in range(200):  # 29.97 fps: frames 00-29 within a second, sub-frames in thousandths
        match = TIMECODE.match(live_link_timecode(k, 30000 / 1001))
        assert match and int(match.group(4)) < 30


def test_csv_and_json_writers(tmp_path):
    rng = np.random.default_rng(0)
    weights = rng.uniform(0, 1, (130, 52)).astype(np.float32)
    visemes = rng.dirichlet(np.ones(15), 130).astype(np.float32)
    write_live_link_csv(weights, tmp_path / "a.csv", 60.0, visemes=visemes, viseme_names=RPM_VISEMES)
    rows = list(csv.reader((tmp_path / "a.csv").open()))
    assert ",".join(rows[0][:63]) == EXPECTED_HEADER and tuple(rows[0][63:]) == RPM_VISEMES
    assert len(rows) == 131 and all(row[1] == "61" and len(row) == 78 for row in rows[1:])
    assert [row[0] for row in rows[1:3]] + [rows[-1][0]] == ["00:00:00:00.000", "00:00:00:01.000",
                                                             "00:00:02:09.000"]
    values = np.array([[float(x) for x in row[2:54]] for row in rows[1:]])
    np.testing.assert_allclose(values, weights, atol=1e-6)
    write_live_link_csv(weights, tmp_path / "plain.csv")
    assert (tmp_path / "plain.csv").read_text().splitlines()[0] == EXPECTED_HEADER
    write_arkit_json(weights, tmp_path / "a.json", 30.0, duration=4.34, visemes=visemes, viseme_names=OCULUS_VISEMES)
    document = json.loads((tmp_path / "a.json").read_text())
    assert document["fps"] == 30.0 and document["duration"] == 4.34 and document["names"] == list(ARKIT_NAMES)
    assert np.array(document["frames"]).shape == (130, 52) and np.array(document["visemes"]).shape == (130, 15)
    assert document["viseme_names"] == list(OCULUS_VISEMES)
    with pytest.raises(VoxmeshError, match=r"must lie in \[0, 1\]"):
        write_live_link_csv(weights * 2, tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_arkit_glb_names_its_morph_targets(shapes, tmp_path):
    motion = speech_motion(shapes, frames=40)
    written = write_arkit(motion, tmp_path / "talk.arkit.glb", "arkit.glb", 30.0)
    assert written["morph_targets"] == 52 and written["arkit_explained"] > 0.99
    glb = pygltflib.GLTF2().load(str(tmp_path / "talk.arkit.glb"))
    assert glb.meshes[0].extras["targetNames"] == list(ARKIT_NAMES)
    assert len(glb.meshes[0].primitives[0].targets) == 52
    sampler = glb.animations[0].samplers[0]
    accessor = glb.accessors[sampler.output]
    view = glb.bufferViews[accessor.bufferView]
    data = np.frombuffer(glb.binary_blob()[view.byteOffset: view.byteOffset + view.byteLength], np.float32)
    assert data.size == 40 * 52 and data.min() >= 0.0 and data.max() <= 1.0
    json_written = write_arkit(motion, tmp_path / "talk.json", "json", 30.0, seconds=1.33, visemes="rpm")
    assert json_written["frames"] == 40
    assert json.loads((tmp_path / "talk.json").read_text())["viseme_names"] == list(RPM_VISEMES)


# ---- voxmesh animate ----------------------------------------------------------------------------

def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_output_formats_and_bad_input_in_one_sentence(tmp_path):
    assert output_format(tmp_path / "talk.csv") == "csv" and output_format(tmp_path / "talk.json") == "json"
    assert output_format(tmp_path / "talk.ARKit.glb") == "arkit.glb" and output_format(tmp_path / "t.glb") == "glb"
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")  # never read: the options are refused first
    line = one_error_line(runner.invoke(app, ["animate", str(wav), "-o", str(tmp_path / "t.csv"),
                                              "--visemes", "klingon"]))
    assert "--visemes klingon is not a viseme set" in line and "oculus" in line and "rpm" in line
    line = one_error_line(runner.invoke(app, ["animate", str(wav), "-o", str(tmp_path / "t.npy"),
                                              "--visemes", "oculus"]))
    assert "--visemes goes into .csv and .json outputs, not .npy" in line
    assert not list(tmp_path.glob("t.*"))
    # a model of another topology is refused before any work
    not_the_head = SimpleNamespace(template=SimpleNamespace(num_vertices=42))
    with pytest.raises(VoxmeshError, match="procedural head of 5544 vertices, but this model animates 42"):
        animate_to_file(not_the_head, wav, tmp_path / "t.json")


@pytest.mark.usefixtures("torch_one_thread")
def test_animate_writes_a_live_link_csv_with_the_default_model(tmp_path):
    import soundfile

    from voxmesh.data.synthetic.speech import synthesize

    clip = synthesize("Papa bought a big apple pie.")
    soundfile.write(tmp_path / "speech.wav", clip.audio, clip.sample_rate)
    result = runner.invoke(app, ["animate", str(tmp_path / "speech.wav"), "-o", str(tmp_path / "talk.csv"),
                                 "--visemes", "oculus"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader((tmp_path / "talk.csv").open()))
    seconds = len(clip.audio) / clip.sample_rate
    assert ",".join(rows[0][:63]) == EXPECTED_HEADER and tuple(rows[0][63:]) == OCULUS_VISEMES
    assert abs(len(rows) - 1 - round(seconds * 60)) <= 1  # 60 fps, as Live Link Face records
    assert all(TIMECODE.match(row[0]) and row[1] == "61" for row in rows[1:])
    values = np.array([[float(x) for x in row[2:]] for row in rows[1:]])
    assert values.min() >= 0.0 and values.max() <= 1.0
    jaw = values[:, ARKIT_NAMES.index("jawOpen")]
    assert jaw.max() - jaw.min() > 0.1  # the mouth moves with the speech


# ---- avatars ------------------------------------------------------------------------------------

def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 120, 90)).save(out, format="PNG")
    return out.getvalue()


def build_avatar(path, face_names, teeth_names=None, *, names_on_primitive=False, instances=1,
                 external=False) -> None:
    """A small avatar made here: a face mesh with morph targets named ``face_names``, an
    optional teeth mesh, a skinned textured body, an armature root with an animation of
    its own, written as .glb (or .gltf with an external .bin and .png when ``external``)."""
    g = pygltflib
    blobs = bytearray()
    views, accessors = [], []

    def add(array, kind, component=g.FLOAT, target=None, bounds=False):
        data = np.ascontiguousarray(array).tobytes()
        blobs.extend(b"\0" * ((-len(blobs)) % 4))
        views.append(g.BufferView(buffer=0, byteOffset=len(blobs), byteLength=len(data), target=target))
        blobs.extend(data)
        accessor = g.Accessor(bufferView=len(views) - 1, componentType=component, count=len(array), type=kind)
        if bounds:
            flat = np.asarray(array).reshape(len(array), -1)
            accessor.min, accessor.max = flat.min(0).tolist(), flat.max(0).tolist()
        accessors.append(accessor)
        return len(accessors) - 1

    grid = np.stack(np.meshgrid(np.linspace(-0.05, 0.05, 4), np.linspace(-0.05, 0.05, 4)), -1).reshape(-1, 2)
    positions = np.concatenate([grid, np.zeros((16, 1))], 1).astype(np.float32)
    faces = np.array([[r * 4 + c, r * 4 + c + 1, r * 4 + c + 5, r * 4 + c, r * 4 + c + 5, r * 4 + c + 4]
                      for r in range(3) for c in range(3)], np.uint16).reshape(-1)
    indices = add(faces, g.SCALAR, g.UNSIGNED_SHORT, g.ELEMENT_ARRAY_BUFFER)

    def morph_mesh(name, names):
        position = add(positions, g.VEC3, target=g.ARRAY_BUFFER, bounds=True)
        targets = []
        for k in range(len(names)):
            delta = np.zeros_like(positions)
            delta[:, 2] = 0.001 * (k + 1)
            targets.append({"POSITION": add(delta, g.VEC3, target=g.ARRAY_BUFFER, bounds=True)})
        extras = {"targetNames": list(names)}
        primitive = g.Primitive(attributes=g.Attributes(POSITION=position), indices=indices, targets=targets,
                                extras=extras if names_on_primitive else {})
        return g.Mesh(name=name, primitives=[primitive], weights=[0.0] * (len(names) - 1) + [0.25],
                      extras={} if names_on_primitive else extras)

    meshes = [morph_mesh("Wolf3D_Head", face_names)]
    if teeth_names:
        meshes.append(morph_mesh("Wolf3D_Teeth", teeth_names))
    joints = add(np.zeros((16, 4), np.uint8), g.VEC4, g.UNSIGNED_BYTE, g.ARRAY_BUFFER)
    skin_weights = add(np.tile(np.array([1, 0, 0, 0], np.float32), (16, 1)), g.VEC4, target=g.ARRAY_BUFFER)
    uvs = add(np.concatenate([grid + 0.5], 1).astype(np.float32), g.VEC2, target=g.ARRAY_BUFFER)
    body_position = add(positions - np.array([0, 0.2, 0], np.float32), g.VEC3, target=g.ARRAY_BUFFER, bounds=True)
    meshes.append(g.Mesh(name="Body", primitives=[g.Primitive(
        attributes=g.Attributes(POSITION=body_position, JOINTS_0=joints, WEIGHTS_0=skin_weights, TEXCOORD_0=uvs),
        indices=indices, material=0)]))
    inverse_bind = add(np.tile(np.eye(4, dtype=np.float32).reshape(1, 16), (1, 1)), g.MAT4)
    times = add(np.array([0.0, 1.0], np.float32), g.SCALAR, bounds=True)
    turns = add(np.array([[0, 0, 0, 1], [0, 0.087, 0, 0.996]], np.float32), g.VEC4)
    png = _png()
    nodes = [g.Node(name="Armature", children=[1] + list(range(2, 2 + instances))
                    + ([3 + instances] if teeth_names else []))]
    nodes.append(g.Node(name="Hips"))
    nodes += [g.Node(name=f"Head{k}", mesh=0, translation=[0.2 * k, 0, 0]) for k in range(instances)]
    nodes.append(g.Node(name="Body", mesh=len(meshes) - 1, skin=0))
    if teeth_names:
        nodes.append(g.Node(name="Teeth", mesh=1))
    gltf = g.GLTF2(
        asset=g.Asset(version="2.0", generator="voxmesh tests"), scene=0, scenes=[g.Scene(nodes=[0, 2 + instances])],
        nodes=nodes,  # a skinned mesh's node is a root: its parents' transforms would not move it
        meshes=meshes, skins=[g.Skin(joints=[1], inverseBindMatrices=inverse_bind)],
        materials=[g.Material(name="skin", pbrMetallicRoughness=g.PbrMetallicRoughness(
            baseColorTexture=g.TextureInfo(index=0)))],
        textures=[g.Texture(source=0, sampler=0)], samplers=[g.Sampler()],
        animations=[g.Animation(name="idle", samplers=[g.AnimationSampler(input=times, output=turns)],
                                channels=[g.AnimationChannel(sampler=0, target=g.AnimationChannelTarget(
                                    node=0, path="rotation"))])],
        accessors=accessors, bufferViews=views)
    path = Path(path)
    if external:
        (path.parent / "avatar.bin").write_bytes(bytes(blobs))
        (path.parent / "skin.png").write_bytes(png)
        gltf.buffers = [g.Buffer(byteLength=len(blobs), uri="avatar.bin")]
        gltf.images = [g.Image(uri="skin.png")]
        gltf.save_json(str(path))
    else:
        blobs.extend(b"\0" * ((-len(blobs)) % 4))
        views.append(g.BufferView(buffer=0, byteOffset=len(blobs), byteLength=len(png)))
        blobs.extend(png)
        gltf.images = [g.Image(bufferView=len(views) - 1, mimeType="image/png")]
        gltf.buffers = [g.Buffer(byteLength=len(blobs))]
        gltf.set_binary_blob(bytes(blobs))
        gltf.save_binary(str(path))


def glb_parts(path):
    """The JSON (a dict) and the binary chunk of a .glb."""
    raw = Path(path).read_bytes()
    length = int.from_bytes(raw[12:16], "little")
    document = json.loads(raw[20: 20 + length])
    blob_length = int.from_bytes(raw[20 + length: 24 + length], "little")
    return document, raw[28 + length: 28 + length + blob_length]


def read_floats(document, blob, accessor_index):
    accessor = document["accessors"][accessor_index]
    view = document["bufferViews"][accessor["bufferView"]]
    start = view.get("byteOffset", 0)
    return np.frombuffer(blob[start: start + view["byteLength"]], np.float32)


def test_avatar_glb_keeps_everything_and_drives_its_arkit_targets(shapes, tmp_path):
    from voxmesh.render.arkit_files import read_avatar, write_arkit

    build_avatar(tmp_path / "rpm.glb", ["jawOpen", "mouthClose", "eyeBlinkLeft", "viseme_aa", "browInnerUp"],
                 ["jawOpen", "mouthOpen"])
    before, before_blob = glb_parts(tmp_path / "rpm.glb")
    avatar = read_avatar(tmp_path / "rpm.glb", visemes=True)
    assert avatar.found == ["eyeBlinkLeft", "jawOpen", "mouthClose", "browInnerUp"]
    assert len(avatar.missing) == 48 and avatar.visemes_found == ["viseme_aa"]
    motion = speech_motion(shapes, frames=45)
    written = write_arkit(motion, tmp_path / "talking.glb", "glb", 30.0, avatar=avatar, visemes="rpm")
    assert written["driven"] == avatar.found and written["nodes"] == ["Head0", "Teeth"]
    after, after_blob = glb_parts(tmp_path / "talking.glb")
    assert after_blob[: len(before_blob)] == before_blob  # the avatar's bytes, then the new data
    for key in ("nodes", "meshes", "materials", "textures", "images", "samplers", "skins", "scenes", "asset"):
        assert after[key] == before[key], key
    assert after["accessors"][: len(before["accessors"])] == before["accessors"]
    assert after["bufferViews"][: len(before["bufferViews"])] == before["bufferViews"]
    assert after["animations"][0] == before["animations"][0] and after["animations"][1]["name"] == "speech"
    speech = after["animations"][1]
    assert [c["target"] for c in speech["channels"]] == [{"node": 2, "path": "weights"},
                                                        {"node": 4, "path": "weights"}]
    fit = shapes.solve(motion)
    face = read_floats(after, after_blob, speech["samplers"][0]["output"]).reshape(45, 5)
    np.testing.assert_allclose(face[:, 0], fit.weights[:, ARKIT_NAMES.index("jawOpen")], atol=1e-6)
    np.testing.assert_allclose(face[:, 3], shapes.visemes(fit.weights)[:, OCULUS_VISEMES.index("aa")], atol=1e-6)
    teeth = read_floats(after, after_blob, speech["samplers"][1]["output"]).reshape(45, 2)
    assert np.all(teeth[:, 1] == 0.25)  # mouthOpen is no ARKit name: its default weight stays
    assert face.min() >= 0.0 and face.max() <= 1.0 and np.ptp(face[:, 0]) > 0.1
    loaded = pygltflib.GLTF2().load(str(tmp_path / "talking.glb"))  # and another reader agrees
    assert len(loaded.animations) == 2 and loaded.skins[0].joints == [1]


def test_gltf_avatar_with_external_files_and_other_names(shapes, tmp_path):
    from voxmesh.render.arkit_files import read_avatar, write_avatar_glb

    folder = tmp_path / "vroid"
    folder.mkdir()
    build_avatar(folder / "face.gltf", ["JawOpen", "MouthClose", "EyeBlink_L", "mouthSmile_L", "Fcl_ALL_Angry"],
                 names_on_primitive=True, instances=2, external=True)
    avatar = read_avatar(folder / "face.gltf")
    assert avatar.found == ["eyeBlinkLeft", "jawOpen", "mouthClose", "mouthSmileLeft"]
    weights = np.random.default_rng(0).uniform(0, 1, (12, 52)).astype(np.float32)
    written = write_avatar_glb(avatar, weights, tmp_path / "talking.glb", 25.0)
    assert written["nodes"] == ["Head0", "Head1"]  # both instances of the face
    document, blob = glb_parts(tmp_path / "talking.glb")
    assert "uri" not in document["images"][0] and document["images"][0]["mimeType"] == "image/png"
    assert document["buffers"] == [{"byteLength": len(blob)}]
    image_view = document["bufferViews"][document["images"][0]["bufferView"]]
    png = (folder / "skin.png").read_bytes()
    assert blob[image_view["byteOffset"]: image_view["byteOffset"] + image_view["byteLength"]] == png
    track = read_floats(document, blob, document["animations"][1]["samplers"][0]["output"]).reshape(12, 5)
    np.testing.assert_allclose(track[:, :4], weights[:, [17, 18, 0, 23]], atol=1e-7)
    assert np.all(track[:, 4] == 0.25)
    times = document["accessors"][document["animations"][1]["samplers"][0]["input"]]
    assert times["count"] == 12 and abs(times["max"][0] - 11 / 25) < 1e-6
    (folder / "avatar.bin").unlink()
    with pytest.raises(VoxmeshError, match="needs its external buffer avatar.bin, which is missing"):
        read_avatar(folder / "face.gltf")


def test_bad_avatars_are_refused_in_one_sentence(tmp_path, monkeypatch):
    import voxmesh.render.arkit_files as arkit_files

    build_avatar(tmp_path / "plain.glb", ["smile", "Fcl_MTH_A"])
    (tmp_path / "broken.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    (tmp_path / "notes.gltf").write_text("not json at all")
    build_avatar(tmp_path / "ok.glb", ["jawOpen"])
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")  # never read: the avatar is refused first
    expected = {"plain.glb": "has no morph targets with ARKit names", "broken.glb": "is not a glTF 2.0 file",
                "notes.gltf": "is not a glTF 2.0 file", "missing.glb": "does not exist"}
    for name, sentence in expected.items():
        line = one_error_line(runner.invoke(app, ["animate", str(wav), "-o", str(tmp_path / "out.glb"),
                                                  "--avatar", str(tmp_path / name)]))
        assert sentence in line, line
    line = one_error_line(runner.invoke(app, ["animate", str(wav), "-o", str(tmp_path / "out.csv"),
                                              "--avatar", str(tmp_path / "ok.glb")]))
    assert "--avatar writes a copy of the avatar as .glb, not .csv" in line
    monkeypatch.setattr(arkit_files, "MAX_AVATAR_BYTES", 1000)
    with pytest.raises(VoxmeshError, match=r"voxmesh reads avatars up to 0 MB"):
        arkit_files.read_avatar(tmp_path / "ok.glb")
    assert not list(tmp_path.glob("out.*"))
