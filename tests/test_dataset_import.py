"""Real datasets as they are downloaded, on generated stand-ins: VOCASET's four files
(a memory-mapped data_verts.npy, Python 2 pickles, real subject and sentence names,
60 fps, 5,023 vertices) imported with `voxmesh data import`, checked, trained on and
evaluated on the papers' split; an interrupted import that continues; bad downloads
refused in one sentence with nothing left behind; BIWI in CodeTalker's layout scored
with its regions/lve.txt and fdd.txt on Test-A and Test-B; 3D-RAVDESS names."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
from miniature import write_dataset
from test_bad_inputs import cli, error_line, listing, nothing_left
from test_reliability import python2_pickle
from test_trainer import tiny_config

from voxmesh.data import FaceDataset, check_dataset, get_preset
from voxmesh.eval.evaluate import evaluate_run
from voxmesh.eval.metrics import lip_vertex_error
from voxmesh.mesh import load_templates
from voxmesh.train.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_run_config(preset: str):
    """test_trainer's tiny FaceFormer for two steps, on a preset's splits."""
    config = tiny_config(max_steps=2, epochs=None)
    return replace(config, data=replace(config.data, preset=preset))

NUM_VERTICES = 5023
FPS = 60
RATE = 22000
TRAIN, VAL, TEST = "FaceTalk_170725_00137_TA", "FaceTalk_170811_03275_TA", "FaceTalk_170809_00138_TA"
# A train subject on sentences 1-2, a val subject on 21, a test subject on 1 (outside the
# test split, which is sentences 21-40) and 21-22.
SEQUENCES = [(TRAIN, "sentence01"), (TRAIN, "sentence02"), (VAL, "sentence21"),
             (TEST, "sentence01"), (TEST, "sentence21"), (TEST, "sentence22")]
LIPS = np.arange(0, 40)
EYES, FOREHEAD = np.arange(100, 130), np.arange(200, 240)


def write_raw_vocaset(raw: Path, frames: int = 24, seed: int = 0, audio_frames: dict[str, int] | None = None) -> dict:
    """VOCASET's download as it ships: data_verts.npy [N, 5023, 3] float32 written through
    a memmap, and protocol 2 pickles as Python 2 wrote them (names as byte strings). Rows
    of the last sequence are stored out of order (the importer gathers them by frame
    index). Returns the sequences' vertices and audio for comparison."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    subjects = sorted({s for s, _ in SEQUENCES})
    faces = {s: (rng.normal(0, 0.05, (NUM_VERTICES, 3))).astype(np.float64) for s in subjects}
    verts = np.lib.format.open_memmap(raw / "data_verts.npy", mode="w+", dtype=np.float32,
                                      shape=(frames * len(SEQUENCES), NUM_VERTICES, 3))
    index, audio, truth = {}, {}, {}
    for number, (subject, sentence) in enumerate(SEQUENCES):
        t = np.arange(frames) / FPS
        # The lips move about a centimetre with the sound; the rest of the face a little.
        motion = np.zeros((frames, NUM_VERTICES, 3), np.float32)
        motion[:, LIPS, 1] = 0.01 * np.sin(2 * np.pi * (2 + number) * t)[:, None]
        motion[:, :, 2] += 0.001 * np.sin(2 * np.pi * t)[:, None]
        sequence = (faces[subject][None] + motion).astype(np.float32)
        rows = np.arange(number * frames, (number + 1) * frames)
        if number == len(SEQUENCES) - 1:
            rows = rows[::-1]
        verts[rows] = sequence
        # Rows as Python ints, and for odd sequences as numpy integers (both occur in pickles of the field).
        index.setdefault(subject.encode(), {})[sentence.encode()] = {
            f: (np.int64(r) if number % 2 else int(r)) for f, r in enumerate(rows)}
        samples = (audio_frames or {}).get(f"{subject}_{sentence}", frames) * RATE // FPS
        wave = (8000 * np.sin(2 * np.pi * (150 + 30 * number) * np.arange(samples) / RATE)).astype(np.int16)
        audio.setdefault(subject.encode(), {})[sentence.encode()] = {b"audio": wave, b"sample_rate": RATE}
        truth[f"{subject}_{sentence}"] = (sequence.reshape(frames, -1), wave)
    verts.flush()
    del verts
    (raw / "subj_seq_to_idx.pkl").write_bytes(python2_pickle(index))
    (raw / "raw_audio_fixed.pkl").write_bytes(python2_pickle(audio))
    (raw / "templates.pkl").write_bytes(python2_pickle({s.encode(): f for s, f in faces.items()}))
    masks = {b"lips": LIPS, b"eye_region": EYES, b"forehead": FOREHEAD, b"nose": np.arange(300, 320)}
    (raw / "FLAME_masks.pkl").write_bytes(python2_pickle(masks))
    return truth


