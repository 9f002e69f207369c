"""Every method on the `small` synthetic dataset, trained on this machine's CPU with the
synthetic configs' budgets, then scored with `voxmesh evaluate` beside the static and mean
floors; plus the ablations the method documents ask for. Reuses finished runs in RUNS_DIR
and trains the missing ones (hours on 2 cores: train them in parallel with `voxmesh train`
and OMP_NUM_THREADS=1, then run this to score them).

    python benchmarks/bench_small.py [--data DATA_DIR] [--runs RUNS_DIR] [--only NAME ...]

Writes benchmarks/results/small.json and small.md: the comparison on `test` (seen
subjects) and `test_unseen`, EmoFace's emotion accuracy from the voice, GLDiTalker's
stage-1 reconstruction (spiral pyramid against a plain linear encoder), its DDIM-step
ablation (LVE and real-time factor of generation), and the EmoFace ablations.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

# The runs (config, overrides, stage) and their budgets are `voxmesh benchmark`'s table, shared
# so that this script and `voxmesh benchmark --runs runs/small` score the same runs.
from voxmesh.benchmark import (
    DDIM_STEPS,
    DIVERSITY_SAMPLES,
    METHODS,
    RUNS,
    train_seconds,
)
from voxmesh.benchmark import ensure_trained as _ensure_trained

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

COMPARED = list(METHODS)
EMOFACE_ABLATIONS = ["emoface_10ep", "emoface_add_10ep", "emoface_teacher_forcing_10ep"]
KEYS = ["LVE", "EVE", "FDD", "MVE", "MOD"]


def ensure_trained(name: str, data: Path, runs: Path) -> Path:
    """RUNS_DIR/name, trained first when its final model is missing."""
    run, trained_now = _ensure_trained(name, data, runs, progress=True)
    if trained_now:
        print(f"trained {name}", flush=True)
    return run


def stage_one_reconstruction(run: Path, data: Path, split: str = "test") -> dict[str, Any]:
    """Stage 1 of GLDiTalker alone: test motion encoded, quantised and decoded."""
    import numpy as np
    import torch

    from voxmesh.data.layout import FaceDataset
    from voxmesh.eval.evaluate import metric_regions
    from voxmesh.eval.metrics import evaluate_sequences
    from voxmesh.train.checkpoint import load_checkpoint

    dataset = FaceDataset(data)
    model = load_checkpoint(run / "vqvae" / "best")
    sequences = [dataset.load(r) for r in dataset.all_records if r.split == split]
    preds = []
    started = time.perf_counter()
    with torch.no_grad():
        for sequence in sequences:
            vertices = torch.from_numpy(np.asarray(sequence.vertices, dtype=np.float32))[None]
            template = torch.from_numpy(np.asarray(sequence.template, dtype=np.float32))[None]
            preds.append(model.reconstruct(vertices, template)[0].numpy())
    seconds = time.perf_counter() - started
    metrics = evaluate_sequences(preds, [s.vertices for s in sequences], [s.template for s in sequences],
                                 metric_regions(dataset))
    return {**metrics, "seconds": seconds, "encoder": model.settings["mesh_encoder"]}


def evaluate(run: Path, data: Path, split: str, **options: Any) -> dict[str, Any]:
    from voxmesh.eval.evaluate import evaluate_run

    tag = "_".join(f"{k}{v}" for k, v in sorted(options.items()))
    return evaluate_run(run, data, split=split, out=run / f"bench_{split}{'_' + tag if tag else ''}", overwrite=True, **options)


def row_text(name: str, row: dict[str, float], static: dict[str, float], extra: list[str]) -> str:
    cells = [f"{row[k]:.3e}" for k in KEYS]
    return f"| {name} | " + " | ".join(cells) + f" | {static['LVE'] / row['LVE']:.2f}x | " + " | ".join(extra) + " |"


def main(data: Path, runs: Path, only: list[str] | None) -> None:
    from voxmesh.data.synthetic.dataset import synthesize_dataset

    if not (data / "manifest.jsonl").is_file():
        synthesize_dataset(data, preset="small", seed=0)
    names = only or list(RUNS)
    result: dict[str, Any] = {"data": str(data), "splits": {}, "train_seconds": {}, "stage_one": {}, "ddim_steps": {},
                              "emotion": {}}
    for name in names:
        run = ensure_trained(name, data, runs)
        result["train_seconds"][name] = train_seconds(run)
        if name == "gldi_linear_stage1" or name == "gldi":
            result["stage_one"][name] = stage_one_reconstruction(run, data)
        if name == "gldi_linear_stage1":
            continue
        for split in ("test", "test_unseen"):
            options: dict[str, Any] = {}
            if name == "gldi" and split == "test":
                options["samples"] = DIVERSITY_SAMPLES
            evaluation = evaluate(run, data, split, **options)
            splits = result["splits"].setdefault(split, {})
            splits.setdefault("static", evaluation["rows"]["static"])
            splits.setdefault("mean", evaluation["rows"].get("mean"))
            splits[name] = {**evaluation["rows"]["model"],
                            "rtf": evaluation["generation_seconds"] / max(evaluation["audio_seconds"], 1e-9)}
            if evaluation.get("emotion_classification"):
                result["emotion"].setdefault(name, {})[split] = evaluation["emotion_classification"]
            if name.startswith("emoface") and split == "test":
                labelled = evaluate(run, data, split, emotion_source="label")
                splits[f"{name} (emotion label)"] = {**labelled["rows"]["model"], "rtf": None}
        if name == "gldi":
            for steps in DDIM_STEPS:
                evaluation = evaluate(run, data, "test", steps=steps)
                result["ddim_steps"][str(steps)] = {
                    **evaluation["rows"]["model"],
                    "rtf": evaluation["generation_seconds"] / max(evaluation["audio_seconds"], 1e-9)}
    RESULTS.mkdir(exist_ok=True)
    previous = RESULTS / "small.json"
    if only and previous.is_file():
        # --only: merge into what earlier runs of this script measured (read now, at the
        # end, so that two runs for different methods side by side both keep theirs)
        merged = json.loads(previous.read_text())
        for key, value in result.items():
            if isinstance(value, dict):
                for inner, entry in value.items():
                    if isinstance(entry, dict) and isinstance(merged.get(key, {}).get(inner), dict):
                        merged[key][inner].update(entry)
                    else:
                        merged.setdefault(key, {})[inner] = entry
            else:
                merged[key] = value
        result = merged
    (RESULTS / "small.json").write_text(json.dumps(result, indent=2))
    text = report(result)
    (RESULTS / "small.md").write_text(text)
    print(text)


def report(result: dict[str, Any]) -> str:
    lines = ["# Every method on the `small` synthetic dataset",
             "",
             "`voxmesh synth --preset small --seed 0`; models trained on 2 shared CPU cores (one thread each, two or "
             "three runs at a time); scored by `voxmesh evaluate` (EmoFace hears the emotion in the voice unless the "
             "row says label). Units: LVE, EVE, FDD m²; MVE, MOD, diversity m. RTF: seconds of generation per second "
             "of audio (features excluded), measured while other jobs shared the machine.", ""]
    header = "| | " + " | ".join(KEYS) + " | LVE vs static | diversity | RTF | train s |"
    for split, rows in result["splits"].items():
        lines += [f"## `{split}`", "", header, "|---|" + "---:|" * (len(KEYS) + 4)]
        static = rows["static"]
        for name, row in rows.items():
            if row is None:
                continue
            seconds = result["train_seconds"].get(name.split(" ")[0], {})
            extra = [f"{row['diversity']:.2e}" if "diversity" in row else "",
                     f"{row['rtf']:.3f}" if row.get("rtf") else "",
                     f"{sum(seconds.values()):.0f}" if seconds and name in result["train_seconds"] else ""]
            lines.append(row_text(name, row, static, extra))
        lines.append("")
    if result["emotion"]:
        lines += ["## Emotion accuracy from the voice (argmax over each sequence; chance 1/8)", "",
                  "| model | test | test_unseen |", "|---|---:|---:|"]
        for name, splits in result["emotion"].items():
            cells = [f"{splits[s]['accuracy']:.1%} ({splits[s]['sequences']})" if s in splits else ""
                     for s in ("test", "test_unseen")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if result["stage_one"]:
        static = result["splits"].get("test", {}).get("static")
        lines += ["## GLDiTalker stage 1 alone: test motion encoded, quantised, decoded", "",
                  "| mesh encoder | LVE | MVE | LVE vs static |", "|---|---:|---:|---:|"]
        for name, row in result["stage_one"].items():
            ratio = f"{static['LVE'] / row['LVE']:.1f}x" if static else ""
            lines.append(f"| {row['encoder']} ({name}) | {row['LVE']:.3e} | {row['MVE']:.3e} | {ratio} |")
        lines.append("")
    if result["ddim_steps"]:
        lines += ["## GLDiTalker: DDIM steps", "", "| steps | LVE | MVE | FDD | RTF |", "|---:|---:|---:|---:|---:|"]
        for steps, row in result["ddim_steps"].items():
            lines.append(f"| {steps} | {row['LVE']:.3e} | {row['MVE']:.3e} | {row['FDD']:.3e} | {row['rtf']:.3f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "synth_small")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "small")
    parser.add_argument("--only", nargs="*", choices=list(RUNS))
    args = parser.parse_args()
    main(args.data, args.runs, args.only)
