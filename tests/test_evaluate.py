"""`voxmesh evaluate`: the table with its static and mean baselines, unseen subjects
averaged over the training speakers' styles, masks and units, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_trainer import tiny_config, write_run_dataset
from typer.testing import CliRunner

from voxmesh.cli import app
from voxmesh.data.layout import FaceDataset
from voxmesh.errors import VoxmeshError
from voxmesh.eval.evaluate import (
    evaluate_run,
    generate_sequence,
    mean_training_offset,
    metric_regions,
)
from voxmesh.eval.metrics import articulation_frames, evaluate_sequences
from voxmesh.train.checkpoint import load_checkpoint
from voxmesh.train.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    data = write_run_dataset(tmp_path_factory.mktemp("data"))
    run = tmp_path_factory.mktemp("run")
    train(tiny_config(epochs=3, lr=3.0e-4), data, run, progress=False, overwrite=True)
    return data, run


def test_evaluate_writes_the_table_with_baselines(trained):
    data, run = trained
    result = evaluate_run(run, data, split="test")
    md, js = run / "eval_test.md", run / "eval_test.json"
    assert result["written"] == {"markdown": str(md), "json": str(js)}
    saved = json.loads(js.read_text())
    assert list(saved["rows"]) == ["static", "mean", "model"]
    assert set(saved["rows"]["model"]) == {"LVE", "EVE", "FDD", "FDD_abs", "MVE", "MOD"}
    assert saved["units"]["LVE"] == "m^2" and saved["units"]["MVE"] == "m"
    assert saved["masks"]["LVE"] == {"region": "lips", "vertices": 6}
    assert saved["masks"]["EVE"]["vertices"] == 8 and saved["masks"]["FDD"]["vertices"] == 14
    assert saved["masks"]["MOD"] == {"region": "inner_lip_pairs", "pairs": 3}
    assert saved["sequences"] == 4 and saved["seen_sequences"] == 3 and saved["unseen_sequences"] == 1
    assert saved["unseen_subjects"] == ["u9"] and saved["conditions"] == ["s0", "s1", "s2"]

    text = md.read_text()
    assert "| static (template, unmoving) |" in text and "| mean (template + mean training offset) |" in text
    assert "| faceformer (main, step" in text and "LVE (m²)" in text and "MVE (m)" in text
    assert "LVE over `lips` (6 vertices)" in text and "MOD over `inner_lip_pairs` (3 vertex pairs)" in text
    assert "squared metres" in text and "u9" in text

    # The baselines, recomputed by hand.
    dataset = FaceDataset(data)
    sequences = [dataset.load(r) for r in dataset.all_records if r.split == "test"]
    gts = [s.vertices for s in sequences]
    templates = [s.template for s in sequences]
    regions = metric_regions(dataset)
    static = evaluate_sequences([np.repeat(t[None], len(g), 0) for t, g in zip(templates, gts)], gts, templates, regions)
    assert saved["rows"]["static"] == pytest.approx(static, rel=1e-12)
    train_sequences = [dataset.load(r) for r in dataset.all_records if r.split == "train"]
    offset = np.concatenate([s.vertices - s.template[None] for s in train_sequences]).mean(axis=0)
    assert mean_training_offset(dataset) == pytest.approx(offset, abs=1e-9)
    mean = evaluate_sequences([np.repeat((t + offset)[None], len(g), 0) for t, g in zip(templates, gts)], gts,
                              templates, regions)
    assert saved["rows"]["mean"] == pytest.approx(mean, rel=1e-6)
    # the motion is centred on the template, so the mean face is close to it but not equal
    assert saved["rows"]["mean"]["MVE"] != saved["rows"]["static"]["MVE"]

    # The model: seen subjects in their own style, the unseen one in each training style, averaged.
    per_condition = saved["per_condition"]
    assert list(per_condition) == ["s0", "s1", "s2"]
    for key, value in saved["rows"]["model"].items():
        assert value == pytest.approx(np.mean([per_condition[c][key] for c in per_condition]), rel=1e-12)
    model = load_checkpoint(run / "model")
    speakers = model.speakers
    preds = [generate_sequence(model, s, speakers.index(s.subject) if s.subject in speakers else 1) for s in sequences]
    assert per_condition["s1"] == pytest.approx(evaluate_sequences(preds, gts, templates, regions), rel=1e-6)


def test_seen_only_split_uses_each_subjects_own_style(trained, tmp_path):
    data, run = trained
    result = evaluate_run(run, data, split="val", out=tmp_path / "val.json")
    assert (tmp_path / "val.md").is_file() and (tmp_path / "val.json").is_file()
    assert result["conditions"] == [] and list(result["per_condition"]) == ["own style"]
    assert result["unseen_sequences"] == 0 and "own style" in (tmp_path / "val.md").read_text()


def test_deterministic_model_has_zero_diversity(trained, tmp_path):
    data, run = trained
    result = evaluate_run(run, data, split="test", out=tmp_path / "div", samples=2)
    assert result["rows"]["model"]["diversity"] == 0.0  # FaceFormer gives one motion per input
    with pytest.raises(VoxmeshError, match="samples is 0"):
        evaluate_run(run, data, split="test", out=tmp_path / "bad", samples=0)


def test_evaluate_errors_are_one_sentence(trained, tmp_path):
    data, run = trained
    with pytest.raises(VoxmeshError, match="holds no trained model"):
        evaluate_run(tmp_path, data)
    with pytest.raises(VoxmeshError, match="Unknown split"):
        evaluate_run(run, data, split="nosuch")
    with pytest.raises(VoxmeshError, match="animates at 30 fps.*--fps 30"):
        evaluate_run(run, data, fps=25.0)


def test_evaluate_command_line(trained, tmp_path):
    data, run = trained
    runner = CliRunner()
    out = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(data), "--split", "test", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| static (template, unmoving) |" in result.output and f"wrote {out}.md and {out}.json" in result.output
    assert json.loads(Path(f"{out}.json").read_text())["rows"]["model"]["LVE"] > 0
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--data", str(data)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and result.output.startswith("error: Folder")


def test_evaluation_streams_one_sequence_at_a_time(trained, tmp_path, monkeypatch):
    """Sequences are loaded, scored and dropped one by one (the split is never held), and the
    streamed numbers are those of the metrics over the whole lists, lip closures included."""
    import shutil
    import weakref

    data, run = trained
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    rows = [json.loads(line) for line in (copy / "manifest.jsonl").read_text().splitlines()]
    for row in rows:
        if row["split"] == "test" and row["name"] != "s1_a3":  # one test sequence without closures
            row["phonemes"] = [["m", 0.05, 0.1], ["a", 0.1, 0.2], ["b", 0.25, 0.3], ["p", 0.4, 0.5]]
    (copy / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    live, most = [], [0]  # weak references to every sequence read; the most alive at a read
    load = FaceDataset.load

    def counting_load(self, record):
        most[0] = max(most[0], sum(ref() is not None for ref in live))
        sequence = load(self, record)
        live.append(weakref.ref(sequence))
        return sequence

    monkeypatch.setattr(FaceDataset, "load", counting_load)
    result = evaluate_run(run, copy, split="test", out=tmp_path / "stream")
    monkeypatch.undo()
    assert most[0] <= 1  # at most the previous one, never the split

    dataset = FaceDataset(copy)
    sequences = [dataset.load(r) for r in dataset.all_records if r.split == "test"]
    gts, templates = [s.vertices for s in sequences], [s.template for s in sequences]
    closures = [np.array([2, 8, 14]) if s.name != "s1_a3" else np.array([], dtype=int) for s in sequences]
    regions = metric_regions(dataset)
    # the articulation measures read the same phoneme midpoints (here /a/ as the open vowel)
    frames = [articulation_frames(s.phonemes, s.fps, s.num_frames) for s in sequences]
    model = load_checkpoint(run / "model")
    speakers = model.speakers
    for condition in ("s0", "s2"):
        preds = [generate_sequence(model, s, speakers.index(s.subject if s.subject in speakers else condition))
                 for s in sequences]
        expected = evaluate_sequences(preds, gts, templates, regions, closures, frames, dataset.fps)
        assert list(result["per_condition"][condition]) == list(expected)
        assert result["per_condition"][condition] == pytest.approx(expected, rel=1e-6)
    static = evaluate_sequences([np.repeat(t[None], len(g), 0) for t, g in zip(templates, gts)], gts, templates,
                                regions, closures, frames, dataset.fps)
    assert result["rows"]["static"] == pytest.approx(static, rel=1e-12)
    assert result["masks"]["lip_closure"]["closures"] == 9 and result["frames"] == sum(len(g) for g in gts)
    assert "9 midpoints of /p/, /b/, /m/" in (tmp_path / "stream.md").read_text()
