"""ARKit blendshape weights where avatar tools read them: a Live Link Face CSV, a JSON
track, and a ``.glb`` of the procedural head whose morph targets are the 52 ARKit shapes
by name. The weights come from :meth:`voxmesh.mesh.arkit.ArkitShapes.solve` of any motion
of the head; a viseme track (Oculus's 15, or Ready Player Me's ``viseme_*`` names) can
go beside them in the CSV and the JSON.

- ``.csv``: the header Live Link Face writes, ``Timecode,BlendShapeCount,EyeBlinkLeft,
  ...,TongueOut,HeadYaw,...,RightEyeRoll``; ``BlendShapeCount`` 61 on every row; the
  timecode ``HH:MM:SS:FF.fff`` counts frames ``FF`` at the written rate (60 fps unless
  asked otherwise, as the app records) with ``.fff`` the sub-frame (000: every row falls
  on a frame); head and eye rotations 0 (the head does not turn). With visemes, 15
  columns follow ``RightEyeRoll``.
- ``.json``: ``{"fps", "duration", "names": [52], "frames": [[52], ...]}`` and, with
  visemes, ``"viseme_names"`` and ``"visemes"`` (``[[15], ...]``).
- ``.arkit.glb``: the head as a mesh with the 52 shapes as morph targets named with
  ARKit's names (``mesh.extras.targetNames``) and one animation of their weights.

Every writer checks its input first and writes atomically (``voxmesh.files.atomic_path``):
a file appears only when whole, and without ``overwrite`` none is replaced.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path
from voxmesh.mesh.arkit import ARKIT_NAMES, LIVE_LINK_NAMES, OCULUS_VISEMES, RPM_VISEMES

__all__ = ["ARKIT_FORMATS", "LIVE_LINK_FPS", "LIVE_LINK_HEADER", "VISEME_STYLES", "Avatar", "check_arkit_output",
           "check_visemes", "live_link_timecode", "read_avatar", "write_arkit", "write_arkit_glb", "write_arkit_json",
           "write_avatar_glb", "write_live_link_csv"]

# The formats of this module, as voxmesh.animate.output_format names them.
ARKIT_FORMATS = ("csv", "json", "arkit.glb")
# Live Link Face records at 60 fps; a CSV is written at this rate unless --fps says otherwise.
LIVE_LINK_FPS = 60.0
# The columns after the 52 shapes: head and eye rotations (the procedural head's are 0).
LIVE_LINK_ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                       "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
LIVE_LINK_HEADER = ("Timecode", "BlendShapeCount") + LIVE_LINK_NAMES + LIVE_LINK_ROTATIONS
# The count Live Link Face writes on every row: the 52 shapes and the 9 rotations.
LIVE_LINK_COUNT = len(LIVE_LINK_NAMES) + len(LIVE_LINK_ROTATIONS)
# --visemes: the names the viseme columns get.
VISEME_STYLES = {"oculus": OCULUS_VISEMES, "rpm": RPM_VISEMES}


def check_visemes(visemes: str | None) -> tuple[str, ...] | None:
    """The viseme names of a ``--visemes`` value (None: no viseme track)."""
    if visemes is None:
        return None
    names = VISEME_STYLES.get(str(visemes).lower())
    if names is None:
        raise VoxmeshError(f"--visemes {visemes} is not a viseme set voxmesh writes; give oculus (sil, PP, ... ou) "
                           "or rpm (Ready Player Me's viseme_sil ... viseme_U).")
    return names


def check_arkit_output(kind: str, num_vertices: int | None, visemes: str | None = None, *,
                       avatar: bool = False) -> None:
    """Refuse, before any work, what an ARKit output cannot be made of: a model that does
    not animate the procedural head (``num_vertices`` a frame; None: not known yet),
    visemes asked of a format that holds none, or an avatar written as anything but .glb."""
    check_visemes(visemes)
    if avatar and kind != "glb":
        raise VoxmeshError(f"--avatar writes a copy of the avatar as .glb, not .{kind}; give -o NAME.glb.")
    if visemes is not None and kind not in ("csv", "json") and not avatar:
        raise VoxmeshError(f"--visemes goes into .csv and .json outputs, not .{kind}; write a .csv or .json, "
                           "or leave --visemes out.")
    if (kind in ARKIT_FORMATS or avatar) and num_vertices is not None:
        head = _head_vertex_count()
        if num_vertices != head:
            raise VoxmeshError(f"ARKit outputs (.{kind}) are solved on voxmesh's procedural head of {head} vertices, "
                               f"but this model animates {num_vertices}; use a model trained on the synthetic head, "
                               "such as the default one.")


def _head_vertex_count() -> int:
    from voxmesh.mesh.arkit import arkit_shapes

    return arkit_shapes().num_vertices


def live_link_timecode(frame: int, fps: float) -> str:
    """``HH:MM:SS:FF.fff`` of frame ``frame`` at ``fps``: FF the frame within its second
    at the (rounded-up) nominal rate, ``.fff`` the sub-frame in thousandths."""
    rate = Fraction(fps).limit_denominator(1001)
    seconds = Fraction(int(frame)) / rate
    whole = math.floor(seconds)
    within = (seconds - whole) * rate  # frames into this second, a fraction for non-integer rates
    ff = math.floor(within)
    sub = int(round(float(within - ff) * 1000))
    if sub == 1000:
        ff, sub = ff + 1, 0
    nominal = math.ceil(rate)
    if ff >= nominal:  # a rounding carry into the next second
        whole, ff = whole + 1, ff - nominal
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}:{ff:02d}.{sub:03d}"


def _checked(weights: np.ndarray, fps: float, width: int = len(ARKIT_NAMES), what: str = "ARKit weights") -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2 or weights.shape[1] != width:
        raise VoxmeshError(f"{what} have shape {weights.shape}; expected [frames, {width}].")
    if weights.size and not (np.isfinite(weights).all() and weights.min() >= 0.0 and weights.max() <= 1.0):
        raise VoxmeshError(f"{what} must lie in [0, 1]; solve them with voxmesh.mesh.arkit.solve.")
    if not (np.isfinite(fps) and fps > 0):
        raise VoxmeshError(f"An ARKit track needs a positive frame rate, not {fps!r}.")
    return weights


def _visemes_checked(visemes, viseme_names, frames: int):
    if visemes is None:
        return None, None
    names = tuple(viseme_names or OCULUS_VISEMES)
    values = _checked(visemes, 1.0, len(names), "Viseme weights")
    if len(values) != frames:
        raise VoxmeshError(f"{len(values)} frames of visemes for {frames} frames of ARKit weights; give one a frame.")
    return values, names


def write_live_link_csv(weights: np.ndarray, path: str | Path, fps: float = LIVE_LINK_FPS, *,
                        visemes: np.ndarray | None = None, viseme_names: tuple[str, ...] | None = None,
                        overwrite: bool = True) -> dict:
    """A Live Link Face CSV of ``weights [T, 52]`` (order :data:`ARKIT_NAMES`, in [0, 1])
    at ``fps``; with ``visemes [T, 15]`` their columns follow the 61 counted ones."""
    weights = _checked(weights, fps)
    visemes, names = _visemes_checked(visemes, viseme_names, len(weights))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(LIVE_LINK_HEADER + (names or ()))
    rotations = ["0"] * len(LIVE_LINK_ROTATIONS)
    for k, row in enumerate(weights):
        values = [f"{w:.6f}" for w in row] + rotations
        if visemes is not None:
            values += [f"{w:.6f}" for w in visemes[k]]
        writer.writerow([live_link_timecode(k, fps), LIVE_LINK_COUNT, *values])
    path = Path(path)
    with atomic_path(path, replace=overwrite) as tmp:
        tmp.write_text(text.getvalue())
    return {"path": str(path), "frames": len(weights), "fps": float(fps), "columns": len(LIVE_LINK_HEADER)
            + (len(names) if names else 0)}


def write_arkit_json(weights: np.ndarray, path: str | Path, fps: float, duration: float | None = None, *,
                     visemes: np.ndarray | None = None, viseme_names: tuple[str, ...] | None = None,
                     overwrite: bool = True) -> dict:
    """``{"fps", "duration", "names", "frames"}`` (and ``"viseme_names"``, ``"visemes"``)
    of ``weights [T, 52]`` at ``fps``; ``duration`` in seconds (default frames / fps),
    the audio's when known. Weights are rounded to 5 decimals."""
    weights = _checked(weights, fps)
    visemes, names = _visemes_checked(visemes, viseme_names, len(weights))
    document = {
        "fps": float(fps),
        "duration": round(float(duration if duration is not None else len(weights) / fps), 6),
        "names": list(ARKIT_NAMES),
        "frames": np.round(weights.astype(np.float64), 5).tolist(),
    }
    if visemes is not None:
        document["viseme_names"] = list(names)
        document["visemes"] = np.round(visemes.astype(np.float64), 5).tolist()
    path = Path(path)
    with atomic_path(path, replace=overwrite) as tmp:
        tmp.write_text(json.dumps(document, separators=(",", ":")))
    return {"path": str(path), "frames": len(weights), "fps": float(fps)}


