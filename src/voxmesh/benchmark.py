"""`voxmesh benchmark`: every method side by side on one dataset, reproducible with one
command.

For each method (:data:`METHODS`) the run ``RUNS_DIR/<name>`` is reused when its final
model exists, else trained with the budget of :data:`RUNS` (``--quick``: the tiny
settings of :data:`QUICK_OVERRIDES` on the ``tiny`` synthetic dataset). Every run is then
scored by :func:`voxmesh.eval.evaluate.evaluate_run` on each test split the dataset has
(``test``, ``test_unseen``) beside the static and mean floors; the stochastic method
(GLDiTalker) is scored with seeds 0, 1 and 2 (each drawing :data:`DIVERSITY_SAMPLES`
motions a sequence for its diversity) and reported as a mean with a 95 % interval. Costs
come from the run (training seconds in ``log.jsonl``, parameter counts) and from timed
generation on speech of growing length (speech encoder and model apart), peak memory of
generation in a child process, and GLDiTalker's LVE against DDIM steps.

Writes ``OUT`` (Markdown), ``OUT`` with ``.json`` (every number the report prints, and
the evaluations it came from) and the plots in a folder named after ``OUT``
(``docs/benchmarks.md`` -> ``docs/benchmarks/*.png``). The report ends with the papers'
published VOCASET / BIWI / 3D-RAVDESS figures and the commands that reproduce them.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voxmesh.errors import VoxmeshError
from voxmesh.eval.evaluate import ARTICULATION_KEYS, METRIC_ORDER
from voxmesh.files import atomic_path, refuse_existing
from voxmesh.models.registry import compared_methods, method_info
from voxmesh.runtime import resolve_device

CONFIGS = Path(__file__).resolve().parent / "configs"  # package data: there after pip install too

# name -> (config in configs/, overrides, stage trained (None: all)). Budgets: the synthetic
# configs' epochs (FaceFormer 50; CodeTalker 20 + 25; GLDiTalker 20 + 30; EmoFace 30), about
# the same wall-clock time on 2 CPU cores. benchmarks/bench_small.py shares this table (and
# trains the ablations below the compared methods).
# The methods compared and what the registry says of them (title, stochastic, configs,
# quick-test sizes, training budget): nothing here names a method but the ablations.
METHODS: tuple[str, ...] = compared_methods()
TITLES = {name: method_info(name).title for name in METHODS}
STOCHASTIC = tuple(name for name in METHODS if method_info(name).stochastic)
QUICK_OVERRIDES: dict[str, list[str]] = {name: list(method_info(name).quick_overrides) for name in METHODS}

# name -> (config in configs/, overrides, stage trained (None: all)). Budgets: the synthetic
# configs' epochs (FaceFormer 50; CodeTalker 20 + 25; GLDiTalker 20 + 30; EmoFace 30), about
# the same wall-clock time on 2 CPU cores. benchmarks/bench_small.py shares this table (and
# trains the ablations below the compared methods).
RUNS: dict[str, tuple[str, list[str], str | None]] = {
    **{name: (method_info(name).configs["synthetic"], list(method_info(name).benchmark_overrides), None)
       for name in METHODS},
    "gldi_linear_stage1": ("gldi_synthetic", ["model.mesh_encoder=linear"], "vqvae"),
    # The ablations at a third of the budget (10 epochs each, the full model too), so
    # the three share one budget on 2 CPU cores.
    "emoface_10ep": ("emoface_synthetic", ["train.epochs=10", "train.val_every=10"], None),
    "emoface_add_10ep": ("emoface_synthetic", ["train.epochs=10", "train.val_every=10", "model.fusion=add"], None),
    "emoface_teacher_forcing_10ep": ("emoface_synthetic", ["train.epochs=10", "train.val_every=10",
                                                           "model.self_growing=false"], None),
}
SEEDS = (0, 1, 2)
DIVERSITY_SAMPLES = 3
DDIM_STEPS = (10, 25, 50)
SPLITS = ("test", "test_unseen")
AUDIO_SECONDS = (2.5, 5.0, 10.0, 20.0)
QUICK_AUDIO_SECONDS = (1.25, 2.5, 5.0)
QUALITY_KEYS = METRIC_ORDER  # evaluate's metrics, articulation and blinks included

# --quick: a few optimiser steps of tiny models (the sizes of the tests' tiny configs) on the
# `tiny` synthetic dataset, so the whole report is written in about a minute on a CPU.
QUICK_COMMON = ["encoder.dim=16", "train.max_steps=3", "train.warmup_steps=0", "train.val_every=1000",
                "train.val_max_sequences=1", "train.log_every=1", "data.window_seconds=1.0", "data.batch_size=2"]

# A run folder whose log changed this recently is taken to be training now (see ensure_trained).
BUSY_SECONDS = 600.0

# Two-sided 95 % quantiles of Student's t for 1..10 degrees of freedom (then the normal's).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


# ---- runs ------------------------------------------------------------------------------------

def train_seconds(run: str | Path) -> dict[str, float]:
    """Training wall-clock seconds of each stage: the largest ``seconds`` the run's
    log.jsonl holds for it (the trainer logs seconds since the stage started)."""
    seconds: dict[str, float] = {}
    log = Path(run) / "log.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            stage = row.get("stage", "main")
            seconds[stage] = max(seconds.get(stage, 0.0), float(row.get("seconds") or 0.0))
    return seconds


def run_overrides(name: str, quick: bool = False) -> tuple[str, list[str], str | None]:
    """(config name, overrides, stage) a run of ``name`` is trained with."""
    if name not in RUNS:
        raise VoxmeshError(f"Unknown benchmark run '{name}'; use one of {', '.join(RUNS)}.")
    config, overrides, stage = RUNS[name]
    if quick:
        method = config.split("_")[0]
        overrides = overrides + QUICK_COMMON + QUICK_OVERRIDES[method]
    return config, overrides, stage


def final_checkpoint(run: str | Path, stage: str | None = None) -> Path:
    """The folder of a run's final model: RUN/model, or RUN/<stage>/best for a run of one stage."""
    return Path(run) / ("model" if stage is None else f"{stage}/best")


def ensure_trained(name: str, data: str | Path, runs: str | Path, quick: bool = False,
                   progress: bool = False) -> tuple[Path, bool]:
    """``(RUNS_DIR/name, trained_now)``: the run is reused when its final model exists,
    else trained (resuming unfinished stages) with :data:`RUNS`' settings. A run without
    its final model whose log.jsonl changed in the last :data:`BUSY_SECONDS` is refused:
    a training is probably still writing into it."""
    from voxmesh.train.checkpoint import META_FILE
    from voxmesh.train.config import load_config
    from voxmesh.train.trainer import train

    config, overrides, stage = run_overrides(name, quick)
    run = Path(runs) / name
    if (final_checkpoint(run, stage) / META_FILE).is_file():
        return run, False
    log = run / "log.jsonl"
    if log.is_file() and time.time() - log.stat().st_mtime < BUSY_SECONDS:
        raise VoxmeshError(
            f"Run {run} has no final model yet and its log.jsonl was written {time.time() - log.stat().st_mtime:.0f} s "
            "ago: a training is probably still running into it; wait for it to finish and run the benchmark again."
        )
    train(load_config(CONFIGS / f"{config}.yaml", overrides), data, run, stage=stage, resume=True, progress=progress)
    return run, True


# ---- evaluation --------------------------------------------------------------------------------

