"""Where is articulation lost? The diagnosis of issue 15, in numbers (docs/methods/articulation.md).

Four measurements on the `small` synthetic dataset and the shipped default model
(``voxmesh/weights/default``: GLDiTalker on Whisper tiny.en features):

(a) probe: do the speech features carry articulation? A frame-level linear probe
    (logistic regression, one class against the rest, balanced classes) for bilabial
    closure (/p b m/), open vowels and rounded vowels, fitted on the train split's
    frames and scored on the test split's (labels: the phoneme under each mesh frame,
    from the manifest's timings). Encoders: the mel encoder as a method starts it
    (random weights: no mel encoder is trained on this machine), the log-mel bands it
    reads, Whisper tiny.en (the real pretrained encoder), Whisper tiny.en with prosody,
    and the three prosody channels alone.
(b) stage 1: does GLDiTalker's autoencoder reconstruct it? The test clips' ground
    truth encoded and decoded, through the codebook and without it: lip closure, MOD,
    vowel contrast, the inner-lip gap at bilabial midpoints and over every bilabial
    frame, against the ground truth's.
(c) generation: does the denoiser produce it? The shipped model's motion for the test
    clips (seed 0, the checkpoint's sampling settings, emotion heard in the voice, as
    ``voxmesh evaluate``): closure, vowel contrast, lip rounding, blinks.
(d) the loss: what does a vertex loss charge for a lip gap? The stage-1 reconstruction
    against a copy whose lower lip is moved, at every bilabial frame, by the gap error
    (so the lips meet as in the ground truth): the drop of the mean squared (and mean
    absolute, stage 1's L1) vertex error that sealing buys, as a share of the loss.

``--ablation`` adds (e), the cheap lever: only the shipped stage-1 decoder fine-tuned for
``--ablation-steps`` steps on training windows (a copy in memory; the shipped weights are
not touched), with stage 1's own loss alone (the control) and with added L1 terms on the
inner-lip distance, over every frame ("opening") and over the frames inside bilabials
("gap"), in the weights ``--variants`` lists; each scored by its quantised
reconstruction of the test clips. Variants already in the JSON for the same number of
steps are kept, not rerun.

    OMP_NUM_THREADS=1 python benchmarks/bench_articulation.py [--data data/synth_small]
        [--model default] [--skip probe,stage1,generate] [--limit N] [--ablation]
        [--ablation-steps 300] [--variants 0:0,0:1,0:0.1,1:0,1:1]

Prints a table per part and writes benchmarks/results/articulation.json. The data is
made first when missing (``voxmesh synth DATA --preset small --seed 0``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PROBE_CLASSES = ("bilabial", "open_vowel", "rounded_vowel")
PROBE_ENCODERS = {
    "mel (random init)": {"kind": "mel", "freeze": True},
    "log-mel bands": "log-mel",
    "whisper-tiny.en": {"kind": "whisper-tiny.en"},
    "whisper-tiny.en + prosody": {"kind": "whisper-tiny.en", "prosody": True},
    "prosody alone": "prosody",
}


# ---- data -----------------------------------------------------------------------------------------

def open_data(data: Path):
    from voxmesh.data.layout import FaceDataset

    if not (data / "manifest.jsonl").is_file():
        from voxmesh.data.synthetic.dataset import synthesize_dataset

        synthesize_dataset(data, preset="small", seed=0)
    return FaceDataset(data)


def records(dataset, split: str, limit: int | None = None) -> list:
    chosen = [r for r in dataset.all_records if r.split == split]
    return chosen[:limit] if limit else chosen


def frame_classes(phonemes, fps: float, num_frames: int) -> dict[str, np.ndarray]:
    """Per class of PROBE_CLASSES a bool ``[T]``: the phoneme under frame k (at k / fps) is in it."""
    from voxmesh.eval.metrics import ARTICULATION_CLASSES

    times = np.arange(num_frames) / fps
    labels = {name: np.zeros(num_frames, dtype=bool) for name in PROBE_CLASSES}
    for item in phonemes or []:
        symbol = str(item.symbol).lstrip("',%=")
        inside = (times >= item.start) & (times < item.end)
        for name in PROBE_CLASSES:
            if symbol in ARTICULATION_CLASSES[name]:
                labels[name] |= inside
    return labels


def bilabial_spans(phonemes, fps: float, num_frames: int) -> np.ndarray:
    """Every frame inside a bilabial phoneme, int ``[K]``."""
    return np.nonzero(frame_classes(phonemes, fps, num_frames)["bilabial"])[0]


# ---- (a) probe ---------------------------------------------------------------------------------------

def _log_mel(audio: np.ndarray) -> np.ndarray:
    """The 80 log-mel bands at 100 frames/s the mel encoder reads, ``[F, 80]``."""
    from voxmesh.audio.encoders import mel_filterbank, whisper_log_mel

    mel = whisper_log_mel(torch.from_numpy(np.asarray(audio, np.float32))[None], mel_filterbank())
    return mel[0].T.numpy() if mel.shape[1] == 80 else mel[0].numpy()


def encoder_features(name: str, spec: Any, sequences: list) -> list[np.ndarray]:
    """Features ``[T, C]`` aligned to each sequence's mesh frames."""
    from voxmesh.audio.encoders import build_encoder
    from voxmesh.audio.features import FeatureCache, align_features
    from voxmesh.inference import cached_sequence_features, frame_audio

    def aligned(features: np.ndarray, frames: int) -> np.ndarray:
        return align_features(torch.from_numpy(features.astype(np.float32))[None], [frames])[0].numpy()

    out = []
    if spec == "log-mel":
        for s in sequences:
            out.append(aligned(_log_mel(frame_audio(s.audio, 0, s.num_frames, s.fps)), s.num_frames))
        return out
    encoder = build_encoder({"kind": "whisper-tiny.en", "prosody": True} if spec == "prosody" else spec)
    cache = FeatureCache(encoder)
    for s in sequences:
        features = cached_sequence_features(cache, s.audio, s.num_frames, s.fps).numpy()
        out.append(features[:, -3:] if spec == "prosody" else features)
    return out


