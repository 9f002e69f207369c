"""Properties that hold for any input, checked with hypothesis on small random cases:
the audio loader, the metric suite and the dataset layout reader."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from miniature import write_dataset

from voxmesh.audio.io import SAMPLE_RATE, load_audio
from voxmesh.data import FaceDataset
from voxmesh.data.layout import read_manifest
from voxmesh.data.presets import SPLIT_ALIASES, SPLITS, canonical_split
from voxmesh.eval.metrics import (
    diversity,
    emotional_vertex_error,
    lip_vertex_error,
    mean_vertex_error,
    mouth_open_difference,
    upper_face_dynamics_deviation,
)

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- the audio loader ---------------------------------------------------------------------------

RATES = st.one_of(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]), st.integers(8000, 96000))


@st.composite
def recordings(draw):
    """(samples [n, channels] float32 in [-1, 1], rate): 10 ms to 0.3 s, 1-6 channels;
    noise, a tone, silence or a constant, with its first frames any floats in [-1, 1]
    (full scale, tiny, negative zero)."""
    rate = draw(RATES)
    frames = draw(st.integers(rate // 100, int(0.3 * rate)))
    channels = draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["noise", "tone", "silence", "constant"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    amplitude = draw(st.floats(0.0, 1.0))
    if kind == "noise":
        samples = rng.uniform(-amplitude, amplitude, (frames, channels))
    elif kind == "tone":
        t = np.arange(frames)[:, None] / rate
        samples = amplitude * np.sin(2 * np.pi * rng.uniform(50, rate / 2, channels) * t)
    else:
        samples = np.full((frames, channels), amplitude if kind == "constant" else 0.0)
    samples = samples.astype(np.float32)
    head = draw(arrays(np.float32, (min(frames, 32), channels),
                       elements=st.floats(-1, 1, width=32, allow_nan=False, allow_infinity=False)))
    samples[: len(head)] = head
    return samples, rate


@FEW
@given(recording=recordings())
def test_any_recording_loads_to_mono_16k_of_its_length(recording):
    samples, rate = recording
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        soundfile.write(path, samples, rate, subtype="FLOAT")
        loaded = load_audio(path)
    assert loaded.dtype == np.float32 and loaded.ndim == 1 and loaded.flags.c_contiguous
    assert np.isfinite(loaded).all()
    assert abs(len(loaded) - len(samples) * SAMPLE_RATE / rate) <= 0.5 + 1e-9  # the duration, to the sample
    if rate == SAMPLE_RATE:  # no resampling: exactly the mean of the channels
        np.testing.assert_allclose(loaded, samples.mean(axis=1), atol=1e-6)


@FEW
@given(recording=recordings(), copies=st.integers(2, 6))
def test_equal_channels_mix_to_the_single_channel(recording, copies):
    samples, rate = recording
    mono = samples[:, :1]
    with tempfile.TemporaryDirectory() as folder:
        soundfile.write(Path(folder) / "one.wav", mono, rate, subtype="FLOAT")
        soundfile.write(Path(folder) / "many.wav", np.repeat(mono, copies, axis=1), rate, subtype="FLOAT")
        one, many = load_audio(Path(folder) / "one.wav"), load_audio(Path(folder) / "many.wav")
    np.testing.assert_allclose(many, one, atol=1e-6)


# ---- metrics --------------------------------------------------------------------------------------

V = 12
LIPS = np.arange(0, 5)
UPPER = np.arange(5, 12)
PAIRS = np.array([[0, 3], [1, 4], [2, 3]])
COORDINATE = st.floats(-0.2, 0.2, width=64, allow_nan=False, allow_infinity=False)


@st.composite
def sequence_pairs(draw, max_frames: int = 8):
    """Two sequences [T, V, 3] of the same length (metres, a face's scale)."""
    frames = draw(st.integers(1, max_frames))
    shape = (frames, V, 3)
    return draw(arrays(np.float64, shape, elements=COORDINATE)), draw(arrays(np.float64, shape, elements=COORDINATE))


SCALE = st.floats(0.01, 100.0, allow_nan=False).flatmap(lambda s: st.sampled_from([s, -s]))


def close(a: float, b: float) -> bool:
    return bool(np.isclose(a, b, rtol=1e-7, atol=1e-12))


@FEW
@given(pair=sequence_pairs())
def test_vertex_errors_are_symmetric_non_negative_and_zero_on_identical_input(pair):
    pred, gt = pair
    for metric in (lambda p, g: lip_vertex_error(p, g, LIPS), lambda p, g: emotional_vertex_error(p, g, UPPER),
                   mean_vertex_error, lambda p, g: mouth_open_difference(p, g, PAIRS)):
        value = metric(pred, gt)
        assert value >= 0.0 and close(value, metric(gt, pred))
        assert metric(gt, gt) == 0.0 and metric(pred, pred) == 0.0


@FEW
@given(pair=sequence_pairs(), scale=SCALE, shift=arrays(np.float64, 3, elements=COORDINATE))
def test_scaling_and_translation_laws(pair, scale, shift):
    """Squared-distance metrics (LVE, EVE) scale with the square of a length scale,
    distances (MVE, MOD) with its absolute value; moving both sequences by one
    translation changes none of them."""
    pred, gt = pair
    assert close(lip_vertex_error(scale * pred, scale * gt, LIPS), scale**2 * lip_vertex_error(pred, gt, LIPS))
    assert close(emotional_vertex_error(scale * pred, scale * gt, UPPER),
                 scale**2 * emotional_vertex_error(pred, gt, UPPER))
    assert close(mean_vertex_error(scale * pred, scale * gt), abs(scale) * mean_vertex_error(pred, gt))
    assert close(mouth_open_difference(scale * pred, scale * gt, PAIRS),
                 abs(scale) * mouth_open_difference(pred, gt, PAIRS))
    moved_pred, moved_gt = pred + shift, gt + shift
    assert np.isclose(lip_vertex_error(moved_pred, moved_gt, LIPS), lip_vertex_error(pred, gt, LIPS),
                      rtol=1e-6, atol=1e-12)
    assert np.isclose(mean_vertex_error(moved_pred, moved_gt), mean_vertex_error(pred, gt), rtol=1e-6, atol=1e-12)


@FEW
@given(pair=sequence_pairs())
def test_lip_error_bounds_the_squared_mean_lip_distance(pair):
    """The largest squared error over the lips is at least the mean squared error, which
    is at least the square of the mean error (Jensen)."""
    pred, gt = pair
    assert lip_vertex_error(pred, gt, LIPS) >= mean_vertex_error(pred[:, LIPS], gt[:, LIPS]) ** 2 * (1 - 1e-12)


@FEW
@given(first=sequence_pairs(), second=sequence_pairs(), extra=st.integers(1, 3))
def test_frames_are_pooled_and_longer_predictions_are_cut(first, second, extra):
    (p1, g1), (p2, g2) = first, second
    pooled = lip_vertex_error([p1, p2], [g1, g2], LIPS)
    weighted = (len(g1) * lip_vertex_error(p1, g1, LIPS) + len(g2) * lip_vertex_error(p2, g2, LIPS)) / (len(g1) + len(g2))
    assert close(pooled, weighted)
    longer = np.concatenate([p1, np.repeat(p1[-1:], extra, axis=0) + 1.0])
    assert lip_vertex_error(longer, g1, LIPS) == lip_vertex_error(p1, g1, LIPS)
    assert mean_vertex_error(longer, g1) == mean_vertex_error(p1, g1)


@FEW
@given(pair=sequence_pairs(), template=arrays(np.float64, (V, 3), elements=COORDINATE), scale=SCALE,
       shift=arrays(np.float64, 3, elements=COORDINATE))
def test_upper_face_dynamics_deviation_laws(pair, template, scale, shift):
    """FDD: zero for a perfect prediction, antisymmetric in prediction and ground truth,
    its absolute variant non-negative, scaling with the square of a length scale, and
    unchanged when sequences and template move together."""
    pred, gt = pair

    def fdd(p, g, t, absolute=False):
        return upper_face_dynamics_deviation(p, g, t, UPPER, absolute=absolute)

    assert fdd(gt, gt, template) == 0.0
    assert close(fdd(pred, gt, template), -fdd(gt, pred, template))
    assert fdd(pred, gt, template, absolute=True) >= 0.0
    assert np.isclose(fdd(scale * pred, scale * gt, scale * template), scale**2 * fdd(pred, gt, template),
                      rtol=1e-6, atol=1e-12)
    assert np.isclose(fdd(pred + shift, gt + shift, template + shift), fdd(pred, gt, template), rtol=1e-6, atol=1e-12)


@FEW
@given(samples=st.integers(2, 4).flatmap(
    lambda s: arrays(np.float64, (s, 3, V, 3), elements=COORDINATE)), scale=SCALE, data=st.data())
def test_diversity_laws(samples, scale, data):
    assert diversity(samples) >= 0.0
    assert diversity(np.repeat(samples[:1], len(samples), axis=0)) == 0.0
    order = data.draw(st.permutations(range(len(samples))))
    assert close(diversity(samples[list(order)]), diversity(samples))
    assert close(diversity(scale * samples), abs(scale) * diversity(samples))


# ---- the layout reader ----------------------------------------------------------------------------

SUBJECT = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,7}", fullmatch=True)
SEQUENCE = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_]{0,6}", fullmatch=True)
SPLIT_NAME = st.sampled_from(list(SPLITS) + list(SPLIT_ALIASES) + ["Train", "TEST", "Val"])
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)