def interval(values: list[float]) -> dict[str, Any]:
    """Mean and 95 % confidence interval (Student's t) of repeated measurements."""
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    if array.size < 2:
        return {"mean": mean, "half_width": None, "low": None, "high": None, "n": int(array.size), "values": list(values)}
    dof = array.size - 1
    quantile = _T975[dof - 1] if dof <= len(_T975) else 1.96
    half = float(quantile * array.std(ddof=1) / math.sqrt(array.size))
    return {"mean": mean, "half_width": half, "low": mean - half, "high": mean + half, "n": int(array.size),
            "values": [float(v) for v in values]}


def evaluate_method(name: str, run: Path, data: Path, split: str, device: str | None = None,
                    out_dir: Path | None = None) -> dict[str, Any]:
    """The method's evaluations on a split: one a seed (:data:`SEEDS` for stochastic
    methods, seed 0 otherwise), each the result of ``evaluate_run`` (written to
    ``out_dir``/<split>_seed<s>.md/.json, by default RUN/benchmark), and the model row
    they give: the values themselves, or for several seeds each metric's :func:`interval`."""
    from voxmesh.eval.evaluate import evaluate_run

    stochastic = name in STOCHASTIC
    seeds = SEEDS if stochastic else (0,)
    out_dir = Path(out_dir) if out_dir is not None else Path(run) / "benchmark"
    evaluations = [evaluate_run(run, data, split=split, out=out_dir / f"{split}_seed{seed}", seed=seed,
                                device=device, samples=DIVERSITY_SAMPLES if stochastic else 1, overwrite=True)
                   for seed in seeds]
    keys = [k for k in QUALITY_KEYS if k in evaluations[0]["rows"]["model"]]
    if stochastic:
        model = {k: interval([e["rows"]["model"][k] for e in evaluations]) for k in keys}
    else:
        model = {k: evaluations[0]["rows"]["model"][k] for k in keys}
    emotion = evaluations[0].get("emotion_classification")
    return {"seeds": list(seeds), "model": model, "evaluations": evaluations, "emotion": emotion,
            "generation_seconds": float(sum(e["generation_seconds"] for e in evaluations)),
            "audio_seconds": float(sum(e["audio_seconds"] for e in evaluations))}


def ddim_curve(run: Path, data: Path, steps: tuple[int, ...] = DDIM_STEPS, device: str | None = None) -> list[dict]:
    """GLDiTalker's ``test`` LVE, MVE and model real-time factor at each DDIM step count (seed 0)."""
    from voxmesh.eval.evaluate import evaluate_run

    rows = []
    for count in steps:
        result = evaluate_run(run, data, split="test", out=run / "benchmark" / f"test_steps{count}", steps=count,
                              device=device, overwrite=True)
        model = result["rows"]["model"]
        rows.append({"steps": int(count), "LVE": model["LVE"], "MVE": model["MVE"],
                     "lip_closure": model.get("lip_closure"),
                     "model_rtf": result["generation_seconds"] / max(result["audio_seconds"], 1e-9)})
    return rows


# ---- speed, size and memory -------------------------------------------------------------------

