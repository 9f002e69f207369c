"""The one trainer of every method, built on Hugging Face Accelerate: one CPU, one GPU,
or several through ``accelerate launch -m voxmesh.cli train ...``.

A run folder holds:

```
RUN/config.yaml           the resolved configuration
RUN/log.jsonl             one row a logging interval and a validation (step, epoch, stage,
                          losses, lr, val metrics, seconds)
RUN/loss.png              train and val loss a stage
RUN/<stage>/last/         weights + trainer_state.pt (optimiser, scheduler, counters, RNG)
RUN/<stage>/best/         weights with the best validation score of the stage
RUN/<stage>/epoch-NNNN/   with train.keep_last k > 1: copies of `last` after each of the
                          last k epochs (older ones are deleted once the new one is complete)
RUN/model/                the final stage's best: what `voxmesh evaluate` / `animate` load
```

Training batches are random windows of ``data.window_seconds`` (audio and vertices cut
at the same instants); validation runs on whole sequences. Window positions come from a
generator seeded by (seed, epoch), so the batches of an epoch are the same whether the
run was interrupted or not, and whatever ``num_workers`` is. A run killed at any point
(SIGKILL included) and resumed ends with the weights of an uninterrupted one: ``last``
holds the optimiser, scheduler, counters and every RNG state, and its folder is replaced
atomically (a resume first undoes a kill in the middle of that replacement).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml
from tqdm import tqdm

from voxmesh.data.batching import Batch, collate_sequences
from voxmesh.data.layout import FaceDataset, Sequence, SequenceRecord
from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path
from voxmesh.inference import cached_sequence_features, frame_audio, generate_sequence, intensity_index
from voxmesh.mesh.template import Template
from voxmesh.train.checkpoint import (
    ENCODER_PREFIX,
    TRAINER_STATE_FILE,
    WEIGHTS_FILE,
    build_model,
    clean_checkpoint_leftovers,
    copy_checkpoint,
    keep_epoch_checkpoint,
    load_trainer_state,
    save_checkpoint,
    verify_checksum,
)
from voxmesh.train.config import TrainConfig, TrainSettings, load_config, precision_of

LOG_FILE = "log.jsonl"
PLOT_FILE = "loss.png"
FINAL_MODEL = "model"
# Loaded sequences are kept in memory up to this many bytes (vertices + audio), so
# small datasets are read from disk once; larger ones are re-read as needed.
SEQUENCE_MEMORY_BYTES = 1 << 30


# ---- audio cut to frames -----------------------------------------------------------------

def speaker_index(subject: str, speakers: list[str]) -> int:
    """Index of a subject's style among the model's speakers, -1 for an unseen subject."""
    return speakers.index(subject) if subject in speakers else -1


# ---- data ------------------------------------------------------------------------------------

class SequenceStore:
    """Loads sequences of a dataset, keeping them in memory within a byte budget."""

    def __init__(self, dataset: FaceDataset, budget_bytes: int = SEQUENCE_MEMORY_BYTES):
        self.dataset = dataset
        self.budget = budget_bytes
        self.used = 0
        self.kept: dict[str, Sequence] = {}

    def get(self, record: SequenceRecord) -> Sequence:
        if record.name in self.kept:
            return self.kept[record.name]
        sequence = self.dataset.load(record)
        size = sequence.vertices.nbytes + sequence.audio.nbytes
        if self.used + size <= self.budget:
            self.kept[record.name] = sequence
            self.used += size
        return sequence


class WindowDataset(torch.utils.data.Dataset):
    """Items are ``(index, u)`` keys from :class:`WindowBatchSampler`: sequence ``index``
    cut to a window of ``window_frames`` starting at fraction ``u`` of the free range
    (``u`` None: the whole sequence). Returns ``(Sequence, features [W, C] or None)``,
    and with ``pairs`` a third element: the window's cross-reconstruction partner
    (:class:`~voxmesh.train.pairs.PairWindow` or None), drawn from ``u``."""

    def __init__(self, store: SequenceStore, records: list[SequenceRecord], window_frames: int | None,
                 features: dict[str, torch.Tensor] | None = None, pairs: Any = None):
        self.store = store
        self.records = records
        self.window_frames = window_frames
        self.features = features
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, float | None]) -> tuple:
        index, u = key
        record = self.records[index]
        sequence = self.store.get(record)
        total = sequence.num_frames
        length = total if (u is None or self.window_frames is None) else min(self.window_frames, total)
        start = 0 if u is None else min(int(u * (total - length + 1)), total - length)
        window = Sequence(
            name=sequence.name, subject=sequence.subject,
            audio=frame_audio(sequence.audio, start, length, sequence.fps, sequence.sample_rate),
            vertices=sequence.vertices[start:start + length], template=sequence.template, fps=sequence.fps,
            split=sequence.split, sentence=sequence.sentence, emotion=sequence.emotion,
            intensity=sequence.intensity, text=sequence.text, phonemes=None, sample_rate=sequence.sample_rate,
        )
        features = None if self.features is None else self.features[record.name][start:start + length]
        if self.pairs is None:
            return window, features
        # The window position doubles as the partner draw: repeatable, and every partner
        # of a sentence comes up over the epochs.
        draw = 0 if u is None else int(u * 1_000_003)
        partner = self.pairs.window(record.name, start, length, draw=draw, features=self.features)
        return window, features, partner


class WindowBatchSampler:
    """Batches of ``(index, u)`` keys: a permutation of the sequences and one window
    position each, drawn from a generator seeded by (seed, epoch). ``start_epoch(epoch,
    skip)`` starts an epoch, leaving out its first ``skip`` batches (a resumed run).
    Not named ``set_epoch``: Accelerate calls that with its own epoch count, which
    starts again at 0 in a resumed run.

    With ``processes`` > 1 (Accelerate deals batch k to process k mod processes) an
    epoch's keys are continued from its start until every batch is full and their count
    is a multiple of ``processes``: what Accelerate's shard would add itself, but done
    before ``skip``, so a resumed run gets the batches of an uninterrupted one."""

    def __init__(self, num_items: int, batch_size: int, seed: int, shuffle: bool = True, windows: bool = True,
                 processes: int = 1):
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.windows = windows
        self.processes = processes
        self.epoch = 0
        self.skip = 0

    def start_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch = epoch
        self.skip = skip

    def plan(self) -> list[list[tuple[int, float | None]]]:
        generator = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_items, generator=generator).tolist() if self.shuffle else list(range(self.num_items))
        positions = torch.rand(self.num_items, generator=generator, dtype=torch.float64).tolist()
        keys = [(i, positions[i] if self.windows else None) for i in order]
        if self.processes > 1 and keys:
            rounds = math.ceil(len(keys) / (self.batch_size * self.processes))
            keys = [keys[i % len(keys)] for i in range(rounds * self.batch_size * self.processes)]
        return [keys[i:i + self.batch_size] for i in range(0, len(keys), self.batch_size)]

    def __iter__(self) -> Iterator[list[tuple[int, float | None]]]:
        yield from self.plan()[self.skip:]

    def __len__(self) -> int:
        batches = math.ceil(self.num_items / self.batch_size)
        if self.processes > 1:
            batches = math.ceil(self.num_items / (self.batch_size * self.processes)) * self.processes
        return max(0, batches - self.skip)


class Collate:
    """Pads ``(Sequence, features)`` items into a :class:`Batch` with speaker, emotion
    and intensity labels (a class, not a closure, so DataLoader workers can pickle it)."""

    def __init__(self, speakers: list[str], emotions: list[str]):
        self.speakers = list(speakers)
        self.emotions = list(emotions)

    def __call__(self, items: list[tuple]) -> Batch:
        sequences = [item[0] for item in items]
        batch = collate_sequences(sequences)
        if items[0][1] is not None:
            frames = batch.vertices.shape[1]
            features = torch.zeros(len(items), frames, items[0][1].shape[-1])
            for i, item in enumerate(items):
                features[i, :item[1].shape[0]] = item[1]
            batch.audio_features = features
        if len(items[0]) == 3:
            from voxmesh.train.pairs import collate_pair_windows

            partners = collate_pair_windows([item[2] for item in items], batch.vertices.shape[1], self.emotions)
            for name, value in partners.items():
                setattr(batch, name, value)
        batch.speaker_ids = torch.tensor([speaker_index(s.subject, self.speakers) for s in sequences], dtype=torch.long)
        if any(s.emotion is not None for s in sequences):
            batch.emotion_ids = torch.tensor(
                [self.emotions.index(s.emotion) if s.emotion in self.emotions else -1 for s in sequences], dtype=torch.long)
        if any(s.intensity is not None for s in sequences):
            batch.intensity_ids = torch.tensor([intensity_index(s.intensity) for s in sequences], dtype=torch.long)
        return batch


def dataset_emotions(dataset: FaceDataset) -> list[str]:
    """Emotion class names of a dataset (RAVDESS order for that preset), [] if none."""
    found = {r.emotion for r in dataset.all_records if r.emotion}
    if not found:
        return []
    if dataset.preset.name == "ravdess3d":
        from voxmesh.data.presets import RAVDESS_EMOTIONS

        return list(RAVDESS_EMOTIONS)
    return sorted(found)


def precompute_features(encoder, store: SequenceStore, records: list[SequenceRecord], fps: float,
                        progress: bool = False) -> tuple[dict[str, torch.Tensor], Any]:
    """Aligned features ``{name: [T, C]}`` of a frozen encoder for whole sequences, from
    the on-disk FeatureCache (computed once per audio content and encoder)."""
    from voxmesh.audio.features import FeatureCache

    cache = FeatureCache(encoder)
    features = {}
    for record in tqdm(records, desc="speech features", unit="seq", disable=not progress, leave=False):
        sequence = store.get(record)
        features[record.name] = cached_sequence_features(cache, sequence.audio, sequence.num_frames, fps)
    return features, cache


# ---- schedule, RNG ---------------------------------------------------------------------------

def lr_lambda(total_steps: int, settings: TrainSettings):
    """Multiplier of the base learning rate at a step: linear warm-up, then cosine
    decay to ``min_lr_ratio`` at ``total_steps`` (or constant)."""
    warmup = settings.warmup_steps

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if settings.schedule == "constant":
            return 1.0
        progress = min(1.0, max(0.0, (step - warmup) / max(1, total_steps - warmup)))
        return settings.min_lr_ratio + (1 - settings.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) RNG states in types torch.load(weights_only) reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class preserved_rng:
    """Context that restores every RNG on exit, so validation never changes the
    training run's random stream (a run validated more often trains the same)."""

    def __enter__(self):
        self.state = rng_state()
        return self

    def __exit__(self, *exc):
        set_rng_state(self.state)
        return False


