"""Import one .glb with Blender's own glTF importer and measure what Blender plays.

    blender -b --factory-startup --python-exit-code 1 --python blender_check.py -- \
        FILE.glb [--npy MOTION.npy] [--frames N] [--render OUT.png] [--render-frame K] [--size PX]

Run by scripts/check_glb.py (Blender's Python with numpy: Debian's blender package needs
python3-numpy beside it). It sets the scene's frame rate to the file's ``extras.fps`` (the
importer turns keyframe seconds into frames at the open scene's rate), imports the file,
and at each checked frame (every frame, or ``--frames`` spread evenly) reads the face as
Blender evaluates it (shape keys at their animated values, through the depsgraph), turns
it back into glTF's axes (Blender is Z up: glTF (x, y, z) is Blender (x, -z, y)) and
compares it with

* what the file itself says: base + weights (sampled at that time) @ targets, and
* with ``--npy``, the motion the file was made from, float ``[T, V, 3]`` in metres.

``--render`` draws frame ``--render-frame`` (default: the frame farthest from the base
mesh, usually the widest-open mouth) from the front with Cycles on the CPU. Prints one
JSON line on stdout; its ``error`` says why the check could not run.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import traceback

import bpy
import numpy as np

COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_glb(path: str) -> tuple[dict, bytes]:
    """The JSON and binary chunks of a .glb."""
    with open(path, "rb") as handle:
        data = handle.read()
    magic, _, length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF":
        raise ValueError(f"{path} is not a binary glTF file")
    offset, document, blob = 12, None, b""
    while offset < length:
        size, kind = struct.unpack_from("<I4s", data, offset)
        chunk = data[offset + 8: offset + 8 + size]
        if kind == b"JSON":
            document = json.loads(chunk.decode("utf-8"))
        elif kind == b"BIN\0":
            blob = chunk
        offset += 8 + size
    return document, blob


def _view_array(document: dict, blob: bytes, view_index: int, byte_offset: int, dtype, count: int, width: int):
    view = document["bufferViews"][view_index]
    start = view.get("byteOffset", 0) + byte_offset
    itemsize = np.dtype(dtype).itemsize
    stride = view.get("byteStride") or itemsize * width
    raw = np.frombuffer(blob, dtype=np.uint8, count=stride * (count - 1) + itemsize * width, offset=start)
    rows = np.lib.stride_tricks.as_strided(raw, shape=(count, itemsize * width), strides=(stride, 1))
    return np.ascontiguousarray(rows).view(dtype).reshape(count, width)


def accessor(document: dict, blob: bytes, index: int) -> np.ndarray:
    """An accessor's values, float64 or integer ``[count, width]`` (sparse ones applied;
    normalized integers are left as stored: voxmesh writes floats)."""
    acc = document["accessors"][index]
    dtype, width, count = COMPONENTS[acc["componentType"]], WIDTHS[acc["type"]], acc["count"]
    if "bufferView" in acc:
        values = _view_array(document, blob, acc["bufferView"], acc.get("byteOffset", 0), dtype, count, width).copy()
    else:
        values = np.zeros((count, width), dtype)
    sparse = acc.get("sparse")
    if sparse:
        rows = _view_array(document, blob, sparse["indices"]["bufferView"], sparse["indices"].get("byteOffset", 0),
                           COMPONENTS[sparse["indices"]["componentType"]], sparse["count"], 1)[:, 0]
        values[rows] = _view_array(document, blob, sparse["values"]["bufferView"],
                                   sparse["values"].get("byteOffset", 0), dtype, sparse["count"], width)
    return values


def file_fps(document: dict) -> float | None:
    """``extras.fps`` of the scene, the animation or the asset (voxmesh writes all three)."""
    places = [document.get("scenes", [{}])[document.get("scene", 0)], *document.get("animations", [])[:1],
              document.get("asset", {})]
    for place in places:
        fps = (place.get("extras") or {}).get("fps")
        if isinstance(fps, (int, float)) and fps > 0:
            return float(fps)
    return None


class FileMotion:
    """The first mesh's morph animation as the file defines it (linear weights)."""

    def __init__(self, document: dict, blob: bytes):
        mesh = document["meshes"][0]
        primitive = mesh["primitives"][0]
        self.base = accessor(document, blob, primitive["attributes"]["POSITION"]).astype(np.float64)
        self.targets = np.stack([accessor(document, blob, t["POSITION"]).astype(np.float64)
                                 for t in primitive.get("targets", [])]) if primitive.get("targets") else None
        # Blender keeps only the vertices that faces use, in index order (np.unique).
        if "indices" in primitive:
            self.kept = np.unique(accessor(document, blob, primitive["indices"])[:, 0])
        else:
            self.kept = np.arange(len(self.base))
        self.times = self.weights = None
        for animation in document.get("animations", [])[:1]:
            for channel in animation["channels"]:
                if channel["target"].get("path") == "weights":
                    sampler = animation["samplers"][channel["sampler"]]
                    self.times = accessor(document, blob, sampler["input"])[:, 0].astype(np.float64)
                    count = len(self.targets) if self.targets is not None else 0
                    self.weights = accessor(document, blob, sampler["output"]).astype(np.float64).reshape(-1, count)
                    break

    def at_key(self, k: int) -> np.ndarray:
        return self.base + np.einsum("k,kvc->vc", self.weights[k], self.targets)


