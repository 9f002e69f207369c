import json

import numpy as np
import pytest
import soundfile
import torch
from miniature import write_dataset

from voxmesh.data import FaceDataset, canonical_split, collate_sequences, open_dataset
from voxmesh.data.presets import BIWI_TRAIN, BIWI_UNSEEN, VOCASET_TEST, VOCASET_TRAIN, VOCASET_VAL, split_by_subject
from voxmesh.errors import VoxmeshError


def test_vocaset_preset_splits_and_halves_frame_rate(tmp_path):
    subjects = {s: [f"sentence{n:02d}" for n in (1, 20, 21, 40)] for s in VOCASET_TRAIN[:2] + VOCASET_VAL[:1] + VOCASET_TEST[:1]}
    write_dataset(tmp_path, subjects, disk_fps=60.0, seconds=0.5)
    ds = open_dataset(tmp_path, "vocaset")
    train = ds.split("train")
    assert len(train) == 8  # train subjects use sentences 1-40
    assert {r.sentence for r in ds.split("val").records} == {21, 40}
    assert {r.subject for r in ds.split("test").records} == {VOCASET_TEST[0]}
    assert len(ds.split("test")) == 2
    # subjects with underscores are split off by the longest known prefix
    assert ds.records[0].subject in VOCASET_TRAIN + VOCASET_VAL + VOCASET_TEST
    seq = train[0]
    assert seq.fps == 30.0
    assert seq.vertices.shape == (15, 42, 3)  # 30 frames at 60 fps -> 15 used at 30
    assert seq.audio.dtype == np.float32 and len(seq.audio) == 8000  # resampled to 16 kHz
    on_disk = np.load(train.records[0].vertices_path).reshape(30, 42, 3)
    np.testing.assert_array_equal(seq.vertices, on_disk[::2])
    assert ds.train_subjects == sorted(VOCASET_TRAIN[:2])


def test_biwi_preset_test_a_and_test_b(tmp_path):
    subjects = {BIWI_TRAIN[0]: ["01", "32", "33", "36", "37", "40"], BIWI_UNSEEN[0]: ["e05", "37", "40"]}
    write_dataset(tmp_path, subjects, disk_fps=25.0)
    ds = open_dataset(tmp_path, "biwi")
    split_of = {r.name: r.split for r in ds.records}
    assert split_of["F2_01"] == split_of["F2_32"] == "train"
    assert split_of["F2_33"] == split_of["F2_36"] == "val"
    assert split_of["F2_37"] == split_of["F2_40"] == "test"
    assert split_of["F1_37"] == split_of["F1_40"] == "test_unseen"
    assert split_of["F1_e05"] is None  # unseen subjects are only tested on 37-40
    assert len(ds.split("Test-B")) == 2 and len(ds.split("test_a")) == 2
    assert ds[0].fps == 25.0


def test_ravdess_names_give_emotion_intensity_and_actor_split(tmp_path):
    codes = ["03-01-01-01-01-01-01", "03-01-05-02-02-01-20", "03-01-03-01-01-02-21", "03-01-08-02-02-02-24"]
    write_dataset(tmp_path, {c: [""] for c in codes})
    ds = open_dataset(tmp_path, "3d-ravdess")
    by_name = {r.name: r for r in ds.records}
    angry = by_name["03-01-05-02-02-01-20"]
    assert (angry.emotion, angry.intensity, angry.sentence, angry.split) == ("angry", 2, 2, "train")
    assert by_name["03-01-03-01-01-02-21"].split == "val"
    assert by_name["03-01-08-02-02-02-24"].emotion == "surprised"
    assert by_name["03-01-08-02-02-02-24"].split == "test"
    assert by_name["03-01-01-01-01-01-01"].emotion == "neutral"


def test_ravdess_rejects_other_names(tmp_path):
    write_dataset(tmp_path, {"sub": ["x"]})
    with pytest.raises(VoxmeshError, match="not a RAVDESS name"):
        open_dataset(tmp_path, "ravdess3d")