# ---- logging ----------------------------------------------------------------------------------

class RunLog:
    """Appends JSON rows to RUN/log.jsonl (main process only)."""

    def __init__(self, path: Path, enabled: bool):
        self.path = path
        self.enabled = enabled

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        return rows

    def truncate(self, stage: str, step: int) -> None:
        """Drop rows of ``stage`` after ``step``: a resumed run rewrites them."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in self.rows() if not (r.get("stage") == stage and r.get("step", 0) > step)]
        with atomic_path(self.path) as tmp:  # a kill here leaves the old log, not half of it
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))


# Set to 1, each process of a run appends what it did to RUN/trace-<process>.jsonl: the
# sequences of each batch it trained on and each checkpoint it wrote (tests and debugging
# of multi-process runs; a resumed run appends the steps it repeats).
TRACE_ENV = "VOXMESH_TRACE_PROCESSES"


class ProcessTrace:
    """Rows of one process's trace file, written only when ``TRACE_ENV`` is 1."""

    def __init__(self, out: Path, process: int, processes: int):
        self.path = out / f"trace-{process}.jsonl" if os.environ.get(TRACE_ENV) == "1" else None
        self.process = process
        self.processes = processes

    def write(self, **row: Any) -> None:
        if self.path is not None:
            with open(self.path, "a") as handle:
                handle.write(json.dumps({"process": self.process, "processes": self.processes, **row}) + "\n")


