"""`voxmesh evaluate`: a trained run scored on a dataset split, beside the baselines
that give every number its floor.

Rows of the table:

* ``static``: the subject's template, unmoving (what a model that learnt nothing outputs).
* ``mean``: the template plus the mean offset from the template of every training frame
  (per vertex, constant over time): the best constant face, so a model must animate to
  beat it.
* the model: ``generate`` on whole sequences. A subject among the model's speakers is
  conditioned on its own style; an unseen one is generated once for each training
  speaker's style and the metric values are averaged over those conditions, as
  FaceFormer / CodeTalker report BIWI Test-B and VOCASET.

Every row is accumulated a sequence at a time (:class:`~voxmesh.eval.metrics.MetricAccumulator`),
so the numbers are those of the metrics over the whole split while memory stays that of
one sequence.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from voxmesh.data.layout import FaceDataset, Sequence
from voxmesh.errors import VoxmeshError
from voxmesh.eval.metrics import (
    BILABIAL_PHONEMES,
    BLINK_FRACTION,
    BLINK_MIN_SECONDS,
    LIP_CLOSURE_TOLERANCE,
    METRIC_UNITS,
    VOWEL_CONTRAST_FLOOR,
    MetricAccumulator,
    _emotion_region,
    _Sum,
    articulation_frames,
    diversity,
)
from voxmesh.files import atomic_path, refuse_existing
from voxmesh.inference import generate_sequence, sequence_features
from voxmesh.runtime import resolve_device

METRIC_ORDER = ("LVE", "EVE", "FDD", "FDD_abs", "MVE", "MOD", "lip_closure", "vowel_contrast", "lip_rounding",
                "blink_rate", "blink_duration", "diversity")
ARTICULATION_KEYS = ("lip_closure", "vowel_contrast", "lip_rounding", "blink_rate", "blink_duration")
"""Keys the report also gives for the ground truth itself (what a model should match)."""


# ---- features and generation (shared with the trainer's validation) ----------------------

def metric_regions(dataset: FaceDataset) -> dict[str, np.ndarray]:
    """Region index lists and vertex-pair lists of a dataset, as evaluate_sequences takes them
    (CodeTalker's regions/lve.txt and fdd.txt as lips and upper face where the dataset has them)."""
    return {**dataset.regions, **dataset.vertex_pairs}


def describe_masks(regions: dict[str, np.ndarray], num_vertices: int, closures: int = 0,
                   sources: dict[str, str] | None = None, *,
                   midpoints: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """Which vertices each metric used: ``{metric: {"region": name, "vertices"/"pairs": n}}``,
    plus ``"source"``, the file the region came from, where ``sources`` (a dataset's
    ``region_sources``) names another file than the layout's regions.json (CodeTalker's
    ``regions/lve.txt``); lip-closure accuracy also names the number of closures scored,
    the phonemes and the tolerance; vowel contrast and lip rounding the number of
    ``midpoints`` of each phoneme class they read (class -> count); the blinks their
    threshold."""
    masks: dict[str, dict[str, Any]] = {}
    if "lips" in regions:
        masks["LVE"] = {"region": "lips", "vertices": int(np.asarray(regions["lips"]).size)}
    emotion = _emotion_region(regions)
    if emotion is not None:
        name = next((n for n in ("eye_forehead", "emotion") if n in regions), "eyes + forehead")
        masks["EVE"] = {"region": name, "vertices": int(np.unique(np.asarray(emotion)).size)}
    if "upper_face" in regions:
        masks["FDD"] = {"region": "upper_face", "vertices": int(np.asarray(regions["upper_face"]).size)}
        masks["FDD_abs"] = dict(masks["FDD"])
    masks["MVE"] = {"region": "all", "vertices": int(num_vertices)}
    if "inner_lip_pairs" in regions:
        masks["MOD"] = {"region": "inner_lip_pairs", "pairs": int(np.asarray(regions["inner_lip_pairs"]).reshape(-1, 2).shape[0])}
        if closures:
            masks["lip_closure"] = {**masks["MOD"], "closures": int(closures), "phonemes": list(BILABIAL_PHONEMES),
                                    "tolerance_m": LIP_CLOSURE_TOLERANCE}
    midpoints = midpoints or {}
    if "inner_lip_pairs" in regions and midpoints.get("open_vowel") and midpoints.get("bilabial"):
        masks["vowel_contrast"] = {**masks["MOD"], "open_vowels": int(midpoints["open_vowel"]),
                                   "bilabials": int(midpoints["bilabial"]), "floor_m": VOWEL_CONTRAST_FLOOR}
    if "lip_corners" in regions and midpoints.get("rounded_vowel") and midpoints.get("spread_vowel"):
        masks["lip_rounding"] = {"region": "lip_corners", "pairs": int(np.asarray(regions["lip_corners"]).size // 2),
                                 "rounded_vowels": int(midpoints["rounded_vowel"]),
                                 "spread_vowels": int(midpoints["spread_vowel"])}
    if "eyelid_pairs" in regions:
        masks["blink_rate"] = {"region": "eyelid_pairs", "pairs": int(np.asarray(regions["eyelid_pairs"]).size // 2),
                               "shut_below_median_share": BLINK_FRACTION, "min_seconds": BLINK_MIN_SECONDS}
        masks["blink_duration"] = dict(masks["blink_rate"])
    for mask in masks.values():
        source = (sources or {}).get(mask["region"])
        if source not in (None, "regions.json"):
            mask["source"] = source
    return masks


# ---- baselines ------------------------------------------------------------------------------

def mean_training_offset(dataset: FaceDataset, progress: bool = False) -> np.ndarray | None:
    """Mean over every training frame of (vertices - the subject's template): float64
    ``[V, 3]``, or None when the dataset has no training split."""
    records = [r for r in dataset.all_records if r.split == "train" and r.vertices_path is not None]
    total, frames = None, 0
    for record in tqdm(records, desc="mean motion", unit="seq", disable=not progress, leave=False):
        sequence = dataset.load(record)
        offsets = sequence.vertices.astype(np.float64) - sequence.template[None]
        total = offsets.sum(axis=0) if total is None else total + offsets.sum(axis=0)
        frames += offsets.shape[0]
    return None if total is None or frames == 0 else total / frames


def _constant(face: np.ndarray, frames: int) -> np.ndarray:
    """A face repeated over time ``[T, V, 3]`` as a read-only view (no copy)."""
    return np.broadcast_to(np.asarray(face, dtype=np.float32)[None], (frames,) + face.shape)


# ---- the evaluation ----------------------------------------------------------------------

def evaluate_run(run: str | Path, data_dir: str | Path, split: str = "test", out: str | Path | None = None,
                 preset: str | None = None, fps: float | None = None, seed: int = 0,
                 device: str | torch.device | None = None, progress: bool = False,
                 emotion_source: str = "heard", samples: int = 1, steps: int | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Score RUN/model (or a checkpoint folder) on a split of a dataset and write
    ``RUN/eval_<split>.md`` and ``.json`` (or ``out`` with those suffixes).

    Emotion-aware models take the emotion they hear in the voice by default
    (``emotion_source="heard"``: the same information every other method gets);
    ``"label"`` gives them each sequence's emotion label. Models with an emotion
    classifier also get ``emotion_accuracy`` (argmax over whole sequences against the
    labels) with its chance level. ``samples`` > 1 draws that many motions of every
    sequence (seeds ``seed``, ``seed + 1``, ...; unseen subjects in the first training
    speaker's style) and adds their ``diversity`` (metres) to the model's row. ``steps``:
    sampling steps of diffusion models (None: the checkpoint's setting). The result also
    holds ``generation_seconds`` and ``audio_seconds`` (the compute of every generate call
    and the audio it animated: their ratio is the real-time factor, features excluded).
    The split is read in one pass with one sequence (its audio, features, predictions and
    baselines) in memory at a time, so a split of thousands of sequences needs no more
    memory than one of ten.

    preset / fps default to those the model was trained with. Returns the JSON-ready
    result: ``rows`` (``static``, ``mean``, ``model``: metric -> value), ``per_condition``
    (the model's metrics for each speaker condition), ``units``, ``masks``, counts."""
    from voxmesh.audio.features import FeatureCache
    from voxmesh.data.presets import canonical_split
    from voxmesh.train.checkpoint import load_checkpoint, read_checkpoint_info, resolve_checkpoint

    if samples < 1:
        raise VoxmeshError(f"samples is {samples}; give 1 (no diversity) or more samples a sequence.")
    if emotion_source not in ("heard", "label"):
        raise VoxmeshError(f"emotion_source is '{emotion_source}'; use 'heard' (from the voice) or 'label'.")
    run = Path(run)
    folder = resolve_checkpoint(run)
    info = read_checkpoint_info(folder)
    trained = info.get("data") or {}
    preset = preset or trained.get("preset") or "generic"
    device = resolve_device(device)
    dataset = FaceDataset(data_dir, preset=preset, fps=fps if fps is not None else info["fps"])
    if abs(dataset.fps - float(info["fps"])) > 1e-6:
        raise VoxmeshError(
            f"Model {folder} animates at {info['fps']:g} fps but the {dataset.preset.name} preset of {dataset.root} is "
            f"{dataset.fps:g} fps; pass --fps {info['fps']:g} or a dataset at that rate."
        )
    split = canonical_split(split)
    md_path, json_path = _output_paths(run, split, out)
    # Before the model is loaded and anything generated: an existing report is replaced only on request.
    refuse_existing(md_path, json_path, overwrite=overwrite, instead="choose another --out")
    topology = dataset.topology()
    model = load_checkpoint(folder, expected_topology_hash=topology, device=device)
    records = [r for r in dataset.all_records if r.split == split]
    if not records:
        raise VoxmeshError(f"Dataset {dataset.root} has no '{split}' sequences under the {dataset.preset.name} preset; pick another --split.")
    speakers = list(model.speakers)
    regions = metric_regions(dataset)
    cache = None if model.audio_encoder.trainable else FeatureCache(model.audio_encoder)
    # Who is seen and which conditions exist follow from the records, so the split is read
    # in one pass holding one sequence at a time: memory does not grow with its size.
    unseen_subjects = sorted({r.subject for r in records if r.subject not in speakers})
    conditions: list[str | None] = list(speakers) if unseen_subjects else [None]
    offset = mean_training_offset(dataset, progress=progress)
    per_condition_metrics = {condition: MetricAccumulator(regions, dataset.fps) for condition in conditions}
    baselines = {"static": MetricAccumulator(regions, dataset.fps)}
    if offset is not None:
        baselines["mean"] = MetricAccumulator(regions, dataset.fps)
    truth = MetricAccumulator(regions, dataset.fps)  # the ground truth's own articulation
    midpoints: dict[str, int] = {}
    emotions = EmotionConfusion(model, device)
    draws = _Sum()  # diversity of each sequence, averaged at the end
    seen_sequences, closure_count = 0, 0

    clock = {"generation_seconds": 0.0, "audio_seconds": 0.0}

    def timed_generate(sequence: Sequence, speaker: str, features: torch.Tensor, sample_seed: int) -> np.ndarray:
        started = time.perf_counter()
        vertices = generate_sequence(model, sequence, speakers.index(speaker), features=features, seed=sample_seed,
                                     device=device, emotion_source=emotion_source, steps=steps)
        clock["generation_seconds"] += time.perf_counter() - started
        clock["audio_seconds"] += len(vertices) / dataset.fps
        return vertices

    for record in tqdm(records, desc="evaluating", unit="seq", disable=not progress):
        sequence = dataset.load(record)
        features = sequence_features(model, sequence.audio, sequence.num_frames, dataset.fps, device, cache)
        gt, template = sequence.vertices, sequence.template
        frames = articulation_frames(sequence.phonemes, sequence.fps, sequence.num_frames)
        closures = frames["bilabial"]
        closure_count += int(closures.size)
        for name, indices in frames.items():
            midpoints[name] = midpoints.get(name, 0) + int(indices.size)
        seen = sequence.subject in speakers
        first = None  # the seed-`seed` motion in the subject's own style, the first diversity sample
        if seen:
            seen_sequences += 1
            first = timed_generate(sequence, sequence.subject, features, seed)
            for accumulator in per_condition_metrics.values():
                accumulator.add(first, gt, template, closures, frames)
        else:
            for condition, accumulator in per_condition_metrics.items():
                accumulator.add(timed_generate(sequence, condition, features, seed), gt, template, closures, frames)
        if samples > 1:
            # Unseen subjects are drawn in the first training speaker's style, every seed generated anew.
            speaker = sequence.subject if seen else conditions[0]
            stack = [first] if first is not None else []
            stack += [timed_generate(sequence, speaker, features, seed + k) for k in range(len(stack), samples)]
            draws.add(diversity(np.stack(stack)))
            del stack
        baselines["static"].add(_constant(template, len(gt)), gt, template, closures, frames)
        if offset is not None:
            baselines["mean"].add(_constant(template + offset, len(gt)), gt, template, closures, frames)
        truth.add(gt, gt, template, closures, frames)
        emotions.add(sequence, features)
        del sequence, features, gt, first  # nothing of this sequence outlives its turn

    per_condition = {condition or "own style": accumulator.result()
                     for condition, accumulator in per_condition_metrics.items()}
    # Blink duration exists only where a blink was drawn: averaged over the conditions that have it.
    keys = [k for k in METRIC_ORDER if any(k in m for m in per_condition.values())]
    model_row = {k: float(np.mean([m[k] for m in per_condition.values() if k in m])) for k in keys}
    if samples > 1:
        model_row["diversity"] = draws.value / len(records)
        keys.append("diversity")
    rows: dict[str, dict[str, float]] = {name: accumulator.result() for name, accumulator in baselines.items()}
    rows["model"] = model_row
    ground_truth = {k: v for k, v in truth.result().items() if k in ARTICULATION_KEYS}
    keys += [k for k in ground_truth if k not in keys]
    frames = baselines["static"].frames

    result: dict[str, Any] = {
        "run": str(run),
        "checkpoint": str(folder),
        "method": info["method"],
        "stage": info.get("stage"),
        "step": info.get("step"),
        "dataset": str(dataset.root),
        "preset": dataset.preset.name,
        "split": split,
        "fps": dataset.fps,
        "seed": seed,
        "sequences": len(records),
        "frames": int(frames),
        "seen_sequences": seen_sequences,
        "unseen_sequences": len(records) - seen_sequences,
        "unseen_subjects": unseen_subjects,
        "conditions": [c for c in conditions if c is not None],
        "rows": rows,
        "ground_truth": ground_truth,
        "samples": samples,
        "steps": steps,
        **{k: round(v, 3) for k, v in clock.items()},
        "per_condition": per_condition,
        "emotion_source": emotion_source if getattr(model, "emotions", None) else None,
        "emotion_classification": emotions.result(),
        "units": {k: METRIC_UNITS[k] for k in keys},
        "masks": describe_masks(regions, topology.num_vertices, closure_count, dataset.region_sources,
                                midpoints=midpoints),
        "baselines": {
            "static": "the subject's template, unmoving",
            "mean": "the template plus the mean training offset from the template per vertex, constant over time",
        },
    }
    with atomic_path(json_path) as tmp:
        import json

        tmp.write_text(json.dumps(result, indent=2))
    with atomic_path(md_path) as tmp:
        tmp.write_text(format_evaluation(result))
    result["written"] = {"markdown": str(md_path), "json": str(json_path)}
    return result


class EmotionConfusion:
    """How often a model's emotion classifier names a sequence's labelled emotion (the
    argmax over the whole sequence), tallied a sequence at a time into a confusion matrix
    (rows: label, columns: heard), so that a split of any size is classified while only
    one sequence's features are in memory."""

    def __init__(self, model, device: torch.device | str):
        self.model = model
        self.device = device
        emotions = list(getattr(model, "emotions", []) or [])
        self.emotions = emotions if emotions and hasattr(model, "classify_emotion") else []
        self.confusion = np.zeros((len(self.emotions), len(self.emotions)), dtype=int)

    @torch.no_grad()
    def add(self, sequence: Sequence, features: torch.Tensor) -> None:
        """Classify one sequence from its features ``[T, C]`` (unlabelled ones and models
        without a classifier are skipped)."""
        if sequence.emotion not in self.emotions:
            return
        probabilities = self.model.classify_emotion(features[None].to(self.device))[0]
        self.confusion[self.emotions.index(sequence.emotion), int(probabilities.argmax())] += 1

    def result(self) -> dict[str, Any] | None:
        """Accuracy, chance level, the count and the confusion matrix; None for models
        without a classifier or without labelled sequences."""
        if not self.confusion.sum():
            return None
        return {"accuracy": float(np.trace(self.confusion) / self.confusion.sum()), "chance": 1.0 / len(self.emotions),
                "sequences": int(self.confusion.sum()), "emotions": list(self.emotions),
                "confusion": self.confusion.tolist()}


def _output_paths(run: Path, split: str, out: str | Path | None) -> tuple[Path, Path]:
    """The report's .md and .json: ``out`` (a folder gets eval_<split> inside), or beside
    the run (in the current folder for a built-in model, which lives in the package)."""
    if out is None:
        from voxmesh.train.checkpoint import builtin_model_path

        base = (Path(f"eval_{run}_{split}") if builtin_model_path(str(run)) is not None else run / f"eval_{split}")
        return base.with_suffix(".md"), base.with_suffix(".json")
    out = Path(out)
    if out.is_dir():
        out = out / f"eval_{split}"
    if out.suffix.lower() in (".md", ".json"):
        return out.with_suffix(".md"), out.with_suffix(".json")
    return Path(str(out) + ".md"), Path(str(out) + ".json")


_UNIT_TEXT = {"m^2": "m²", "m": "m", "share": "%", "ratio": "x", "1/min": "/min", "s": "s"}


_PLAIN_FORMATS = {"ratio": "{:.2f}", "1/min": "{:.1f}", "s": "{:.3f}"}


def _metric_text(key: str, value: float) -> str:
    """A metric value as the reports print it: shares in percent, ratios, rates and seconds
    plainly, the rest in scientific notation."""
    unit = METRIC_UNITS.get(key)
    if unit == "share":
        return f"{100 * value:.1f}"
    return _PLAIN_FORMATS.get(unit, "{:.4e}").format(value)


def format_evaluation(result: dict[str, Any]) -> str:
    """The Markdown report of :func:`evaluate_run`: the table, its masks and units."""
    keys = [k for k in METRIC_ORDER if k in result["units"]]
    names = {
        "static": "static (template, unmoving)",
        "mean": "mean (template + mean training offset)",
        "model": f"{result['method']} ({result.get('stage') or 'main'}, step {result.get('step')})",
    }
    lines = [
        f"# Evaluation: {result['method']} on the {result['split']} split",
        "",
        f"Model `{result['checkpoint']}` on `{result['dataset']}` (preset {result['preset']}, {result['fps']:g} fps): "
        f"{result['sequences']} sequences, {result['frames']} frames.",
        "",
        "| | " + " | ".join(f"{k} ({_UNIT_TEXT.get(result['units'][k], result['units'][k])})" for k in keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    rows = dict(result["rows"])
    if result.get("ground_truth"):
        rows["ground truth"] = result["ground_truth"]
    for row, values in rows.items():
        lines.append(f"| {names.get(row, row)} | " + " | ".join(_metric_text(k, values[k]) if k in values else ""
                                                               for k in keys) + " |")
    lines.append("")
    masks = result["masks"]
    parts = []
    for key in keys:
        mask = masks.get(key)
        if mask is None or key in ("FDD_abs", "blink_duration"):
            continue
        size = (f"{mask['pairs']} vertex pair{'s' if mask['pairs'] != 1 else ''}" if "pairs" in mask
                else f"{mask['vertices']} vertices")
        if "closures" in mask:
            size += (f"; {mask['closures']} midpoints of /{'/, /'.join(mask['phonemes'])}/, closed when at most "
                     f"{mask['tolerance_m'] * 1000:g} mm more open than the ground truth")
        if "open_vowels" in mask:
            size += (f"; mouth opening at {mask['open_vowels']} open-vowel over {mask['bilabials']} bilabial "
                     f"midpoints, the latter at least {mask['floor_m'] * 1000:g} mm")
        if "rounded_vowels" in mask:
            size += (f"; mouth width at {mask['rounded_vowels']} rounded-vowel over {mask['spread_vowels']} "
                     "spread-vowel midpoints")
        if "min_seconds" in mask:
            size += (f"; blink_rate and blink_duration: eyelid opening below {100 * mask['shut_below_median_share']:g}% "
                     f"of its clip's median for at least {mask['min_seconds']:g} s")
        source = f" from `{mask['source']}`" if "source" in mask else ""
        parts.append(f"{key} over `{mask['region']}`{source} ({size})")
    lines.append("Masks: " + "; ".join(parts) + ".")
    if "diversity" in keys:
        lines.append(f"Diversity: mean distance between {result['samples']} motions of each sequence drawn with "
                     "different seeds (metres).")
    lines.append(
        "Units: LVE, EVE and FDD are squared metres (the papers' \"x1e-5 mm\" columns are these values scaled); "
        "MVE and MOD are metres. Lower is better, except FDD, which is signed (ground truth minus prediction; "
        "FDD_abs is its absolute value)" + ("; lip_closure is the percentage of bilabial closures with closed lips "
                                            "(higher is better)" if "lip_closure" in keys else "") + "."
    )
    if any(k in keys for k in ARTICULATION_KEYS[1:]):
        lines.append("Articulation (each motion on its own; the ground-truth row is the target, not an error): "
                     "vowel_contrast and lip_rounding are ratios (x), blink_rate is blinks per minute, "
                     "blink_duration the mean seconds a blink stays below the threshold.")
    if result["unseen_sequences"]:
        lines.append(
            f"Unseen subjects ({', '.join(result['unseen_subjects'])}, {result['unseen_sequences']} sequences) were "
            f"generated once in the style of each of the {len(result['conditions'])} training speakers and the "
            f"model's metrics averaged over those conditions; seen subjects ({result['seen_sequences']} sequences) "
            "use their own style."
        )
    else:
        lines.append("Every subject is a training speaker and is generated in its own style.")
    if result.get("emotion_source"):
        lines.append("Emotion: " + ("heard in the voice by the model's classifier (no labels given)."
                                    if result["emotion_source"] == "heard" else "each sequence's label."))
    classification = result.get("emotion_classification")
    if classification:
        lines.append(f"Emotion accuracy from the voice: {classification['accuracy']:.1%} over "
                     f"{classification['sequences']} sequences (chance {classification['chance']:.1%}).")
    lines.append("Baselines: static = the subject's template, unmoving; mean = the template plus the mean offset from "
                 "the template over every training frame, per vertex and constant over time.")
    return "\n".join(lines) + "\n"


__all__ = ["EmotionConfusion", "describe_masks", "evaluate_run", "format_evaluation", "mean_training_offset",
           "metric_regions"]
