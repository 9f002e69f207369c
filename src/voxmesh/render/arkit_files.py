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
from fractions import Fraction
from pathlib import Path

import numpy as np

from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path
from voxmesh.mesh.arkit import ARKIT_NAMES, LIVE_LINK_NAMES, OCULUS_VISEMES, RPM_VISEMES

__all__ = ["ARKIT_FORMATS", "LIVE_LINK_FPS", "LIVE_LINK_HEADER", "VISEME_STYLES", "check_arkit_output",
           "check_visemes", "live_link_timecode", "write_arkit", "write_arkit_glb", "write_arkit_json",
           "write_live_link_csv"]

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


def check_arkit_output(kind: str, num_vertices: int | None, visemes: str | None = None) -> None:
    """Refuse, before any work, what an ARKit output cannot be made of: a model that does
    not animate the procedural head (``num_vertices`` a frame; None: not known yet), or
    visemes asked of a format that holds none."""
    check_visemes(visemes)
    if visemes is not None and kind not in ("csv", "json"):
        raise VoxmeshError(f"--visemes goes into .csv and .json outputs, not .{kind}; write a .csv or .json, "
                           "or leave --visemes out.")
    if kind in ARKIT_FORMATS and num_vertices is not None:
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
                vertex_colors: np.ndarray | None = None, overwrite: bool = True) -> dict:
    """Solve the ARKit weights of a motion of the head ``vertices [T, V, 3]`` at ``fps``
    (on ``neutral [V, 3]``) and write them as ``kind`` (one of :data:`ARKIT_FORMATS`) to
    ``path``; ``visemes`` (a key of :data:`VISEME_STYLES`) adds a viseme track to a .csv or
    .json. Returns what was written, with the solve's fit (``vertex_rms_mm``, ...)."""
    from voxmesh.mesh.arkit import arkit_shapes

    check_arkit_output(kind, np.asarray(vertices).shape[-2] if np.ndim(vertices) == 3 else -1, visemes)
    names = check_visemes(visemes)
    shapes = arkit_shapes()
    fit = shapes.solve(vertices, neutral)
    track = shapes.visemes(fit.weights) if names is not None else None
    if kind == "csv":
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
