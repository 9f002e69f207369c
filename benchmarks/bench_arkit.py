"""ARKit blendshapes on the procedural head: how fast the solve is, and how well its weights
match the synthetic ground truth.

    OMP_NUM_THREADS=1 python benchmarks/bench_arkit.py [--data data/synth_small] [--split test]
                                                       [--model default --clips 8] [--repeats 3]

1. Speed (run it with OMP_NUM_THREADS=1 for one core): the solve of speech motion of the
   head (the split's clips, end to end, or the rig's motion without --data) in frames a
   second, with the defaults (smoothing, small priors, tolerance 1e-4) and as the synthetic
   ground truth is made (no smoothing, tolerance 1e-6). The time counts reading the motion,
   the solve and the fit report.
2. Ground truth (with --data: a dataset from `voxmesh synth`, which writes
   blendshapes_npy/): on the split, the mean absolute error per shape group between the
   weights solved from the ground-truth vertices (defaults) and the ground-truth weights,
   and how much of the vertex motion the 52 shapes explain (uncentred R^2: 1 - sum
   |residual|^2 / sum |displacement|^2, whole face and lips) with the rebuilt motion's
   RMS error (mm).
3. A model (--model): its motion for the split's first --clips sentences, solved; the
   weight MAE per group against the ground truth, and lip closure in the ARKit domain: at
   the middle of every /p b m/, jawOpen against the ground truth's and whether mouthClose
   or mouthPress* is active (> 0.1).

Prints tables and writes benchmarks/results/arkit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from voxmesh.mesh.arkit import ARKIT_GROUPS, ARKIT_NAMES, arkit_shapes

RESULTS = Path(__file__).resolve().parent / "results" / "arkit.json"
GROUP_COLUMNS = {g: [ARKIT_NAMES.index(n) for n in names] for g, names in ARKIT_GROUPS.items()}
BILABIALS = {"p", "b", "m"}


def best_seconds(fn, repeats: int) -> float:
    from timing import best_seconds as shared

    return shared(fn, repeats, warmup=True)


def rig_speech(frames: int, seed: int = 0) -> np.ndarray:
    """Speech-like motion of the rig when no dataset is given: a jaw and three visemes moving."""
    shapes = arkit_shapes()
    rig = shapes.rig
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / 30.0
    visemes = np.zeros((frames, rig.n_visemes), np.float32)
    for name in ("open_vowel", "rounded_vowel", "close_vowel", "bilabial"):
        visemes[:, rig.viseme_names.index(name)] = np.clip(np.sin(2 * np.pi * rng.uniform(0.5, 2) * t
                                                                  + rng.uniform(0, 6)), 0, 1)
    jaw = np.radians(8.0) * (1 + np.sin(2 * np.pi * 2.5 * t)) / 2
    return rig.pose(shapes.neutral, jaw, visemes, np.zeros((frames, rig.n_expressions)), np.zeros(frames))


def load_split(data: Path, split: str) -> list[dict]:
    from voxmesh.mesh.template import load_templates

    templates = load_templates(data / "templates.pkl")
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines() if line.strip()]
    clips = []
    for row in rows:
        if row["split"] != split:
            continue
        truth = data / "blendshapes_npy" / f"{row['name']}.npy"
        if not truth.exists():
            raise SystemExit(f"{truth} is missing: make the dataset with this voxmesh's `voxmesh synth`.")
        clips.append({"row": row, "vertices": np.load(data / "vertices_npy" / f"{row['name']}.npy"),
                      "truth": np.load(truth), "neutral": templates[row["subject"]]})
    return clips


def group_mae(solved: np.ndarray, truth: np.ndarray) -> dict:
    return {g: float(np.abs(solved[:, c] - truth[:, c]).mean()) for g, c in GROUP_COLUMNS.items()}


def speed(clips: list[dict], repeats: int) -> list[dict]:
    shapes = arkit_shapes()
    if clips:
        motion = np.concatenate([c["vertices"] for c in clips])
        neutral = clips[0]["neutral"]  # one face for the timing; the error does not matter here
        source = f"{len(clips)} clips end to end"
    else:
        motion, neutral, source = rig_speech(3000), None, "the rig's speech-like motion"
    rows = []
    for frames in (1000, min(len(motion), 10000)):
        block = np.ascontiguousarray(motion[:frames])
        for setting, options in (("default", {}),
                                 ("ground truth", {"smoothing": 0.0, "tolerance": 1e-6, "max_iterations": 5000})):
            fit = shapes.solve(block, neutral, **options)
            seconds = best_seconds(lambda: shapes.solve(block, neutral, **options), repeats)
            rows.append({"frames": frames, "setting": setting, "seconds": seconds, "frames_per_second": frames / seconds,
                         "iterations": fit.iterations, "motion": source})
    return rows


def truth_scores(clips: list[dict]) -> dict:
    shapes = arkit_shapes()
    solved_all, truth_all = [], []
    sums = {"res": 0.0, "tot": 0.0, "lip_res": 0.0, "lip_tot": 0.0, "frames": 0}
    explained, lip_explained, rms, lip_rms, lip_max = [], [], [], [], 0.0
    truth_explained = []
    for clip in clips:
        fit = shapes.solve(clip["vertices"], clip["neutral"])
        solved_all.append(fit.weights)
        truth_all.append(clip["truth"])
        n = len(fit.weights)
        explained.append((n, fit.explained, fit.lip_explained, fit.vertex_rms_mm, fit.lip_rms_mm))
        lip_max = max(lip_max, fit.lip_max_mm)
        # how much the ground-truth weights themselves explain: rebuild and compare
        rebuilt = shapes.rebuild(clip["truth"], clip["neutral"])
        motion = clip["vertices"].reshape(n, -1, 3) - clip["neutral"][None]
        residual = motion - (rebuilt - clip["neutral"][None])
        v = shapes.solve_vertices
        lips = np.intersect1d(shapes.template.region("lips"), v)
        truth_explained.append((n, 1 - float(np.sum(residual[:, v] ** 2) / np.sum(motion[:, v] ** 2)),
                                1 - float(np.sum(residual[:, lips] ** 2) / np.sum(motion[:, lips] ** 2)),
                                1000 * float(np.sqrt(np.mean(np.sum(residual[:, v] ** 2, axis=2))))))
    solved, truth = np.concatenate(solved_all), np.concatenate(truth_all)
    weights = np.array([e[0] for e in explained], float)

    def mean(values, k):
        return float(np.dot(weights, [e[k] for e in values]) / weights.sum())

    per_shape = np.abs(solved - truth).mean(axis=0)
    worst = np.argsort(-per_shape)[:5]
    return {
        "clips": len(clips), "frames": int(weights.sum()),
        "weight_mae": group_mae(solved, truth),
        "weight_mae_all": float(np.abs(solved - truth).mean()),
        "worst_shapes": {ARKIT_NAMES[i]: float(per_shape[i]) for i in worst},
        "solve_fit": {"explained_face": mean(explained, 1), "explained_lips": mean(explained, 2),
                      "vertex_rms_mm": mean(explained, 3), "lip_rms_mm": mean(explained, 4), "lip_max_mm": lip_max},
        "truth_fit": {"explained_face": mean(truth_explained, 1), "explained_lips": mean(truth_explained, 2),
                      "vertex_rms_mm": mean(truth_explained, 3)},
    }


def model_scores(clips: list[dict], model_name: str, count: int, data: Path) -> dict:
    import torch

    import voxmesh

    torch.set_num_threads(1)
    shapes = arkit_shapes()
    model = voxmesh.load_model(model_name)
    seen, chosen = set(), []
    for clip in clips:  # one rendition a sentence, neutral first
        key = (clip["row"]["subject"], clip["row"]["sentence"])
        if key not in seen and clip["row"]["emotion"] == "neutral":
            seen.add(key)
            chosen.append(clip)
    chosen = chosen[:count]
    solved_all, truth_all, closures = [], [], []
    jaw, close, presses = (ARKIT_NAMES.index(n) for n in ("jawOpen", "mouthClose", "mouthPressLeft"))
    press_right = ARKIT_NAMES.index("mouthPressRight")
    started = time.perf_counter()
    for clip in chosen:
        row = clip["row"]
        vertices = model.animate(data / "wav" / f"{row['name']}.wav", speaker=row["subject"]
                                 if row["subject"] in model.speakers else None)
        frames = min(len(vertices), len(clip["truth"]))
        fit = shapes.solve(vertices[:frames], model.template.vertices)
        solved_all.append(fit.weights)
        truth_all.append(clip["truth"][:frames])
        for symbol, start, end in row["phonemes"]:
            if symbol in BILABIALS:
                k = min(frames - 1, int(round(0.5 * (start + end) * row["fps"])))
                w, t = fit.weights[k], clip["truth"][k]
                closures.append({"jaw_error": abs(float(w[jaw] - t[jaw])),
                                 "closed": bool(max(w[close], w[presses], w[press_right]) > 0.1)})
    solved, truth = np.concatenate(solved_all), np.concatenate(truth_all)
    return {
        "model": model_name, "clips": len(chosen), "frames": len(solved), "seconds": time.perf_counter() - started,
        "weight_mae": group_mae(solved, truth),
        "lip_closure": {"bilabials": len(closures),
                        "jaw_open_within_0.1": float(np.mean([c["jaw_error"] <= 0.1 for c in closures])),
                        "jaw_open_mean_error": float(np.mean([c["jaw_error"] for c in closures])),
                        "close_or_press_active": float(np.mean([c["closed"] for c in closures]))},
        "note": "the model animates the neutral template with its own speaker mix; the ground truth is each "
                "subject's own face and style, so part of this error is the subject, not the solve",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default=None)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shapes = arkit_shapes()
    clips = load_split(args.data, args.split) if args.data else []
    result: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
                    "solve_vertices": int(len(shapes.solve_vertices))}
    result["speed"] = speed(clips, args.repeats)
    print(f"{'frames':>7} {'setting':<13} {'seconds':>8} {'frames/s':>9} {'iterations':>10}")
    for r in result["speed"]:
        print(f"{r['frames']:>7} {r['setting']:<13} {r['seconds']:>8.3f} {r['frames_per_second']:>9.0f} "
              f"{r['iterations']:>10}")
    if clips:
        scores = truth_scores(clips)
        result["ground_truth"] = {"data": str(args.data), "split": args.split, **scores}
        print(f"\nground truth, {args.split} split: {scores['clips']} clips, {scores['frames']} frames")
        print("weight MAE per group (solved from the ground-truth vertices vs ground-truth weights):")
        for g, v in scores["weight_mae"].items():
            print(f"  {g:<12} {v:.4f}")
        print(f"  worst shapes: " + ", ".join(f"{k} {v:.3f}" for k, v in scores["worst_shapes"].items()))
        for name, fit in (("ground-truth weights", scores["truth_fit"]), ("solved weights", scores["solve_fit"])):
            print(f"{name}: explain {fit['explained_face']:.4f} of the face's motion, {fit['explained_lips']:.4f} of "
                  f"the lips'; rebuilt RMS {fit['vertex_rms_mm']:.3f} mm")
        print(f"solved: lip RMS {scores['solve_fit']['lip_rms_mm']:.3f} mm, lip max {scores['solve_fit']['lip_max_mm']:.2f} mm")
        if args.model:
            scores = model_scores(clips, args.model, args.clips, args.data)
            result["model"] = scores
            print(f"\nmodel {args.model}: {scores['clips']} clips, {scores['frames']} frames")
            for g, v in scores["weight_mae"].items():
                print(f"  {g:<12} {v:.4f}")
            closure = scores["lip_closure"]
            print(f"  /p b m/ midpoints: {closure['bilabials']}; jawOpen within 0.1 of the truth's: "
                  f"{closure['jaw_open_within_0.1']:.2f}; mouthClose or mouthPress > 0.1: "
                  f"{closure['close_or_press_active']:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
