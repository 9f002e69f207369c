"""GLDiTalker's costs on this machine's CPU.

* Generation speed: real-time factor (seconds of compute per second of audio) for 10 s of
  audio at 10, 25 and 50 DDIM steps (and 25 steps with classifier-free guidance), split
  into the speech encoder and the model. Synthetic config on the procedural head (5,544
  vertices); untrained weights (speed does not depend on them). Target: faster than real
  time (RTF < 1) at 25 steps.
* Training cost: peak memory and time of one stage-1 step of the synthetic config (batch
  8 of 3 s windows, as configured with 1 s crops and without them) and of one stage-2
  step; each in a fresh process, so the peak resident memory is the step's own.
* ``--paper-scale`` adds the same step measurements for the VOCASET and BIWI configs on
  stand-in meshes of their vertex counts (a bumpy ellipsoid), with the mel encoder in
  place of wav2vec 2.0 (add wav2vec 2.0's own memory for a GPU estimate; see the doc).

Prints a table and writes ``benchmarks/results/gldi.json`` (``--paper-scale`` results go
to ``gldi_paper_scale.json``).
"""

from __future__ import annotations

import os

# On a machine shared with other jobs, OpenMP threads that spin while waiting make every
# small op slow (10x on 2 oversubscribed cores); passive waiting costs nothing when the
# cores are free. Set before torch starts its thread pool; recorded in the results.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SECONDS = 10.0
SPEAKERS = [f"spk{i:02d}" for i in range(10)]


def load_model_config(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / f"gldi_{name}.yaml").read_text())


def ellipsoid(vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed bumpy UV ellipsoid of head size with about ``vertices`` vertices."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_mesh_topology import head_like_mesh

    rings = int(round(np.sqrt(vertices / 2)))
    return head_like_mesh(rings, int(round((vertices - 2) / rings)))


def build(name: str, mesh: str, encoder: dict | None = None, overrides: dict | None = None):
    """(model, vertices, fps) of config ``name`` on ``mesh``: "head" (the procedural head)
    or a vertex count (a stand-in ellipsoid)."""
    from voxmesh.mesh.head import build_head
    from voxmesh.models.registry import model_class

    config = load_model_config(name)
    regions = None  # the stand-in ellipsoids have none; the paper-scale configs need none
    if mesh == "head":
        head = build_head()
        vertices, faces, regions = head.vertices, head.faces, head.regions
    else:
        vertices, faces = ellipsoid(int(mesh))
    fps = 25.0 if name == "biwi" else 30.0
    torch.manual_seed(0)
    model = model_class("gldi")({**config["model"], **(overrides or {})}, num_vertices=len(vertices),
                                speakers=SPEAKERS, fps=fps, encoder=encoder or config["encoder"], faces=faces,
                                neutral=vertices, regions=regions)
    return model, vertices, fps


def count(parameters) -> int:
    return int(sum(p.numel() for p in parameters))


# ---- generation speed ---------------------------------------------------------------------------

def generation_rows() -> tuple[list[dict], dict]:
    from voxmesh.audio import align_features

    model, vertices, fps = build("synthetic", "head")
    model.eval()
    frames = int(round(SECONDS * fps))
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.normal(0, 0.1, int(SECONDS * 16000)).astype(np.float32))[None]
    template = torch.from_numpy(vertices)[None]
    speakers = torch.zeros(1, dtype=torch.long)

    def encode():
        with torch.no_grad():
            features, mask = model.audio_encoder(audio, None)
            return align_features(features, torch.tensor([frames]), feature_mask=mask, total_frames=frames)

    features = encode()
    encoder_seconds = min(timed(encode) for _ in range(3))
    rows = []
    for steps, guidance in ((10, 1.0), (25, 1.0), (50, 1.0), (10, 2.0), (25, 2.0), (50, 2.0)):
        def run(steps: int = steps, guidance: float = guidance) -> None:
            model.generate(features, template, speakers, seed=0, steps=steps, guidance=guidance)

        run()  # warm up
        seconds = min(timed(run) for _ in range(2))
        rows.append({"steps": steps, "guidance": guidance, "audio_seconds": SECONDS, "encoder_rtf": encoder_seconds / SECONDS,
                     "model_rtf": seconds / SECONDS, "total_rtf": (encoder_seconds + seconds) / SECONDS})
        print(".", end="", flush=True, file=sys.stderr)
    sizes = {"vertices": len(vertices), "pyramid": model.pyramid.num_vertices,
             "stage1_parameters": count(model.trainable_parameters("vqvae")),
             "stage2_parameters": count(model.trainable_parameters("diffusion")),
             "encoder_parameters": count(model.audio_encoder.parameters())}
    return rows, sizes


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---- one training step, in a child process -------------------------------------------------------

