"""Videos with sound: rendered frames piped into the ffmpeg that the imageio-ffmpeg
wheel ships (no system package), H.264 + AAC in .mp4, written atomically."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from voxmesh.audio.io import SAMPLE_RATE, load_audio
from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path
from voxmesh.render.rasterizer import Renderer


def ffmpeg_executable() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_video(frames, path: str | Path, fps: float, width: int, height: int,
                 audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE) -> None:
    """Encode an iterable of uint8 ``[H, W, 3]`` frames (and optional mono audio
    ``[samples]``) to ``path`` (.mp4). The file appears only when complete."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise VoxmeshError(f"Video output {path} must end in .mp4.")
    with tempfile.TemporaryDirectory(prefix="voxmesh-video-") as scratch, atomic_path(path) as tmp:
        command = [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-"]
        if audio is not None and len(audio):
            wav = Path(scratch) / "audio.wav"
            soundfile.write(wav, np.asarray(audio, dtype=np.float32), sample_rate, subtype="PCM_16")
            command += ["-i", str(wav), "-c:a", "aac", "-b:a", "128k"]
        # yuv420p needs even sizes; most players need yuv420p.
        command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                    "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for frame in frames:
                process.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
            process.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            error = process.stderr.read().decode(errors="replace").strip()
            code = process.wait()
        if code != 0:
            raise VoxmeshError(f"ffmpeg could not write {path} ({error.splitlines()[-1] if error else code}).")


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
