"""The baselines on the `small` synthetic dataset, same budget for each (the configs'
epochs), trained on this machine's CPU: training time, then the test metrics beside
the static and mean floors. Reuses finished runs in RUNS_DIR; trains the missing ones.

    python benchmarks/bench_baselines_small.py [DATA_DIR] [RUNS_DIR]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
METHODS = {
    "faceformer": [],
    # the predictor and VQ-VAE stages share CodeTalker's budget (45 epochs in all)
    "codetalker": ["stages.vqvae.epochs=20", "stages.predictor.epochs=25"],
}


def main(data: Path, runs: Path) -> None:
    from voxmesh.data.synthetic.dataset import synthesize_dataset
    from voxmesh.eval.evaluate import evaluate_run
    from voxmesh.train.config import load_config
    from voxmesh.train.trainer import train

    if not (data / "manifest.jsonl").is_file():
        synthesize_dataset(data, preset="small", seed=0)
    timings = json.loads((RESULTS / "baselines_small.json").read_text()).get("train_seconds", {}) \
        if (RESULTS / "baselines_small.json").is_file() else {}
    table = {}
    for method, overrides in METHODS.items():
        run = runs / method
        if not (run / "model" / "model.json").is_file():
            start = time.perf_counter()
            train(load_config(ROOT / "configs" / f"{method}_synthetic.yaml", overrides), data, run)
            timings[method] = round(time.perf_counter() - start, 1)
        result = evaluate_run(run, data, split="test")
        table.setdefault("static", result["rows"]["static"])
        table.setdefault("mean", result["rows"]["mean"])
        table[method] = result["rows"]["model"]
    lines = ["| method | LVE (m²) | EVE (m²) | FDD (m²) | MVE (m) | MOD (m) | LVE vs static | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in table.items():
        ratio = table["static"]["LVE"] / row["LVE"]
        lines.append(f"| {name} | {row['LVE']:.3e} | {row['EVE']:.3e} | {row['FDD']:.3e} | {row['MVE']:.3e} | "
                     f"{row['MOD']:.3e} | {ratio:.2f}x lower | {timings.get(name, '')} |")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "baselines_small.md").write_text(text + "\n")
    (RESULTS / "baselines_small.json").write_text(json.dumps({"split": "test", "rows": table,
                                                               "train_seconds": timings}, indent=2))


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    main(args[0] if args else ROOT / "data" / "synth_small", args[1] if len(args) > 1 else ROOT / "runs" / "small")
