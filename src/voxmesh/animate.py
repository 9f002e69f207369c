"""From a sound file to a file: the outputs of `voxmesh animate` (video with sound, arrays,
mesh frames, glTF, ARKit weights), written from the blocks of frames that a
:class:`~voxmesh.pipeline.TalkingFacePipeline` makes. ``load_model`` and
``AnimationModel`` (the pipeline's older name) are kept here for existing code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from voxmesh.audio.io import SAMPLE_RATE, AudioStream, load_audio
from voxmesh.data.presets import check_fps
from voxmesh.errors import VoxmeshError
from voxmesh.pipeline import MAX_SEED, TalkingFacePipeline, load_model, plan_windows  # noqa: F401 (re-exported)
from voxmesh.train.checkpoint import BUILTIN_MODELS, builtin_model_path, resolve_checkpoint  # noqa: F401 (re-exported)

AnimationModel = TalkingFacePipeline  # the name before the pipeline had one

OUTPUT_FORMATS = ("mp4", "npy", "glb", "obj", "ply", "csv", "json", "arkit.glb")


def output_format(path: Path, default: str | None = None) -> str:
    """The format a path asks for: its extension, or a folder of .obj/.ply frames."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "glb" and path.name.lower().endswith(".arkit.glb"):
        return "arkit.glb"
    if suffix in ("mp4", "npy", "glb", "csv", "json"):
        return suffix
    if suffix == "":
        return default if default in ("obj", "ply") else "obj"
    raise VoxmeshError(f"Output {path} has an unknown extension; use .mp4, .npy, .glb, .csv, .json, .arkit.glb or a "
                       "folder for .obj/.ply frames.")


def resample_frames(vertices: np.ndarray, source_fps: float, target_fps: float) -> np.ndarray:
    """Linear interpolation of ``[T, V, 3]`` in time from one frame rate to another."""
    if abs(source_fps - target_fps) < 1e-9 or len(vertices) < 2:
        return vertices
    duration = len(vertices) / source_fps
    frames = max(1, int(round(duration * target_fps)))
    position = np.arange(frames) * source_fps / target_fps
    low = np.clip(np.floor(position).astype(int), 0, len(vertices) - 1)
    high = np.clip(low + 1, 0, len(vertices) - 1)
    t = (position - low)[:, None, None].astype(np.float32)
    return (1 - t) * vertices[low] + t * vertices[high]


def load_sequence_file(path: str | Path, num_vertices: int) -> np.ndarray:
    from voxmesh.data.layout import load_vertices

    return load_vertices(Path(path), num_vertices)


