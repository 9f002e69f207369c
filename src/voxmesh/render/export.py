"""Writing animated meshes where people's tools open them: ``.npy`` arrays, folders of
``.obj``/``.ply`` frames, and glTF 2.0 binaries (``.glb``) that Blender and three.js
play. Every writer streams blocks of frames ``[n, V, 3]`` where the format allows, and
only a complete file (or folder) appears under the final name."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path


def write_npy_stream(blocks: Iterable[np.ndarray], path: str | Path, total_frames: int, num_vertices: int, *,
                     overwrite: bool = True) -> Path:
    """Stream blocks into ``path`` as float32 ``[T, V, 3]``: the .npy header for the
    known shape, then each block's bytes appended with plain writes, so the process's
    memory does not grow with the length (a memory map would count every written page
    in its resident size: 2 MB per second of audio at 5,544 vertices). Without
    ``overwrite`` a file that another run wrote meanwhile is not replaced."""
    path = Path(path)
    with atomic_path(path, replace=overwrite) as tmp, open(tmp, "wb") as handle:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (int(total_frames), int(num_vertices), 3)}
        np.lib.format.write_array_header_1_0(handle, header)
        at = 0
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=np.float32)
            if block.shape[1:] != (num_vertices, 3) or at + len(block) > total_frames:
                raise RuntimeError(f"block of shape {block.shape} at frame {at} does not fit [{total_frames}, {num_vertices}, 3]")
            handle.write(block.tobytes())
            at += len(block)
        if at != total_frames:
            raise RuntimeError(f"wrote {at} frames, expected {total_frames}")
    return path


def write_mesh_frames(blocks: Iterable[np.ndarray], folder: str | Path, faces: np.ndarray, fmt: str = "obj", *,
                      overwrite: bool = True) -> Path:
    """One ``frame_00000.<fmt>`` per frame in ``folder`` (built under a temporary name;
    without ``overwrite`` a folder that another run made meanwhile is not replaced)."""
    from voxmesh.mesh.template import save_mesh

    if fmt not in ("obj", "ply"):
        raise VoxmeshError(f"Mesh frame format '{fmt}' is not obj or ply.")
    from voxmesh.files import atomic_folder

    folder = Path(folder)
    with atomic_folder(folder, replace=overwrite) as staging:  # replaces ``folder`` only when every frame is written
        index = 0
        for block in blocks:
            for frame in block:
                save_mesh(staging / f"frame_{index:05d}.{fmt}", frame, faces)
                index += 1
    return folder


# Morph-target weights in [0, 1]: the glTF specification allows any value, but the tools
# people open a .glb in do not. Blender's importer turns each target into a shape key with
# a [0, 1] slider and widens it only by a track's first keyframe (io_scene_gltf2 3.4,
# blender/imp/gltf2_blender_animation_weight.py), so the rest is clamped when played;
# Godot's blend shapes and assimp (negative weights) clamp too.
# The motion's compression keeps components until no coordinate of any frame is off by
# more than this (metres; half of what scripts/check_glb.py allows Blender's import).
MAX_ERROR_M = 5e-5
# Normal deltas smaller than this (unit-free; 1e-3 turns a normal by 0.06 degrees) are not
# stored: a target whose normals change nowhere by more has none, one whose normals change
# in part of the face a sparse accessor.
NORMAL_EPS = 1e-3
# Frames per block where a whole sequence's worth of float64 would be too much memory.
_BLOCK = 512


def motion_basis(vertices: np.ndarray, base: np.ndarray, max_targets: int = 64,
                 keep_energy: float = 0.99999, max_error: float = MAX_ERROR_M) -> tuple[np.ndarray, np.ndarray]:
    """Compress a sequence into signed components: displacements ``[T, V, 3]`` from ``base``
    ≈ ``weights [T, K] @ targets [K, V, 3]`` by a truncated SVD, keeping the fewest
    components that hold ``keep_energy`` of the motion and leave no coordinate more than
    ``max_error`` metres off (at most ``max_targets``). The weights are signed (about
    [-4, 4]); :func:`unit_weight_targets` makes them [0, 1]."""
    frames = vertices.shape[0]
    motion = (vertices - base[None]).reshape(frames, -1).astype(np.float64)
    if frames == 0 or not np.any(motion):
        return np.zeros((frames, 1), np.float32), np.zeros((1,) + base.shape, np.float32)
    u, s, vt = np.linalg.svd(motion, full_matrices=False)
    energy = np.cumsum(s**2) / np.sum(s**2)
    limit = int(min(max_targets, len(s)))
    k = int(min(limit, np.searchsorted(energy, keep_energy) + 1))
    residual = motion  # what the kept components leave, computed in place a block of frames at a time

    def remove(first: int, last: int) -> float:
        largest = 0.0
        for start in range(0, frames, _BLOCK):
            block = residual[start: start + _BLOCK]
            block -= (u[start: start + _BLOCK, first:last] * s[first:last]) @ vt[first:last]
            largest = max(largest, float(np.abs(block).max()))
        return largest

    error = remove(0, k)
    while k < limit and error > max_error:
        error = remove(k, k + 1)
        k += 1
    scale = s[:k] / np.sqrt(frames)
    targets = (vt[:k] * scale[:, None]).reshape(k, *base.shape)
    weights = u[:, :k] * np.sqrt(frames)
    return weights.astype(np.float32), targets.astype(np.float32)


def unit_weight_targets(weights: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Signed components -> morph targets whose weights stay in [0, 1]. Component ``k``
    (coefficient ``c``, direction ``t``) becomes ``motion_k_pos``: ``t * max(c)`` weighted
    ``max(c, 0) / max(c)``, and ``motion_k_neg``: ``-t * max(-c)`` weighted
    ``max(-c, 0) / max(-c)``; the sum is ``c * t`` again and all weights zero is the base
    face. A half whose coefficient never has its sign is left out. Returns weights
    ``[T, M]``, targets ``[M, V, 3]`` (float32) and their names."""
    out_weights, out_targets, names = [], [], []
    for k in range(weights.shape[1]):
        coefficient = weights[:, k].astype(np.float64)
        for sign, half in ((1.0, "pos"), (-1.0, "neg")):
            part = np.maximum(sign * coefficient, 0.0)
            peak = float(part.max(initial=0.0))
            if peak > 0.0 and np.any(targets[k]):
                out_weights.append(part / peak)
                out_targets.append(targets[k].astype(np.float64) * (sign * peak))
                names.append(f"motion_{k}_{half}")
    if not names:  # a still sequence: one empty target keeps the file's animation valid
        return (np.zeros((weights.shape[0], 1), np.float32), np.zeros((1,) + targets.shape[1:], np.float32),
                ["motion_0_pos"])
    return (np.stack(out_weights, axis=1).astype(np.float32), np.stack(out_targets).astype(np.float32), names)


