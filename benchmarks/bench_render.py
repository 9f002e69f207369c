"""Speed of the software renderer: frames per second at 512x512 for a head-sized mesh of
about 5,000 vertices and 10,000 triangles, deformed every frame (so normals and
projection are recomputed each time, as in a real animation).

Run: .venv/bin/python benchmarks/bench_render.py [--frames 200]
Writes benchmarks/results/render.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numba
import numpy as np
import trimesh

from voxmesh.files import atomic_path
from voxmesh.render import Renderer

RESULTS = Path(__file__).resolve().parent / "results" / "render.json"


def head_like_sequence(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid the size of a head (0.16 x 0.23 x 0.20 m) with a 'jaw' that opens
    and closes and a ripple that travels: vertices float32 [T, V, 3], faces [F, 3]."""
    sphere = trimesh.creation.uv_sphere(radius=1.0, count=[36, 72])
    unit = np.asarray(sphere.vertices, dtype=np.float64)
    faces = np.asarray(sphere.faces, dtype=np.int64)
    base = unit * np.array([0.08, 0.115, 0.10])
    phase = np.linspace(0.0, 4.0 * np.pi, n_frames, endpoint=False)
    lower_front = np.clip(-unit[:, 1], 0.0, None) * np.clip(unit[:, 2], 0.0, None)
    frames = np.empty((n_frames, len(base), 3), dtype=np.float32)
    for t, p in enumerate(phase):
        jaw = 0.012 * (0.5 + 0.5 * np.sin(p)) * lower_front  # metres, opens downward
        ripple = 1.0 + 0.02 * np.sin(9.0 * unit[:, 1] + p) * np.cos(7.0 * unit[:, 0])
        frame = base * ripple[:, None]
        frame[:, 1] -= jaw
        frames[t] = frame
    return frames, faces


def time_renderer(renderer: Renderer, frames: np.ndarray, warmup: int = 5) -> float:
    """Seconds a frame, median of three passes over ``frames`` after warm-up (JIT)."""
    out = np.empty((renderer.height, renderer.width, 3), dtype=np.uint8)
    for t in range(warmup):
        renderer.render(frames[t % len(frames)], out=out)
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        for frame in frames:
            renderer.render(frame, out=out)
        passes.append((time.perf_counter() - start) / len(frames))
    return float(np.median(passes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()

    frames, faces = head_like_sequence(args.frames)
    configs = [
        ("512x512 front", dict(width=512, height=512)),
        ("512x512 yaw 30", dict(width=512, height=512, yaw_degrees=30.0)),
        ("512x512 perspective 30 deg fov", dict(width=512, height=512, fov_degrees=30.0)),
        ("512x512 supersample 2", dict(width=512, height=512, supersample=2)),
        ("1024x1024 front", dict(width=1024, height=1024)),
    ]
    rows = []
    for name, options in configs:
        renderer = Renderer(faces, reference_vertices=frames[0], **options)
        seconds = time_renderer(renderer, frames)
        rows.append({
            "config": name,
            "resolution": f"{renderer.width}x{renderer.height}",
            "supersample": renderer.supersample,
            "vertices": int(frames.shape[1]),
            "triangles": int(len(faces)),
            "frames": int(len(frames)),
            "fps": round(1.0 / seconds, 1),
            "ms_per_frame": round(seconds * 1000.0, 3),
        })

    header = f"{'config':<32} {'resolution':>10} {'vertices':>8} {'triangles':>9} {'frames/s':>9} {'ms/frame':>9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['config']:<32} {row['resolution']:>10} {row['vertices']:>8} {row['triangles']:>9} "
              f"{row['fps']:>9.1f} {row['ms_per_frame']:>9.2f}")

    report = {
        "benchmark": "render",
        "threads": numba.get_num_threads(),
        "threading_layer": numba.threading_layer(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numba": numba.__version__,
        "target_fps_512": 60,
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(RESULTS) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