def _losses_to_floats(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach().float().mean()) for k, v in losses.items() if isinstance(v, torch.Tensor)}


# ---- the run ---------------------------------------------------------------------------------

@dataclass
class RunData:
    """What every stage of a run shares."""

    dataset: FaceDataset
    store: SequenceStore
    train_records: list[SequenceRecord]
    val_records: list[SequenceRecord]
    speakers: list[str]
    emotions: list[str]
    template: Template


def _open_run_data(config: TrainConfig, data_dir: str | Path) -> RunData:
    dataset = FaceDataset(data_dir, preset=config.data.preset, fps=config.data.fps)
    train_records = [r for r in dataset.all_records if r.split == "train"]
    if not train_records:
        raise VoxmeshError(
            f"Dataset {dataset.root} has no training sequences under the {dataset.preset.name} preset; "
            "check the preset or the manifest's split column."
        )
    val_records = [r for r in dataset.all_records if r.split == "val"]
    if config.train.val_max_sequences is not None:
        val_records = val_records[:config.train.val_max_sequences]
    store = SequenceStore(dataset)
    # Read every sequence the run will use before anything is written: a truncated file
    # or a missing template stops the run with its one-line error, not halfway through
    # an epoch, and no half-made run folder is left behind. (The store keeps what fits
    # its memory budget, so the first epoch does not read those files again.)
    for record in tqdm(train_records + val_records, desc="checking sequences", unit="seq", leave=False,
                       disable=not sys.stderr.isatty()):
        store.get(record)
    return RunData(dataset=dataset, store=store, train_records=train_records,
                   val_records=val_records, speakers=dataset.train_subjects, emotions=dataset_emotions(dataset),
                   template=dataset.topology())