def animate_to_file(animation: AnimationModel, audio_path: str | Path, out: str | Path, *, fmt: str | None = None,
                    fps: float | None = None, side_by_side: str | Path | None = None, overwrite: bool = False,
                    progress: bool = False, visemes: str | None = None, avatar: str | Path | None = None,
                    **options: Any) -> dict:
    """Animate one audio file and write ``out`` in the format its extension names.
    Everything is checked before the first byte is written (conditions, the audio's
    length, the output); the output appears only when whole, and without ``overwrite``
    never replaces a file, even one that another run wrote meanwhile."""
    from voxmesh.audio.features import mesh_frames
    from voxmesh.data.synthetic.sheet import vertex_colors_for
    from voxmesh.files import refuse_existing
    from voxmesh.render.export import write_glb, write_mesh_frames, write_npy_stream
    from voxmesh.render.video import encode_video

    audio_path = Path(os.fsdecode(audio_path))
    out = Path(out)
    kind = output_format(out, fmt)
    arkit, avatar_file = kind in ("csv", "json", "arkit.glb") or visemes is not None or avatar is not None, None
    if arkit:  # ARKit weights: a model of the head; visemes in csv/json; an avatar read whole before any work
        from voxmesh.render.arkit_files import check_arkit_output, read_avatar

        check_arkit_output(kind, animation.template.num_vertices, visemes, avatar=avatar is not None)
        avatar_file = read_avatar(avatar, visemes=visemes is not None) if avatar is not None else None
    refuse_existing(out, overwrite=overwrite, folder_of=FRAME_FILE.match if kind in ("obj", "ply") else None)
    native = animation.fps
    target_fps = check_fps(fps) if fps is not None else native
    animation.check_conditions(**options)
    streaming = abs(target_fps - native) < 1e-9 and side_by_side is None
    if streaming and kind in ("npy", "obj", "ply"):
        # Nothing of these needs the whole recording at once: it is decoded a window at a time.
        with AudioStream(audio_path) as stream:
            num_samples, samples, source = stream.num_samples, None, audio_path
    else:
        samples = load_audio(audio_path)
        num_samples, source = len(samples), samples
    animation.check_length(num_samples, f"Audio file {audio_path}")
    num_vertices = animation.template.num_vertices
    truth = None
    if side_by_side is not None:
        truth = resample_frames(load_sequence_file(side_by_side, num_vertices), native, target_fps)
    colors = vertex_colors_for(animation.template)
    extra: dict = {}  # what a format adds to the summary
    if streaming:
        total = mesh_frames(num_samples, native)
        blocks = animation.iter_animation(source, progress=progress, **options)
    else:
        vertices = resample_frames(animation.animate(source, progress=progress, **options), native, target_fps)
        total = len(vertices)
        blocks = iter([vertices])

    if arkit:
        from voxmesh.render.arkit_files import LIVE_LINK_FPS, write_arkit

        vertices, rate = np.concatenate(list(blocks), axis=0), target_fps
        if kind == "csv" and fps is None:  # Live Link Face's rate unless --fps says otherwise
            vertices, rate = resample_frames(vertices, target_fps, LIVE_LINK_FPS), LIVE_LINK_FPS
        extra = write_arkit(vertices, out, kind, rate, seconds=num_samples / SAMPLE_RATE, visemes=visemes,
                            neutral=animation.neutral_face(options.get("template")), vertex_colors=colors,
                            avatar=avatar_file, overwrite=overwrite)
    elif kind == "npy":
        write_npy_stream(blocks, out, total, num_vertices, overwrite=overwrite)
    elif kind in ("obj", "ply"):
        write_mesh_frames(blocks, out, animation.faces, kind, overwrite=overwrite)
    elif kind == "glb":
        vertices = np.concatenate(list(blocks), axis=0)
        base = animation.neutral_face(options.get("template"))
        written = write_glb(vertices, animation.faces, out, target_fps, base=base, vertex_colors=colors,
                            overwrite=overwrite)
        extra = {"morph_targets": written["morph_targets"], "max_error_m": written["max_error_m"]}
    elif kind == "mp4":
        from voxmesh.render.rasterizer import Renderer

        reference = animation.neutral_face(options.get("template"))
        renderer = Renderer(animation.faces, width=512, height=512, reference_vertices=reference, vertex_colors=colors)
        if truth is not None:
            def frames():
                for k, frame in enumerate(np.concatenate(list(blocks), axis=0)):
                    gt = truth[min(k, len(truth) - 1)]
                    yield np.concatenate([renderer.render(frame), renderer.render(gt)], axis=1)

            encode_video(frames(), out, target_fps, 1024, 512, samples, overwrite=overwrite)
        else:
            def frames():
                for block in blocks:
                    for frame in block:
                        yield renderer.render(frame)

            encode_video(frames(), out, target_fps, 512, 512, samples, overwrite=overwrite)
    return {"path": str(out), "format": kind, "frames": total, "fps": target_fps,
            "seconds": num_samples / SAMPLE_RATE, **extra}


# The entries of a folder of mesh frames: what --overwrite may replace.
FRAME_FILE = re.compile(r"^frame_\d{5,}\.(obj|ply)$")
