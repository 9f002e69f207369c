"""EmoFace's cost on this machine's CPU (untrained weights: cost does not depend on them).

1. SpiralConv3D on a 5,023-vertex mesh (an icosphere decimated to FLAME's vertex count):
   forward and forward+backward time, and the peak memory a call adds, for the window
   shapes of the configs (1 x 120 frames: a 4 s window of the paper-scale configs;
   8 x 60 frames: a batch of the synthetic config at full resolution) and several widths;
   beside the same layer written as gather -> channels-first -> ``conv1d`` (the textbook
   form), to check the two agree and to justify the tap-matmul form.
2. EmoFace: parameters of each config; one training step (forward, backward, AdamW) of the
   synthetic config on the procedural head (5,544 vertices, 8 x 60 frames) in its three
   phases (warm-up: teacher forcing + cross-reconstruction; after it: + the self-growing
   pass; ``fusion: add``), beside FaceFormer's synthetic config on the same batch; the
   paper-scale step (1 x 120 frames, 5,023 vertices, full-resolution Mesh Attention) with
   a stand-in mel encoder (wav2vec 2.0's own cost is the encoder benchmark's); and
   generation's real-time factor on 10 s.

Each measurement runs in a fresh process, one thread unless said otherwise, so that peak
memory (``ru_maxrss`` growth over the process's state before the call) belongs to it.
Writes benchmarks/results/emoface.json.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from pathlib import Path

from timing import best_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "emoface.json"
EMOTIONS = ["angry", "calm", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]
SPEAKERS = [f"spk{i:02d}" for i in range(10)]


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def sphere_5023():
    """An icosphere (10,242 vertices) decimated to 5,023 vertices, FLAME's count."""
    import fast_simplification
    import numpy as np
    import trimesh

    sphere = trimesh.creation.icosphere(5, radius=0.1)
    vertices, faces = fast_simplification.simplify(np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces),
                                                   target_reduction=0.5096)
    return np.asarray(vertices, np.float32), np.asarray(faces, np.int64)




# ---- measurements, each run in its own process ---------------------------------------------

def _spiral_conv3d(args: dict) -> dict:
    import torch

    from voxmesh.mesh import spiral_indices
    from voxmesh.models.layers.spiral_conv import spiral_gather
    from voxmesh.models.layers.spiral_conv3d import SpiralConv3D

    torch.set_num_threads(args["threads"])
    vertices, faces = sphere_5023()
    spirals = spiral_indices(faces, args["length"], vertices=vertices)
    torch.manual_seed(0)
    conv = SpiralConv3D(args["channels"], args["channels"], spirals, temporal_kernel=args["delta"])
    x = torch.randn(args["batch"], args["frames"], len(vertices), args["channels"], requires_grad=True)

    def conv1d_form() -> torch.Tensor:
        gathered = spiral_gather(x, conv.spirals)  # [B, T, V, L*C]
        b, t, v, width = gathered.shape
        columns = gathered.permute(0, 2, 3, 1).reshape(b * v, width, t)  # channels first
        weight = conv.weight.reshape(conv.out_channels, conv.temporal_kernel, width).permute(0, 2, 1)
        out = torch.nn.functional.conv1d(torch.nn.functional.pad(columns, (conv.temporal_kernel - 1, 0)), weight, conv.bias)
        return out.reshape(b, v, conv.out_channels, t).permute(0, 3, 1, 2)

    form = {"taps": lambda: conv(x), "conv1d": conv1d_form}[args["form"]]
    result = {**args, "vertices": len(vertices),
              "gather_mb": args["batch"] * args["frames"] * len(vertices) * args["length"] * args["channels"] * 4 / 1e6}
    def train_step():
        form().square().mean().backward()
        x.grad = None
        conv.zero_grad(set_to_none=True)

    # ru_maxrss only grows: measure the forward first, then forward + backward (whose peak
    # is the larger), each against the state before either ran.
    import gc

    gc.collect()
    base = peak_rss_bytes()
    with torch.no_grad():
        form()
    result["forward_peak_mb"] = (peak_rss_bytes() - base) / 1e6
    train_step()
    result["forward_backward_peak_mb"] = (peak_rss_bytes() - base) / 1e6
    with torch.no_grad():
        result["forward_s"] = best_seconds(form, args["repeats"])
    result["forward_backward_s"] = best_seconds(train_step, args["repeats"])
    with torch.no_grad():
        result["max_abs_difference_between_forms"] = float((conv(x) - conv1d_form()).abs().max())
    return result