def fit_probe(x: np.ndarray, y: np.ndarray, weight_decay: float = 1e-3, steps: int = 200) -> tuple[np.ndarray, float]:
    """Logistic regression on standardised features with balanced class weights, fitted
    with L-BFGS; returns (weights [C], bias) over the standardised features."""
    xt = torch.from_numpy(x).double()
    yt = torch.from_numpy(y.astype(np.float64))
    positives = max(float(yt.sum()), 1.0)
    negatives = max(float(len(yt) - yt.sum()), 1.0)
    sample_weight = torch.where(yt > 0, 0.5 / positives, 0.5 / negatives)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        logits = xt @ w + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, yt, reduction="none") * sample_weight).sum()
        loss = loss + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return w.detach().numpy(), float(b.detach())


def balanced_accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    predicted = scores > 0
    return 0.5 * (float(predicted[y].mean()) + float((~predicted[~y]).mean()))


def probe(dataset, limit_train: int | None) -> dict[str, Any]:
    train = [dataset.load(r) for r in records(dataset, "train", limit_train)]
    test = [dataset.load(r) for r in records(dataset, "test")]
    labels = {split: {c: np.concatenate([frame_classes(s.phonemes, s.fps, s.num_frames)[c] for s in seqs])
                      for c in PROBE_CLASSES} for split, seqs in (("train", train), ("test", test))}
    result: dict[str, Any] = {"train_sequences": len(train), "test_sequences": len(test),
                              "train_frames": int(len(labels["train"]["bilabial"])),
                              "test_frames": int(len(labels["test"]["bilabial"])),
                              "test_share": {c: float(labels["test"][c].mean()) for c in PROBE_CLASSES},
                              "encoders": {}}
    for name, spec in PROBE_ENCODERS.items():
        started = time.perf_counter()
        x_train = np.concatenate(encoder_features(name, spec, train)).astype(np.float64)
        x_test = np.concatenate(encoder_features(name, spec, test)).astype(np.float64)
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        row: dict[str, Any] = {"dim": int(x_train.shape[1])}
        for c in PROBE_CLASSES:
            w, b = fit_probe(x_train, labels["train"][c])
            row[c] = {"train": balanced_accuracy(x_train @ w + b, labels["train"][c]),
                      "test": balanced_accuracy(x_test @ w + b, labels["test"][c])}
        row["seconds"] = round(time.perf_counter() - started, 1)
        result["encoders"][name] = row
        print(f"probe {name}: " + ", ".join(f"{c} {row[c]['test']:.3f}" for c in PROBE_CLASSES), flush=True)
    return result