@pytest.fixture(scope="module")
def raw_vocaset(tmp_path_factory) -> tuple[Path, dict]:
    raw = tmp_path_factory.mktemp("vocaset_download")
    return raw, write_raw_vocaset(raw)


# ---- VOCASET ---------------------------------------------------------------------------------

def test_import_vocaset_then_check_train_and_evaluate_on_the_papers_split(raw_vocaset, tmp_path):
    raw, truth = raw_vocaset
    out = tmp_path / "vocaset"
    result = cli("data", "import", "vocaset", raw, out, "--masks", raw / "FLAME_masks.pkl")
    assert result.exit_code == 0, result.output
    assert "imported  6 sequences" in result.output and "subjects  3:" in result.output
    assert f"{TEST} (3)" in result.output and "sentences 4 distinct; 144 frames at 60 fps" in result.output
    assert "mismatch" not in result.output and "skipped" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocaset"]  # no OUT.partial left
    assert sorted(p.name for p in out.iterdir()) == ["import.json", "manifest.jsonl", "regions.json", "templates.pkl",
                                                     "vertices_npy", "wav"]
    for name, (vertices, wave) in truth.items():  # bit for bit, rows gathered in frame order
        np.testing.assert_array_equal(np.load(out / "vertices_npy" / f"{name}.npy"), vertices)
        samples, rate = soundfile.read(out / "wav" / f"{name}.wav", dtype="int16")
        assert rate == RATE
        np.testing.assert_array_equal(samples, wave)
    assert sorted(load_templates(out / "templates.pkl")) == sorted({s for s, _ in SEQUENCES})
    regions = json.loads((out / "regions.json").read_text())
    assert regions["lips"] == LIPS.tolist() and regions["upper_face"] == np.union1d(EYES, FOREHEAD).tolist()
    assert json.loads((out / "import.json").read_text())["frames"] == 144

    check = cli("data", "check", out, "--preset", "vocaset")
    assert check.exit_code == 0, check.output
    dataset = FaceDataset(out, preset="vocaset")
    splits = {r.name: r.split for r in dataset.all_records}
    assert splits == {f"{TRAIN}_sentence01": "train", f"{TRAIN}_sentence02": "train", f"{VAL}_sentence21": "val",
                      f"{TEST}_sentence01": None, f"{TEST}_sentence21": "test", f"{TEST}_sentence22": "test"}
    assert dataset[0].vertices.shape == (12, NUM_VERTICES, 3)  # 60 fps on disk, 30 in use

    run = tmp_path / "run"
    train(tiny_run_config("vocaset"), out, run, progress=False)
    report = evaluate_run(run, out, split="test", progress=False)
    assert report["preset"] == "vocaset" and report["sequences"] == 2 and report["frames"] == 24
    assert report["unseen_subjects"] == [TEST] and report["conditions"] == [TRAIN]
    assert report["masks"]["LVE"] == {"region": "lips", "vertices": len(LIPS)}
    assert report["masks"]["FDD"]["vertices"] == len(EYES) + len(FOREHEAD)
    assert np.isfinite(report["rows"]["model"]["LVE"]) and report["rows"]["static"]["LVE"] > 0


