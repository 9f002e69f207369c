"""Autoregressive generation against length, before and after the key/value cache.

FaceFormer, CodeTalker and EmoFace decode one frame at a time. Before
`decode_autoregressively`, each frame re-ran the decoder over the whole prefix (cost
quadratic in the length, the attention cubic); now each layer keeps the earlier frames'
keys and values. This script times `model.generate` of the synthetic configs (untrained
weights: speed does not depend on them; the procedural head, 5,544 vertices; features
already computed, so only the model is timed) at several lengths, for this tree and for a
git revision from before the change (checked out in a temporary worktree), each in a child
process on one thread, in alternating order. Prints a table and writes
``benchmarks/results/autoregressive.json``.

    python benchmarks/bench_autoregressive.py [--before REV] [--seconds 5 20] [--methods faceformer emoface]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "autoregressive.json"
FPS = 30.0

# Run in the child, with the source tree under test first on sys.path.
CHILD = r"""
import json, sys, time
import numpy as np, torch, yaml
torch.set_num_threads(1)
from voxmesh.mesh.head import build_head
from voxmesh.models.registry import model_class

method, seconds, configs = sys.argv[1], float(sys.argv[2]), sys.argv[3]
config = yaml.safe_load(open(f"{configs}/{method}_synthetic.yaml").read())
head = build_head()
torch.manual_seed(0)
model = model_class(method)(config["model"], num_vertices=head.num_vertices, speakers=[f"spk{i:02d}" for i in range(10)],
                            fps=30.0, encoder=config["encoder"], faces=head.faces, neutral=head.vertices).eval()
frames = int(round(seconds * 30.0))
features = torch.randn(1, frames, model.audio_encoder.output_dim)
template = torch.from_numpy(head.vertices)[None]
speakers = torch.zeros(1, dtype=torch.long)
with torch.no_grad():
    model.generate(features[:, :5], template, speakers, seed=0)  # warm-up
    start = time.perf_counter()
    out = model.generate(features, template, speakers, seed=0)
    elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "frames": frames, "checksum": float(out.double().sum())}))
"""


def time_generate(source: Path, method: str, seconds: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(source / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, method, str(seconds), str(source / "src" / "voxmesh" / "configs")
                           if (source / "src" / "voxmesh" / "configs").is_dir() else str(source / "configs")],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{method} {seconds} s in {source} failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="c9817d3", help="a revision from before the key/value cache")
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 20.0])
    parser.add_argument("--methods", nargs="+", default=["faceformer", "emoface", "codetalker"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="voxmesh-before-") as folder:
        before = Path(folder) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
                       check=True, capture_output=True)
        try:
            for method in args.methods:
                for seconds in args.seconds:
                    timed = {}
                    for label, source in (("before", before), ("after", ROOT), ("before", before), ("after", ROOT)):
                        result = time_generate(source, method, seconds)
                        best = timed.get(label)
                        timed[label] = result if best is None or result["seconds"] < best["seconds"] else best
                    speedup = timed["before"]["seconds"] / timed["after"]["seconds"]
                    same = abs(timed["before"]["checksum"] - timed["after"]["checksum"]) <= 1e-6 * max(
                        1.0, abs(timed["before"]["checksum"]))
                    rows.append({"method": method, "audio_seconds": seconds, "frames": timed["after"]["frames"],
                                 "before_seconds": timed["before"]["seconds"], "after_seconds": timed["after"]["seconds"],
                                 "speedup": speedup, "same_output": same})
                    print(f"  {method:<10} {seconds:5.1f} s  before {timed['before']['seconds']:7.2f} s  "
                          f"after {timed['after']['seconds']:6.2f} s  x{speedup:.1f}  same output: {same}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False,
                           capture_output=True)
    print(f"\nmodel.generate on one CPU thread (untrained synthetic configs, 5,544 vertices); before = {args.before}")
    print("| method | audio s | frames | before s | after s | speed-up | same output |\n|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['audio_seconds']:g} | {row['frames']} | {row['before_seconds']:.2f} | "
              f"{row['after_seconds']:.2f} | {row['speedup']:.1f}x | {row['same_output']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"before": args.before, "threads": 1, "rows": rows,
                                    "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