def _build(method: str, config_name: str, num_vertices: int, faces, neutral, overrides: dict | None = None,
           encoder=None):
    import yaml

    from voxmesh.models.registry import model_class

    config = yaml.safe_load((ROOT / "configs" / f"{config_name}.yaml").read_text())
    model_config = {**config["model"], **(overrides or {})}
    emotions = EMOTIONS if method == "emoface" and "vocaset" not in config_name else None
    return model_class(method)(model_config, num_vertices=num_vertices, speakers=SPEAKERS, fps=30.0,
                               encoder=encoder or config["encoder"], faces=faces, neutral=neutral, emotions=emotions)


def _parameters(args: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    if args["mesh"] == "head":
        from voxmesh.mesh.head import build_head

        head = build_head()
        vertices, faces = head.vertices, head.faces
    else:
        vertices, faces = sphere_5023()
    model = _build(args["method"], args["config"], len(vertices), faces, vertices, encoder={"kind": "mel", "dim": 64})
    encoder = sum(p.numel() for n, p in model.named_parameters() if n.startswith("audio_encoder."))
    total = sum(p.numel() for p in model.parameters())
    parts = {}
    for name, module in model.named_children():
        if name != "audio_encoder":
            parts[name] = sum(p.numel() for p in module.parameters())
    return {**args, "vertices": len(vertices), "parameters_without_encoder": total - encoder, "parts": parts}


def _training_step(args: dict) -> dict:
    import torch

    from voxmesh.data.batching import Batch

    torch.set_num_threads(args["threads"])
    if args["mesh"] == "head":
        from voxmesh.mesh.head import build_head

        head = build_head()
        vertices, faces = head.vertices, head.faces
    else:
        vertices, faces = sphere_5023()
    torch.manual_seed(0)
    model = _build(args["method"], args["config"], len(vertices), faces, vertices, args.get("overrides"),
                   encoder={"kind": "mel", "dim": 64})
    b, t, v = args["batch"], args["frames"], len(vertices)
    samples = int(t * 16000 / 30)
    template = torch.from_numpy(vertices)[None].repeat(b, 1, 1)
    motion = template[:, None] + 0.002 * torch.randn(b, t, v, 3)
    batch = Batch(audio=0.1 * torch.randn(b, samples), audio_mask=torch.ones(b, samples, dtype=torch.bool),
                  vertices=motion, frame_mask=torch.ones(b, t, dtype=torch.bool), template=template,
                  names=["x"] * b, subjects=[SPEAKERS[0]] * b, emotions=["happy"] * b, intensities=[1] * b, fps=30.0,
                  sample_rate=16000)
    batch.speaker_ids = torch.arange(b) % len(SPEAKERS)
    batch.emotion_ids = torch.arange(b) % len(EMOTIONS)
    batch.intensity_ids = torch.arange(b) % 2
    if args["method"] == "emoface" and args.get("pairs", True):
        batch.pair_vertices = motion.flip(1)
        batch.pair_mask = torch.ones(b, t, dtype=torch.bool)
        batch.pair_emotion_ids = (torch.arange(b) + 1) % len(EMOTIONS)
        batch.pair_intensity_ids = torch.arange(b) % 2
        batch.pair_audio = 0.1 * torch.randn(b, samples)
        batch.pair_audio_mask = torch.ones(b, samples, dtype=torch.bool)
        batch.pair_num_frames = torch.full((b,), t)
        batch.pair_frame_positions = torch.arange(t, dtype=torch.float32)[None].repeat(b, 1)
    if hasattr(model, "set_progress"):
        model.set_progress(args.get("progress", 0.3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        loss = model(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    import gc

    gc.collect()
    base = peak_rss_bytes()  # before the first step: ru_maxrss only grows
    step()
    peak = peak_rss_bytes()
    cpu_start, wall = time.process_time(), best_seconds(step, args["repeats"])
    return {**args, "vertices": v, "step_wall_s": wall, "step_cpu_s_mean": (time.process_time() - cpu_start) / args["repeats"],
            "step_peak_mb": (peak - base) / 1e6, "process_peak_mb": peak_rss_bytes() / 1e6}


def _generation(args: dict) -> dict:
    import torch

    from voxmesh.mesh.head import build_head

    torch.set_num_threads(args["threads"])
    head = build_head()
    model = _build(args["method"], args["config"], head.num_vertices, head.faces, head.vertices).eval()
    frames = int(args["seconds"] * 30)
    features = torch.randn(1, frames, model.audio_encoder.output_dim)
    template = torch.from_numpy(head.vertices)[None]
    seconds = best_seconds(lambda: model.generate(features, template, torch.zeros(1, dtype=torch.long)), 2)
    return {**args, "model_rtf": seconds / args["seconds"]}


def run_isolated(function, args: dict) -> dict:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(function, (args,))


# ---- the report ----------------------------------------------------------------------------

def main() -> int:
    quick = "--quick" in sys.argv
    repeats = 1 if quick else 3
    results: dict = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                 "load_average_at_start": os.getloadavg()}}

    # (batch, frames, widths): 8 x 60 at 32 channels would gather 2.8 GB, past this machine's share.
    shapes = [(1, 120, [8] if quick else [8, 16, 32]), (8, 60, [8] if quick else [8, 16])]
    rows = []
    for batch, frames, widths in shapes:
        for channels in widths:
            row = {}
            for form in ("taps", "conv1d"):
                measured = run_isolated(_spiral_conv3d, {"batch": batch, "frames": frames, "channels": channels,
                                                         "length": 9, "delta": 3, "threads": 1, "repeats": repeats,
                                                         "form": form})
                row.update({k: v for k, v in measured.items() if k not in ("form",) and not k.startswith(("forward",))})
                row.update({f"{form}_{k}": v for k, v in measured.items() if k.startswith("forward")})
            rows.append(row)
            print(f"SpiralConv3D {batch}x{frames} frames, {channels}->{channels} ch, L=9, delta=3: gather "
                  f"{row['gather_mb']:.0f} MB, fwd {row['taps_forward_s'] * 1e3:.0f} ms "
                  f"(+{row['taps_forward_peak_mb']:.0f} MB), fwd+bwd {row['taps_forward_backward_s'] * 1e3:.0f} ms "
                  f"(+{row['taps_forward_backward_peak_mb']:.0f} MB); conv1d form fwd+bwd "
                  f"{row['conv1d_forward_backward_s'] * 1e3:.0f} ms (+{row['conv1d_forward_backward_peak_mb']:.0f} MB); "
                  f"forms differ by {row['max_abs_difference_between_forms']:.1e}", flush=True)
    results["spiral_conv3d"] = rows

    results["parameters"] = [run_isolated(_parameters, {"method": "emoface", "config": name, "mesh": mesh})
                             for name, mesh in [("emoface_synthetic", "head"), ("emoface_ravdess3d", "sphere"),
                                                ("emoface_vocaset", "sphere")]]
    results["parameters"].append(run_isolated(_parameters, {"method": "faceformer", "config": "faceformer_synthetic",
                                                            "mesh": "head"}))
    for row in results["parameters"]:
        print(f"{row['config']} on {row['vertices']} vertices: {row['parameters_without_encoder'] / 1e6:.2f} M parameters "
              f"besides the speech encoder", flush=True)

    steps = [
        {"method": "faceformer", "config": "faceformer_synthetic", "phase": "teacher forcing"},
        {"method": "emoface", "config": "emoface_synthetic", "phase": "warm-up (teacher forcing + cross)", "progress": 0.05},
        {"method": "emoface", "config": "emoface_synthetic", "phase": "self-growing (+ second pass)", "progress": 0.3},
        {"method": "emoface", "config": "emoface_synthetic", "phase": "self-growing, fusion add", "progress": 0.3,
         "overrides": {"fusion": "add"}},
    ]
    thread_counts = [1] if quick else [1, 2]
    results["training_step_synthetic"] = []
    for threads in thread_counts:
        for spec in steps:
            row = run_isolated(_training_step, {**spec, "mesh": "head", "batch": 8, "frames": 60, "threads": threads,
                                                "repeats": repeats})
            results["training_step_synthetic"].append(row)
            print(f"{spec['config']} [{spec['phase']}] 8x60 frames, {threads} thread(s): {row['step_wall_s']:.2f} s a step "
                  f"(cpu {row['step_cpu_s_mean']:.2f} s), +{row['step_peak_mb']:.0f} MB", flush=True)
    paper = run_isolated(_training_step, {"method": "emoface", "config": "emoface_ravdess3d", "mesh": "sphere",
                                          "phase": "self-growing, full-resolution Mesh Attention", "progress": 0.3,
                                          "batch": 1, "frames": 120, "threads": 2, "repeats": 1})
    results["training_step_paper_scale"] = paper
    print(f"emoface_ravdess3d step (1x120 frames, 5,023 vertices, stand-in mel encoder): {paper['step_wall_s']:.2f} s, "
          f"+{paper['step_peak_mb']:.0f} MB (process peak {paper['process_peak_mb']:.0f} MB)", flush=True)

    results["generation"] = [run_isolated(_generation, {"method": m, "config": c, "seconds": 10.0, "threads": 1})
                             for m, c in [("emoface", "emoface_synthetic"), ("faceformer", "faceformer_synthetic")]]
    for row in results["generation"]:
        print(f"{row['config']} generate, 10 s on the head, 1 thread: real-time factor {row['model_rtf']:.3f} "
              "(model only)", flush=True)
    results["machine"]["load_average_at_end"] = os.getloadavg()

    if not quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
