"""Scoring a folder of predicted ``<name>.npy`` files against a dataset, so that the
outputs of other projects can be compared on voxmesh's metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from voxmesh.data.layout import FaceDataset, load_vertices
from voxmesh.errors import VoxmeshError
from voxmesh.eval.metrics import (
    METRIC_UNITS,
    MetricAccumulator,
    bilabial_closure_frames,
)
from voxmesh.mesh.template import load_regions, split_regions

METRIC_REGION_NAMES = ("lips", "eyes", "forehead", "eye_forehead", "emotion", "upper_face", "inner_lip_pairs")


def evaluate_prediction_folder(pred_dir: str | Path, dataset_dir: str | Path, preset: str = "generic",
                               split: str | None = None, fps: float | None = None,
                               region_files: dict[str, str | Path] | None = None,
                               progress: bool = False) -> dict:
    """Score every ``PRED_DIR/<name>.npy`` (``[T, V*3]`` or ``[T, V, 3]`` at the dataset's
    frame rate) against the dataset sequence of the same name.

    Returns a JSON-ready dict: ``metrics``, ``units``, ``regions`` (name, vertex count,
    source), ``sequences``, ``frames`` and ``per_sequence`` values."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise VoxmeshError(f"Prediction folder {pred_dir} does not exist; check the path.")
    dataset = FaceDataset(dataset_dir, preset=preset, split=split, fps=fps)
    regions = dict(dataset.regions)
    pairs = dict(dataset.vertex_pairs)
    sources = {name: dataset.region_sources.get(name, "regions.json") for name in list(regions) + list(pairs)}
    for name, path in (region_files or {}).items():
        loaded, loaded_pairs = split_regions(load_regions(path))
        if loaded_pairs:
            pairs[name] = next(iter(loaded_pairs.values()))
        else:
            regions[name] = loaded[name] if name in loaded else next(iter(loaded.values()))
        sources[name] = str(path)
    by_name = {r.name: r for r in dataset.records}
    pred_files = sorted(p for p in pred_dir.glob("*.npy") if not p.name.startswith("."))
    if not pred_files:
        raise VoxmeshError(f"Prediction folder {pred_dir} holds no .npy files; save one [T, V*3] array a sequence.")
    unknown = [p.stem for p in pred_files if p.stem not in by_name]
    if unknown:
        where = f"the {split} split of " if split else ""
        raise VoxmeshError(
            f"Prediction {pred_dir / (unknown[0] + '.npy')} matches no sequence in {where}{dataset.root} "
            f"({len(unknown)} such files); name predictions like the dataset's sequences."
        )
    # Only the masks the metrics read are passed on and named in the report.
    metric_regions = {k: v for k, v in {**regions, **pairs}.items() if k in METRIC_REGION_NAMES}
    # One sequence in memory at a time, so a folder of any size can be scored.
    accumulator = MetricAccumulator(metric_regions)
    per_sequence = {}
    for path in tqdm(pred_files, desc="scoring", unit="seq", disable=not progress):
        sequence = dataset.load(by_name[path.stem])
        pred = load_vertices(path, sequence.vertices.shape[1])
        if len(pred) < sequence.num_frames:
            raise VoxmeshError(
                f"Prediction {path} has {len(pred)} frames but sequence '{sequence.name}' has {sequence.num_frames}; "
                "predict at least as many frames as the ground truth at the dataset's frame rate."
            )
        closures = bilabial_closure_frames(sequence.phonemes, sequence.fps, sequence.num_frames)
        per_sequence[path.stem] = accumulator.add(pred, sequence.vertices, sequence.template, closures)
    metrics = accumulator.result()
    return {
        "dataset": str(dataset.root),
        "preset": dataset.preset.name,
        "fps": dataset.preset.fps,
        "split": split,
        "predictions": str(pred_dir),
        "sequences": accumulator.sequences,
        "frames": accumulator.frames,
        "metrics": metrics,
        "units": {k: METRIC_UNITS[k] for k in metrics},
        "regions": {
            name: {"vertices": int(np.asarray(idx).shape[0]), "source": sources.get(name, "dataset")}
            for name, idx in metric_regions.items()
        },
        "per_sequence": per_sequence,
    }


def format_metrics_table(result: dict) -> str:
    """A plain-text table of a result from :func:`evaluate_prediction_folder`."""
    lines = [f"{'metric':<11} {'value':>14}  unit", "-" * 35]
    for key, value in result["metrics"].items():
        lines.append(f"{key:<11} {value:>14.6e}  {result['units'][key]}")
    regions = ", ".join(f"{k} ({v['vertices']})" for k, v in result["regions"].items())
    lines.append(f"{result['sequences']} sequences, {result['frames']} frames at {result['fps']:g} fps; regions: {regions}")
    return "\n".join(lines)
