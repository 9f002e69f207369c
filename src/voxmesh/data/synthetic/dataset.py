"""`voxmesh synth`: the synthetic talking-face dataset in the shared layout.

Speakers are espeak-ng voices, each paired with its own face (identity shape) and
articulation style; every clip is a built-in sentence spoken in an emotion, and the face
moves from the exact phoneme timings. The same seed gives the same bytes.

Splits (BIWI-like): the seen subjects' sentences are divided into train / val / test by
sentence (held-out sentences are never trained on by anyone), and a few unseen subjects
say test sentences only (``test_unseen``, like BIWI Test-B).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from voxmesh.data.synthetic.motion import PhonemeTarget, motion_from_phonemes, num_frames_for
from voxmesh.data.synthetic.phonemes import SILENCE, viseme_of
from voxmesh.data.synthetic.sentences import generate_sentences
from voxmesh.data.synthetic.speech import EMOTIONS, Voice, emotional_voice, speaker_voices, synthesize
from voxmesh.errors import VoxmeshError
from voxmesh.mesh.template import save_mesh, save_regions, save_templates


@dataclass(frozen=True)
class SynthSize:
    """How big a preset is. Every seen subject says ``train + val + test`` sentences, each
    in neutral and ``extra_emotions`` other emotions; unseen subjects say ``unseen_sentences``
    test sentences the same way."""

    seen_subjects: int
    unseen_subjects: int
    train_sentences: int
    val_sentences: int
    test_sentences: int
    unseen_sentences: int
    extra_emotions: int


SIZES: dict[str, SynthSize] = {
    # For tests: a few seconds on 2 cores.
    "tiny": SynthSize(3, 1, 2, 1, 1, 1, 1),
    # The default benchmark: 12 speakers, trains on a CPU in well under an hour.
    "small": SynthSize(10, 2, 12, 2, 2, 3, 1),
    "full": SynthSize(20, 4, 40, 5, 5, 5, 3),
}


@dataclass(frozen=True)
class SpeakerStyle:
    """How a subject articulates (speaker identity beyond the face shape)."""

    jaw_amplitude: float
    lip_amplitude: float
    smile: float
    asymmetry: float
    coarticulation: float

    def rig_style(self) -> dict[str, float]:
        return {"jaw_amplitude": self.jaw_amplitude, "lip_amplitude": self.lip_amplitude,
                "smile": self.smile, "asymmetry": self.asymmetry}


@dataclass(frozen=True)
class Subject:
    name: str
    voice: Voice
    identity: tuple[float, ...]
    style: SpeakerStyle
    seen: bool


@dataclass(frozen=True)
class ClipSpec:
    name: str
    subject: Subject
    sentence_id: int
    text: str
    emotion: str
    intensity: int
    split: str
    seed: int


def make_subjects(size: SynthSize, num_identity: int, seed: int) -> list[Subject]:
    """Seen subjects first, then unseen ones, each with a voice, face and style."""
    total = size.seen_subjects + size.unseen_subjects
    voices = speaker_voices(total, seed=seed)
    rng = np.random.default_rng([seed, 1])
    subjects = []
    for k, voice in enumerate(voices):
        identity = tuple(float(x) for x in np.round(rng.uniform(-1.0, 1.0, num_identity), 4))
        style = SpeakerStyle(
            jaw_amplitude=round(float(rng.uniform(0.7, 1.3)), 4),
            lip_amplitude=round(float(rng.uniform(0.7, 1.3)), 4),
            smile=round(float(rng.uniform(0.0, 0.35)), 4),
            asymmetry=round(float(rng.uniform(-0.4, 0.4)), 4),
            coarticulation=round(float(rng.uniform(0.75, 1.3)), 4),
        )
        subjects.append(Subject(f"spk{k + 1:02d}", voice, identity, style, seen=k < size.seen_subjects))
    return subjects


def plan_clips(size: SynthSize, subjects: list[Subject], seed: int) -> list[ClipSpec]:
    """Which subject says which sentence in which emotions, and in which split."""
    rng = np.random.default_rng([seed, 2])
    n_test_pool = max(size.test_sentences, size.unseen_sentences) * 2
    n_val_pool = size.val_sentences * 2
    n_train_pool = size.train_sentences * 3
    pool = generate_sentences(n_test_pool + n_val_pool + n_train_pool, seed=seed)
    ids = list(range(len(pool)))
    test_pool, val_pool, train_pool = ids[:n_test_pool], ids[n_test_pool:n_test_pool + n_val_pool], ids[n_test_pool + n_val_pool:]
    others = [e for e in EMOTIONS if e != "neutral"]
    emotion_cursor = 0
    clips = []
    for subject in subjects:
        if subject.seen:
            chosen = [("train", s) for s in rng.choice(train_pool, size.train_sentences, replace=False)]
            chosen += [("val", s) for s in rng.choice(val_pool, size.val_sentences, replace=False)]
            chosen += [("test", s) for s in rng.choice(test_pool, size.test_sentences, replace=False)]
        else:
            chosen = [("test_unseen", s) for s in rng.choice(test_pool, size.unseen_sentences, replace=False)]
        for split, sentence_id in chosen:
            renditions = [("neutral", 1)]
            for _ in range(size.extra_emotions):
                # Cycle through the emotions so that every one is well represented.
                emotion = others[emotion_cursor % len(others)]
                emotion_cursor += 1
                renditions.append((emotion, int(rng.integers(1, 3))))
            for emotion, intensity in renditions:
                name = f"{subject.name}_s{int(sentence_id):03d}-{emotion}-{intensity}"
                clip_seed = int(rng.integers(0, 2**31 - 1))
                clips.append(ClipSpec(name, subject, int(sentence_id), pool[int(sentence_id)], emotion, intensity,
                                      split, clip_seed))
    return clips


_RIG = None
_ARKIT = None


def _rig():
    """One rig a process (built on first use; workers build their own)."""
    global _RIG
    if _RIG is None:
        from voxmesh.mesh.rig import HeadRig

        _RIG = HeadRig()
    return _RIG


def _arkit():
    """The head's 52 ARKit shapes on the process's rig (built on first use)."""
    global _ARKIT
    if _ARKIT is None:
        from voxmesh.mesh.arkit import ArkitShapes

        _ARKIT = ArkitShapes(_rig())
    return _ARKIT


# The ground-truth ARKit weights of a clip are solved until no weight changes by more than this.
ARKIT_TRUTH_TOLERANCE = 1e-4


def arkit_truth(vertices: np.ndarray, neutral: np.ndarray):
    """The ground-truth ARKit fit (:class:`voxmesh.mesh.arkit.ArkitFit`) of a clip's
    vertices ``[T, V, 3]`` on its subject's neutral ``[V, 3]``: per frame, the weights in
    [0, 1] of the 52 shapes that rebuild the frame's motion best (bounded least squares
    over the face's moving vertices with the solve's default ridge and antagonist
    penalties, each frame on its own: no smoothing in time)."""
    return _arkit().solve(vertices, neutral, smoothing=0.0, tolerance=ARKIT_TRUTH_TOLERANCE, max_iterations=5000)


def phoneme_targets(phonemes) -> list[PhonemeTarget]:
    targets = []
    for p in phonemes:
        if p.symbol == SILENCE:
            targets.append(PhonemeTarget(p.start, p.end, "rest", 0.0))
            continue
        info = viseme_of(p.symbol)
        targets.append(PhonemeTarget(p.start, p.end, info.viseme, info.jaw, info.viseme_end, info.jaw_end))
    return targets


def render_clip(spec: ClipSpec, fps: float) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray, dict]:
    """Audio ``[samples]`` 16 kHz, vertices ``[T, V*3]`` float32, the manifest row, the
    ground-truth ARKit weights ``[T, 52]`` float32 (:func:`arkit_truth`) and how well
    they rebuild the motion (``explained``, ``lip_explained``, ``lip_rms_mm``)."""
    rig = _rig()
    voice = emotional_voice(spec.subject.voice, spec.emotion, spec.intensity)
    clip = synthesize(spec.text, voice)
    duration = len(clip.audio) / float(clip.sample_rate)
    rng = np.random.default_rng(spec.seed)
    track = motion_from_phonemes(phoneme_targets(clip.phonemes), duration, fps, spec.emotion, spec.intensity,
                                 list(rig.viseme_names), list(rig.expression_names), rng,
                                 coarticulation=spec.subject.style.coarticulation)
    neutral = rig.identity_shape(np.asarray(spec.subject.identity, dtype=np.float32))
    vertices = rig.pose(neutral, track.jaw, track.visemes, track.expressions, track.blink,
                        style=spec.subject.style.rig_style())
    assert vertices.shape[0] == num_frames_for(duration, fps)
    truth = arkit_truth(vertices, neutral)
    fit = {"frames": len(vertices), "explained": truth.explained, "lip_explained": truth.lip_explained,
           "lip_rms_mm": truth.lip_rms_mm}
    row = {
        "name": spec.name, "subject": spec.subject.name, "sentence": spec.sentence_id, "text": spec.text,
        "emotion": spec.emotion, "intensity": spec.intensity, "split": spec.split, "fps": fps,
        "duration": round(duration, 6),
        "phonemes": [[p.symbol, round(p.start, 6), round(p.end, 6)] for p in clip.phonemes],
    }
    return clip.audio, vertices.reshape(vertices.shape[0], -1).astype(np.float32), row, truth.weights, fit


def blendshapes_meta(fits: list[dict]) -> dict:
    """What ``blendshapes.json`` says: the 52 names of ``blendshapes_npy/`` in their
    order, how the weights were made and how much of the motion they explain."""
    from voxmesh.mesh.arkit import ARKIT_NAMES

    frames = np.array([f["frames"] for f in fits], dtype=np.float64)

    def mean(key):  # over frames
        return round(float(np.dot(frames, [f[key] for f in fits]) / frames.sum()), 6) if len(fits) else None

    return {
        "names": list(ARKIT_NAMES),
        "order": "Live Link Face CSV order, ARKit spelling (voxmesh.mesh.arkit.ARKIT_NAMES)",
        "range": [0.0, 1.0],
        "definition": ("Per frame, the weights in [0, 1] of voxmesh's 52 ARKit shapes of the procedural head that "
                       "rebuild the frame's vertex motion best: bounded least squares over the moving vertices "
                       "of the face with the solve's default small ridge and antagonist-pair penalties, each frame "
                       "on its own (voxmesh.data.synthetic.dataset.arkit_truth). The motion "
                       "itself comes from the rig (jaw turn, visemes, lip contacts, expressions, blinks), so it is "
                       "richer than 52 linear shapes; 'explained' says how much of it the weights rebuild."),
        "explained": {"face": mean("explained"), "lips": mean("lip_explained"),
                      "lip_rms_mm": mean("lip_rms_mm"),
                      "note": "frame-weighted mean over clips of 1 - sum|residual|^2 / sum|displacement|^2"},
    }


def _render_job(args: tuple[ClipSpec, float]):
    return render_clip(*args)


# What a synthetic dataset folder holds: what `synth --overwrite` may replace.
DATASET_ENTRIES = frozenset({"wav", "vertices_npy", "templates.pkl", "topology.ply", "regions.json", "manifest.jsonl",
                             "subjects.json", "blendshapes_npy", "blendshapes.json"})


def synthesize_dataset(out: str | Path, preset: str = "tiny", seed: int = 0, fps: float = 30.0,
                       workers: int | None = None, progress: bool = True, overwrite: bool = False) -> dict:
    """Write the synthetic dataset to ``out`` in the shared layout and return a summary.

    The folder is built beside ``out`` under a temporary name and renamed when complete,
    so an interrupted run never leaves a folder that looks whole."""
    if preset not in SIZES:
        raise VoxmeshError(f"Unknown synth preset '{preset}'; use one of {', '.join(SIZES)}.")
    from voxmesh.data.presets import check_fps
    from voxmesh.files import atomic_folder, refuse_existing

    fps = check_fps(fps)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise VoxmeshError(f"--workers {workers} must be 1 or more; leave it out to use the CPU count.")
    out = Path(out)
    if not (out.is_dir() and not any(out.iterdir())):  # an empty folder is taken without asking
        refuse_existing(out, overwrite=overwrite, instead="choose a new folder", folder_of=DATASET_ENTRIES.__contains__)
    size = SIZES[preset]
    rig = _rig()
    subjects = make_subjects(size, len(rig.identity_names), seed)
    clips = plan_clips(size, subjects, seed)

    workers = workers if workers is not None else min(len(clips), os.cpu_count() or 1, 4)
    jobs = [(clip, float(fps)) for clip in clips]
    rows = []
    total_seconds = 0.0
    # Built in a temporary folder beside ``out`` that replaces it only when complete.
    with atomic_folder(out, replace=overwrite) as staging:
        (staging / "wav").mkdir()
        (staging / "vertices_npy").mkdir()
        (staging / "blendshapes_npy").mkdir()
        fits = []
        if workers > 1:
            pool = ProcessPoolExecutor(max_workers=workers)
            results = pool.map(_render_job, jobs, chunksize=2)
        else:
            pool = None
            results = map(_render_job, jobs)
        for clip, (audio, vertices, row, weights, fit) in tqdm(zip(clips, results), total=len(clips),
                                                               desc=f"synth {preset}", unit="clip",
                                                               disable=not progress):
            soundfile.write(staging / "wav" / f"{clip.name}.wav", audio, 16000, subtype="PCM_16")
            np.save(staging / "vertices_npy" / f"{clip.name}.npy", vertices)
            np.save(staging / "blendshapes_npy" / f"{clip.name}.npy", weights)
            fits.append(fit)
            rows.append(row)
            total_seconds += row["duration"]
        if pool is not None:
            pool.shutdown()
        template = rig.template
        templates = {s.name: rig.identity_shape(np.asarray(s.identity, dtype=np.float32)) for s in subjects}
        save_templates(staging / "templates.pkl", templates)
        save_mesh(staging / "topology.ply", template.vertices, template.faces)
        save_regions(staging / "regions.json", {**template.regions, **template.vertex_pairs})
        (staging / "manifest.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        meta = {
            "preset": preset, "seed": seed, "fps": fps, "sample_rate": 16000,
            "subjects": [{"name": s.name, "seen": s.seen, "voice": asdict(s.voice), "identity": list(s.identity),
                          "style": asdict(s.style)} for s in subjects],
            "identity_names": list(rig.identity_names), "viseme_names": list(rig.viseme_names),
            "expression_names": list(rig.expression_names),
        }
        (staging / "subjects.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        (staging / "blendshapes.json").write_text(json.dumps(blendshapes_meta(fits), indent=1, sort_keys=True))
    splits: dict[str, int] = {}
    for r in rows:
        splits[r["split"]] = splits.get(r["split"], 0) + 1
    return {"path": str(out), "clips": len(rows), "subjects": len(subjects), "seconds": total_seconds,
            "splits": splits}
