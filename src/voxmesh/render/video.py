"""Videos with sound: rendered frames piped into the ffmpeg that the imageio-ffmpeg
wheel ships (no system package), H.264 + AAC in .mp4, written atomically."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from voxmesh.audio.io import SAMPLE_RATE, load_audio
from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path, process_alive
from voxmesh.render.rasterizer import Renderer


def ffmpeg_executable() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_video(frames, path: str | Path, fps: float, width: int, height: int,
                 audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE, *, overwrite: bool = True) -> int:
    """Encode an iterable of uint8 ``[H, W, 3]`` frames (and optional mono audio
    ``[samples]``) to ``path`` (.mp4). The file appears only when complete: every frame
    reached ffmpeg, ffmpeg finished cleanly and the file holds that many frames. An
    error while frames are made (or a signal) stops ffmpeg and leaves nothing. Without
    ``overwrite`` a file that another run wrote meanwhile is not replaced. Returns the
    number of frames."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise VoxmeshError(f"Video output {path} must end in .mp4; name it OUT.mp4.")
    if not (np.isfinite(fps) and fps > 0):
        raise VoxmeshError(f"Frame rate {fps} of {path} is not a positive number; give one such as 30.")
    _remove_stale_scratch()
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as scratch, \
            atomic_path(path, replace=overwrite) as tmp:
        command = [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-"]
        if audio is not None and len(audio):
            wav = Path(scratch) / "audio.wav"
            soundfile.write(wav, np.asarray(audio, dtype=np.float32), sample_rate, subtype="PCM_16")
            command += ["-i", str(wav), "-c:a", "aac", "-b:a", "128k"]
        # yuv420p needs even sizes; most players need yuv420p.
        command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                    "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        written = _pipe_frames(frames, command, Path(scratch) / "ffmpeg.log", path, (height, width, 3))
        if written == 0:
            raise VoxmeshError(f"No frames were made for {path}; give audio of at least one frame's length.")
        received = count_video_frames(tmp)
        if received != written:
            raise VoxmeshError(f"ffmpeg wrote {received} of the {written} frames of {path}; "
                               "nothing was kept, so run the command again.")
    return written


# ffmpeg's scratch folders (the audio track) are named after the process that made them,
# so that a run can remove those of killed runs.
SCRATCH_PREFIX = "voxmesh-video-"


def _remove_stale_scratch() -> None:
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if folder.is_dir() and (not pid.isdigit() or not process_alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)


def _pipe_frames(frames, command: list[str], log: Path, path: Path, shape: tuple[int, int, int]) -> int:
    """Run ffmpeg with ``command`` and write each frame to its standard input; return
    how many it took. Whatever happens, ffmpeg has ended when this returns: an error
    (or Ctrl-C, SIGTERM) while frames are made kills it. ffmpeg runs in a session of its
    own, so a Ctrl-C meant for voxmesh reaches voxmesh, which stops it."""
    with open(log, "wb") as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
                                   start_new_session=True)
        written, stopped_early = 0, False
        try:
            for frame in frames:
                frame = np.ascontiguousarray(frame, dtype=np.uint8)
                if frame.shape != shape:
                    raise ValueError(f"frame {written} has shape {frame.shape}, expected {shape}")
                process.stdin.write(frame.tobytes())
                written += 1
            process.stdin.close()
        except BrokenPipeError:  # ffmpeg ended before it had every frame
            stopped_early = True
        except BaseException:
            process.kill()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError, OSError):
                process.stdin.close()
            code = process.wait()
    if code != 0 or stopped_early:
        lines = log.read_text(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else (f"it stopped after {written} frames" if stopped_early else f"status {code}")
        raise VoxmeshError(f"ffmpeg could not write {path} ({reason}); nothing was kept, so check the disk and "
                           "run the command again.")
    return written


def count_video_frames(path: str | Path) -> int:
    """The number of frames of the first video stream of ``path`` (0 if it has none),
    counted by ffmpeg from the container without decoding."""
    done = subprocess.run([ffmpeg_executable(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0?",
                           "-c", "copy", "-f", "null", "-"], capture_output=True, text=True, check=False)
    counts = re.findall(r"frame=\s*(\d+)", done.stderr)
    return int(counts[-1]) if counts else 0


def to_video(vertices: np.ndarray, faces: np.ndarray, audio: np.ndarray | str | Path | None, path: str | Path,
             fps: float = 30.0, width: int = 512, height: int = 512, vertex_colors: np.ndarray | None = None,
             yaw_degrees: float = 0.0, progress: bool = False) -> Path:
    """Render vertices ``[T, V, 3]`` with one fixed front camera and write an .mp4 with
    the sound (``audio``: mono 16 kHz ``[samples]`` or a file path; None for silence).
    Frames are streamed, so memory does not grow with the length."""
    vertices = np.asarray(vertices, dtype=np.float32)
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise VoxmeshError(f"Vertices have shape {vertices.shape}; expected [T, V, 3].")
    if isinstance(audio, (str, Path)):
        audio = load_audio(audio)
    renderer = Renderer(faces, width=width, height=height, reference_vertices=vertices,
                        yaw_degrees=yaw_degrees, vertex_colors=vertex_colors)
    encode_video(renderer.iter_frames(vertices, progress=progress), path, fps, width, height, audio)
    return Path(path)


def probe_media(path: str | Path) -> dict:
    """Streams and duration of a media file, read from ffmpeg's own report."""
    result = subprocess.run([ffmpeg_executable(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    info = {"video": None, "audio": None, "duration": None}
    for line in result.stderr.splitlines():
        line = line.strip()
        if line.startswith("Duration:"):
            stamp = line.split(",")[0].split()[1]
            if stamp != "N/A":
                h, m, s = stamp.split(":")
                info["duration"] = int(h) * 3600 + int(m) * 60 + float(s)
        elif "Video:" in line:
            info["video"] = line.split("Video:", 1)[1].strip()
        elif "Audio:" in line:
            info["audio"] = line.split("Audio:", 1)[1].strip()
    return info
