"""Miniature datasets in the shared layout, written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile
import trimesh

from voxmesh.mesh import save_mesh, save_regions, save_templates


def tiny_topology(subdivisions: int = 1) -> tuple[np.ndarray, np.ndarray]:
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.1)
    return np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces, np.int64)


def write_dataset(root: Path, names_by_subject: dict[str, list[str]], *, disk_fps: float = 30.0,
                  seconds: float = 0.5, sample_rate: int = 22050, manifest: list[dict] | None = None,
                  seed: int = 0, with_topology: bool = True) -> Path:
    """Write ``wav/``, ``vertices_npy/``, ``templates.pkl``, ``regions.json`` (and
    topology.ply, manifest.jsonl) for the given ``{subject: [sequence ids]}``."""
    rng = np.random.default_rng(seed)
    vertices, faces = tiny_topology()
    root.mkdir(parents=True, exist_ok=True)
    (root / "wav").mkdir(exist_ok=True)
    (root / "vertices_npy").mkdir(exist_ok=True)
    templates = {}
    for subject, sequences in names_by_subject.items():
        template = vertices + rng.normal(0, 0.002, vertices.shape).astype(np.float32)
        templates[subject] = template
        for sequence in sequences:
            name = f"{subject}_{sequence}" if sequence else subject
            t = np.arange(int(round(seconds * sample_rate))) / sample_rate
            soundfile.write(root / "wav" / f"{name}.wav", 0.1 * np.sin(2 * np.pi * 220 * t), sample_rate)
            frames = int(round(seconds * disk_fps))
            motion = 0.001 * np.sin(np.arange(frames)[:, None, None] / 3.0 + vertices[None])
            seq = (template[None] + motion).astype(np.float32).reshape(frames, -1)
            np.save(root / "vertices_npy" / f"{name}.npy", seq)
    save_templates(root / "templates.pkl", templates)
    save_regions(root / "regions.json", {
        "lips": np.arange(0, 6), "eyes": np.arange(6, 10), "forehead": np.arange(10, 14),
        "upper_face": np.arange(6, 20), "inner_lip_pairs": np.array([[0, 3], [1, 4], [2, 5]]),
    })
    if with_topology:
        save_mesh(root / "topology.ply", vertices, faces)
    if manifest is not None:
        (root / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in manifest))
    return root
