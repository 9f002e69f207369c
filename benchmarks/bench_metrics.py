"""Time every metric of voxmesh.eval.metrics over 10,000 frames of a 5,023-vertex
(VOCASET/FLAME-sized) mesh: 100 sequences of 100 frames of random float32 data, as read
from vertices_npy, with region sizes like FLAME's (lips 250, eyes+forehead 800, upper
face 1,000, 20 inner-lip pairs). Diversity scores the same 10,000 frames as 20 inputs
of 5 samples of 100 frames.

Prints a table (metric, seconds, frames/s, peak extra memory) and writes
benchmarks/results/metrics.json. Seconds are the best of --repeats untraced runs;
memory is tracemalloc's peak over one more run (numpy allocations are traced)."""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from voxmesh.eval.metrics import (
    diversity,
    emotional_vertex_error,
    evaluate_sequences,
    lip_vertex_error,
    mean_vertex_error,
    mouth_open_difference,
    upper_face_dynamics_deviation,
)

RESULTS = Path(__file__).resolve().parent / "results" / "metrics.json"


def make_data(sequences: int, frames: int, vertices: int, seed: int = 0):
    """Random [N, T, V, 3] float32 ground truth and prediction (millimetre-scale motion
    around the template, in metres) plus templates [N, V, 3] and regions."""
    rng = np.random.default_rng(seed)
    # Two subjects, as VOCASET's test split has; consecutive sequences share one, so the
    # diversity groups below are samples around the same face.
    subjects = rng.normal(scale=0.1, size=(2, vertices, 3)).astype(np.float32)
    templates = subjects[np.arange(sequences) * 2 // sequences]
    # Filled in place, one sequence at a time, to keep the generator's own peak small.
    gt = np.empty((sequences, frames, vertices, 3), dtype=np.float32)
    pred = np.empty_like(gt)
    for i in range(sequences):
        gt[i] = templates[i] + rng.normal(scale=1e-3, size=(frames, vertices, 3)).astype(np.float32)
        pred[i] = gt[i] + rng.normal(scale=1e-3, size=(frames, vertices, 3)).astype(np.float32)
    order = rng.permutation(vertices)
    lips = np.sort(order[:250])
    eyes, forehead = np.sort(order[250:650]), np.sort(order[650:1050])
    upper = np.sort(np.concatenate([eyes, forehead, order[1050:1250]]))
    pairs = order[1250:1290].reshape(20, 2)
    regions = {"lips": lips, "eyes": eyes, "forehead": forehead, "upper_face": upper, "inner_lip_pairs": pairs}
    return pred, gt, templates, regions


def measure(fn, repeats: int) -> tuple[float, int, float]:
    """(best seconds, tracemalloc peak bytes, value)."""
    best = float("inf")
    value = None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return best, peak, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=100)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--vertices", type=int, default=5023)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    pred, gt, templates, regions = make_data(args.sequences, args.frames, args.vertices)
    preds, gts, tpls = list(pred), list(gt), list(templates)  # views, no copies
    emotion = np.union1d(regions["eyes"], regions["forehead"])
    # Diversity over the same frames: inputs of 5 samples each (views of the predictions).
    samples_per_input = 5
    stacks = list(pred[: args.sequences - args.sequences % samples_per_input].reshape(
        -1, samples_per_input, args.frames, args.vertices, 3))
    total_frames = args.sequences * args.frames

    cases = {
        "LVE": lambda: lip_vertex_error(preds, gts, regions["lips"]),
        "EVE": lambda: emotional_vertex_error(preds, gts, emotion),
        "FDD": lambda: upper_face_dynamics_deviation(preds, gts, tpls, regions["upper_face"]),
        "FDD_abs": lambda: upper_face_dynamics_deviation(preds, gts, tpls, regions["upper_face"], absolute=True),
        "MVE": lambda: mean_vertex_error(preds, gts),
        "MOD": lambda: mouth_open_difference(preds, gts, regions["inner_lip_pairs"]),
        "diversity": lambda: diversity(stacks),
        "evaluate_sequences": lambda: evaluate_sequences(preds, gts, tpls, regions),
    }
    rows = []
    print(f"{args.sequences} sequences x {args.frames} frames x {args.vertices} vertices "
          f"(float32 input {2 * pred.nbytes / 2**20:.0f} MiB for pred+gt), best of {args.repeats}")
    print(f"{'metric':<20} {'seconds':>9} {'frames/s':>11} {'peak MiB':>9}  value")
    print("-" * 66)
    for name, fn in cases.items():
        seconds, peak, value = measure(fn, args.repeats)
        frames = total_frames if name != "diversity" else sum(s.shape[0] * s.shape[1] for s in stacks)
        row = {"metric": name, "seconds": seconds, "frames": frames, "frames_per_s": frames / seconds,
               "peak_extra_mib": peak / 2**20, "value": value}
        rows.append(row)
        shown = f"{value:.4e}" if isinstance(value, float) else "(all six)"
        print(f"{name:<20} {seconds:>9.3f} {frames / seconds:>11.0f} {peak / 2**20:>9.1f}  {shown}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "metrics",
        "sequences": args.sequences,
        "frames_per_sequence": args.frames,
        "vertices": args.vertices,
        "input_dtype": "float32",
        "region_sizes": {**{k: int(np.asarray(v).shape[0]) for k, v in regions.items()},
                         "eye_forehead": int(len(emotion))},
        "diversity_inputs": len(stacks),
        "diversity_samples_per_input": samples_per_input,
        "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "results": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