def write_arkit_glb(weights: np.ndarray, path: str | Path, fps: float, *, neutral: np.ndarray | None = None,
                    vertex_colors: np.ndarray | None = None, overwrite: bool = True) -> dict:
    """The procedural head (``neutral [V, 3]``, default its own) with the 52 ARKit shapes
    as morph targets named as ARKit names them, animated by ``weights [T, 52]`` at ``fps``."""
    from voxmesh.mesh.arkit import arkit_shapes
    from voxmesh.render.export import write_morph_glb

    weights = _checked(weights, fps)
    shapes = arkit_shapes()
    base = shapes.neutral if neutral is None else np.asarray(neutral, dtype=np.float32)
    return write_morph_glb(base, shapes.template.faces, path, fps, weights, shapes.basis,
                           target_names=list(ARKIT_NAMES), vertex_colors=vertex_colors, overwrite=overwrite)


def write_arkit(vertices: np.ndarray, path: str | Path, kind: str, fps: float, *, seconds: float | None = None,
                neutral: np.ndarray | None = None, visemes: str | None = None,
                vertex_colors: np.ndarray | None = None, avatar: "Avatar | None" = None,
                overwrite: bool = True) -> dict:
    """Solve the ARKit weights of a motion of the head ``vertices [T, V, 3]`` at ``fps``
    (on ``neutral [V, 3]``) and write them as ``kind`` (one of :data:`ARKIT_FORMATS`) to
    ``path``, or, with ``avatar`` (:func:`read_avatar`), as a copy of the avatar that they
    animate (``kind`` "glb"); ``visemes`` (a key of :data:`VISEME_STYLES`) adds a viseme
    track to a .csv or .json, or drives an avatar's viseme targets. Returns what was
    written, with the solve's fit (``arkit_vertex_rms_mm``, ...)."""
    from voxmesh.mesh.arkit import arkit_shapes

    check_arkit_output(kind, np.asarray(vertices).shape[-2] if np.ndim(vertices) == 3 else -1, visemes,
                       avatar=avatar is not None)
    names = check_visemes(visemes)
    shapes = arkit_shapes()
    fit = shapes.solve(vertices, neutral)
    track = shapes.visemes(fit.weights) if names is not None else None
    if avatar is not None:
        written = write_avatar_glb(avatar, fit.weights, path, fps, visemes=track, overwrite=overwrite)
    elif kind == "csv":
        written = write_live_link_csv(fit.weights, path, fps, visemes=track, viseme_names=names, overwrite=overwrite)
    elif kind == "json":
        written = write_arkit_json(fit.weights, path, fps, seconds, visemes=track, viseme_names=names,
                                   overwrite=overwrite)
    else:
        written = write_arkit_glb(fit.weights, path, fps, neutral=neutral, vertex_colors=vertex_colors,
                                  overwrite=overwrite)
        written = {"path": written["path"], "frames": written["frames"], "fps": written["fps"],
                   "morph_targets": written["morph_targets"]}
    return {**written, **{f"arkit_{k}": v for k, v in fit.summary().items()}}


