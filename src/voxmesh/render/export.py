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


def write_npy_stream(blocks: Iterable[np.ndarray], path: str | Path, total_frames: int, num_vertices: int) -> Path:
    """Stream blocks into ``path`` as float32 ``[T, V, 3]``: the .npy header for the
    known shape, then each block's bytes appended with plain writes, so the process's
    memory does not grow with the length (a memory map would count every written page
    in its resident size: 2 MB per second of audio at 5,544 vertices)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
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


def write_mesh_frames(blocks: Iterable[np.ndarray], folder: str | Path, faces: np.ndarray, fmt: str = "obj") -> Path:
    """One ``frame_00000.<fmt>`` per frame in ``folder`` (built under a temporary name)."""
    from voxmesh.mesh.template import save_mesh

    if fmt not in ("obj", "ply"):
        raise VoxmeshError(f"Mesh frame format '{fmt}' is not obj or ply.")
    from voxmesh.train.checkpoint import atomic_folder

    folder = Path(folder)
    with atomic_folder(folder) as staging:  # replaces ``folder`` only when every frame is written
        index = 0
        for block in blocks:
            for frame in block:
                save_mesh(staging / f"frame_{index:05d}.{fmt}", frame, faces)
                index += 1
    return folder


def motion_basis(vertices: np.ndarray, base: np.ndarray, max_targets: int = 64,
                 keep_energy: float = 0.99999) -> tuple[np.ndarray, np.ndarray]:
    """Compress a sequence into morph targets: displacements ``[T, V, 3]`` from ``base``
    ≈ ``weights [T, K] @ targets [K, V, 3]`` by a truncated SVD, keeping the fewest
    components that hold ``keep_energy`` of the motion (at most ``max_targets``)."""
    frames = vertices.shape[0]
    motion = (vertices - base[None]).reshape(frames, -1).astype(np.float64)
    if frames == 0 or not np.any(motion):
        return np.zeros((frames, 1), np.float32), np.zeros((1,) + base.shape, np.float32)
    u, s, vt = np.linalg.svd(motion, full_matrices=False)
    energy = np.cumsum(s**2) / np.sum(s**2)
    k = int(min(max_targets, np.searchsorted(energy, keep_energy) + 1, len(s)))
    # Targets are unit-free directions scaled by their singular value; weights stay in
    # about [-1, 1], which animation tools interpolate well.
    scale = s[:k] / np.sqrt(frames)
    targets = (vt[:k] * scale[:, None]).reshape(k, *base.shape)
    weights = u[:, :k] * np.sqrt(frames)
    return weights.astype(np.float32), targets.astype(np.float32)


def write_glb(vertices: np.ndarray, faces: np.ndarray, path: str | Path, fps: float, base: np.ndarray | None = None,
              vertex_colors: np.ndarray | None = None, max_targets: int = 64) -> dict:
    """A glTF 2.0 binary: the neutral face as the base mesh, the motion as morph targets
    (a truncated SVD of the sequence) and one animation of their weights at the audio's
    timing (keyframe k at k / fps seconds). Returns what was written (targets, error)."""
    import pygltflib as gl

    vertices = np.asarray(vertices, dtype=np.float32)
    base = np.asarray(base if base is not None else vertices[0], dtype=np.float32)
    faces = np.asarray(faces, dtype=np.uint32)
    if faces.size == 0:
        raise VoxmeshError("A .glb needs the mesh faces; this model's checkpoint has none.")
    weights, targets = motion_basis(vertices, base, max_targets)
    rebuilt = base[None] + np.einsum("tk,kvc->tvc", weights, targets)
    error = float(np.abs(rebuilt - vertices).max()) if len(vertices) else 0.0
    times = (np.arange(len(vertices), dtype=np.float32) / np.float32(fps))

    blobs: list[bytes] = []
    views: list[gl.BufferView] = []
    accessors: list[gl.Accessor] = []
    offset = 0

    def add(array: np.ndarray, component: int, kind: str, target: int | None = None, bounds: bool = False) -> int:
        nonlocal offset
        data = np.ascontiguousarray(array).tobytes()
        padding = (-len(data)) % 4
        views.append(gl.BufferView(buffer=0, byteOffset=offset, byteLength=len(data), target=target))
        blobs.append(data + b"\0" * padding)
        offset += len(data) + padding
        count = array.shape[0]
        accessor = gl.Accessor(bufferView=len(views) - 1, componentType=component, count=int(count), type=kind)
        if bounds:
            flat = array.reshape(count, -1)
            accessor.min = flat.min(axis=0).astype(float).tolist()
            accessor.max = flat.max(axis=0).astype(float).tolist()
        accessors.append(accessor)
        return len(accessors) - 1

    position = add(base, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, bounds=True)
    indices = add(faces.reshape(-1), gl.UNSIGNED_INT, gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER, bounds=False)
    attributes = gl.Attributes(POSITION=position)
    if vertex_colors is not None:
        colors = np.clip(np.asarray(vertex_colors, dtype=np.float32), 0, 1)
        attributes.COLOR_0 = add(colors, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER)
    target_accessors = [add(t, gl.FLOAT, gl.VEC3, gl.ARRAY_BUFFER, bounds=True) for t in targets]
    time_accessor = add(times, gl.FLOAT, gl.SCALAR, bounds=True)
    weight_accessor = add(weights.reshape(-1), gl.FLOAT, gl.SCALAR)

    primitive = gl.Primitive(attributes=attributes, indices=indices,
                             targets=[{"POSITION": a} for a in target_accessors])
    gltf = gl.GLTF2(
        asset=gl.Asset(generator="voxmesh", version="2.0"),
        scene=0,
        scenes=[gl.Scene(nodes=[0])],
        nodes=[gl.Node(mesh=0, name="face")],
        meshes=[gl.Mesh(primitives=[primitive], weights=[0.0] * len(targets), name="face")],
        materials=[],
        accessors=accessors,
        bufferViews=views,
        buffers=[gl.Buffer(byteLength=offset)],
        animations=[gl.Animation(
            name="speech",
            samplers=[gl.AnimationSampler(input=time_accessor, output=weight_accessor, interpolation="LINEAR")],
            channels=[gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path="weights"))],
        )],
    )
    gltf.set_binary_blob(b"".join(blobs))
    path = Path(path)
    with atomic_path(path) as tmp:
        gltf.save_binary(str(tmp))
    return {"path": str(path), "morph_targets": len(targets), "frames": len(vertices), "max_error_m": error}
