"""Cross-reconstruction pairs: partners by subject and sentence, alignment by phoneme
timings (a known warp is recovered) and by DTW of audio features, windows and batch fields."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from miniature import write_dataset

from voxmesh.data.layout import FaceDataset, Phoneme, SequenceRecord
from voxmesh.train.pairs import (
    PairIndex,
    alignment_features,
    collate_pair_windows,
    dtw_frame_positions,
    find_partners,
    phoneme_frame_positions,
    phoneme_time_knots,
    warp_frames,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")
FPS = 30.0


def phonemes_from(symbols: list[str], durations: list[float]) -> list[Phoneme]:
    edges = np.concatenate([[0.0], np.cumsum(durations)])
    return [Phoneme(s, float(a), float(b)) for s, a, b in zip(symbols, edges[:-1], edges[1:])]


SYMBOLS = ["_", "h", "@", "l", "oU", "w", "3:", "l", "d", "_"]
DURATIONS = [0.2, 0.08, 0.1, 0.07, 0.2, 0.06, 0.15, 0.08, 0.05, 0.3]
STRETCH = [1.0, 1.5, 0.8, 1.2, 1.4, 0.9, 1.6, 1.1, 1.3, 0.5]  # the partner's phoneme durations / the source's


def test_partners_are_the_same_subject_and_sentence_in_another_emotion():
    def record(name, subject, sentence, emotion, text=None):
        return SequenceRecord(name, subject, name, None, None, sentence=sentence, emotion=emotion, text=text)

    records = [
        record("a1n", "a", 1, "neutral"), record("a1h", "a", 1, "happy"), record("a1s", "a", 1, "sad"),
        record("a1h2", "a", 1, "happy"),  # same emotion as a1h: not its partner
        record("a2n", "a", 2, "neutral"),  # alone with its sentence
        record("b1n", "b", 1, "neutral"),  # another subject
        record("a1x", "a", 1, None),  # emotion unknown
        record("t1", "c", None, "neutral", text="Hello there."), record("t2", "c", None, "angry", text="hello there."),
    ]
    partners = find_partners(records)
    assert partners["a1n"] == ["a1h", "a1h2", "a1s"]
    assert partners["a1h"] == ["a1n", "a1s"]
    assert "a2n" not in partners and "b1n" not in partners and "a1x" not in partners
    assert partners["t1"] == ["t2"]  # no sentence id: the text (case-insensitive) keys the pair


def test_phoneme_alignment_recovers_a_known_piecewise_linear_warp():
    source = phonemes_from(SYMBOLS, DURATIONS)
    partner = phonemes_from(SYMBOLS, [d * s for d, s in zip(DURATIONS, STRETCH)])
    source_frames = round(sum(DURATIONS) * FPS)
    partner_frames = round(sum(d * s for d, s in zip(DURATIONS, STRETCH)) * FPS)

    # The true warp maps every source phoneme boundary to the partner's, linearly between.
    source_edges = np.array([p.start for p in source] + [source[-1].end])
    partner_edges = np.array([p.start for p in partner] + [partner[-1].end])
    expected = np.interp(np.arange(source_frames) / FPS, source_edges, partner_edges) * FPS
    positions = phoneme_frame_positions(source, partner, source_frames, partner_frames, FPS)
    np.testing.assert_allclose(positions, np.clip(expected, 0, partner_frames - 1), atol=1e-9)
    assert np.all(np.diff(positions) > 0)

    # Motion that is a smooth function of "what is being said" is recovered by the warp.
    def motion(partner_seconds: np.ndarray) -> np.ndarray:
        return np.stack([np.sin(2.0 * partner_seconds), np.cos(3.0 * partner_seconds)], axis=1).astype(np.float32)

    partner_motion = motion(np.arange(partner_frames) / FPS)
    source_motion = motion(np.clip(expected, 0, partner_frames - 1) / FPS)  # the partner ends where it ends
    np.testing.assert_allclose(warp_frames(partner_motion, positions), source_motion, atol=2e-3)  # interpolation error


def test_an_inserted_phoneme_does_not_derail_the_rest():
    source = phonemes_from(SYMBOLS, DURATIONS)
    symbols = SYMBOLS[:5] + ["k"] + SYMBOLS[5:]
    durations = [d * s for d, s in zip(DURATIONS, STRETCH)]
    partner = phonemes_from(symbols, durations[:5] + [0.12] + durations[5:])
    xs, ys = phoneme_time_knots(source, partner)
    assert np.all(np.diff(xs) > 0) and np.all(np.diff(ys) > 0)
    # Phonemes away from the insertion keep their exact timing ...
    for s, p in [(0, 0), (1, 1), (3, 3), (6, 7), (8, 9), (9, 10)]:
        assert np.interp(source[s].start, xs, ys) == pytest.approx(partner[p].start)
        assert np.interp(source[s].end, xs, ys) == pytest.approx(partner[p].end)
    # ... and the inserted one is squeezed into the source instant between its neighbours.
    assert np.interp(source[4].end, xs, ys) == pytest.approx((partner[5].start + partner[5].end) / 2)


def smooth_signal(rng: np.random.Generator, steps: int, channels: int) -> np.ndarray:
    noise = rng.normal(size=(steps, channels)).cumsum(axis=0)
    kernel = np.ones(9) / 9
    return np.stack([np.convolve(noise[:, c], kernel, mode="same") for c in range(channels)], axis=1)


def test_dtw_recovers_a_known_warp_of_features():
    rng = np.random.default_rng(0)
    latent = smooth_signal(rng, 1000, 8)  # "what is said" along a normalised time axis
    source_frames, partner_frames = 60, 85
    source_tau = (np.arange(source_frames) / (source_frames - 1)) ** 1.3  # a non-linear warp
    partner_tau = np.arange(partner_frames) / (partner_frames - 1)

    def read(tau):
        return np.stack([np.interp(tau * 999, np.arange(1000), latent[:, c]) for c in range(8)], axis=1)

    positions = dtw_frame_positions(read(source_tau), read(partner_tau))
    truth = source_tau * (partner_frames - 1)
    assert positions.shape == (source_frames,) and np.all(np.diff(positions) >= 0)
    assert np.mean(np.abs(positions - truth)) < 1.0, np.abs(positions - truth)


def tone_sequence(frequencies: list[float], seconds: list[float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pieces = []
    for frequency, duration in zip(frequencies, seconds):
        t = np.arange(int(duration * 16000)) / 16000
        pieces.append(0.3 * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.normal(size=t.shape))
    return np.concatenate(pieces).astype(np.float32)


FREQUENCIES = [300.0, 900.0, 2000.0, 550.0, 1300.0]


def test_dtw_of_audio_features_aligns_segments_said_at_different_speeds():
    source_seconds, partner_seconds = [0.3, 0.2, 0.4, 0.25, 0.3], [0.45, 0.15, 0.3, 0.4, 0.2]
    source_audio, partner_audio = tone_sequence(FREQUENCIES, source_seconds, 0), tone_sequence(FREQUENCIES, partner_seconds, 1)
    source_frames, partner_frames = int(sum(source_seconds) * FPS), int(sum(partner_seconds) * FPS)
    source_features = alignment_features(source_audio, source_frames, FPS)
    assert source_features.shape == (source_frames, 13) and source_features.dtype == np.float32
    positions = dtw_frame_positions(source_features, alignment_features(partner_audio, partner_frames, FPS))
    source_edges = np.concatenate([[0], np.cumsum(source_seconds)]) * FPS
    partner_edges = np.concatenate([[0], np.cumsum(partner_seconds)]) * FPS
    for k in range(len(FREQUENCIES)):
        inside = np.arange(int(np.ceil(source_edges[k] + 1.5)), int(np.floor(source_edges[k + 1] - 1.5)))
        assert np.all((positions[inside] >= partner_edges[k] - 1) & (positions[inside] <= partner_edges[k + 1] + 1)), k


def write_pair_dataset(root: Path, with_phonemes: bool = True) -> Path:
    """Subject s0 says sentence 1 in neutral (0.6 s) and happy (0.9 s, 1.5 times slower),
    and sentence 2 in neutral only; motion and sound are functions of the time within the
    sentence."""
    names = {"s0": ["a-neutral", "a-happy", "b-neutral"]}
    rows = []
    for sequence, sentence, emotion, intensity, stretch in [("a-neutral", 1, "neutral", 1, 1.0),
                                                            ("a-happy", 1, "happy", 2, 1.5),
                                                            ("b-neutral", 2, "neutral", 1, 1.0)]:
        row = {"name": f"s0_{sequence}", "subject": "s0", "sentence": sentence, "emotion": emotion,
               "intensity": intensity, "split": "train"}
        if with_phonemes:
            phonemes = phonemes_from(["_", "a", "b", "_"], [0.1 * stretch, 0.2 * stretch, 0.2 * stretch, 0.1 * stretch])
            row["phonemes"] = [[p.symbol, p.start, p.end] for p in phonemes]
        rows.append(row)
    write_dataset(root, names, seconds=0.6, sample_rate=16000, manifest=rows)
    # Stretch the happy rendition to 0.9 s (audio: tones at the stretched times; motion: the warp).
    template = np.load(root / "vertices_npy" / "s0_a-neutral.npy")[0]
    for name, stretch in [("s0_a-neutral", 1.0), ("s0_a-happy", 1.5), ("s0_b-neutral", 1.0)]:
        frames = round(0.6 * stretch * FPS)
        seconds = np.arange(frames) / FPS / stretch  # time within the sentence
        motion = 0.01 * np.sin(6.0 * seconds)[:, None] * np.ones((1, template.shape[0]))
        np.save(root / "vertices_npy" / f"{name}.npy", (template[None] + motion).astype(np.float32))
        # A frequency sweep over the sentence: every instant sounds different, so DTW has one answer.
        sentence_time = np.arange(round(0.6 * stretch * 16000)) / 16000 / stretch
        frequency = 300.0 + 3000.0 * sentence_time / 0.6
        soundfile.write(root / "wav" / f"{name}.wav", 0.3 * np.sin(2 * np.pi * np.cumsum(frequency) / 16000), 16000)
    return root


@pytest.mark.parametrize("with_phonemes", [True, False])
def test_pair_index_windows_and_batch_fields(tmp_path, with_phonemes):
    dataset = FaceDataset(write_pair_dataset(tmp_path / "data", with_phonemes))
    records = [r for r in dataset.all_records if r.split == "train"]
    index = PairIndex(records, dataset.load)
    assert len(index) == 2 and index.choose("s0_b-neutral", 0) is None
    alignment = index.alignment("s0_a-neutral", "s0_a-happy")
    assert alignment.method == ("phonemes" if with_phonemes else "dtw")
    truth = np.arange(18) * 1.5  # the happy rendition is 1.5 times slower
    tolerance = 1e-6 if with_phonemes else 1.0
    assert np.max(np.abs(alignment.positions - np.clip(truth, 0, 26))) <= tolerance

    window = index.window("s0_a-neutral", 6, 8, draw=0)
    assert window.partner == "s0_a-happy" and window.emotion == "happy" and window.intensity == 2
    assert window.vertices.shape == (8, 42, 3)
    # The partner's motion read at the window's instants is this window's motion.
    own = dataset.load(records[[r.name for r in records].index("s0_a-neutral")]).vertices[6:14]
    np.testing.assert_allclose(window.vertices, own, atol=1e-3)
    assert 0 <= window.positions.min() and window.positions.max() <= window.num_frames - 1
    assert len(window.audio) == round(window.num_frames * 16000 / FPS)

    features = {"s0_a-happy": torch.arange(27, dtype=torch.float32)[:, None].repeat(1, 4)}
    with_features = index.window("s0_a-neutral", 6, 8, features=features)
    torch.testing.assert_close(with_features.features[:, 0], torch.from_numpy(alignment.positions[6:14]).float())

    fields = collate_pair_windows([window, None], 10, ["happy", "neutral"])
    assert fields["pair_vertices"].shape == (2, 10, 42, 3) and fields["pair_mask"].tolist() == [[True] * 8 + [False] * 2, [False] * 10]
    assert fields["pair_emotion_ids"].tolist() == [0, -1] and fields["pair_intensity_ids"].tolist() == [1, -1]
    assert fields["pair_num_frames"][0] == window.num_frames and fields["pair_audio"].shape[0] == 2
    assert "pair_audio_features" not in fields
    assert "pair_audio_features" in collate_pair_windows([with_features], 8, ["happy", "neutral"])
    assert collate_pair_windows([None, None], 10, ["happy"]) == {}