# ---- avatars ------------------------------------------------------------------------------------

# The largest avatar read (bytes, the file and its external buffers and images together): it is
# held in memory while its copy is written.
MAX_AVATAR_BYTES = 256 * 2**20
_GLB_MAGIC, _JSON_CHUNK, _BIN_CHUNK = b"glTF", 0x4E4F534A, 0x004E4942


@dataclass
class Avatar:
    """A glTF 2.0 avatar as read: its JSON ``document`` (a dict, kept as it is), one binary
    ``blob`` that holds every buffer (buffer 0 of the copy), and the meshes whose morph
    targets carry ARKit (or Ready Player Me viseme) names: ``targets[mesh] = [(arkit index
    or None, viseme index or None) for each target]``."""

    path: Path
    document: dict
    blob: bytes
    targets: dict[int, list[tuple[int | None, int | None]]]
    found: list[str]
    missing: list[str]
    visemes_found: list[str]

    def describe(self) -> str:
        """Which meshes, and which ARKit names it has and lacks, in a sentence or two."""
        meshes = [self.document["meshes"][m].get("name", f"mesh {m}") for m in sorted(self.targets)]
        text = f"drives {len(self.found)} ARKit names on {', '.join(meshes)}"
        if self.visemes_found:
            text += f" and {len(self.visemes_found)} visemes"
        if self.missing:
            text += f"; the avatar lacks {', '.join(self.missing)}"
        return text


