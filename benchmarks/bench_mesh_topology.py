"""Speed of the mesh machinery the graph models need: spiral indices and the mesh
pyramid, built without cache for a closed head-sized mesh of about 5,000 vertices
(a bumpy ellipsoid standing in for the procedural head until it exists).

Targets: spirals under 1 s, a 4-level pyramid under 5 s.

Run: .venv/bin/python benchmarks/bench_mesh_topology.py [--repeats 3]
Writes benchmarks/results/mesh_topology.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

from voxmesh.files import atomic_path
from voxmesh.mesh.pyramid import build_mesh_pyramid
from voxmesh.mesh.spiral import spiral_indices

RESULTS = Path(__file__).resolve().parent / "results" / "mesh_topology.json"
SPIRAL_TARGET_S = 1.0
PYRAMID_TARGET_S = 5.0


def head_like_mesh(rings: int = 50, segments: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """A closed, welded UV ellipsoid of head size (0.16 x 0.23 x 0.20 m) with smooth
    bumps, ``rings * segments + 2`` vertices (5,002 by default): float32 [V, 3], int64 [F, 3],
    counter-clockwise seen from outside."""
    theta = np.linspace(0.0, np.pi, rings + 2)[1:-1]
    phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    unit = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)
    unit = np.concatenate([unit, [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]])
    bumps = 1.0 + 0.04 * np.sin(5.0 * unit[:, 0]) * np.cos(4.0 * unit[:, 1]) + 0.02 * np.sin(7.0 * unit[:, 2])
    vertices = (unit * bumps[:, None] * np.array([0.08, 0.115, 0.10])).astype(np.float32)

    index = np.arange(rings * segments).reshape(rings, segments)
    right = np.roll(index, -1, axis=1)
    top, bottom = rings * segments, rings * segments + 1
    a, b, c, d = index[:-1], right[:-1], index[1:], right[1:]  # quad between two rings
    quads = np.concatenate([np.stack([a, c, d], -1).reshape(-1, 3), np.stack([a, d, b], -1).reshape(-1, 3)])
    cap_top = np.stack([np.full(segments, top), index[0], right[0]], -1)
    cap_bottom = np.stack([np.full(segments, bottom), right[-1], index[-1]], -1)
    faces = np.concatenate([quads, cap_top, cap_bottom]).astype(np.int64)
    return vertices, faces


def best_time(work: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best, median) wall seconds over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return float(min(times)), float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    vertices, faces = head_like_mesh()
    rows = []
    for length, dilation in ((9, 1), (12, 1), (12, 2)):
        best, median = best_time(lambda: spiral_indices(faces, length, dilation, vertices=vertices, cache=False),
                                 args.repeats)
        rows.append({"task": f"spiral_indices length {length} dilation {dilation}", "best_s": round(best, 4),
                     "median_s": round(median, 4), "target_s": SPIRAL_TARGET_S, "levels": None})
    for factors in ((4, 4, 4), (4, 4, 4, 4)):
        pyramid = build_mesh_pyramid(vertices, faces, factors, cache=False)
        best, median = best_time(lambda: build_mesh_pyramid(vertices, faces, factors, cache=False), args.repeats)
        rows.append({"task": f"build_mesh_pyramid factors {factors}", "best_s": round(best, 4),
                     "median_s": round(median, 4), "target_s": PYRAMID_TARGET_S, "levels": pyramid.num_vertices})
    for row in rows:
        row["meets_target"] = row["median_s"] < row["target_s"]

    header = f"{'task':<42} {'best s':>8} {'median s':>9} {'target s':>9} {'ok':>4}  levels"
    print(f"mesh: {len(vertices)} vertices, {len(faces)} triangles, closed")
    print(header)
    print("-" * len(header))
    for row in rows:
        levels = "" if row["levels"] is None else " > ".join(str(n) for n in row["levels"])
        print(f"{row['task']:<42} {row['best_s']:>8.3f} {row['median_s']:>9.3f} {row['target_s']:>9.1f} "
              f"{'yes' if row['meets_target'] else 'NO':>4}  {levels}")

    report = {
        "benchmark": "mesh_topology",
        "mesh": {"kind": "bumpy UV ellipsoid", "vertices": int(len(vertices)), "triangles": int(len(faces))},
        "repeats": args.repeats,
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(RESULTS) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