def _effective_precision(asked: str) -> str:
    """Mixed precision only where the hardware has it: fp16 / bf16 on CUDA (bf16 where
    the GPU supports it); full precision on CPU, where autocast rarely pays."""
    if asked == "no" or not torch.cuda.is_available():
        return "no"
    if asked == "bf16" and not torch.cuda.is_bf16_supported():
        return "no"
    return asked


def _make_accelerator(precision: str):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, precision) and not torch.distributed.is_initialized():
        # One process that trains stages of different precisions (or tests): Accelerate
        # keeps its state process-wide, so start it afresh.
        AcceleratorState._reset_state()
    # Stages freeze parts of a model, and some losses skip modules: let DDP allow that.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # rng_types=[]: window positions come from our own seeded generator, nothing to sync.
    return Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(), rng_types=[],
                       kwargs_handlers=[ddp])


def train(config: TrainConfig | str | Path, data_dir: str | Path, out_dir: str | Path, stage: str | None = None,
          resume: bool = False, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train every stage of a method in turn (or only ``stage``), writing RUN = ``out_dir``.

    A later stage starts from the previous stage's best weights. ``resume`` continues
    each unfinished stage from its ``last`` checkpoint (optimiser, scheduler, counters and
    RNG states) and skips finished ones; without it, a stage that already has a
    checkpoint is refused unless ``overwrite``. Returns a summary: ``run``, ``model``
    (RUN/model when the final stage was trained, else None), ``main_process`` (False in
    the other processes of a multi-process launch) and per stage ``steps``, ``epochs``,
    ``best`` (the score, what it is and its step), ``val`` (the last validation) and, for
    a frozen encoder, ``feature_cache`` hits and misses."""
    if not isinstance(config, TrainConfig):
        config = load_config(config)
    out = Path(out_dir)
    all_stages = config.stage_names()
    if stage is not None and stage not in all_stages:
        raise VoxmeshError(f"Method {config.method} has stages {', '.join(all_stages)}, not '{stage}'; pick one of them.")
    stages = [stage] if stage is not None else list(all_stages)
    for name in stages:
        if not resume and not overwrite and (out / name / "last").exists():
            raise VoxmeshError(
                f"Run folder {out} already holds a trained '{name}' stage; pass --overwrite to start again, "
                "--resume to continue it, or choose another --out."
            )
    data = _open_run_data(config, data_dir)
    summary: dict[str, Any] = {"run": str(out), "model": None, "stages": {}, "main_process": True}
    for name in stages:
        summary["stages"][name] = _train_stage(config, data, out, name, resume=resume, progress=progress)
        summary["main_process"] = summary["stages"][name].pop("main_process")
        if name == all_stages[-1]:
            summary["model"] = summary["stages"][name].get("model")
    return summary


def _stage_total_steps(settings: TrainSettings, steps_per_epoch: int) -> int:
    totals = []
    if settings.max_steps is not None:
        totals.append(settings.max_steps)
    if settings.epochs is not None:
        totals.append(settings.epochs * steps_per_epoch)
    return max(1, min(totals))


def _train_stage(config: TrainConfig, data: RunData, out: Path, stage: str, *, resume: bool,
                 progress: bool) -> dict[str, Any]:
    from accelerate.utils import set_seed

    settings = config.stage_settings(stage)
    stage_names = config.stage_names()
    stage_number = stage_names.index(stage)
    is_final = stage_number == len(stage_names) - 1
    stage_dir = out / stage
    last_dir, best_dir = stage_dir / "last", stage_dir / "best"

    accelerator = _make_accelerator(_effective_precision(precision_of(settings)))
    main = accelerator.is_main_process
    show = progress and main and sys.stderr.isatty()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        # A run killed while it replaced a checkpoint folder: put the previous one back.
        for folder in (stage_dir, out):
            for done in clean_checkpoint_leftovers(folder):
                if done.startswith("restored"):
                    print(f"note: {done} (the run was stopped while it replaced that checkpoint)", file=sys.stderr)
        with atomic_path(out / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    accelerator.wait_for_everyone()  # every process reads `last` as the main process left it
    state = load_trainer_state(last_dir) if resume and (last_dir / TRAINER_STATE_FILE).is_file() else None
    log = RunLog(out / LOG_FILE, main)
    trace = ProcessTrace(out, accelerator.process_index, accelerator.num_processes)

    # Seed before the model exists: its initial weights are part of the run.
    set_seed(settings.seed, device_specific=True)
    fps = data.dataset.fps
    model = build_model(config.method, config.model, num_vertices=data.template.num_vertices,
                        speakers=data.speakers, fps=fps, encoder=config.encoder, faces=data.template.faces,
                        neutral=data.template.vertices, emotions=data.emotions, regions=data.template.regions)
    if state is not None:
        _load_weights(model, last_dir)
    elif stage_number > 0:
        previous = out / stage_names[stage_number - 1] / "best"
        if not (previous / WEIGHTS_FILE).is_file():
            raise VoxmeshError(
                f"Stage '{stage}' starts from the best '{stage_names[stage_number - 1]}' weights but {previous} "
                f"does not exist; train stage '{stage_names[stage_number - 1]}' first (--stage {stage_names[stage_number - 1]})."
            )
        # Stage 1 of a staged method never hears speech: its run may have used another
        # encoder (one stage 1 serves a mel and a Whisper stage 2). Tensors of the encoder
        # and of what this stage trains anew may then differ in shape: those start as built.
        learning = {id(p) for p in model.trainable_parameters(stage)}
        fresh = {name for name, p in model.named_parameters() if id(p) in learning or name.startswith(ENCODER_PREFIX)}
        _load_weights(model, previous, may_differ=fresh)

    # Only the stage's parameters learn; freezing the rest also spares their gradients.
    trainable = {id(p) for p in model.trainable_parameters(stage)}
    frozen_encoder = not model.audio_encoder.trainable
    for name, parameter in model.named_parameters():
        if id(parameter) not in trainable or (frozen_encoder and name.startswith(ENCODER_PREFIX)):
            parameter.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise VoxmeshError(f"Method {config.method} has no trainable parameters in stage '{stage}'; check its config.")

    features = None
    cache = None
    if frozen_encoder:
        # A frozen encoder's features never change: compute them once per sequence
        # (main process first, so the others read the disk cache instead of racing it).
        model.audio_encoder.to(accelerator.device)
        records = data.train_records + data.val_records
        with accelerator.main_process_first():
            features, cache = precompute_features(model.audio_encoder, data.store, records, fps, progress=show)

    window_frames = max(1, int(round(config.data.window_seconds * fps)))
    collate = Collate(data.speakers, data.emotions)
    pairs = None
    if getattr(model, "needs_pairs", False):
        from voxmesh.train.pairs import PairIndex

        pairs = PairIndex(data.train_records, data.store.get)
        if main and len(pairs) == 0:
            print(f"warning: no training sequence of {data.dataset.root} has a partner (the same sentence in another "
                  "emotion); cross-reconstruction is off.", file=sys.stderr)
    train_set = WindowDataset(data.store, data.train_records, window_frames, features, pairs=pairs)
    sampler = WindowBatchSampler(len(train_set), config.data.batch_size, settings.seed,
                                 processes=accelerator.num_processes)
    loader = torch.utils.data.DataLoader(
        train_set, batch_sampler=sampler, collate_fn=collate, num_workers=settings.num_workers,
        # Its own generator: creating an iterator then draws no number from the global RNG.
        generator=torch.Generator().manual_seed(settings.seed),
        persistent_workers=False,
    )
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = max(1, len(loader))
    total_steps = _stage_total_steps(settings, steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, settings))

    step, epoch, batch_in_epoch, elapsed = 0, 0, 0, 0.0
    best: dict[str, Any] = {"score": None, "key": None, "step": None}
    last_val: dict[str, Any] = {}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"])
        elapsed = float(state.get("seconds", 0.0))
        best = dict(state.get("best", best))
        last_val = dict(state.get("last_val", {}))
        log.truncate(stage, step)
        rng_states = state["rng"]
        set_rng_state(rng_states[accelerator.process_index % len(rng_states)])
    else:
        log.truncate(stage, 0)  # a stage trained again (--overwrite) starts its rows afresh

    unwrapped = accelerator.unwrap_model(model)
    extra = {"data": {"preset": data.dataset.preset.name, "fps": fps}, "train_config": config.to_dict()}

    def save_last() -> None:
        rng_states = _gather_rng(accelerator)
        if main:
            trainer_state = {
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "seconds": elapsed + (time.time() - started),
                "best": best, "last_val": last_val, "rng": rng_states, "total_steps": total_steps,
            }
            save_checkpoint(unwrapped, last_dir, template=data.template, stage=stage, step=step,
                            trainer_state=trainer_state, val_metrics=last_val, **extra)
            trace.write(stage=stage, step=step, checkpoint="last")
        accelerator.wait_for_everyone()

    started = time.time()
    finished = step >= total_steps
    bar = tqdm(total=total_steps, initial=step, desc=f"{config.method}:{stage}", unit="step", disable=not show,
               dynamic_ncols=True)
    running: dict[str, float] = {}
    running_count = 0
    while not finished:
        sampler.start_epoch(epoch, skip=batch_in_epoch * accelerator.num_processes)
        model.train()
        for batch in loader:
            if hasattr(unwrapped, "set_progress"):  # schedules inside the model (self-growing, self-feeding)
                unwrapped.set_progress(step / total_steps)
            losses = model(batch, stage=stage)
            loss = losses["loss"]
            if not torch.isfinite(loss.detach()).all():
                raise VoxmeshError(
                    f"The {stage} loss became {float(loss)} at step {step + 1} of {config.source}; lower train.lr "
                    "or turn on train.grad_clip."
                )
            accelerator.backward(loss)
            if settings.grad_clip is not None:
                accelerator.clip_grad_norm_(parameters, settings.grad_clip)
            optimizer.step()
            if not accelerator.optimizer_step_was_skipped:  # fp16 overflow steps do not count for the schedule
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            batch_in_epoch += 1
            trace.write(stage=stage, step=step, names=list(batch.names))
            for key, value in _losses_to_floats(losses).items():
                running[key] = running.get(key, 0.0) + value
            running_count += 1
            bar.update(1)
            if show:
                bar.set_postfix(loss=f"{float(loss.detach()):.3e}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
            if step % settings.log_every == 0 or step >= total_steps:
                means = _mean_over_processes(accelerator, {k: v / running_count for k, v in running.items()})
                log.write({"stage": stage, "split": "train", "step": step, "epoch": epoch + batch_in_epoch / steps_per_epoch,
                           "loss": means.get("loss"), "losses": means, "lr": scheduler.get_last_lr()[0],
                           "seconds": round(elapsed + time.time() - started, 3)})
                running, running_count = {}, 0
            if step >= total_steps:
                break
        epoch_done = batch_in_epoch >= steps_per_epoch
        if epoch_done:
            epoch += 1
            batch_in_epoch = 0
        finished = step >= total_steps
        if (epoch_done and epoch % settings.val_every == 0) or finished:
            if data.val_records:
                if main:
                    last_val = _validate(unwrapped, data, features, stage, is_final, config.data.batch_size,
                                         accelerator.device, show)
                    log.write({"stage": stage, "split": "val", "step": step, "epoch": epoch + batch_in_epoch / steps_per_epoch,
                               "loss": last_val.get("loss"), "losses": last_val.get("losses", {}),
                               "metrics": last_val.get("metrics", {}), "seconds": round(elapsed + time.time() - started, 3)})
                    key, score = _score(last_val, is_final)
                    if best["score"] is None or score < best["score"]:
                        best = {"score": score, "key": key, "step": step}
                        save_checkpoint(unwrapped, best_dir, template=data.template, stage=stage, step=step,
                                        val_metrics=last_val, **extra)
                        trace.write(stage=stage, step=step, checkpoint="best")
                best = _broadcast(accelerator, best)
            if main and not (finished and is_final):  # the final stage plots once at its end
                _plot(out)
            save_last()
        elif epoch_done:
            save_last()
        if epoch_done and settings.keep_last > 1:
            if main:
                keep_epoch_checkpoint(last_dir, stage_dir, epoch, settings.keep_last)
            accelerator.wait_for_everyone()
        model.train()
    bar.close()
    if main and not data.val_records:
        # No validation split: the last weights are the best we know.
        copy_checkpoint(last_dir, best_dir)
        best = {"score": None, "key": "last (no validation split)", "step": step}
    if main and not (best_dir / WEIGHTS_FILE).is_file() and (last_dir / WEIGHTS_FILE).is_file():
        copy_checkpoint(last_dir, best_dir)  # resumed a finished stage whose best was lost
    result: dict[str, Any] = {"steps": step, "epochs": epoch, "best": best, "val": last_val,
                              "last": str(last_dir), "best_checkpoint": str(best_dir)}
    if is_final and main:
        copy_checkpoint(best_dir, out / FINAL_MODEL)
        trace.write(stage=stage, step=step, checkpoint=FINAL_MODEL)
        result["model"] = str(out / FINAL_MODEL)
        _plot(out)
    accelerator.wait_for_everyone()
    result["main_process"] = main
    if cache is not None:
        result["feature_cache"] = {"hits": cache.hits, "misses": cache.misses}
    return result


def _load_weights(model: torch.nn.Module, folder: Path, may_differ: set[str] = frozenset()) -> None:
    """Weights of a checkpoint folder into a freshly built model (frozen encoder
    weights, left out of checkpoints, stay as built). ``may_differ``: names of tensors
    that may be absent from the checkpoint or of another shape there (a previous stage
    trained with another speech encoder); those keep the model's own values."""
    from safetensors.torch import load_file

    path = folder / WEIGHTS_FILE
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise VoxmeshError(f"Checkpoint file {path} is truncated or corrupt ({type(exc).__name__}); retrain that stage.") from None
    verify_checksum(folder, WEIGHTS_FILE)  # checkpoints of older voxmesh versions record none
    if may_differ:
        own = model.state_dict()
        state = {k: v for k, v in state.items()
                 if not (k in may_differ or k.startswith(ENCODER_PREFIX)) or (k in own and own[k].shape == v.shape)}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError:
        raise VoxmeshError(
            f"Checkpoint file {path} does not fit the model of this config (tensor shapes differ); train with the config "
            "the checkpoint was made with, or start again with --overwrite."
        ) from None
    missing = [k for k in result.missing_keys if not (k.startswith(ENCODER_PREFIX) or k in may_differ)]
    if missing or result.unexpected_keys:
        raise VoxmeshError(
            f"Checkpoint file {path} does not fit the model of this config ({len(missing)} missing, "
            f"{len(result.unexpected_keys)} unexpected tensors); train with the config it was made with, or start "
            "again with --overwrite."
        )


def _mean_over_processes(accelerator, values: dict[str, float]) -> dict[str, float]:
    """Logged losses averaged over every process (each saw other batches)."""
    if accelerator.num_processes == 1 or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    reduced = accelerator.reduce(stacked, reduction="mean")
    return {k: float(v) for k, v in zip(keys, reduced.tolist())}


def _gather_rng(accelerator) -> list[dict[str, Any]]:
    if accelerator.num_processes == 1:
        return [rng_state()]
    from accelerate.utils import gather_object

    return gather_object([rng_state()])


def _broadcast(accelerator, value: dict[str, Any]) -> dict[str, Any]:
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _score(val: dict[str, Any], is_final: bool) -> tuple[str, float]:
    """What "best" means: val LVE in the final stage when the lips are known, else val loss."""
    metrics = val.get("metrics", {})
    if is_final and "LVE" in metrics:
        return "val LVE", float(metrics["LVE"])
    return "val loss", float(val.get("loss", float("inf")))


@torch.no_grad()
def _validate(model, data: RunData, features: dict[str, torch.Tensor] | None, stage: str, is_final: bool,
              batch_size: int, device: torch.device, show: bool) -> dict[str, Any]:
    """Val loss on whole sequences and, in the final stage, the metric suite on
    ``model.generate`` outputs. Unseen val subjects are conditioned on the first
    training speaker here (evaluation averages over all of them)."""
    from voxmesh.eval.evaluate import metric_regions
    from voxmesh.eval.metrics import evaluate_sequences

    with preserved_rng():
        was_training = model.training
        model.eval()
        val_set = WindowDataset(data.store, data.val_records, None, features)
        collate = Collate(data.speakers, data.emotions)
        totals: dict[str, float] = {}
        count = 0
        for start in range(0, len(val_set), batch_size):
            items = [val_set[(i, None)] for i in range(start, min(start + batch_size, len(val_set)))]
            batch = collate(items).to(device)
            for key, value in _losses_to_floats(model(batch, stage=stage)).items():
                totals[key] = totals.get(key, 0.0) + value * len(items)
            count += len(items)
        losses = {k: v / count for k, v in totals.items()}
        result: dict[str, Any] = {"loss": losses.get("loss"), "losses": losses}
        if is_final:
            preds, gts, templates = [], [], []
            for index in tqdm(range(len(val_set)), desc="validating", unit="seq", disable=not show, leave=False):
                sequence, sequence_features = val_set[(index, None)]
                speaker = max(0, speaker_index(sequence.subject, data.speakers))
                preds.append(generate_sequence(model, sequence, speaker, features=sequence_features, seed=0, device=device))
                gts.append(sequence.vertices)
                templates.append(sequence.template)
            regions = metric_regions(data.dataset)
            result["metrics"] = evaluate_sequences(preds, gts, templates, regions)
        model.train(was_training)
    return result


def _plot(out: Path) -> None:
    from voxmesh.train.plots import plot_losses

    plot_losses(out / LOG_FILE, out / PLOT_FILE)


__all__ = ["Collate", "SequenceStore", "WindowBatchSampler", "WindowDataset", "frame_audio", "lr_lambda", "train"]