def _avatar_error(path: Path, what: str) -> VoxmeshError:
    return VoxmeshError(f"Avatar {path} {what}")


def _target_names(mesh: dict) -> list[str] | None:
    """The morph target names of a mesh: mesh.extras.targetNames (or its first primitive's)."""
    primitives = mesh.get("primitives") or [{}]
    count = len(primitives[0].get("targets") or [])
    for holder in (mesh, primitives[0]):
        names = (holder.get("extras") or {}).get("targetNames") if isinstance(holder.get("extras"), dict) else None
        if isinstance(names, list) and len(names) == count and count:
            return [str(n) for n in names]
    return None


def _read_buffers(path: Path, document: dict, glb_blob: bytes | None) -> list[bytes]:
    import base64
    from urllib.parse import unquote

    buffers = []
    for index, buffer in enumerate(document.get("buffers") or []):
        uri = buffer.get("uri")
        if uri is None:
            if glb_blob is None or index != 0:
                raise _avatar_error(path, f"has buffer {index} with no data; re-export it as a .glb.")
            data = glb_blob
        elif uri.startswith("data:"):
            try:
                data = base64.b64decode(uri.split(",", 1)[1], validate=False)
            except (ValueError, IndexError):
                raise _avatar_error(path, f"has buffer {index} with a broken data URI; re-export it.") from None
        else:
            source = path.parent / unquote(uri)
            if not source.is_file():
                raise _avatar_error(path, f"needs its external buffer {uri}, which is missing; put {source.name} "
                                          "beside it or export a .glb.")
            data = source.read_bytes()
        if len(data) < int(buffer.get("byteLength", 0)):
            raise _avatar_error(path, f"has buffer {index} shorter than its byteLength; re-export it.")
        buffers.append(data[: int(buffer.get("byteLength", len(data)))])
    return buffers


