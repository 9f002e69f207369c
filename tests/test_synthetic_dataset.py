import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from voxmesh.cli import app
from voxmesh.data import check_dataset, open_dataset
from voxmesh.data.synthetic.dataset import SIZES, synthesize_dataset
from voxmesh.data.synthetic.phonemes import SILENCE, viseme_of

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "tiny"
    synthesize_dataset(root, preset="tiny", seed=0, progress=False)
    return root


def digest(root):
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_same_seed_same_bytes_and_another_seed_differs(tiny, tmp_path):
    again = tmp_path / "again"
    synthesize_dataset(again, preset="tiny", seed=0, progress=False, workers=1)
    assert digest(again) == digest(tiny)
    other = tmp_path / "other"
    synthesize_dataset(other, preset="tiny", seed=1, progress=False, workers=1)
    assert digest(other)["templates.pkl"] != digest(tiny)["templates.pkl"]


def test_layout_passes_data_check_and_has_every_split(tiny):
    report = check_dataset(tiny)
    assert report.ok, report.problems
    size = SIZES["tiny"]
    seen_clips = size.seen_subjects * (size.train_sentences + size.val_sentences + size.test_sentences)
    assert report.sequences == (seen_clips + size.unseen_subjects * size.unseen_sentences) * (1 + size.extra_emotions)
    dataset = open_dataset(tiny)
    assert {s: len(dataset.split(s)) > 0 for s in ("train", "val", "test", "test_unseen")} == dict.fromkeys(
        ("train", "val", "test", "test_unseen"), True)
    unseen = {r.subject for r in dataset.split("test_unseen").records}
    assert unseen.isdisjoint(dataset.train_subjects)
    train_sentences = {r.sentence for r in dataset.split("train").records}
    assert train_sentences.isdisjoint({r.sentence for r in dataset.split("test").records})


def test_frames_agree_with_audio_and_regions_are_valid(tiny):
    dataset = open_dataset(tiny)
    topology = dataset.topology()
    assert 3000 <= topology.num_vertices <= 6000
    for name in ("lips", "eyes", "forehead", "upper_face", "jaw"):
        idx = topology.region(name)
        assert idx.size > 0 and idx.min() >= 0 and idx.max() < topology.num_vertices
    assert topology.vertex_pairs["inner_lip_pairs"].shape[1] == 2
    for sequence in dataset:
        assert sequence.num_frames == round(sequence.duration * 30)
        assert np.isfinite(sequence.vertices).all()


def mouth_opening(vertices, pairs):
    return np.linalg.norm(vertices[:, pairs[:, 0]] - vertices[:, pairs[:, 1]], axis=-1).mean(axis=1)


def test_lips_close_on_bilabials_and_open_on_open_vowels(tiny):
    dataset = open_dataset(tiny)
    pairs = dataset.topology().vertex_pairs["inner_lip_pairs"]
    bilabial_frames, open_vowel_peaks = 0, []
    for sequence in dataset:
        opening = mouth_opening(sequence.vertices, pairs)
        times = np.arange(sequence.num_frames) / sequence.fps
        for p in sequence.phonemes:
            if p.symbol == SILENCE:
                continue
            viseme = viseme_of(p.symbol).viseme
            inside = np.nonzero((times >= p.start) & (times <= p.end))[0]
            if viseme == "bilabial" and inside.size:
                assert opening[inside].max() < 0.001, (sequence.name, p)
                bilabial_frames += inside.size
            if viseme == "open_vowel" and inside.size:
                open_vowel_peaks.append(opening[inside].max())
        # at rest in the leading silence: lips together or barely parted
        assert opening[0] < 0.002 and opening[0] < 0.2 * opening.max()
    assert bilabial_frames > 20
    assert len(open_vowel_peaks) > 5
    assert np.median(open_vowel_peaks) > 0.006 and min(open_vowel_peaks) > 0.002


def test_same_sentence_in_several_emotions_with_phoneme_timings(tiny):
    rows = [json.loads(line) for line in (tiny / "manifest.jsonl").read_text().splitlines()]
    by_key = {}
    for row in rows:
        by_key.setdefault((row["subject"], row["sentence"]), []).append(row)
    pairs = [group for group in by_key.values() if len(group) > 1]
    assert pairs and all(len({r["emotion"] for r in g}) == len(g) for g in pairs)
    assert all(len({r["text"] for r in g}) == 1 for g in pairs)
    for group in pairs:
        a, b = group[0]["phonemes"], group[1]["phonemes"]
        assert [p[0] for p in a] == [p[0] for p in b]  # same phonemes: renditions align exactly
    assert {r["emotion"] for r in rows} - {"neutral"}


def test_speakers_differ_in_face_and_voice(tiny):
    dataset = open_dataset(tiny)
    templates = list(dataset.templates.values())
    assert min(np.abs(a - b).max() for i, a in enumerate(templates) for b in templates[i + 1:]) > 0.002
    meta = json.loads((tiny / "subjects.json").read_text())
    assert len({json.dumps(s["voice"], sort_keys=True) for s in meta["subjects"]}) == len(meta["subjects"])


def test_cli_contact_sheet_and_refusal_to_overwrite(tiny, tmp_path):
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(app, ["synth", "--contact-sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(sheet))
    assert image.shape[0] > 800 and image.shape[1] > 1500
    result = runner.invoke(app, ["synth", str(tiny)])
    assert result.exit_code == 2 and "already exists" in result.output and "--overwrite" in result.output
    result = runner.invoke(app, ["synth", str(tmp_path / "x"), "--preset", "huge"])
    assert result.exit_code == 2 and "Unknown synth preset" in result.output
    assert not (tmp_path / "x").exists()