# ---- (b) stage 1, (c) generation, (d) the loss ---------------------------------------------------------

def gap_summary(gaps_m: np.ndarray) -> dict[str, float]:
    """Median, mean and 90th percentile (mm) of inner-lip gaps, and the shares within 1 and 2 mm."""
    mm = np.asarray(gaps_m) * 1000.0
    return {"median_mm": float(np.median(mm)), "mean_mm": float(mm.mean()), "p90_mm": float(np.percentile(mm, 90)),
            "within_1mm": float((mm <= 1.0).mean()), "within_2mm": float((mm <= 2.0).mean()), "count": int(mm.size)}


def motion_report(motions: list[np.ndarray], sequences: list, regions: dict, fps: float) -> dict[str, Any]:
    """Metrics of motions against their ground truth, and their inner-lip gaps at bilabials."""
    from voxmesh.eval.metrics import articulation_frames, evaluate_sequences, mouth_opening

    frames = [articulation_frames(s.phonemes, s.fps, s.num_frames) for s in sequences]
    gts = [s.vertices for s in sequences]
    metrics = evaluate_sequences(motions, gts, [s.template for s in sequences], regions,
                                 [f["bilabial"] for f in frames], frames, fps)
    pairs = regions["inner_lip_pairs"]
    at_midpoints = np.concatenate([mouth_opening(m, pairs)[f["bilabial"]] for m, f in zip(motions, frames)])
    in_spans = np.concatenate([mouth_opening(m, pairs)[bilabial_spans(s.phonemes, s.fps, s.num_frames)]
                               for m, s in zip(motions, sequences)])
    return {"metrics": metrics, "gap_at_bilabial_midpoints": gap_summary(at_midpoints),
            "gap_over_bilabial_frames": gap_summary(in_spans)}


def load_model(name: str, dataset):
    from voxmesh.train.checkpoint import load_checkpoint, resolve_checkpoint

    return load_checkpoint(resolve_checkpoint(name), expected_topology_hash=dataset.topology())


def reconstructions(model, sequences: list, quantize: bool) -> list[np.ndarray]:
    out = []
    for s in sequences:
        vertices = torch.from_numpy(np.asarray(s.vertices, np.float32))[None]
        template = torch.from_numpy(np.asarray(s.template, np.float32))[None]
        out.append(model.reconstruct(vertices, template, quantize=quantize)[0].numpy())
    return out