def read_avatar(path: str | Path, visemes: bool = True) -> Avatar:
    """Read a .glb or .gltf avatar (external buffers and images beside it are read in) and
    find its meshes with ARKit-named morph targets (any case; Ready Player Me's
    ``viseme_*`` too when ``visemes``). Refuses, in one sentence, a file that is not glTF
    2.0, one larger than :data:`MAX_AVATAR_BYTES`, missing external buffers and an
    avatar with no ARKit names."""
    from urllib.parse import unquote

    from voxmesh.mesh.arkit import match_names

    path = Path(path)
    if not path.is_file():
        raise _avatar_error(path, "does not exist; give a .glb or .gltf file.")
    size = path.stat().st_size
    if size > MAX_AVATAR_BYTES:
        raise _avatar_error(path, f"is {size / 2**20:.0f} MB; voxmesh reads avatars up to "
                                  f"{MAX_AVATAR_BYTES / 2**20:.0f} MB: remove what the face does not need "
                                  "(other animations, large textures) and try again.")
    raw = path.read_bytes()
    glb_blob = None
    try:
        if raw[:4] == _GLB_MAGIC:
            version, length = int.from_bytes(raw[4:8], "little"), int.from_bytes(raw[8:12], "little")
            if version != 2 or length > len(raw):
                raise ValueError("header")
            offset, document = 12, None
            while offset + 8 <= length:
                chunk_length = int.from_bytes(raw[offset: offset + 4], "little")
                kind = int.from_bytes(raw[offset + 4: offset + 8], "little")
                data = raw[offset + 8: offset + 8 + chunk_length]
                if kind == _JSON_CHUNK and document is None:
                    document = json.loads(data.decode("utf-8"))
                elif kind == _BIN_CHUNK and glb_blob is None:
                    glb_blob = data
                offset += 8 + chunk_length
        else:
            document = json.loads(raw.decode("utf-8"))
        if not isinstance(document, dict) or str((document.get("asset") or {}).get("version", "")) != "2.0":
            raise ValueError("version")
    except (ValueError, UnicodeDecodeError):
        raise _avatar_error(path, "is not a glTF 2.0 file (.glb or .gltf); export the avatar as glTF 2.0.") from None
    buffers = _read_buffers(path, document, glb_blob)
    # One blob: every buffer, 4-byte aligned, in order; buffer views are moved onto it below.
    starts, blob = [], bytearray()
    for data in buffers:
        starts.append(len(blob))
        blob += data + b"\0" * ((-len(data)) % 4)
    for view in document.get("bufferViews") or []:
        view["byteOffset"] = int(view.get("byteOffset", 0)) + starts[int(view.get("buffer", 0))]
        view["buffer"] = 0
    # Images beside a .gltf go into the blob too, so the copy stands alone.
    for index, image in enumerate(document.get("images") or []):
        uri = image.get("uri")
        if uri and not uri.startswith("data:"):
            source = path.parent / unquote(uri)
            if not source.is_file():
                raise _avatar_error(path, f"needs its image {uri}, which is missing; put it beside the avatar.")
            data = source.read_bytes()
            document.setdefault("bufferViews", []).append({"buffer": 0, "byteOffset": len(blob),
                                                           "byteLength": len(data)})
            blob += data + b"\0" * ((-len(data)) % 4)
            del image["uri"]
            image["bufferView"] = len(document["bufferViews"]) - 1
            image.setdefault("mimeType", "image/png" if uri.lower().endswith(".png") else "image/jpeg")
    document["buffers"] = [{"byteLength": len(blob)}] if blob or buffers else []
    viseme_keys = {v.lower(): k for k, v in enumerate(RPM_VISEMES)}
    viseme_keys.update({v.lower(): k for k, v in enumerate(OCULUS_VISEMES) if len(v) > 1})
    targets: dict[int, list[tuple[int | None, int | None]]] = {}
    found: set[int] = set()
    visemes_found: set[int] = set()
    for m, mesh in enumerate(document.get("meshes") or []):
        names = _target_names(mesh)
        if not names:
            continue
        match = match_names(names)
        row = [(match.index.get(n), viseme_keys.get(n.lower()) if visemes else None) for n in names]
        if any(a is not None or v is not None for a, v in row):
            targets[m] = row
            found |= {a for a, _ in row if a is not None}
            visemes_found |= {v for _, v in row if v is not None}
    if not found:
        raise _avatar_error(path, "has no morph targets with ARKit names (such as jawOpen, in mesh.extras."
                                  "targetNames); export its blendshapes with their ARKit names.")
    return Avatar(path, document, bytes(blob), targets, [ARKIT_NAMES[i] for i in sorted(found)],
                  [n for i, n in enumerate(ARKIT_NAMES) if i not in found],
                  [RPM_VISEMES[i] for i in sorted(visemes_found)])