@st.composite
def manifests(draw):
    """Rows {name, subject, split, emotion, intensity, text} of unique names <subject>_<sequence>."""
    subjects = draw(st.lists(SUBJECT, min_size=1, max_size=3, unique_by=str.lower))
    pairs = draw(st.lists(st.tuples(st.sampled_from(subjects), SEQUENCE), min_size=1, max_size=5,
                          unique_by=lambda p: f"{p[0]}_{p[1]}".lower()))
    rows = []
    for subject, sequence in pairs:
        rows.append({"name": f"{subject}_{sequence}", "subject": subject, "split": draw(SPLIT_NAME),
                     "emotion": draw(st.sampled_from(["neutral", "happy", "sad"])),
                     "intensity": draw(st.sampled_from([1, 2])), "text": draw(TEXT)})
    return rows


@FEW
@given(rows=manifests())
def test_manifest_rows_round_trip(rows):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "manifest.jsonl"
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        assert read_manifest(path) == {row["name"]: row for row in rows}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=manifests())
def test_dataset_records_follow_the_manifest(rows):
    names_by_subject: dict[str, list[str]] = {}
    for row in rows:
        names_by_subject.setdefault(row["subject"], []).append(row["name"][len(row["subject"]) + 1:])
    with tempfile.TemporaryDirectory() as folder:
        root = write_dataset(Path(folder), names_by_subject, seconds=0.1, sample_rate=16000, manifest=rows)
        dataset = FaceDataset(root)
        records = {r.name: r for r in dataset.all_records}
        assert sorted(records) == sorted(row["name"] for row in rows)
        for row in rows:
            record = records[row["name"]]
            assert record.subject == row["subject"] and record.split == canonical_split(row["split"])
            assert (record.emotion, record.intensity, record.text) == (row["emotion"], row["intensity"], row["text"])
        for split in SPLITS:
            assert sorted(r.name for r in dataset.split(split).records) == sorted(
                row["name"] for row in rows if canonical_split(row["split"]) == split)
        first = dataset.load(records[rows[0]["name"]])
        assert first.vertices.shape == (3, 42, 3) and len(first.audio) == 1600


@pytest.mark.parametrize("name", ["train", "Test-B", "validation", "unseen"])
def test_split_aliases_are_canonical(name):
    assert canonical_split(name) in SPLITS and canonical_split(canonical_split(name)) == canonical_split(name)