def _unit_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Smooth (area-weighted) vertex normals, float64 ``[V, 3]``, all of unit length: a
    vertex that no face uses gets +Z, as glTF asks for unit normals everywhere."""
    from voxmesh.mesh.rig import _vertex_normals

    normals = _vertex_normals(np.asarray(vertices, dtype=np.float64), faces)
    normals[np.linalg.norm(normals, axis=1) < 0.5] = (0.0, 0.0, 1.0)
    return normals


def write_glb(vertices: np.ndarray, faces: np.ndarray, path: str | Path, fps: float, base: np.ndarray | None = None,
              vertex_colors: np.ndarray | None = None, max_targets: int = 64, *, overwrite: bool = True) -> dict:
    """A glTF 2.0 binary of a vertex sequence ``[T, V, 3]``: the neutral face (``base``,
    default the first frame) as the mesh, the motion as morph targets (a truncated SVD
    split into [0, 1]-weighted halves, :func:`unit_weight_targets`) and one animation of
    their weights at the audio's timing (keyframe k at k / fps seconds).
    ``vertex_colors`` are sRGB in [0, 1] (as the renderer takes them). Returns what was
    written: ``morph_targets``, ``max_error_m`` (the largest distance, per coordinate,
    between the input and base + weights @ targets as stored), ``bytes``,
    ``bytes_per_second`` of animation (the whole file over the duration) and
    ``track_bytes_per_second`` (what each second adds: keyframe times and weights)."""
    vertices = np.asarray(vertices, dtype=np.float32)
    base = np.asarray(base if base is not None else vertices[0], dtype=np.float32)
    components, directions = motion_basis(vertices, base, max_targets)
    weights, targets, names = unit_weight_targets(components, directions)
    written = write_morph_glb(base, faces, path, fps, weights, targets, target_names=names,
                              vertex_colors=vertex_colors, overwrite=overwrite)
    error = 0.0  # the stored float32 arrays rebuilt in float64, a block of frames at a time
    for start in range(0, len(vertices), _BLOCK):
        rebuilt = base.astype(np.float64) + np.einsum("tk,kvc->tvc", weights[start: start + _BLOCK].astype(np.float64),
                                                      targets.astype(np.float64))
        error = max(error, float(np.abs(rebuilt - vertices[start: start + _BLOCK]).max()))
    written["max_error_m"] = error
    written["components"] = int(components.shape[1])
    return written


def write_morph_glb(base: np.ndarray, faces: np.ndarray, path: str | Path, fps: float, weights: np.ndarray,
                    targets: np.ndarray, target_names: list[str] | None = None,
                    vertex_colors: np.ndarray | None = None, *, overwrite: bool = True) -> dict:
    """A glTF 2.0 binary of a mesh ``base [V, 3]`` with morph targets ``targets [K, V, 3]``
    (displacements) and one animation of their ``weights [T, K]``, which must lie in
    [0, 1], keyframe k at k / fps seconds. Writes smooth vertex normals and, per target,
    the change of the normals at full weight (where it exceeds :data:`NORMAL_EPS`);
    ``target_names`` go to ``mesh.extras.targetNames`` (Blender's shape-key names,
    three.js's ``morphTargetDictionary``); ``vertex_colors`` are sRGB in [0, 1] (or uint8)
    and stored linear in ``COLOR_0``, as glTF asks. The frame rate is recorded as
    ``extras.fps`` of the asset, the scene and the animation: glTF keeps time in seconds
    and no importer reads a frame rate from the file (Blender turns seconds into frames
    at the open scene's rate and imports scene extras as its custom properties). Without
    ``overwrite`` a file that another run wrote meanwhile is not replaced."""
    import pygltflib as gl

    from voxmesh.render.rasterizer import _as_unit_colors, _srgb_to_linear

    base = np.asarray(base, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.uint32)
    weights = np.asarray(weights, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    if faces.size == 0:
        raise VoxmeshError("A .glb needs the mesh faces; this model's checkpoint has none.")
    if not (np.isfinite(fps) and fps > 0):
        raise VoxmeshError(f"A .glb needs a positive frame rate, not {fps!r}.")
    if targets.ndim != 3 or targets.shape[1:] != base.shape or weights.ndim != 2 \
            or weights.shape[1] != len(targets) or len(targets) == 0:
        raise VoxmeshError(f"weights {weights.shape} and morph targets {targets.shape} do not fit a mesh of "
                           f"{base.shape}: expected [T, K] and [K, V, 3] with K >= 1.")
    if weights.size and not (np.isfinite(weights).all() and weights.min() >= 0.0 and weights.max() <= 1.0):
        raise VoxmeshError("morph-target weights must lie in [0, 1]: Blender, Godot and assimp clamp the rest.")
    if target_names is not None and len(target_names) != len(targets):
        raise VoxmeshError(f"{len(target_names)} target names for {len(targets)} morph targets.")
    fps = float(fps)
    times = np.arange(len(weights), dtype=np.float32) / np.float32(fps)

    blobs: list[bytes] = []
    views: list[gl.BufferView] = []
    accessors: list[gl.Accessor] = []
    offset = 0

    def view(data: bytes, target: int | None = None) -> int:
        nonlocal offset
        padding = (-len(data)) % 4
        views.append(gl.BufferView(buffer=0, byteOffset=offset, byteLength=len(data), target=target))
        blobs.append(data + b"\0" * padding)
        offset += len(data) + padding
        return len(views) - 1

    def add(array: np.ndarray, component: int, kind: str, target: int | None = None, bounds: bool = False) -> int:
        array = np.ascontiguousarray(array)
        accessor = gl.Accessor(bufferView=view(array.tobytes(), target), componentType=component,
                               count=int(array.shape[0]), type=kind)
        if bounds:
            flat = array.reshape(array.shape[0], -1)
            accessor.min = flat.min(axis=0).astype(float).tolist()
            accessor.max = flat.max(axis=0).astype(float).tolist()
        accessors.append(accessor)
        return len(accessors) - 1

    def add_vec3_delta(delta: np.ndarray) -> int | None:
        """A VEC3 float accessor of ``delta [V, 3]``: dense, sparse (only the rows that are
        not zero, when that is smaller) or none (all zero)."""
        rows = np.flatnonzero(np.any(delta != 0.0, axis=1)).astype(np.uint32)
        if len(rows) == 0:
            return None
        if len(rows) * 16 >= delta.size * 4:
            return add(delta, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER)
        sparse = gl.Sparse(count=int(len(rows)),
                           indices=gl.AccessorSparseIndices(bufferView=view(rows.tobytes()),
                                                            componentType=gl.UNSIGNED_INT),
                           values=gl.AccessorSparseValues(bufferView=view(np.ascontiguousarray(delta[rows]).tobytes())))
        accessors.append(gl.Accessor(byteOffset=None, componentType=gl.FLOAT, count=int(len(delta)), type=gl.VEC3,
                                     sparse=sparse))
        return len(accessors) - 1

    base_normals = _unit_normals(base, faces)
    position = add(base, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, bounds=True)
    indices = add(faces.reshape(-1), gl.UNSIGNED_INT, gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER)
    attributes = gl.Attributes(POSITION=position, NORMAL=add(base_normals.astype(np.float32), gl.FLOAT, gl.VEC3,
                                                             gl.ARRAY_BUFFER))
    if vertex_colors is not None:
        colors = _srgb_to_linear(_as_unit_colors(vertex_colors, "vertex_colors"))
        if colors.shape != base.shape:
            raise VoxmeshError(f"vertex_colors {colors.shape} do not fit a mesh of {base.shape}: expected [V, 3].")
        attributes.COLOR_0 = add(colors.astype(np.float32), gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER)

    morphs: list[dict] = []
    normal_deltas: list[np.ndarray] = []
    for target in targets:
        delta = _unit_normals(base.astype(np.float64) + target, faces) - base_normals
        delta[np.abs(delta).max(axis=1) <= NORMAL_EPS] = 0.0
        normal_deltas.append(delta.astype(np.float32))
        morphs.append({"POSITION": add(target, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, bounds=True)})
    if any(np.any(d) for d in normal_deltas):
        # Every target then names a NORMAL (three.js reads the attribute sets as one);
        # an accessor with neither buffer view nor sparse values is all zeros.
        for morph, delta in zip(morphs, normal_deltas):
            normal = add_vec3_delta(delta)
            if normal is None:
                accessors.append(gl.Accessor(byteOffset=None, componentType=gl.FLOAT, count=int(len(delta)),
                                             type=gl.VEC3))
                normal = len(accessors) - 1
            morph["NORMAL"] = normal
    time_accessor = add(times, gl.FLOAT, gl.SCALAR, bounds=True)
    weight_accessor = add(weights.reshape(-1), gl.FLOAT, gl.SCALAR)

    timing = {"fps": fps}
    mesh_extras = {"targetNames": [str(n) for n in target_names]} if target_names is not None else {}
    primitive = gl.Primitive(attributes=attributes, indices=indices, material=0, targets=morphs)
    gltf = gl.GLTF2(
        asset=gl.Asset(generator="voxmesh", version="2.0", extras=dict(timing)),
        scene=0,
        scenes=[gl.Scene(nodes=[0], extras=dict(timing))],
        nodes=[gl.Node(mesh=0, name="face")],
        meshes=[gl.Mesh(primitives=[primitive], weights=[0.0] * len(targets), name="face", extras=mesh_extras)],
        # Not metallic (glTF's default material is), white: COLOR_0 gives the albedo.
        materials=[gl.Material(name="face", pbrMetallicRoughness=gl.PbrMetallicRoughness(
            baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=0.6))],
        accessors=accessors,
        bufferViews=views,
        buffers=[gl.Buffer(byteLength=offset)],
        animations=[gl.Animation(
            name="speech", extras=dict(timing),
            samplers=[gl.AnimationSampler(input=time_accessor, output=weight_accessor, interpolation="LINEAR")],
            channels=[gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path="weights"))],
        )],
    )
    gltf.set_binary_blob(b"".join(blobs))
    path = Path(path)
    with atomic_path(path, replace=overwrite) as tmp:
        gltf.save_binary(str(tmp))
    size = path.stat().st_size
    duration = len(weights) / fps
    track = times.nbytes + weights.nbytes  # what each second adds; the rest is the mesh and its targets
    return {"path": str(path), "morph_targets": len(targets), "frames": len(weights), "fps": fps, "bytes": size,
            "bytes_per_second": size / duration if duration else None,
            "track_bytes_per_second": track / duration if duration else None,
            "normal_targets": sum(bool(np.any(d)) for d in normal_deltas)}