def write_avatar_glb(avatar: Avatar, weights: np.ndarray, path: str | Path, fps: float, *,
                     visemes: np.ndarray | None = None, overwrite: bool = True) -> dict:
    """A copy of ``avatar`` as one .glb with one more animation, ``speech``, that drives
    the weights of every node whose mesh has ARKit-named targets: ARKit weights
    ``[T, 52]`` at ``fps`` (and ``visemes [T, 15]`` on viseme targets, when given); the
    mesh's other targets keep their default weight. Everything else (nodes, skins,
    materials, textures, other animations) is kept as it was; the binary data is kept
    byte for byte and the new data appended after it."""
    weights = _checked(weights, fps)
    if visemes is not None:
        visemes = _checked(visemes, fps, len(OCULUS_VISEMES), "Viseme weights")
    document = json.loads(json.dumps(avatar.document))  # the caller's avatar stays as read
    blob = bytearray(avatar.blob)
    views = document.setdefault("bufferViews", [])
    accessors = document.setdefault("accessors", [])

    def add(array: np.ndarray, bounds: bool = False) -> int:
        data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        blob.extend(b"\0" * ((-len(blob)) % 4))
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        blob.extend(data)
        accessor = {"bufferView": len(views) - 1, "componentType": 5126, "count": int(array.size), "type": "SCALAR"}
        if bounds:
            accessor["min"], accessor["max"] = [float(array.min())], [float(array.max())]
        accessors.append(accessor)
        return len(accessors) - 1

    frames = len(weights)
    times = add(np.arange(frames, dtype=np.float32) / np.float32(fps), bounds=True)
    samplers, channels, driven_nodes = [], [], []
    for m, row in sorted(avatar.targets.items()):
        default = document["meshes"][m].get("weights") or [0.0] * len(row)
        track = np.empty((frames, len(row)), np.float32)
        for k, (arkit, viseme) in enumerate(row):
            if arkit is not None:
                track[:, k] = weights[:, arkit]
            elif viseme is not None and visemes is not None:
                track[:, k] = visemes[:, viseme]
            else:
                track[:, k] = float(default[k])
        output = add(track.reshape(-1))
        for n, node in enumerate(document.get("nodes") or []):
            if node.get("mesh") == m:
                samplers.append({"input": times, "output": output, "interpolation": "LINEAR"})
                channels.append({"sampler": len(samplers) - 1, "target": {"node": n, "path": "weights"}})
                driven_nodes.append(node.get("name", f"node {n}"))
    if not channels:
        raise _avatar_error(avatar.path, "has ARKit-named morph targets on no node's mesh; put the face mesh in "
                                         "the scene.")
    document.setdefault("animations", []).append({"name": "speech", "samplers": samplers, "channels": channels,
                                                  "extras": {"fps": float(fps), "generator": "voxmesh"}})
    document["buffers"] = [{"byteLength": len(blob)}]
    text = json.dumps(document, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 4)
    blob.extend(b"\0" * ((-len(blob)) % 4))
    total = 12 + 8 + len(text) + 8 + len(blob)
    path = Path(path)
    with atomic_path(path, replace=overwrite) as tmp, open(tmp, "wb") as handle:
        handle.write(_GLB_MAGIC + (2).to_bytes(4, "little") + total.to_bytes(4, "little"))
        handle.write(len(text).to_bytes(4, "little") + _JSON_CHUNK.to_bytes(4, "little") + text)
        handle.write(len(blob).to_bytes(4, "little") + _BIN_CHUNK.to_bytes(4, "little"))
        handle.write(bytes(blob))
    return {"path": str(path), "frames": frames, "fps": float(fps), "driven": avatar.found,
            "missing": avatar.missing, "visemes_driven": avatar.visemes_found if visemes is not None else [],
            "nodes": driven_nodes}