def sealed_copy(motion: np.ndarray, gt: np.ndarray, frames: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``motion`` with each inner-lip pair's two rim vertices moved, at each of ``frames``,
    about their midpoint until their gap vector is the ground truth's (the lips meet as
    the ground truth's do; nothing else moves). With the rim errors ``e_u``, ``e_l`` of a
    pair, ``|e_u|^2 + |e_l|^2 = 2 |(e_u + e_l) / 2|^2 + |e_u - e_l|^2 / 2``: this removes
    exactly the second term, the part of the squared error that is the gap's."""
    sealed = motion.astype(np.float64).copy()
    upper, lower = pairs[:, 0], pairs[:, 1]
    for k in frames:
        middle = 0.5 * (sealed[k, upper] + sealed[k, lower])
        gap = gt[k, upper].astype(np.float64) - gt[k, lower]
        sealed[k, upper], sealed[k, lower] = middle + 0.5 * gap, middle - 0.5 * gap
    return sealed


def lips_replaced(motion: np.ndarray, gt: np.ndarray, frames: np.ndarray, lips: np.ndarray) -> np.ndarray:
    """``motion`` with its whole lip region set to the ground truth at ``frames``."""
    fixed = motion.astype(np.float64).copy()
    fixed[np.ix_(frames, lips)] = gt[np.ix_(frames, lips)]
    return fixed


def loss_share(motions: list[np.ndarray], sequences: list, regions: dict) -> dict[str, Any]:
    """What the vertex losses charge for the lips at bilabial frames: the mean squared
    error (metres^2, FaceFormer's and CodeTalker's loss) and the mean absolute error
    (centimetres, GLDiTalker stage 1's L1) over all vertices and frames, of the motions,
    of the motions with their rims sealed at every frame inside a bilabial
    (:func:`sealed_copy`), and with their whole lip region exact there (the most any
    fix of the lips at closures can buy); each drop as a share of the loss."""
    pairs = np.asarray(regions["inner_lip_pairs"])
    lips = np.asarray(regions["lips"])
    sq: dict[str, float] = {"motion": 0.0, "rims_sealed": 0.0, "lips_exact": 0.0}
    ab = dict.fromkeys(sq, 0.0)
    sq_bilabial = dict.fromkeys(sq, 0.0)  # over the bilabial frames alone
    count = frames_total = bilabial_frames = 0
    gaps = []
    for m, s in zip(motions, sequences):
        g = np.asarray(s.vertices, np.float64)
        frames = bilabial_spans(s.phonemes, s.fps, s.num_frames)
        variants = {"motion": m.astype(np.float64), "rims_sealed": sealed_copy(m, g, frames, pairs),
                    "lips_exact": lips_replaced(m, g, frames, lips)}
        for key, x in variants.items():
            error = x - g
            sq[key] += float(np.square(error).sum())
            ab[key] += float(np.abs(error).sum())
            sq_bilabial[key] += float(np.square(error[frames]).sum())
        gaps.append(np.linalg.norm(m[frames][:, pairs[:, 0]] - m[frames][:, pairs[:, 1]], axis=-1).mean(axis=1))
        count += g.size
        frames_total += len(g)
        bilabial_frames += len(frames)
    vertices = int(motions[0].shape[1])
    mse = {k: v / count for k, v in sq.items()}
    l1_cm = {k: 100.0 * v / count for k, v in ab.items()}
    mean_gap = float(np.concatenate(gaps).mean())
    return {
        "vertices": vertices,
        "rim_vertices": int(pairs.size),
        "lip_vertices": int(lips.size),
        "bilabial_frames": bilabial_frames,
        "frames": frames_total,
        "mean_gap_at_bilabial_frames_mm": 1000.0 * mean_gap,
        "mse_m2": mse,
        "l1_cm": l1_cm,
        "mse_drop_share": {k: (mse["motion"] - mse[k]) / mse["motion"] for k in ("rims_sealed", "lips_exact")},
        "l1_drop_share": {k: (l1_cm["motion"] - l1_cm[k]) / l1_cm["motion"] for k in ("rims_sealed", "lips_exact")},
        "bilabial_frame_mse_drop_share": {k: (sq_bilabial["motion"] - sq_bilabial[k]) / sq_bilabial["motion"]
                                          for k in ("rims_sealed", "lips_exact")},
        # The same mean gap as the only error, on the rims alone: (gap^2 / 2 a pair) x pairs, over
        # V x 3 values a frame and every frame: what a loss over all vertices sees of it.
        "gap_alone_mse_m2": mean_gap ** 2 / 2 * len(pairs) / (vertices * 3) * bilabial_frames / frames_total,
    }


def stage_one(model, dataset, limit: int | None) -> dict[str, Any]:
    from voxmesh.eval.evaluate import metric_regions

    regions = metric_regions(dataset)
    sequences = [dataset.load(r) for r in records(dataset, "test", limit)]
    result: dict[str, Any] = {"sequences": len(sequences)}
    result["ground_truth"] = motion_report([s.vertices for s in sequences], sequences, regions, dataset.fps)
    for quantize in (True, False):
        started = time.perf_counter()
        motions = reconstructions(model, sequences, quantize)
        key = "quantised" if quantize else "continuous"
        result[key] = motion_report(motions, sequences, regions, dataset.fps)
        result[key]["first_20_median_gap_mm"] = motion_report(motions[:20], sequences[:20], regions, dataset.fps)[
            "gap_at_bilabial_midpoints"]["median_mm"]
        result[key]["seconds"] = round(time.perf_counter() - started, 1)
        if quantize:
            result["loss"] = loss_share(motions, sequences, regions)
    return result


def generation(model, dataset, limit: int | None) -> dict[str, Any]:
    from voxmesh.audio.features import FeatureCache
    from voxmesh.eval.evaluate import metric_regions
    from voxmesh.inference import generate_sequence, sequence_features

    regions = metric_regions(dataset)
    sequences = [dataset.load(r) for r in records(dataset, "test", limit)]
    cache = None if model.audio_encoder.trainable else FeatureCache(model.audio_encoder)
    speakers = list(model.speakers)
    motions, started = [], time.perf_counter()
    for s in sequences:
        features = sequence_features(model, s.audio, s.num_frames, s.fps, cache=cache)
        speaker = speakers.index(s.subject) if s.subject in speakers else 0
        motions.append(generate_sequence(model, s, speaker, features=features, seed=0, emotion_source="heard"))
    report = motion_report(motions, sequences, regions, dataset.fps)
    report["sequences"] = len(sequences)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


# ---- (e) the ablation: the stage-1 decoder fine-tuned with a lip-gap loss --------------------------------

def finetune_decoder(model, dataset, steps: int, opening_weight: float, gap_weight: float, seed: int = 0,
                     window: int = 30, batch: int = 4, lr: float = 2e-4) -> dict[str, Any]:
    """Fine-tune a copy's stage-1 decoder (encoder and codebook frozen) on random
    ``window``-frame crops of the training clips: stage 1's own loss (L1 + velocity L1, cm)
    plus ``opening_weight`` x the mean absolute error (cm) of the inner-lip distance over
    every frame plus ``gap_weight`` x the same over the frames inside bilabials. Returns
    the copy and the training time."""
    import copy

    from voxmesh.eval.evaluate import metric_regions

    tuned = copy.deepcopy(model)
    vq = tuned.vqvae
    vq.eval()
    for p in tuned.parameters():
        p.requires_grad_(False)
    params = [p for n, p in vq.named_parameters()
              if n.startswith(("from_latent", "decoder_transformer", "temporal_up", "mesh_decoder"))]
    for p in params:
        p.requires_grad_(True)
    pairs = torch.as_tensor(np.asarray(metric_regions(dataset)["inner_lip_pairs"]))
    train = [dataset.load(r) for r in records(dataset, "train")]
    labels = [torch.from_numpy(frame_classes(s.phonemes, s.fps, s.num_frames)["bilabial"]) for s in train]
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(params, lr=lr)
    scale = float(tuned.motion_scale)

    def gap(x: torch.Tensor) -> torch.Tensor:  # inner-lip distance [B, T], as MOD measures it
        return (x[:, :, pairs[:, 0]] - x[:, :, pairs[:, 1]]).norm(dim=-1).mean(dim=-1)

    started = time.perf_counter()
    for _ in range(steps):
        picks = rng.integers(0, len(train), size=batch)
        motions, masks = [], []
        for i in picks:
            s = train[i]
            start = int(rng.integers(0, max(1, s.num_frames - window)))
            v = torch.from_numpy(np.asarray(s.vertices[start:start + window], np.float32))
            motions.append(v - torch.from_numpy(np.asarray(s.template, np.float32))[None])
            masks.append(labels[i][start:start + window])
        motion, bilabial = torch.stack(motions), torch.stack(masks)
        with torch.no_grad():
            z, latent_mask = vq.encode(motion)
            codes = vq.quantize(z, latent_mask, update=False).quantized
        decoded = vq.decode(codes, latent_mask)[:, :motion.shape[1]]
        error = (decoded - motion) * scale
        loss = error.abs().mean() + float(tuned.settings["velocity_weight"]) * (error[:, 1:] - error[:, :-1]).abs().mean()
        gap_error = (gap(decoded) - gap(motion)).abs() * scale
        if opening_weight > 0:
            loss = loss + opening_weight * gap_error.mean()
        if gap_weight > 0 and bool(bilabial.any()):
            loss = loss + gap_weight * gap_error[bilabial].mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    tuned.eval()
    return {"model": tuned, "seconds": round(time.perf_counter() - started, 1)}


def parse_variants(text: str) -> list[tuple[float, float]]:
    """``"0:0,0:1,1:1"`` -> [(opening weight, bilabial gap weight), ...]."""
    return [(float(a), float(b)) for a, b in (item.split(":") for item in text.split(",") if item.strip())]


def variant_name(opening: float, gap: float) -> str:
    if not opening and not gap:
        return "no lip loss"
    parts = ([f"opening x{opening:g} (all frames)"] if opening else []) + ([f"gap x{gap:g} (bilabials)"] if gap else [])
    return " + ".join(parts)


def ablation(model, dataset, steps: int, variants: list[tuple[float, float]], limit: int | None,
             earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shipped decoder and fine-tuned copies, scored on the quantised reconstruction of
    the test clips; variants already in ``earlier`` (same steps) are kept, not rerun."""
    from voxmesh.eval.evaluate import metric_regions

    regions = metric_regions(dataset)
    sequences = [dataset.load(r) for r in records(dataset, "test", limit)]

    def scored(m) -> dict[str, Any]:
        report = motion_report(reconstructions(m, sequences, True), sequences, regions, dataset.fps)
        keep = ("LVE", "MOD", "lip_closure", "vowel_contrast", "MVE")
        return {**{k: report["metrics"].get(k) for k in keep},  # None where the clips lack the phonemes
                "gap_at_bilabial_midpoints": report["gap_at_bilabial_midpoints"]}

    kept = dict((earlier or {}).get("variants", {})) if (earlier or {}).get("steps") == steps else {}
    result: dict[str, Any] = {"steps": steps, "variants": {"shipped": scored(model)}}
    for opening, gap in variants:
        name = variant_name(opening, gap)
        if name in kept:
            result["variants"][name] = kept[name]
            continue
        torch.manual_seed(0)  # the same batches and dropout for every variant
        tuned = finetune_decoder(model, dataset, steps, opening, gap)
        result["variants"][name] = {**scored(tuned["model"]), "train_seconds": tuned["seconds"],
                                    "opening_weight": opening, "gap_weight": gap}
        print(f"ablation {name}: closure {result['variants'][name]['lip_closure']:.3f}", flush=True)
    return result


# ---- report ----------------------------------------------------------------------------------------

def print_tables(result: dict[str, Any]) -> None:
    if "probe" in result:
        p = result["probe"]
        print(f"\n(a) linear probe, balanced accuracy on the test frames (chance 0.5); {p['train_frames']} train / "
              f"{p['test_frames']} test frames")
        print("| encoder | dim | bilabial | open vowel | rounded vowel |\n|---|---:|---:|---:|---:|")
        for name, row in p["encoders"].items():
            print(f"| {name} | {row['dim']} | " + " | ".join(f"{row[c]['test']:.3f}" for c in PROBE_CLASSES) + " |")
    rows = []
    if "stage1" in result:
        s1 = result["stage1"]
        rows += [("ground truth", s1["ground_truth"]), ("stage 1, quantised", s1["quantised"]),
                 ("stage 1, continuous", s1["continuous"])]
    if "generate" in result:
        rows.append(("generated (seed 0)", result["generate"]))
    if rows:
        print("\n(b, c) motion on the test clips")
        print("| motion | LVE | MOD (mm) | closure | median gap (mm) | gap <= 1 mm | vowel contrast | lip rounding | "
              "blinks/min |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in rows:
            m, g = r["metrics"], r["gap_at_bilabial_midpoints"]
            print(f"| {name} | {m.get('LVE', 0):.3e} | {1000 * m.get('MOD', 0):.2f} | {100 * m.get('lip_closure', 0):.1f} % | "
                  f"{g['median_mm']:.2f} | {100 * g['within_1mm']:.1f} % | {m.get('vowel_contrast', float('nan')):.2f} | "
                  f"{m.get('lip_rounding', float('nan')):.3f} | {m.get('blink_rate', float('nan')):.1f} |")
    if "stage1" in result:
        loss = result["stage1"]["loss"]
        print(f"\n(d) the stage-1 reconstruction's vertex losses, {loss['bilabial_frames']} bilabial frames of "
              f"{loss['frames']}, mean gap there {loss['mean_gap_at_bilabial_frames_mm']:.2f} mm")
        print("| variant | MSE (m^2) | MSE drop | L1 (cm) | L1 drop | MSE drop on bilabial frames |\n|---|---:|---:|---:|---:|---:|")
        for key in ("motion", "rims_sealed", "lips_exact"):
            drop = (lambda table: "" if key == "motion" else f"{100 * loss[table][key]:.2f} %")
            print(f"| {key} | {loss['mse_m2'][key]:.4e} | {drop('mse_drop_share')} | {loss['l1_cm'][key]:.5f} | "
                  f"{drop('l1_drop_share')} | {drop('bilabial_frame_mse_drop_share')} |")
    if "ablation" in result:
        a = result["ablation"]
        print(f"\n(e) stage-1 decoder alone fine-tuned {a['steps']} steps; quantised reconstruction of the test clips")
        print("| decoder | closure | median gap (mm) | vowel contrast | LVE | MOD (mm) | MVE (mm) | train s |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in a["variants"].items():
            contrast = "-" if r["vowel_contrast"] is None else f"{r['vowel_contrast']:.2f}"
            print(f"| {name} | {100 * r['lip_closure']:.1f} % | {r['gap_at_bilabial_midpoints']['median_mm']:.2f} | "
                  f"{contrast} | {r['LVE']:.3e} | {1000 * r['MOD']:.2f} | {1000 * r['MVE']:.3f} | "
                  f"{r.get('train_seconds', '')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/synth_small"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: probe, stage1, generate")
    parser.add_argument("--limit", type=int, default=None, help="test clips (default: the whole test split)")
    parser.add_argument("--probe-train", type=int, default=None, help="training clips for the probe (default: all)")
    parser.add_argument("--ablation", action="store_true", help="also fine-tune the stage-1 decoder (e)")
    parser.add_argument("--ablation-steps", type=int, default=300)
    parser.add_argument("--variants", default="0:0,0:1,0:0.1,1:0,1:1",
                        help="fine-tunings to compare, OPENING:GAP weights of the inner-lip-distance loss over every "
                             "frame and over bilabial frames (0:0 is the control)")
    parser.add_argument("--out", type=Path, default=RESULTS / "articulation.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    dataset = open_data(args.data)
    result: dict[str, Any] = {"data": str(args.data), "model": args.model, "fps": dataset.fps}
    if args.out.is_file():  # parts skipped this time keep their last numbers
        result = {**json.loads(args.out.read_text()), **result}
    if "probe" not in skip:
        result["probe"] = probe(dataset, args.probe_train)
    model = load_model(args.model, dataset) if ({"stage1", "generate"} - skip or args.ablation) else None
    if "stage1" not in skip:
        result["stage1"] = stage_one(model, dataset, args.limit)
    if "generate" not in skip:
        result["generate"] = generation(model, dataset, args.limit)
    if args.ablation:
        result["ablation"] = ablation(model, dataset, args.ablation_steps, parse_variants(args.variants), args.limit,
                                      result.get("ablation"))
    print_tables(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