def step_child(name: str, mesh: str, stage: str, batch_size: int, window_seconds: float, crop: str) -> dict:
    from voxmesh.data.batching import Batch

    encoder = None
    config = load_model_config(name)
    if config["encoder"].get("kind") == "hf":
        encoder = {"kind": "mel", "dim": 768}  # wav2vec 2.0's width, without its weights
    crop_seconds = config["model"]["vq_crop_seconds"] if crop == "config" else (None if crop == "none" else float(crop))
    model, vertices, fps = build(name, mesh, encoder, {"vq_crop_seconds": crop_seconds})
    frames = int(round(window_seconds * fps))
    template = torch.from_numpy(vertices)[None].repeat(batch_size, 1, 1)
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(batch_size, frames, 4, generator=generator)
    fields = torch.randn(4, len(vertices), 3, generator=generator) * 0.003
    motion = torch.einsum("btk,kvc->btvc", weights, fields)
    features = torch.randn(batch_size, frames, model.audio_encoder.output_dim, generator=generator)
    batch = Batch(audio=torch.zeros(batch_size, 160), audio_mask=torch.ones(batch_size, 160, dtype=torch.bool),
                  vertices=template[:, None] + motion, frame_mask=torch.ones(batch_size, frames, dtype=torch.bool),
                  template=template, names=["x"] * batch_size, subjects=[SPEAKERS[i % 10] for i in range(batch_size)],
                  emotions=[None] * batch_size, intensities=[None] * batch_size, fps=fps, sample_rate=16000,
                  audio_features=features)
    model.vqvae.training_steps.fill_(10 ** 6)  # past any warm-up: the quantised path
    optimiser = torch.optim.AdamW(model.trainable_parameters(stage), lr=1e-4)
    model.train()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        losses = model(batch, stage)
        optimiser.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimiser.step()
        seconds.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"config": name, "vertices": len(vertices), "stage": stage, "batch_size": batch_size,
            "window_seconds": window_seconds, "vq_crop_seconds": crop_seconds if stage == "vqvae" else None,
            "step_seconds": min(seconds), "peak_rss_mb": peak / 1024, "step_peak_mb": (peak - before) / 1024,
            "parameters": count(model.trainable_parameters(stage))}


def run_step(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--step-child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- main ------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--step-child", nargs=6, metavar=("CONFIG", "MESH", "STAGE", "BATCH", "WINDOW", "CROP"))
    parser.add_argument("--paper-scale", action="store_true")
    args = parser.parse_args()
    if args.step_child:
        name, mesh, stage, batch, window, crop = args.step_child
        print(json.dumps(step_child(name, mesh, stage, int(batch), float(window), crop)))
        return

    threads = torch.get_num_threads()
    machine = {"threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
               "load_average_1min": os.getloadavg()[0]}
    if args.paper_scale:
        steps = [run_step("vocaset", "5023", "vqvae", "4", "4.0", "config"),
                 run_step("vocaset", "5023", "diffusion", "4", "4.0", "config"),
                 run_step("biwi", "23370", "vqvae", "4", "4.0", "config"),
                 run_step("biwi", "23370", "diffusion", "4", "4.0", "config")]
        print_steps(steps)
        write(RESULTS / "gldi_paper_scale.json", {**machine, "training_steps": steps})
        return

    rows, sizes = generation_rows()
    print(file=sys.stderr)
    steps = [run_step("synthetic", "head", "vqvae", "8", "3.0", "config"),
             run_step("synthetic", "head", "vqvae", "8", "3.0", "none"),
             run_step("synthetic", "head", "diffusion", "8", "3.0", "config")]
    print(f"GLDiTalker, synthetic config, procedural head ({sizes['vertices']} vertices, pyramid {sizes['pyramid']}); "
          f"{threads} threads")
    print(f"parameters: stage 1 {sizes['stage1_parameters']:,}, stage 2 {sizes['stage2_parameters']:,} "
          f"(of which speech encoder {sizes['encoder_parameters']:,})")
    print(f"{'DDIM steps':>10} {'guidance':>8} {'encoder RTF':>11} {'model RTF':>10} {'total RTF':>10}")
    for r in rows:
        print(f"{r['steps']:>10} {r['guidance']:>8.1f} {r['encoder_rtf']:>11.4f} {r['model_rtf']:>10.4f} {r['total_rtf']:>10.4f}")
    print_steps(steps)
    at_25 = next(r for r in rows if r["steps"] == 25 and r["guidance"] == 1.0)
    write(RESULTS / "gldi.json", {**machine, "sizes": sizes, "generation": rows, "training_steps": steps,
                                  "target": "total RTF < 1 at 25 DDIM steps",
                                  "meets_target": at_25["total_rtf"] < 1.0})


def print_steps(steps: list[dict]) -> None:
    print(f"{'config':<10} {'vertices':>8} {'stage':<9} {'batch':>5} {'window s':>8} {'crop s':>6} "
          f"{'step s':>7} {'step peak MB':>12} {'params':>11}")
    for s in steps:
        crop = "-" if s["vq_crop_seconds"] is None else f"{s['vq_crop_seconds']:g}"
        print(f"{s['config']:<10} {s['vertices']:>8} {s['stage']:<9} {s['batch_size']:>5} {s['window_seconds']:>8.1f} "
              f"{crop:>6} {s['step_seconds']:>7.2f} {s['step_peak_mb']:>12.0f} {s['parameters']:>11,}")


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