def test_an_interrupted_import_continues_where_it_stopped(raw_vocaset, tmp_path, monkeypatch):
    import voxmesh.data.importers as importers
    from voxmesh.data.importers import import_vocaset

    raw, truth = raw_vocaset
    out = tmp_path / "vocaset"
    real, calls = importers._write_audio, {"n": 0}

    def interrupted_at_the_fourth(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # Ctrl-C (SIGTERM unwinds the same way)
        real(*args)

    monkeypatch.setattr(importers, "_write_audio", interrupted_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        import_vocaset(raw, out)
    monkeypatch.setattr(importers, "_write_audio", real)
    staging = tmp_path / "vocaset.partial"
    assert not out.exists() and staging.is_dir()
    # Three whole sequences; the fourth's vertices (written before its audio) and no temporary.
    assert len(list((staging / "wav").iterdir())) == 3 and len(list((staging / "vertices_npy").iterdir())) == 4

    report = import_vocaset(raw, out)
    assert (report.kept, report.written, report.restarted) == (3, 3, False)
    assert not staging.exists() and sorted(p.name for p in (out / "wav").iterdir()) == sorted(f"{n}.wav" for n in truth)
    for name, (vertices, _) in truth.items():
        np.testing.assert_array_equal(np.load(out / "vertices_npy" / f"{name}.npy"), vertices)
    assert check_dataset(out, preset="vocaset").ok

    # A staging folder made from other downloaded files is not continued.
    staging.mkdir()
    (staging / ".import-source.json").write_text(json.dumps({"format": "vocaset", "files": {}}))
    (staging / "wav").mkdir()
    (staging / "wav" / f"{TRAIN}_sentence01.wav").write_bytes(b"from another download")
    report = import_vocaset(raw, out, overwrite=True)
    assert (report.kept, report.written, report.restarted) == (0, 6, True)
    assert soundfile.info(str(out / "wav" / f"{TRAIN}_sentence01.wav")).frames == len(truth[f"{TRAIN}_sentence01"][1])


def test_audio_that_disagrees_with_its_frames_is_reported_not_dropped(tmp_path):
    from voxmesh.data.importers import import_vocaset

    late = f"{TRAIN}_sentence02"
    raw = tmp_path / "download"
    write_raw_vocaset(raw, audio_frames={late: 30})  # 0.1 s (6 frames) longer than its 24 frames
    report = import_vocaset(raw, tmp_path / "vocaset")
    assert report.sequences == 6 and [m["name"] for m in report.mismatched] == [late]
    assert report.mismatched[0] == {"name": late, "frames": 24, "audio_seconds": 0.5, "expected_frames": 30.0}
    assert any(line.startswith(f"mismatch  {late}: 24 frames") for line in report.summary_lines())
    assert (tmp_path / "vocaset" / "wav" / f"{late}.wav").is_file()
    problems = check_dataset(tmp_path / "vocaset", preset="vocaset").problems
    assert len(problems) == 1 and late in problems[0]  # data check names the same sequence


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran",))


def _break(kind: str, raw: Path) -> tuple[Path, str]:
    """Spoil a copy of the download; return the file the error must name and a word of it."""
    if kind == "missing data_verts.npy":
        (raw / "data_verts.npy").unlink()
        return raw / "data_verts.npy", "missing"
    if kind == "code in a pickle":
        (raw / "raw_audio_fixed.pkl").write_bytes(pickle.dumps({"x": RunsCode()}, protocol=2))
        return raw / "raw_audio_fixed.pkl", "asks to run"
    if kind == "rows out of range":
        index = {TRAIN.encode(): {b"sentence01": {0: np.int64(0), 1: np.int64(10_000)}}}
        (raw / "subj_seq_to_idx.pkl").write_bytes(python2_pickle(index))
        return raw / "subj_seq_to_idx.pkl", "row 10000"
    if kind == "a subject without template":
        (raw / "templates.pkl").write_bytes(python2_pickle({TRAIN.encode(): np.zeros((NUM_VERTICES, 3))}))
        return raw / "templates.pkl", TEST
    if kind == "truncated data_verts.npy":
        data = (raw / "data_verts.npy").read_bytes()
        (raw / "data_verts.npy").write_bytes(data[: len(data) // 2])
        return raw / "data_verts.npy", "truncated"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing data_verts.npy", "code in a pickle", "rows out of range",
                                  "a subject without template", "truncated data_verts.npy"])
def test_a_bad_download_is_refused_in_one_sentence_and_leaves_nothing(raw_vocaset, tmp_path, kind, monkeypatch):
    import shutil

    raw = tmp_path / "download"
    shutil.copytree(raw_vocaset[0], raw)
    named, word = _break(kind, raw)
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    error_line(cli("data", "import", "vocaset", raw, tmp_path / "vocaset"), named, word)
    nothing_left(tmp_path, before)
    assert not (tmp_path / "ran").exists()


def test_import_refuses_an_existing_output_an_unknown_kind_and_a_missing_masks_file(raw_vocaset, tmp_path):
    raw = raw_vocaset[0]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    before = listing(tmp_path)
    error_line(cli("data", "import", "vocaset", raw, taken), taken, "--overwrite")
    error_line(cli("data", "import", "biwi", raw, tmp_path / "out"), "biwi", "data check")
    error_line(cli("data", "import", "vocaset", raw, tmp_path / "out", "--masks", tmp_path / "FLAME_masks.pkl"),
               "FLAME_masks.pkl")
    nothing_left(tmp_path, before)


# ---- BIWI in CodeTalker's layout -------------------------------------------------------------

def test_biwi_in_codetalkers_layout_is_scored_with_its_lve_and_fdd_masks_on_test_a_and_b(tmp_path):
    root = write_dataset(tmp_path / "BIWI", {"F2": ["e01", "e02", "e33", "e37"], "M3": ["e01", "e37"], "F1": ["e37"]},
                         disk_fps=25.0, seconds=0.6, sample_rate=16000)
    # CodeTalker's files: lve.txt comma-separated on one line, fdd.txt one index a line.
    lve, fdd = np.arange(10, 22), np.arange(20, 41)
    (root / "regions").mkdir()
    (root / "regions" / "lve.txt").write_text(", ".join(map(str, lve)))
    (root / "regions" / "fdd.txt").write_text("\n".join(map(str, fdd)) + "\n")
    dataset = FaceDataset(root, preset="biwi")
    assert dataset.regions["lips"].tolist() == lve.tolist() and dataset.regions["upper_face"].tolist() == fdd.tolist()
    assert dataset.region_sources["lips"] == "regions/lve.txt" and dataset.region_sources["eyes"] == "regions.json"
    splits = {r.name: r.split for r in dataset.all_records}
    assert splits["F2_e33"] == "val" and splits["F2_e37"] == "test" and splits["F1_e37"] == "test_unseen"
    assert cli("data", "check", root, "--preset", "biwi").exit_code == 0

    run = tmp_path / "run"
    train(tiny_run_config("biwi"), root, run, progress=False)
    for split, sequences in (("test", 2), ("test_unseen", 1)):
        report = evaluate_run(run, root, split=split, progress=False)
        assert report["sequences"] == sequences
        assert report["masks"]["LVE"] == {"region": "lips", "vertices": len(lve), "source": "regions/lve.txt"}
        assert report["masks"]["FDD"] == {"region": "upper_face", "vertices": len(fdd), "source": "regions/fdd.txt"}
        text = Path(report["written"]["markdown"]).read_text()
        assert "LVE over `lips` from `regions/lve.txt` (12 vertices)" in text
        assert "FDD over `upper_face` from `regions/fdd.txt` (21 vertices)" in text
        # The static baseline's LVE is the lve.txt vertices' error, computed here directly.
        records = [r for r in dataset.all_records if r.split == split]
        gts = [dataset.load(r).vertices for r in records]
        statics = [np.broadcast_to(dataset.template_of(r.subject), g.shape) for r, g in zip(records, gts)]
        assert report["rows"]["static"]["LVE"] == pytest.approx(lip_vertex_error(statics, gts, lve), rel=1e-6)
    assert report["unseen_subjects"] == ["F1"] and report["conditions"] == ["F2", "M3"]

    (root / "regions" / "lve.txt").write_text("10\n99999\n")
    problems = check_dataset(root, preset="biwi").problems
    assert len(problems) == 1 and "regions/lve.txt" in problems[0] and "99999" in problems[0]


# ---- 3D-RAVDESS names ------------------------------------------------------------------------

@pytest.mark.parametrize("subject", ["Actor_12", "actor12", "12"])
def test_ravdess_names_without_a_subject_prefix_find_the_actors_template(tmp_path, subject):
    """3D-RAVDESS as people hold it: RAVDESS's own names, templates keyed by actor, and
    FLAME's FLAME_masks.pkl in place of regions.json."""
    names = ["03-01-05-01-02-01-12", "01-01-03-02-01-02-12"]
    root = write_dataset(tmp_path / "ravdess", {subject: names}, seconds=0.4, sample_rate=16000)
    for folder, suffix in (("wav", ".wav"), ("vertices_npy", ".npy")):  # as RAVDESS names them: no prefix
        for name in names:
            (root / folder / f"{subject}_{name}{suffix}").rename(root / folder / f"{name}{suffix}")
    (root / "regions.json").unlink()
    masks = {b"lips": np.arange(0, 6), b"eye_region": np.arange(6, 10), b"forehead": np.arange(10, 14)}
    (root / "FLAME_masks.pkl").write_bytes(python2_pickle(masks))
    dataset = FaceDataset(root, preset="ravdess3d")
    assert dataset.regions["lips"].tolist() == list(range(6)) and dataset.regions["upper_face"].tolist() == list(range(6, 14))
    assert dataset.region_sources["lips"] == "FLAME_masks.pkl"
    records = {r.name: r for r in dataset.all_records}
    assert {r.subject for r in records.values()} == {subject}
    angry, happy = records["03-01-05-01-02-01-12"], records["01-01-03-02-01-02-12"]
    assert (angry.emotion, angry.intensity, angry.sentence, angry.split) == ("angry", 1, 2, "train")
    assert (happy.emotion, happy.intensity, happy.sentence) == ("happy", 2, 1)
    assert check_dataset(root, preset="ravdess3d").ok
    parse = get_preset("ravdess3d").parse
    assert parse("Actor_23_03-01-08-02-02-02-23", []).subject == "Actor_23"
    assert get_preset("ravdess3d").split_rule(parse("03-01-08-02-02-02-23", [subject])) == "test"