def test_generic_split_from_manifest_with_text_and_phonemes(tmp_path):
    manifest = [
        {"name": "a_s1", "subject": "a", "split": "train", "emotion": "happy", "intensity": 2,
         "text": "hello", "phonemes": [["h", 0.0, 0.1], ["@", 0.1, 0.5]]},
        {"name": "b_s1", "subject": "b", "split": "Test-B"},
    ]
    write_dataset(tmp_path, {"a": ["s1"], "b": ["s1"]}, manifest=manifest)
    ds = open_dataset(tmp_path)
    assert [len(ds.split(s)) for s in ("train", "val", "test", "test_unseen")] == [1, 0, 0, 1]
    seq = ds.split("train")[0]
    assert (seq.emotion, seq.intensity, seq.text) == ("happy", 2, "hello")
    assert seq.phonemes[1].symbol == "@" and seq.phonemes[1].end == 0.5


def test_generic_split_by_subject_is_deterministic():
    subjects = [f"s{i}" for i in range(10)]
    first = split_by_subject(subjects)
    assert first == split_by_subject(list(reversed(subjects)))
    assert sorted(first.values()).count("test") == 1 and sorted(first.values()).count("val") == 1
    assert set(split_by_subject(["a", "b"]).values()) == {"train"}


def test_generic_without_manifest_splits_by_subject(tmp_path):
    write_dataset(tmp_path, {f"s{i}": ["01"] for i in range(5)})
    ds = open_dataset(tmp_path, fps=30)
    assert sum(len(ds.split(s)) for s in ("train", "val", "test")) == 5
    assert len(ds.split("test")) == 1


def test_topology_and_regions(tmp_path):
    write_dataset(tmp_path, {"a": ["1"]})
    topo = open_dataset(tmp_path).topology()
    assert topo.faces.shape == (80, 3)
    assert topo.region("lips").tolist() == list(range(6))
    assert topo.vertex_pairs["inner_lip_pairs"].shape == (3, 2)
    with pytest.raises(VoxmeshError, match="no region 'teeth'"):
        topo.region("teeth")


def test_batching_pads_and_masks(tmp_path):
    write_dataset(tmp_path / "a", {"a": ["1"]}, seconds=0.5)
    write_dataset(tmp_path / "b", {"b": ["1"]}, seconds=1.0)
    seqs = [open_dataset(tmp_path / "a")[0], open_dataset(tmp_path / "b")[0]]
    batch = collate_sequences(seqs)
    assert batch.vertices.shape == (2, 30, 42, 3)
    assert batch.frame_mask.sum(1).tolist() == [15, 30]
    assert batch.audio.shape == (2, 16000) and batch.audio_mask.sum(1).tolist() == [8000, 16000]
    assert torch.all(batch.vertices[0, 15:] == 0)
    torch.testing.assert_close(batch.vertices[1], torch.from_numpy(seqs[1].vertices))
    assert batch.subjects == ["a", "b"] and batch.template.shape == (2, 42, 3)
    loader = torch.utils.data.DataLoader(open_dataset(tmp_path / "b"), batch_size=2, collate_fn=collate_sequences)
    assert next(iter(loader)).vertices.shape[0] == 1


def test_bad_inputs_are_one_sentence(tmp_path):
    with pytest.raises(VoxmeshError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    write_dataset(tmp_path, {"a": ["1"]})
    np.save(tmp_path / "vertices_npy" / "a_1.npy", np.zeros((15, 30), np.float32))
    with pytest.raises(VoxmeshError, match="template has 42 vertices"):
        open_dataset(tmp_path)[0]
    with pytest.raises(VoxmeshError, match="Unknown split"):
        canonical_split("holdout")
    with pytest.raises(VoxmeshError, match="Unknown dataset preset"):
        FaceDataset(tmp_path, preset="nope")


def test_any_channel_count_and_rate_is_loaded_mono_16k(tmp_path):
    write_dataset(tmp_path, {"a": ["1"]})
    stereo = np.stack([np.ones(44100) * 0.2, np.ones(44100) * 0.4], axis=1)
    soundfile.write(tmp_path / "wav" / "a_1.wav", stereo, 44100)
    audio = open_dataset(tmp_path)[0].audio
    assert len(audio) == 16000
    assert abs(float(np.median(audio)) - 0.3) < 1e-3


def test_manifest_errors_name_the_line(tmp_path):
    write_dataset(tmp_path, {"a": ["1"]})
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"name": "a_1"}) + "\n{broken\n")
    with pytest.raises(VoxmeshError, match="Line 2 of .*manifest.jsonl"):
        open_dataset(tmp_path)