def clear_scene() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)
    for mesh in list(bpy.data.meshes):
        bpy.data.meshes.remove(mesh)


def import_gltf(path: str) -> list[str]:
    """Blender's glTF import with its default options. Blender 3.4's importer (Debian 12's
    blender package) uses ``np.bool``, which numpy 1.24 removed, with its default Shading
    option (KhronosGroup/glTF-Blender-IO#1844, fixed in Blender 3.5): when that is what
    fails, the alias is put back as upstream's fix does and the import is run again, with
    a note."""
    try:
        bpy.ops.import_scene.gltf(filepath=path)
        return []
    except (RuntimeError, AttributeError) as err:
        if "has no attribute 'bool'" not in str(err) or hasattr(np, "bool"):
            raise
    clear_scene()
    np.bool = bool
    bpy.ops.import_scene.gltf(filepath=path)
    return [f"Blender {bpy.app.version_string}'s glTF importer fails with its default options under numpy "
            f"{np.__version__} (np.bool; glTF-Blender-IO#1844, fixed in Blender 3.5): checked with np.bool = bool, "
            "as upstream's fix; in that Blender pick Shading: Smooth when importing"]


def mesh_object():
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    if len(meshes) != 1:
        raise RuntimeError(f"the import made {len(meshes)} mesh objects, expected 1")
    return meshes[0]