def speech_clip(audio_clips: list[np.ndarray], seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """``seconds`` of real speech: the clips one after another, repeated as needed."""
    joined = np.concatenate([np.asarray(a, dtype=np.float32) for a in audio_clips])
    return np.resize(joined, int(round(seconds * sample_rate))).astype(np.float32)


def _synthetic_sequence(audio: np.ndarray, template: np.ndarray, subject: str, fps: float, emotion: str | None = None):
    from voxmesh.data.layout import Sequence

    frames = int(round(len(audio) / 16000 * fps))
    # generate_sequence reads only the frame count from the vertices: a read-only view, no copy
    return Sequence(name=f"speech_{frames}", subject=subject, audio=audio, template=template, fps=fps,
                    vertices=np.broadcast_to(template, (frames,) + template.shape), emotion=emotion)


def best_seconds(fn: Callable[[], object], repeats: int, warmup: bool = False) -> float:
    """The fastest of ``repeats`` (at least one) wall-clock runs of ``fn``, the least
    disturbed by other work on the machine; ``warmup`` runs it once first, untimed
    (first-call allocations and kernel selection). Shared with ``benchmarks/``."""
    if warmup:
        fn()
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def growth_exponent(seconds: list[float], costs: list[float]) -> float | None:
    """k in cost ~ length^k, the least-squares slope in log-log (1: linear, 2: quadratic)."""
    points = [(math.log(s), math.log(c)) for s, c in zip(seconds, costs) if s > 0 and c > 0]
    if len(points) < 2:
        return None
    x, y = np.asarray(points).T
    return float(np.polyfit(x, y, 1)[0])


def count_parameters(model) -> dict[str, int]:
    """Parameters of a model in total and of its speech encoder."""
    total = sum(p.numel() for p in model.parameters())
    encoder = sum(p.numel() for p in model.audio_encoder.parameters())
    return {"total": int(total), "speech_encoder": int(encoder), "without_speech_encoder": int(total - encoder)}


def speed(model, audio_clips: list[np.ndarray], template: np.ndarray, subject: str, fps: float,
          lengths: tuple[float, ...], repeats: int, device: str) -> list[dict]:
    """Seconds to encode the speech and to generate the motion for speech of each length
    (the fastest of ``repeats`` after one untimed warm-up), and their real-time factors."""
    from voxmesh.inference import generate_sequence, sequence_features

    speaker = list(model.speakers).index(subject) if subject in model.speakers else 0
    rows = []
    warm = _synthetic_sequence(speech_clip(audio_clips, min(lengths)), template, subject, fps)
    generate_sequence(model, warm, speaker, device=device)  # first-call allocations, kernel selection
    for seconds in lengths:
        sequence = _synthetic_sequence(speech_clip(audio_clips, seconds), template, subject, fps)
        features = sequence_features(model, sequence.audio, sequence.num_frames, fps, device)
        encoder = best_seconds(lambda s=sequence: sequence_features(model, s.audio, s.num_frames, fps, device),
                                repeats)
        generation = best_seconds(lambda s=sequence, f=features: generate_sequence(model, s, speaker, features=f,
                                                                                    seed=0, device=device), repeats)
        rows.append({"audio_seconds": float(seconds), "frames": sequence.num_frames, "encoder_seconds": encoder,
                     "model_seconds": generation, "encoder_rtf": encoder / seconds, "model_rtf": generation / seconds,
                     "total_rtf": (encoder + generation) / seconds})
    return rows


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _memory_child(spec_path: str) -> dict[str, Any]:
    """In a fresh process: load the model, then encode and generate the speech once and
    report the peak resident memory (and on CUDA the peak allocated memory)."""
    import resource

    import torch

    from voxmesh.inference import generate_sequence, sequence_features
    from voxmesh.train.checkpoint import load_checkpoint

    spec = json.loads(Path(spec_path).read_text())
    device = spec["device"]
    arrays = np.load(spec["arrays"], allow_pickle=False)
    model = load_checkpoint(spec["checkpoint"], device=device)
    sequence = _synthetic_sequence(arrays["audio"], arrays["template"], spec["subject"], spec["fps"])
    speaker = list(model.speakers).index(spec["subject"]) if spec["subject"] in model.speakers else 0
    gc.collect()
    reset = True
    try:  # Linux: restart the high-water mark at the current size, so the peak is generation's own
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        reset = False
    before_kb = _status_kb("VmRSS")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    features = sequence_features(model, sequence.audio, sequence.num_frames, spec["fps"], device)
    generate_sequence(model, sequence, speaker, features=features, seed=0, device=device)
    peak_kb = _status_kb("VmHWM") if reset else None
    if peak_kb is None:
        scale = 1 / 1024 if sys.platform == "darwin" else 1  # ru_maxrss: bytes on macOS, KiB on Linux
        peak_kb = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)
    result = {"peak_rss_mb": peak_kb / 1024, "rss_before_mb": before_kb / 1024 if before_kb else None,
              "high_water_mark_reset": reset}
    result["generation_mb"] = (peak_kb - before_kb) / 1024 if before_kb else None
    if device.startswith("cuda"):
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def measure_memory(checkpoint: Path, audio: np.ndarray, template: np.ndarray, subject: str, fps: float,
                   device: str) -> dict[str, Any]:
    """Peak memory of encoding and generating ``audio`` with a checkpoint, measured in a
    child process (``python -m voxmesh.benchmark --memory-child``) so that nothing else
    this process allocated counts: the peak resident set of the child after loading the
    model (``generation_mb``: what generation added to it) and, on CUDA, the peak
    allocated GPU memory."""
    with tempfile.TemporaryDirectory(prefix="voxmesh_memory_") as folder:
        arrays = Path(folder) / "inputs.npz"
        np.savez(arrays, audio=audio, template=template)
        spec = Path(folder) / "spec.json"
        spec.write_text(json.dumps({"checkpoint": str(checkpoint), "arrays": str(arrays), "subject": subject,
                                    "fps": fps, "device": device}))
        done = subprocess.run([sys.executable, "-m", "voxmesh.benchmark", "--memory-child", str(spec)],
                              capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise VoxmeshError(f"Measuring the memory of {checkpoint} failed in its child process: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the picture strip ------------------------------------------------------------------------

def strip_frames(sequence, count: int = 4) -> list[tuple[str, int]]:
    """(label, frame) of up to ``count`` frames of a sequence, in time order: midpoints of
    bilabial closures and of open vowels, alternating, from its phoneme timings; without
    timings, evenly spaced frames."""
    return speech_frames(sequence.phonemes, sequence.fps, sequence.num_frames, count)


def speech_frames(phonemes, fps: float, num_frames: int, count: int = 4) -> list[tuple[str, int]]:
    """(label, frame) of up to ``count`` frames where a face should be seen speaking, in
    time order: midpoints of bilabial closures (lips shut) and of open vowels (mouth
    open), about half each, from phoneme timings (items with ``symbol``, ``start``,
    ``end``); with fewer than two such phonemes, evenly spaced frames."""
    from voxmesh.data.synthetic.phonemes import viseme_of
    from voxmesh.eval.metrics import BILABIAL_PHONEMES

    closed, opened = [], []
    for phoneme in phonemes or []:
        frame = min(int(round(0.5 * (phoneme.start + phoneme.end) * fps)), num_frames - 1)
        symbol = phoneme.symbol.lstrip("',%=")
        if symbol in BILABIAL_PHONEMES:
            closed.append((f"/{symbol}/ closed", frame))
        elif viseme_of(symbol).viseme == "open_vowel":
            opened.append((f"/{symbol}/ open", frame))
    half = max(count // 2, count - len(opened))
    picks = closed[:half] + opened[:count - min(half, len(closed))]
    if len(picks) < 2:
        duration = num_frames / fps
        picks = [(f"{t:.2f} s", int(t * fps)) for t in np.linspace(0.2, 0.8, count) * duration]
    return sorted(picks, key=lambda p: p[1])


def pick_strip_sequence(dataset, split: str = "test"):
    """The first sequence of a split (by name) with at least two closures and two open
    vowels; else the split's first sequence."""
    records = sorted((r for r in dataset.all_records if r.split == split), key=lambda r: r.name)
    if not records:
        return None
    best, best_score = None, -1
    for record in records:
        sequence = dataset.load(record)
        labels = [label for label, _ in strip_frames(sequence)]
        score = min(sum("closed" in l for l in labels), sum("open" in l for l in labels))
        if score >= 2:
            return sequence
        if score > best_score:
            best, best_score = sequence, score
    return best


def render_strip(topology, sequence, rows: dict[str, np.ndarray], path: Path, size: int = 160) -> dict[str, Any]:
    """A sheet of frames (columns) for the ground truth and each method (rows), framed on
    the mouth; written as a PNG. rows: name -> vertices ``[T, V, 3]``."""
    from voxmesh.data.synthetic.sheet import vertex_colors_for
    from voxmesh.render.rasterizer import Renderer
    from voxmesh.render.sheet import contact_sheet

    picks = strip_frames(sequence)
    template = np.asarray(sequence.template, dtype=np.float32)
    lips = np.asarray(topology.regions.get("lips", []), dtype=np.int64)
    if lips.size:  # the lower face around the mouth
        centre = template[lips].mean(axis=0)
        radius = np.linalg.norm(template[lips] - centre, axis=1).max()
        reference = template[np.linalg.norm(template - centre, axis=1) < 2.5 * radius]
    else:
        reference = template
    renderer = Renderer(topology.faces, width=size, height=size, reference_vertices=reference,
                        vertex_colors=vertex_colors_for(topology), supersample=2)
    images, labels = [], []
    for name, vertices in rows.items():
        for label, frame in picks:
            images.append(renderer.render(vertices[min(frame, len(vertices) - 1)]))
            labels.append(f"{name} {label}")
    contact_sheet(images, labels, columns=len(picks), path=path, font_size=max(10, size // 14))
    return {"sequence": sequence.name, "text": sequence.text, "frames": [{"label": l, "frame": f} for l, f in picks],
            "rows": list(rows), "path": str(path)}


# ---- the machine -------------------------------------------------------------------------------

def describe_machine(device: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    from voxmesh import __version__

    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
               "voxmesh": __version__, "device": device,
               "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5, check=False)
        machine["git_commit"] = commit.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        machine["git_commit"] = None
    return machine


# ---- the benchmark -----------------------------------------------------------------------------

def report_outputs(out: str | Path) -> tuple[Path, Path, Path]:
    """What a report at ``out`` consists of: the Markdown, the JSON beside it and the
    folder of its plots (named after it)."""
    out = Path(out)
    return out, out.with_suffix(".json"), out.parent / out.stem


def run_benchmark(data: str | Path, runs: str | Path, out: str | Path = "docs/benchmarks.md", quick: bool = False,
                  device: str | None = None, progress: bool = True,
                  methods: tuple[str, ...] = METHODS, overwrite: bool = False, update: bool = False) -> dict[str, Any]:
    """Train what is missing, evaluate, time, plot, and write the report; returns the
    JSON-ready result (also written beside ``out``). An existing report (its .md, .json
    or plot folder) is refused before any work unless ``overwrite``.

    ``update``: re-measure only ``methods`` and keep every other method's results from the
    existing report at ``out`` (after retraining one method, without hours for the rest);
    the strip of renders is redrawn with every method, and the report says which rows are
    new."""
    import torch
    from tqdm import tqdm

    from voxmesh.data.layout import FaceDataset
    from voxmesh.data.synthetic.dataset import synthesize_dataset
    from voxmesh.train.checkpoint import load_checkpoint, read_checkpoint_info

    started = time.perf_counter()
    data, runs, out = Path(data), Path(runs), Path(out)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise VoxmeshError(f"Unknown method {', '.join(unknown)}; benchmark some of {', '.join(METHODS)}.")
    markdown, json_path, figures = report_outputs(out)
    previous = None
    if update:
        if not json_path.is_file():
            raise VoxmeshError(f"--update keeps the other methods' rows of {json_path}, which does not exist; run "
                               "voxmesh benchmark without --update first.")
        previous = json.loads(json_path.read_text())
        if bool(previous.get("quick")) != quick:
            raise VoxmeshError(f"{json_path} is a {'quick' if previous.get('quick') else 'full'} report; update it with "
                               f"the same setting ({'with' if previous.get('quick') else 'without'} --quick).")
    else:
        # Before hours of training, not after: a report that exists is replaced only on request.
        refuse_existing(markdown, json_path, overwrite=overwrite, instead="choose another --out")
        if figures.is_dir() and any(figures.iterdir()):  # the plots' folder: replaced with the report
            refuse_existing(figures, overwrite=overwrite, instead="choose another --out", folder_of=lambda name: True)
    device = str(resolve_device(device))
    synthesized = None
    if not (data / "manifest.jsonl").is_file() and not (data / "wav").is_dir():
        synthesized = "tiny" if quick else "small"
        synthesize_dataset(data, preset=synthesized, seed=0, progress=progress)
    machine = describe_machine(device)
    lengths = QUICK_AUDIO_SECONDS if quick else AUDIO_SECONDS
    reference_seconds = lengths[-1] if quick else 10.0
    repeats = 1 if quick else 2

    dataset = strip_sequence = None
    result: dict[str, Any] = {
        "title": "voxmesh benchmark", "quick": quick, "data": str(data), "runs": str(runs), "synthesized": synthesized,
        "machine": machine, "methods": list(methods), "splits": {}, "runs_info": {}, "cost": {}, "speed": {},
        "ddim": None, "strip": None, "protocol": {"seeds": list(SEEDS), "stochastic": list(STOCHASTIC),
                                                  "diversity_samples": DIVERSITY_SAMPLES, "audio_seconds": list(lengths),
                                                  "reference_seconds": reference_seconds, "repeats": repeats,
                                                  "emotion_source": "heard"},
    }
    strip_predictions: dict[str, np.ndarray] = {}
    bar = tqdm(total=len(methods) * 3 + 2, desc="benchmark", unit="task", disable=not progress)
    for name in methods:
        bar.set_description(f"train {name}")
        run, trained_now = ensure_trained(name, data, runs, quick=quick, progress=progress)
        bar.update(1)
        checkpoint = final_checkpoint(run)
        info = read_checkpoint_info(checkpoint)
        if dataset is None:
            dataset = FaceDataset(data, preset=(info.get("data") or {}).get("preset") or "generic", fps=info["fps"])
            present = [s for s in SPLITS if any(r.split == s for r in dataset.all_records)]
            if not present:
                raise VoxmeshError(f"Dataset {data} has no 'test' or 'test_unseen' sequences; give a dataset with a test split.")
            result["present_splits"] = present
            strip_sequence = pick_strip_sequence(dataset, present[0])
        result["runs_info"][name] = {"run": str(run), "trained_now": trained_now, "method": info["method"],
                                     "step": info.get("step"), "stage": info.get("stage"),
                                     "config": RUNS[name][0], "overrides": run_overrides(name, quick)[1]}
        bar.set_description(f"evaluate {name}")
        for split in result["present_splits"]:
            evaluation = evaluate_method(name, run, data, split, device=device)
            split_result = result["splits"].setdefault(split, {"rows": {}, "emotion": {}, "eval_rtf": {}})
            first = evaluation["evaluations"][0]
            split_result.setdefault("static", first["rows"]["static"])
            if first.get("ground_truth"):  # what a model should match on articulation and blinks
                split_result.setdefault("ground_truth", first["ground_truth"])
            if "mean" in first["rows"]:
                split_result.setdefault("mean", first["rows"]["mean"])
            split_result.setdefault("units", first["units"])
            split_result.setdefault("masks", first["masks"])
            split_result.setdefault("sequences", first["sequences"])
            split_result.setdefault("frames", first["frames"])
            split_result.setdefault("conditions", first["conditions"])
            split_result.setdefault("unseen_subjects", first["unseen_subjects"])
            split_result["rows"][name] = evaluation["model"]
            split_result["eval_rtf"][name] = evaluation["generation_seconds"] / max(evaluation["audio_seconds"], 1e-9)
            if evaluation["emotion"]:
                split_result["emotion"][name] = {k: evaluation["emotion"][k] for k in ("accuracy", "chance", "sequences")}
            split_result.setdefault("evaluations", {})[name] = [
                {"seed": e["seed"], "samples": e["samples"], "rows": e["rows"], "written": e["written"]}
                for e in evaluation["evaluations"]]
        bar.update(1)

        bar.set_description(f"time {name}")
        model = load_checkpoint(checkpoint, expected_topology_hash=dataset.topology(), device=device)
        test_split = result["present_splits"][0]
        test_sequences = [dataset.load(r) for r in sorted(dataset.all_records, key=lambda r: r.name)
                          if r.split == test_split][:8]
        subject = next((s.subject for s in test_sequences if s.subject in model.speakers), test_sequences[0].subject)
        template = next(s.template for s in test_sequences if s.subject == subject)
        clips = [s.audio for s in test_sequences]
        rows = speed(model, clips, template, subject, dataset.fps, lengths, repeats, device)
        at_reference = next(r for r in rows if r["audio_seconds"] == reference_seconds)
        memory = measure_memory(checkpoint, speech_clip(clips, reference_seconds), template, subject, dataset.fps, device)
        seconds = train_seconds(run)
        result["speed"][name] = rows
        result["cost"][name] = {
            "train_seconds": seconds, "train_seconds_total": float(sum(seconds.values())),
            "parameters": count_parameters(model), "encoder_rtf": at_reference["encoder_rtf"],
            "model_rtf": at_reference["model_rtf"], "reference_seconds": reference_seconds,
            "growth_exponent": growth_exponent([r["audio_seconds"] for r in rows], [r["model_seconds"] for r in rows]),
            "memory": memory}
        if strip_sequence is not None:
            strip_predictions[name] = strip_prediction(model, strip_sequence, device)
        if method_info(name).sampling_steps:
            bar.set_description("DDIM steps")
            result["ddim"] = ddim_curve(run, data, device=device)
        del model
        gc.collect()
        bar.update(1)

    if previous is not None:
        kept = keep_previous_rows(result, previous, methods)
        if strip_sequence is not None:  # the strip shows every method: the kept ones generate its sequence again
            for name in kept:
                model = load_checkpoint(final_checkpoint(previous["runs_info"][name]["run"]),
                                        expected_topology_hash=dataset.topology(), device=device)
                strip_predictions[name] = strip_prediction(model, strip_sequence, device)
                del model
        strip_predictions = {m: strip_predictions[m] for m in result["methods"] if m in strip_predictions}

    bar.set_description("plots")
    figures.mkdir(parents=True, exist_ok=True)
    result["figures"] = write_plots(result, figures)
    topology = dataset.topology()
    if strip_sequence is None or len(topology.faces) == 0:
        result["strip"] = {"skipped": "the dataset has no faces (topology.ply/.obj) to render"}
    else:
        rows = {"ground truth": strip_sequence.vertices, **{TITLES[m]: v for m, v in strip_predictions.items()}}
        result["strip"] = render_strip(topology, strip_sequence, rows, figures / "strip.png", size=160 if quick else 192)
    bar.update(1)
    result["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["seconds"] = time.perf_counter() - started
    write_report(result, out)
    bar.update(1)
    bar.close()
    return result


def strip_prediction(model, sequence, device: str) -> np.ndarray:
    """The model's vertices ``[T, V, 3]`` for the strip's sequence (seed 0), in the subject's
    own style when the model knows the subject, else the first training speaker's."""
    from voxmesh.inference import generate_sequence

    speaker = list(model.speakers).index(sequence.subject) if sequence.subject in model.speakers else 0
    return generate_sequence(model, sequence, speaker, seed=0, device=device)


def keep_previous_rows(result: dict[str, Any], previous: dict[str, Any], measured: tuple[str, ...]) -> list[str]:
    """Copy into ``result`` the rows of every method of the ``previous`` report that was
    not ``measured`` now (quality, evaluations, cost, speed, run; GLDiTalker's DDIM curve);
    orders ``result["methods"]`` as :data:`METHODS` and records the update. Returns the
    kept methods."""
    kept = [m for m in previous["methods"] if m not in measured]
    for name in kept:
        for split, split_result in result["splits"].items():
            old = previous["splits"].get(split, {})
            for key in ("rows", "eval_rtf", "emotion", "evaluations"):
                if name in old.get(key, {}):
                    split_result.setdefault(key, {})[name] = old[key][name]
        for key in ("runs_info", "cost", "speed"):
            if name in previous.get(key, {}):
                result[key][name] = previous[key][name]
    if "gldi" in kept:
        result["ddim"] = previous.get("ddim")
    result["methods"] = [m for m in METHODS if m in kept or m in measured]
    result["updated"] = {"measured": list(measured), "kept": kept,
                         "kept_from": {"git_commit": previous["machine"].get("git_commit"),
                                       "seconds": previous.get("seconds")}}
    return kept


# ---- plots -------------------------------------------------------------------------------------

def _value(cell: Any) -> float | None:
    """A report cell's number: the value, or the mean of an interval."""
    if isinstance(cell, dict):
        return cell.get("mean")
    return cell


def write_plots(result: dict[str, Any], folder: Path) -> dict[str, str]:
    """quality.png (LVE, EVE, FDD per method and split with the static and mean floors),
    ddim_steps.png (GLDiTalker's LVE and RTF against DDIM steps), speed.png (real-time
    factor against speech length). Returns name -> path."""
    from voxmesh.extras import require

    matplotlib = require("matplotlib", "Drawing the benchmark's plots")

    matplotlib.use("Agg")  # files only, safe in any process
    import matplotlib.pyplot as plt

    written: dict[str, str] = {}
    methods = result["methods"]
    splits = list(result["splits"])
    figure, axes = plt.subplots(len(splits), 3, figsize=(12, 3.4 * len(splits)), squeeze=False)
    for row, split in enumerate(splits):
        rows = result["splits"][split]["rows"]
        for column, key in enumerate(("LVE", "EVE", "FDD")):
            axis = axes[row][column]
            heights = [_value(rows[m].get(key)) or 0.0 for m in methods]
            errors = [(rows[m][key].get("half_width") or 0.0) if isinstance(rows[m].get(key), dict) else np.nan
                      for m in methods]
            axis.bar([TITLES[m] for m in methods], heights, yerr=errors, color="#4c78a8", capsize=4)
            for floor, style in (("static", "--"), ("mean", ":")):
                value = (result["splits"][split].get(floor) or {}).get(key)
                if value is not None:
                    axis.axhline(value, color="#e45756" if floor == "static" else "#54a24b", linestyle=style,
                                 label=f"{floor} face")
            unit = "m²" if result["splits"][split]["units"].get(key) == "m^2" else "m"
            axis.set_title(f"{key} ({unit}), {split}")
            axis.tick_params(axis="x", labelsize=8)
            axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
            if column == 0:
                axis.legend(fontsize=7)
    figure.suptitle("Lower is better (FDD: closer to 0); bars: mean over seeds with 95 % interval for GLDiTalker")
    figure.tight_layout()
    written["quality"] = _save(figure, folder / "quality.png")
    plt.close(figure)

    if result.get("ddim"):
        figure, axis = plt.subplots(figsize=(5.5, 3.6))
        steps = [r["steps"] for r in result["ddim"]]
        axis.plot(steps, [r["LVE"] for r in result["ddim"]], "o-", color="#4c78a8", label="LVE (test)")
        axis.set_xlabel("DDIM steps")
        axis.set_ylabel("LVE (m²)")
        axis.set_xticks(steps)
        axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0), useOffset=False)
        twin = axis.twinx()
        twin.plot(steps, [r["model_rtf"] for r in result["ddim"]], "s--", color="#f58518", label="model RTF")
        twin.set_ylabel("model real-time factor")
        axis.set_title("GLDiTalker: LVE and generation cost against DDIM steps")
        figure.legend(loc="lower right", bbox_to_anchor=(0.85, 0.2), fontsize=8)
        figure.tight_layout()
        written["ddim_steps"] = _save(figure, folder / "ddim_steps.png")
        plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    for method in methods:
        rows = result["speed"].get(method) or []
        seconds = [r["audio_seconds"] for r in rows]
        line, = axis.plot(seconds, [r["model_rtf"] for r in rows], "o-", label=f"{TITLES[method]} model")
        axis.plot(seconds, [r["encoder_rtf"] for r in rows], "x:", color=line.get_color(),
                  label=f"{TITLES[method]} speech encoder")
    axis.set_xscale("log")
    axis.set_yscale("log")
    lengths = result["protocol"]["audio_seconds"]
    axis.set_xticks(lengths)
    axis.set_xticklabels([f"{s:g}" for s in lengths])
    axis.minorticks_off()
    axis.set_xlabel("speech length (s)")
    axis.set_ylabel("real-time factor (compute s / audio s)")
    axis.set_title(f"Generation cost against speech length ({result['machine']['device']})")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    written["speed"] = _save(figure, folder / "speed.png")
    plt.close(figure)
    return written


def _save(figure, path: Path) -> str:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    return str(path)


# ---- the report --------------------------------------------------------------------------------

_FLOOR_NAMES = {"static": "static (template, unmoving)", "mean": "mean (template + mean training offset)"}
_HEADERS = {"LVE": "LVE (m²)", "EVE": "EVE (m²)", "FDD": "FDD (m²)", "FDD_abs": "FDD abs (m²)", "MVE": "MVE (m)",
            "MOD": "MOD (m)", "lip_closure": "lip closure (%)", "vowel_contrast": "vowel contrast (x)",
            "lip_rounding": "lip rounding (x)", "blink_rate": "blinks / min", "blink_duration": "blink duration (s)",
            "diversity": "diversity (m)"}
# Ratios, rates and durations print as plain numbers; errors and distances in scientific notation.
_PLAIN = ("vowel_contrast", "lip_rounding", "blink_rate", "blink_duration")


def _number(key: str, value: float) -> str:
    if key == "lip_closure":
        return f"{100 * value:.1f}"
    return f"{value:.2f}" if key in _PLAIN else f"{value:.4e}"


def cell_text(key: str, cell: Any) -> str:
    """A quality cell as the report prints it: ``value``, or ``mean ± half-width`` of an interval."""
    if isinstance(cell, dict):
        if cell.get("half_width") is None:
            return _number(key, cell["mean"])
        half = (f"{100 * cell['half_width']:.1f}" if key == "lip_closure" else
                f"{cell['half_width']:.2f}" if key in _PLAIN else f"{cell['half_width']:.1e}")
        return f"{_number(key, cell['mean'])} ± {half}"
    return _number(key, cell)


def _missing(key: str, row: str, masks: dict) -> str:
    """Why a quality cell is empty."""
    if key == "diversity":
        return "n/a (deterministic: one motion a seed)" if row in METHODS else "n/a (one output)"
    if key == "lip_closure":
        return "n/a (no phoneme timings in the manifest)" if "lip_closure" not in masks else "n/a"
    if key in ("EVE", "FDD", "FDD_abs", "LVE", "MOD"):
        return f"n/a (no {key} region in regions.json)"
    reasons = {"vowel_contrast": "no open vowel and bilabial timed in this split",
               "lip_rounding": "no rounded and spread vowel timed in this split, or no lip corners",
               "blink_rate": "no eyelid pairs in the regions", "blink_duration": "no blink"}
    return f"n/a ({reasons[key]})" if key in reasons else "n/a"


def _runs_text(repeats: int) -> str:
    return "one timed run" if repeats == 1 else f"the fastest of {repeats} timed runs"


def _seconds_text(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def format_report(result: dict[str, Any]) -> str:
    """The Markdown report of :func:`run_benchmark`."""
    methods = result["methods"]
    quick = result["quick"]
    lines = ["# Benchmarks: every method side by side", ""]
    lines += [
        "Written by `voxmesh benchmark" + (" --quick" if quick else "") + f" --data {result['data']} --runs "
        f"{result['runs']}` in {_seconds_text(result['seconds'])}. Every number below is in "
        f"[{Path(result.get('json_name', 'benchmarks.json')).name}](./{Path(result.get('json_name', 'benchmarks.json')).name}) "
        "with the `voxmesh evaluate` results it came from.", ""]
    if quick:
        lines += ["> **Quick mode**: tiny models trained for 3 optimiser steps on the `tiny` synthetic dataset. The "
                  "numbers show that the pipeline works end to end, not how good the methods are.", ""]
    lines += ["## Runs", "", "| method | run | trained | checkpoint | config and overrides |", "|---|---|---|---|---|"]
    for name in methods:
        info = result["runs_info"][name]
        overrides = " ".join(f"`{o}`" for o in info["overrides"]) or "none"
        lines.append(f"| {TITLES[name]} | `{info['run']}` | {'now' if info['trained_now'] else 'reused'} | "
                     f"{info['stage'] or 'main'} stage, step {info['step']} | `configs/{info['config']}.yaml`; {overrides} |")
    lines.append("")

    for split, split_result in result["splits"].items():
        keys = [k for k in QUALITY_KEYS if k in split_result["units"] or k in ARTICULATION_KEYS or k == "diversity"]
        describe = ("seen subjects, held-out sentences" if split == "test" else
                    f"unseen subjects ({', '.join(split_result['unseen_subjects'])}), generated in each of the "
                    f"{len(split_result['conditions'])} training speakers' styles and averaged")
        lines += [f"## Quality on `{split}` ({split_result['sequences']} sequences, {split_result['frames']} frames; "
                  f"{describe})", ""]
        lines.append("| | " + " | ".join(_HEADERS[k] for k in keys) + " | emotion accuracy (%) |")
        lines.append("|---|" + "---:|" * (len(keys) + 1))
        for floor in ("static", "mean"):
            if split_result.get(floor) is None:
                continue
            cells = [cell_text(k, split_result[floor][k]) if k in split_result[floor] else
                     _missing(k, floor, split_result["masks"]) for k in keys]
            lines.append(f"| {_FLOOR_NAMES[floor]} | " + " | ".join(cells) + " | n/a (no classifier) |")
        if split_result.get("ground_truth"):
            truth = split_result["ground_truth"]
            cells = [cell_text(k, truth[k]) if k in truth else "n/a (the reference itself)" for k in keys]
            lines.append("| ground truth (what to match) | " + " | ".join(cells) + " | n/a (the labels) |")
        for name in methods:
            row = split_result["rows"][name]
            cells = [cell_text(k, row[k]) if k in row else _missing(k, name, split_result["masks"]) for k in keys]
            emotion = split_result["emotion"].get(name)
            emotion_text = (f"{100 * emotion['accuracy']:.1f} (chance {100 * emotion['chance']:.1f}; "
                            f"{emotion['sequences']} seq.)" if emotion else "n/a (no emotion classifier)")
            label = TITLES[name] + (f" (mean ± 95 % interval, seeds {', '.join(map(str, SEEDS))})"
                                    if name in STOCHASTIC else "")
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {emotion_text} |")
        lines.append("")

    first_split = next(iter(result["splits"]))
    lines += ["## Cost", "",
              f"Speech encoder and model timed apart on {result['protocol']['reference_seconds']:g} s of speech ("
              f"{_runs_text(result['protocol']['repeats'])} after a warm-up); growth: k in time ~ length^k over "
              f"{', '.join(f'{s:g}' for s in result['protocol']['audio_seconds'])} s. Peak memory: encoding and "
              "generating that speech in a fresh process (resident set; what generation added over the loaded model "
              "in brackets).", "",
              "| method | training time | parameters (speech encoder) | encoder RTF | model RTF | growth k | "
              f"peak memory of generation | model RTF on `{first_split}` |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in methods:
        cost = result["cost"][name]
        stages = cost["train_seconds"]
        if stages:
            parts = " + ".join(f"{stage} {_seconds_text(s)}" for stage, s in stages.items())
            train_text = (f"{_seconds_text(cost['train_seconds_total'])} ({parts})" if len(stages) > 1
                          else _seconds_text(cost["train_seconds_total"]))
        else:
            train_text = "n/a (no log.jsonl in the run)"
        params = cost["parameters"]
        memory = cost["memory"]
        memory_text = f"{memory['peak_rss_mb']:.0f} MB"
        if memory.get("generation_mb") is not None:
            memory_text += f" (+{memory['generation_mb']:.0f} MB)"
        if memory.get("peak_cuda_mb") is not None:
            memory_text += f"; GPU {memory['peak_cuda_mb']:.0f} MB"
        growth = f"{cost['growth_exponent']:.2f}" if cost["growth_exponent"] is not None else "n/a (one length)"
        eval_rtf = result["splits"][first_split]["eval_rtf"][name]
        lines.append(f"| {TITLES[name]} | {train_text} | {params['total'] / 1e6:.2f} M ({params['speech_encoder'] / 1e6:.2f} M) | "
                     f"{cost['encoder_rtf']:.4f} | {cost['model_rtf']:.4f} | {growth} | {memory_text} | {eval_rtf:.4f} |")
    lines += ["", "RTF: seconds of compute per second of speech (below 1 is faster than real time). Training time: "
              "the largest `seconds` each stage logged in the run's `log.jsonl`, summed over stages (wall-clock, "
              "validation included).", ""]

    speed_rows = result["speed"]
    lengths = result["protocol"]["audio_seconds"]
    lines += ["### Speed against speech length (model RTF; speech encoder RTF in brackets)", "",
              "| method | " + " | ".join(f"{s:g} s" for s in lengths) + " |", "|---|" + "---:|" * len(lengths)]
    for name in methods:
        cells = [f"{r['model_rtf']:.4f} ({r['encoder_rtf']:.4f})" for r in speed_rows[name]]
        lines.append(f"| {TITLES[name]} | " + " | ".join(cells) + " |")
    lines += ["", f"![speed](./{Path(result['figures']['speed']).parent.name}/speed.png)", ""]

    if result.get("ddim"):
        lines += ["### GLDiTalker: DDIM steps (`test`, seed 0)", "", "| steps | LVE (m²) | MVE (m) | lip closure (%) | model RTF |",
                  "|---:|---:|---:|---:|---:|"]
        for row in result["ddim"]:
            closure = _number("lip_closure", row["lip_closure"]) if row.get("lip_closure") is not None else \
                "n/a (no phoneme timings)"
            lines.append(f"| {row['steps']} | {row['LVE']:.4e} | {row['MVE']:.4e} | {closure} | {row['model_rtf']:.4f} |")
        lines += ["", f"![DDIM steps](./{Path(result['figures']['ddim_steps']).parent.name}/ddim_steps.png)", ""]

    folder = Path(result["figures"]["quality"]).parent.name
    lines += ["## Plots", "", f"![LVE, EVE and FDD per method](./{folder}/quality.png)", ""]
    strip = result.get("strip") or {}
    if strip.get("path"):
        frames = ", ".join(f"{f['label']} (frame {f['frame']})" for f in strip["frames"])
        text = f" \"{strip['text']}\"" if strip.get("text") else ""
        lines += [f"Frames of `{strip['sequence']}`{text}: {frames}; rows: {', '.join(strip['rows'])}.", "",
                  f"![frames of one test sentence](./{folder}/strip.png)", ""]
    else:
        lines += [f"Picture strip: not drawn ({strip.get('skipped', 'no test sequence')}).", ""]

    lines += protocol_section(result)
    lines += published_section()
    return "\n".join(lines) + "\n"


def protocol_section(result: dict[str, Any]) -> list[str]:
    machine = result["machine"]
    split_result = next(iter(result["splits"].values()))
    masks = split_result["masks"]
    mask_text = []
    for key, mask in masks.items():
        if key == "FDD_abs":
            continue
        size = f"{mask['pairs']} vertex pairs" if "pairs" in mask else f"{mask['vertices']} vertices"
        if "closures" in mask:
            size += (f"; midpoints of /{'/, /'.join(mask['phonemes'])}/ from the manifest's phoneme timings, closed "
                     f"when the inner-lip distance is at most {mask['tolerance_m'] * 1000:g} mm above the ground "
                     "truth's at that frame")
        mask_text.append(f"{key} over `{mask['region']}` ({size})")
    load = machine.get("load_average") or [float("nan")] * 3
    end = machine.get("load_average_at_end") or [float("nan")] * 3
    gpu = f", {machine['gpu']}" if machine.get("gpu") else ""
    return [
        "## Protocol", "",
        f"* Seeds and repetitions: GLDiTalker (stochastic) is evaluated with seeds {', '.join(map(str, SEEDS))}; its "
        "row is the mean with a 95 % interval (Student's t, n = 3); each seed also draws "
        f"{DIVERSITY_SAMPLES} motions a sequence (seeds s, s+1, s+2) for its diversity. FaceFormer, CodeTalker and "
        "EmoFace generate deterministically and are evaluated once (seed 0). Speed: "
        f"{_runs_text(result['protocol']['repeats'])} after one warm-up.",
        "* Conditions: seen subjects are generated in their own style; unseen subjects (`test_unseen`) once in each "
        "training speaker's style, the metrics averaged over those styles (as FaceFormer and CodeTalker report "
        "BIWI Test-B). EmoFace hears the emotion in the voice (no labels given); its emotion accuracy is the argmax "
        "of its classifier over each sequence against the labels.",
        *([f"* Updated: {', '.join(TITLES[m] for m in result['updated']['measured'])} measured in this run; "
           f"{', '.join(TITLES[m] for m in result['updated']['kept'])} kept from the earlier report (voxmesh "
           f"{result['updated']['kept_from']['git_commit'] or 'unknown commit'}, the same protocol)."]
          if result.get("updated") and result["updated"]["kept"] else []),
        "* Masks: " + "; ".join(mask_text) + ".",
        "* Units: LVE, EVE and FDD are squared metres (the papers' \"x10^-5 mm\" VOCASET columns are these values x1e5); "
        "MVE, MOD and diversity are metres; lip closure is a percentage of closures. FDD is signed (ground truth minus "
        "prediction: positive when the prediction moves the upper face less); FDD abs averages its absolute value.",
        "* Floors: `static` is the subject's template, unmoving; `mean` is the template plus the mean offset of every "
        "training frame, constant over time. A model must beat both to be animating anything.",
        f"* Machine: {machine['platform']}, {machine['processor']}, {machine['cpu_count']} CPUs, torch "
        f"{machine['torch']} ({machine['torch_threads']} threads, OMP_NUM_THREADS={machine['omp_num_threads']}), "
        f"Python {machine['python']}, voxmesh {machine['voxmesh']}" + (f" at {machine['git_commit']}" if
                                                                        machine.get("git_commit") else "")
        + f"; device {machine['device']}{gpu}; load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        f"(1 / 5 / 15 min) at the start, {end[0]:.2f} / {end[1]:.2f} / {end[2]:.2f} at the end. Timings on a shared "
        "machine are upper bounds.",
        "",
    ]


# ---- published numbers -------------------------------------------------------------------------

# Only figures read in the papers or in later papers' tables that repeat them (collected
# 2026-11-24, sources named per row); where none could be found the row says so. Units as
# the papers print them.
PUBLISHED: list[dict[str, str]] = [
    {"method": "FaceFormer", "paper": "Fan et al., FaceFormer: Speech-Driven 3D Facial Animation with Transformers, "
                                      "CVPR 2022 (arXiv 2112.05329)",
     "dataset": "BIWI Test-A", "LVE": "5.3077 x10^-4 mm", "EVE": "not reported", "FDD": "4.6408 x10^-5 mm",
     "source": "CodeTalker's comparison table (its run of FaceFormer; FDD was introduced by CodeTalker), as indexed "
               "by Papers with Code and repeated by StreamingTalker (arXiv 2511.14223) and KMTalk (arXiv 2409.01113). "
               "FaceFormer's own paper is quoted elsewhere with 5.3742: check the paper."},
    {"method": "FaceFormer", "paper": "Fan et al., CVPR 2022", "dataset": "VOCASET test",
     "LVE": "4.1090 x10^-5 mm", "EVE": "0.4858 x10^-5 mm", "FDD": "not reported",
     "source": "LVE: CodeTalker's VOCASET table, repeated in EmoFace's Table 2 (arXiv 2408.11518v3) and "
               "StreamingTalker's Table 1; EVE: EmoFace's Table 2 (its run). FaceFormer's own paper judged VOCASET "
               "by a user study."},
    {"method": "FaceFormer", "paper": "Fan et al., CVPR 2022", "dataset": "3D-RAVDESS",
     "LVE": "5.8462 x10^-5 mm", "EVE": "1.4149 x10^-5 mm", "FDD": "not reported",
     "source": "EmoFace's Table 2 (arXiv 2408.11518v3; EmoFace's run of FaceFormer)."},
    {"method": "CodeTalker", "paper": "Xing et al., CodeTalker: Speech-Driven 3D Facial Animation with Discrete "
                                      "Motion Prior, CVPR 2023 (arXiv 2301.02379)",
     "dataset": "BIWI Test-A", "LVE": "4.7914 x10^-4 mm", "EVE": "not reported", "FDD": "4.1170 x10^-5 mm",
     "source": "CodeTalker's own table, as indexed by Papers with Code "
               "(paperswithcode.com/paper/codetalker-speech-driven-3d-facial-animation); UniTalker (arXiv "
               "2408.00762) repeats 4.7914."},
    {"method": "CodeTalker", "paper": "Xing et al., CVPR 2023", "dataset": "VOCASET test", "LVE": "3.9445 x10^-5 mm",
     "EVE": "0.5074 x10^-5 mm", "FDD": "not reported",
     "source": "LVE: CodeTalker's VOCASET figure as repeated in EmoFace's Table 2 and StreamingTalker's Table 1 "
               "(CodeTalker's own table was not readable to us); EVE: EmoFace's Table 2 (its run). CodeTalker's "
               "code scores FDD on BIWI only."},
    {"method": "CodeTalker", "paper": "Xing et al., CVPR 2023", "dataset": "3D-RAVDESS",
     "LVE": "15.6160 x10^-5 mm", "EVE": "3.4675 x10^-5 mm", "FDD": "not reported",
     "source": "EmoFace's Table 2 (arXiv 2408.11518v3; EmoFace's run of CodeTalker)."},
    {"method": "GLDiTalker", "paper": "Lin et al., GLDiTalker: Speech-Driven 3D Facial Animation with Graph Latent "
                                      "Diffusion Transformer, arXiv 2408.01826 (2024), IJCAI 2025",
     "dataset": "BIWI Test-A, VOCASET test", "LVE": "not found", "EVE": "not reported", "FDD": "not found",
     "source": "Table 1 of arXiv 2408.01826v5 (LVE, FDD and diversity on BIWI-Test-A and VOCASET-Test) was not "
               "in any copy we could read, and no later paper we found repeats it: read it there."},
    {"method": "EmoFace", "paper": "Lin et al., EmoFace: Emotion-Content Disentangled Speech-Driven 3D Talking "
                                   "Face Animation, arXiv 2408.11518 (2024)",
     "dataset": "3D-RAVDESS", "LVE": "4.8863 x10^-5 mm", "EVE": "0.9509 x10^-5 mm", "FDD": "not reported",
     "source": "Abstract and Table 2 of arXiv 2408.11518v3. Version 1 (\"... with Mesh Attention\") gave 5.0343 "
               "and 1.0196 x10^-5 mm."},
    {"method": "EmoFace", "paper": "Lin et al., arXiv 2408.11518 (2024)", "dataset": "VOCASET test",
     "LVE": "2.8669 x10^-5 mm", "EVE": "0.4664 x10^-5 mm", "FDD": "not reported",
     "source": "Abstract and Table 2 of arXiv 2408.11518v3 (v1 agrees)."},
]

# Estimates, not measurements (no GPU was measured for them): the optimiser steps of each config
# (epochs x training sequences / batch: VOCASET 8 subjects x 40 sentences, BIWI 6 x 32,
# 3D-RAVDESS actors 1-20 x up to 60 clips) at an assumed 3-12 steps a second on one
# A100/H100-class GPU (wav2vec 2.0 base fine-tuned on a 4 s window; the larger the model, the
# fewer), plus validation.
REPRODUCE: list[dict[str, str]] = [
    {"method": "FaceFormer", "dataset": "VOCASET", "config": "faceformer_vocaset", "split": "test", "extra": "",
     "estimate": "about 1-2 h: 100 epochs x 320 sequences = 32k steps"},
    {"method": "FaceFormer", "dataset": "BIWI", "config": "faceformer_biwi", "split": "test", "extra": "",
     "estimate": "about 1 h: 100 x 192 = 19k steps"},
    {"method": "CodeTalker", "dataset": "VOCASET", "config": "codetalker_vocaset", "split": "test", "extra": "",
     "estimate": "about 3-5 h: VQ-VAE 200 x 320 = 64k steps, predictor 100 x 320 = 32k"},
    {"method": "CodeTalker", "dataset": "BIWI", "config": "codetalker_biwi", "split": "test", "extra": "",
     "estimate": "about 2-3 h: 38k + 19k steps"},
    {"method": "GLDiTalker", "dataset": "VOCASET", "config": "gldi_vocaset", "split": "test", "extra": " --samples 3",
     "estimate": "about 6-10 h: batch 4, stage 1 200 x 80 = 16k steps, stage 2 400 x 80 = 32k, validation by "
                 "50-step sampling every 10 epochs"},
    {"method": "GLDiTalker", "dataset": "BIWI", "config": "gldi_biwi", "split": "test", "extra": " --samples 3",
     "estimate": "about 5-8 h: 10k + 19k steps on 23,370 vertices"},
    {"method": "EmoFace", "dataset": "3D-RAVDESS", "config": "emoface_ravdess3d", "split": "test", "extra": "",
     "estimate": "about 8-12 h: 100 x up to 1,200 sequences = up to 120k steps of two decoders and Mesh Attention"},
    {"method": "EmoFace", "dataset": "VOCASET", "config": "emoface_vocaset", "split": "test", "extra": "",
     "estimate": "about 2-4 h: 100 x 320 = 32k steps"},
]


def published_section() -> list[str]:
    """The papers' own figures and the commands that reproduce them with voxmesh."""
    lines = ["## Published numbers", "",
             "What the papers report on the real datasets, quoted with their units and sources (the synthetic "
             "numbers above do not compare with these). Where a figure could not be found in the material we "
             "could read, the cell says so instead of guessing.", "",
             "| method | paper | dataset | LVE | EVE | FDD | source |", "|---|---|---|---|---|---|---|"]
    for row in PUBLISHED:
        lines.append(f"| {row['method']} | {row['paper']} | {row['dataset']} | {row['LVE']} | {row['EVE']} | "
                     f"{row['FDD']} | {row['source']} |")
    lines += ["", "Units: the papers' \"x10^-5 mm\" (VOCASET, 3D-RAVDESS) and \"x10^-4 mm\" (BIWI) columns are the "
              "same computation as voxmesh's LVE/EVE/FDD on the data's own coordinates: multiply voxmesh's value "
              "by 1e5 (or 1e4) to compare, on data in the papers' units (VOCASET and FLAME in metres).", "",
              "### Reproducing them with voxmesh", "",
              "With your own copy of the dataset in the shared layout (see the README's data section; `voxmesh data "
              "check DIR --preset vocaset|biwi|ravdess3d` first), train and score each method. The run times are "
              "**estimates** for one A100/H100-class GPU, not measurements: the configs' optimiser steps at an "
              "assumed 3-12 steps a second, plus validation.", "",
              "| method | dataset | commands | estimated time on one GPU |", "|---|---|---|---|"]
    for row in REPRODUCE:
        data_dir = row["dataset"].replace("-", "")
        train = f"voxmesh train configs/{row['config']}.yaml --data {data_dir} --out runs/{row['config']}"
        evaluate = f"voxmesh evaluate runs/{row['config']} --data {data_dir} --split {row['split']}{row['extra']}"
        commands = f"`{train}`<br>`{evaluate}`"
        if row["dataset"] == "BIWI":
            commands += f"<br>`voxmesh evaluate runs/{row['config']} --data BIWI --split test_unseen{row['extra']}` (Test-B)"
        if row["method"] == "GLDiTalker":
            commands += "<br>add `--seed 1`, `--seed 2` for the interval over seeds"
        lines.append(f"| {row['method']} | {row['dataset']} | {commands} | {row['estimate']} (estimate) |")
    lines += ["", "The configs follow each paper's published settings where it gives them (wav2vec 2.0 base "
              "fine-tuned, Adam at 1e-4, the papers' epochs); what a paper leaves open is listed in the config's "
              "comments and in docs/methods/.", ""]
    return lines


def write_report(result: dict[str, Any], out: Path) -> None:
    """``out`` (Markdown) and ``out`` with ``.json``, each written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _, json_path, _ = report_outputs(out)
    result["json_name"] = json_path.name
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=_json_default))
    with atomic_path(out) as tmp:
        tmp.write_text(format_report(result))
    result["written"] = {"markdown": str(out), "json": str(json_path)}


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


__all__ = ["DDIM_STEPS", "DIVERSITY_SAMPLES", "METHODS", "PUBLISHED", "QUICK_OVERRIDES", "RUNS", "SEEDS",
           "cell_text", "count_parameters", "ensure_trained", "evaluate_method", "format_report", "growth_exponent",
           "interval", "measure_memory", "run_benchmark", "speech_clip", "train_seconds"]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        print(json.dumps(_memory_child(sys.argv[2])))
    else:
        raise SystemExit("usage: python -m voxmesh.benchmark --memory-child SPEC.json (internal; use `voxmesh benchmark`)")