def evaluated_gltf(obj) -> np.ndarray:
    """The evaluated mesh (modifiers, shape keys) in world space, in glTF axes."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, np.float64)
        mesh.vertices.foreach_get("co", co)
    finally:
        evaluated.to_mesh_clear()
    co = co.reshape(-1, 3)
    matrix = np.array(obj.matrix_world, dtype=np.float64)
    world = co @ matrix[:3, :3].T + matrix[:3, 3]
    return np.stack([world[:, 0], world[:, 2], -world[:, 1]], axis=1)


def shape_keys_gltf(obj) -> tuple[np.ndarray, dict[str, float]]:
    """basis + sum(value * (key - basis)) by hand (relative keys), in glTF axes, and the
    key values Blender holds at this frame."""
    blocks = obj.data.shape_keys.key_blocks
    def coords(block):
        co = np.empty(len(block.data) * 3, np.float64)
        block.data.foreach_get("co", co)
        return co.reshape(-1, 3)
    basis = coords(blocks[0])
    total = basis.copy()
    values = {}
    for block in blocks[1:]:
        values[block.name] = block.value
        if not block.mute:
            total += block.value * (coords(block) - basis)
    matrix = np.array(obj.matrix_world, dtype=np.float64)
    world = total @ matrix[:3, :3].T + matrix[:3, 3]
    return np.stack([world[:, 0], world[:, 2], -world[:, 1]], axis=1), values


def set_time(scene, seconds: float) -> None:
    frame = seconds * scene.render.fps / scene.render.fps_base
    whole = math.floor(frame + 1e-6)
    scene.frame_set(int(whole), subframe=max(0.0, frame - whole))


def render(obj, scene, path: str, size: int) -> dict:
    """One front view (glTF +Z faces the camera) with Cycles on the CPU."""
    points = evaluated_gltf(obj)
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    extent = float(np.max(high - low))
    blender_centre = (centre[0], -centre[2], centre[1])
    camera_data = bpy.data.cameras.new("check_camera")
    camera_data.lens = 85.0
    camera = bpy.data.objects.new("check_camera", camera_data)
    distance = 0.95 * extent * camera_data.lens / camera_data.sensor_width
    camera.location = (blender_centre[0], blender_centre[1] - distance - extent / 2, blender_centre[2])
    camera.rotation_euler = (math.pi / 2, 0.0, 0.0)  # looks along +Y (Blender) = -Z (glTF)
    scene.collection.objects.link(camera)
    scene.camera = camera
    for name, energy, rotation in (("key", 3.0, (math.radians(60), 0.0, math.radians(-30))),
                                   ("fill", 1.0, (math.radians(70), 0.0, math.radians(40)))):
        light_data = bpy.data.lights.new(name, "SUN")
        light_data.energy = energy
        light = bpy.data.objects.new(name, light_data)
        light.rotation_euler = rotation
        scene.collection.objects.link(light)
    world = scene.world or bpy.data.worlds.new("check_world")
    scene.world = world
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs[0].default_value = (0.18, 0.2, 0.24, 1.0)
    world.node_tree.nodes["Background"].inputs[1].default_value = 0.6
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.view_settings.view_transform = "Standard"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    return {"ok": True, "path": path, "size": size, "engine": "CYCLES"}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="blender_check.py")
    parser.add_argument("glb")
    parser.add_argument("--npy")
    parser.add_argument("--frames", type=int, default=0, help="frames to check, spread evenly (0: every frame)")
    parser.add_argument("--render")
    parser.add_argument("--render-frame", type=int)
    parser.add_argument("--size", type=int, default=384)
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> dict:
    document, blob = read_glb(args.glb)
    motion = FileMotion(document, blob)
    animated = motion.targets is not None and motion.weights is not None
    if args.npy and not animated:
        raise RuntimeError("the file has no morph targets with a weights animation to compare with the .npy")
    fps = file_fps(document)
    report: dict = {"blender": bpy.app.version_string, "file_fps": fps}

    clear_scene()  # --factory-startup's cube, camera and light
    scene = bpy.context.scene
    if fps:  # keyframes on whole frames; for 29.97 and the like fps_base takes the rest
        scene.render.fps = max(1, round(fps))
        scene.render.fps_base = scene.render.fps / fps
    report["scene_fps"] = scene.render.fps / scene.render.fps_base
    report["notes"] = import_gltf(args.glb)
    obj = mesh_object()
    keys = obj.data.shape_keys
    report["imported_scene_fps_property"] = scene.get("fps")  # scene extras become custom properties
    report["vertices"] = len(obj.data.vertices)
    report["shape_keys"] = len(keys.key_blocks) - 1 if keys else 0
    report["shape_key_names"] = [b.name for b in keys.key_blocks[1:6]] if keys else []
    if report["vertices"] != len(motion.kept):
        raise RuntimeError(f"Blender made {report['vertices']} vertices, the file's faces use {len(motion.kept)}")
    if not animated:
        report.update(frames_checked=0, per_frame=[])
        report["notes"].append("the file has no morph animation: nothing to play")
        return report
    action = keys.animation_data.action if keys and keys.animation_data else None
    report["action"] = action.name if action else None
    if action is None:
        raise RuntimeError("the import left no shape-key action: the weights animation did not arrive")
    report["slider_range"] = [min(b.slider_min for b in keys.key_blocks[1:]),
                              max(b.slider_max for b in keys.key_blocks[1:])]

    reference = None
    if args.npy:
        reference = np.load(args.npy, mmap_mode="r")
        if reference.ndim != 3 or reference.shape[1:] != motion.base.shape:
            raise RuntimeError(f"{args.npy} holds {reference.shape}, the file's mesh is {motion.base.shape}")
        if len(reference) != len(motion.times):
            raise RuntimeError(f"{args.npy} holds {len(reference)} frames, the file's animation {len(motion.times)}")
    count = len(motion.times)
    frames = list(range(count)) if args.frames <= 0 or args.frames >= count else \
        sorted({round(i * (count - 1) / (args.frames - 1)) for i in range(args.frames)}) if args.frames > 1 else [0]

    per_frame, values_low, values_high = [], math.inf, -math.inf
    for k in frames:
        set_time(scene, float(motion.times[k]))
        blender = evaluated_gltf(obj)
        by_hand, values = shape_keys_gltf(obj)
        values_low = min(values_low, min(values.values(), default=0.0))
        values_high = max(values_high, max(values.values(), default=0.0))
        row = {"frame": k, "time": float(motion.times[k]),
               "vs_file_m": float(np.linalg.norm(blender - motion.at_key(k)[motion.kept], axis=1).max()),
               "keys_vs_evaluated_m": float(np.linalg.norm(blender - by_hand, axis=1).max())}
        if reference is not None:
            row["vs_npy_m"] = float(np.linalg.norm(blender - np.asarray(reference[k], np.float64)[motion.kept],
                                                   axis=1).max())
        per_frame.append(row)
    report["frames_checked"] = len(per_frame)
    report["per_frame"] = per_frame
    report["max_error_vs_file_m"] = max(r["vs_file_m"] for r in per_frame)
    report["max_error_keys_vs_evaluated_m"] = max(r["keys_vs_evaluated_m"] for r in per_frame)
    if reference is not None:
        report["max_error_vs_npy_m"] = max(r["vs_npy_m"] for r in per_frame)
        worst = max(per_frame, key=lambda r: r["vs_npy_m"])
        report["worst_frame"] = worst["frame"]
    report["key_values"] = [values_low, values_high]

    if args.render:
        frame = args.render_frame
        if frame is None:  # farthest from the base mesh: the widest-open mouth in speech
            source = reference if reference is not None else None
            distances = [float(np.linalg.norm((np.asarray(source[k], np.float64) if source is not None
                                               else motion.at_key(k)) - motion.base, axis=1).mean())
                         for k in range(count)]
            frame = int(np.argmax(distances))
        frame = min(max(frame, 0), count - 1)
        set_time(scene, float(motion.times[frame]))
        report["render"] = render(obj, scene, args.render, args.size)
        report["render"]["frame"] = frame
        report["render"]["time"] = float(motion.times[frame])
    return report


def main() -> int:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    args = parse(argv)
    try:
        report = {"ok": True, **check(args)}
    except Exception as err:  # reported as JSON: check_glb.py says what went wrong
        report = {"ok": False, "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()[-2000:]}
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    main()
