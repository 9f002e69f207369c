"""`voxmesh benchmark --quick`: the whole report on the tiny synthetic dataset (every
method trained for 3 steps), checked for completeness and against `voxmesh evaluate` on
the same checkpoints; and the report's small helpers."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from voxmesh.benchmark import (
    METHODS,
    SEEDS,
    TITLES,
    cell_text,
    ensure_trained,
    growth_exponent,
    interval,
    run_benchmark,
    strip_frames,
)
from voxmesh.cli import app

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick(tmp_path_factory, torch_one_thread):
    root = tmp_path_factory.mktemp("benchmark")
    started = time.perf_counter()
    result = run_benchmark(root / "data", root / "runs", out=root / "docs" / "benchmarks.md", quick=True,
                           progress=False)
    return root, result, time.perf_counter() - started


def table_rows(markdown: str) -> list[list[str]]:
    """Body rows of every Markdown table (header and separator lines left out), as cells."""
    rows, lines = [], markdown.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        header = i + 1 < len(lines) and set(lines[i + 1]) <= set("|-: ") and "-" in lines[i + 1]
        if not header:
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_quick_report_is_complete(quick):
    root, result, seconds = quick
    markdown = (root / "docs" / "benchmarks.md").read_text()
    saved = json.loads((root / "docs" / "benchmarks.json").read_text())
    assert saved["quick"] and saved["methods"] == list(METHODS) and result["written"]["markdown"].endswith(".md")
    # both test splits of the tiny dataset, every method in each, beside the two floors
    assert list(saved["splits"]) == ["test", "test_unseen"]
    for split in ("test", "test_unseen"):
        section = markdown.split(f"## Quality on `{split}`")[1].split("\n## ")[0]
        labels = [row[0] for row in table_rows(section)]
        assert labels[:3] == ["static (template, unmoving)", "mean (template + mean training offset)",
                              "ground truth (what to match)"]
        assert [label.split(" (")[0] for label in labels[3:]] == [TITLES[m] for m in METHODS]
        assert set(saved["splits"][split]["rows"]) == set(METHODS)
    cost = markdown.split("## Cost")[1].split("\n### ")[0]
    assert [row[0] for row in table_rows(cost)] == [TITLES[m] for m in METHODS]
    # no empty cell anywhere; every "n/a" says why
    for row in table_rows(markdown):
        for cell in row:
            assert cell, row
            if cell.startswith("n/a"):
                assert "(" in cell and cell.endswith(")"), row
    # the columns the issue asks for
    for column in ("LVE (m²)", "EVE (m²)", "FDD (m²)", "FDD abs (m²)", "MVE (m)", "MOD (m)", "lip closure (%)",
                   "diversity (m)", "emotion accuracy (%)", "training time", "parameters (speech encoder)",
                   "encoder RTF", "model RTF", "peak memory of generation"):
        assert column in markdown, column
    emoface = saved["splits"]["test"]["emotion"]["emoface"]
    assert 0.0 <= emoface["accuracy"] <= 1.0 and emoface["chance"] == pytest.approx(1 / 8)
    for method in METHODS:
        cost_row = saved["cost"][method]
        assert cost_row["train_seconds_total"] > 0 and cost_row["parameters"]["total"] > 0
        assert cost_row["model_rtf"] > 0 and cost_row["encoder_rtf"] > 0 and cost_row["memory"]["peak_rss_mb"] > 0
        assert [r["audio_seconds"] for r in saved["speed"][method]] == saved["protocol"]["audio_seconds"]
    assert [r["steps"] for r in saved["ddim"]] == [10, 25, 50]
    # plots, and the report links them
    for name in ("quality", "ddim_steps", "speed", "strip"):
        path = root / "docs" / "benchmarks" / f"{name}.png"
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000, name
        assert f"./benchmarks/{name}.png" in markdown
    assert len(saved["strip"]["frames"]) >= 2 and saved["strip"]["rows"][0] == "ground truth"
    # protocol and published numbers
    for text in ("## Protocol", "seeds 0, 1, 2", "Masks: LVE over `lips`", "lip_closure over `inner_lip_pairs`",
                 "CPUs, torch", "load average", "## Published numbers", "4.7914 x10^-4 mm", "2.8669 x10^-5 mm",
                 "voxmesh train configs/gldi_vocaset.yaml", "(estimate)"):
        assert text in markdown, text
    print(f"quick benchmark: {seconds:.1f} s")


def test_report_numbers_equal_evaluate_run(quick, tmp_path):
    from voxmesh.eval.evaluate import evaluate_run

    root, result, _ = quick
    saved = json.loads((root / "docs" / "benchmarks.json").read_text())
    markdown = (root / "docs" / "benchmarks.md").read_text()
    data, runs = root / "data", root / "runs"

    # a deterministic method: the row is evaluate_run's, number for number
    again = evaluate_run(runs / "faceformer", data, split="test", out=tmp_path / "ff")
    row = saved["splits"]["test"]["rows"]["faceformer"]
    assert row == {k: v for k, v in again["rows"]["model"].items()}
    assert saved["splits"]["test"]["static"] == again["rows"]["static"]
    assert saved["splits"]["test"]["mean"] == again["rows"]["mean"]
    quality = markdown.split("## Quality on `test`")[1].split("\n## ")[0]
    line = next(l for l in quality.splitlines() if l.startswith("| FaceFormer |"))
    for key in ("LVE", "EVE", "FDD", "MVE", "MOD", "lip_closure"):
        assert cell_text(key, row[key]) in line, key
    assert 0.0 <= row["lip_closure"] <= 1.0

    # the stochastic method: one evaluate_run a seed, the row their mean with a 95 % interval
    seed_one = evaluate_run(runs / "gldi", data, split="test_unseen", out=tmp_path / "gldi", seed=1, samples=3)
    stored = saved["splits"]["test_unseen"]["evaluations"]["gldi"]
    assert [e["seed"] for e in stored] == list(SEEDS)
    assert stored[1]["rows"]["model"] == seed_one["rows"]["model"]
    gldi = saved["splits"]["test_unseen"]["rows"]["gldi"]
    for key in ("LVE", "MVE", "diversity"):
        values = [e["rows"]["model"][key] for e in stored]
        assert gldi[key]["values"] == values and gldi[key]["mean"] == pytest.approx(np.mean(values))
        assert gldi[key]["half_width"] == pytest.approx(4.303 * np.std(values, ddof=1) / math.sqrt(3), rel=1e-3)
    gldi_line = next(l for l in markdown.split("## Quality on `test_unseen`")[1].splitlines()
                     if l.startswith("| GLDiTalker"))
    assert cell_text("LVE", gldi["LVE"]) in gldi_line and " ± " in gldi_line

    # EmoFace's emotion accuracy is evaluate_run's too
    emo = evaluate_run(runs / "emoface", data, split="test", out=tmp_path / "emo")
    assert saved["splits"]["test"]["emotion"]["emoface"]["accuracy"] == emo["emotion_classification"]["accuracy"]

    # a finished run is reused, not trained again
    assert ensure_trained("faceformer", data, runs, quick=True) == (runs / "faceformer", False)


def test_interval_growth_and_strip_frames():
    spread = interval([1.0, 2.0, 3.0])
    assert spread["mean"] == 2.0 and spread["half_width"] == pytest.approx(4.303 / math.sqrt(3))
    assert spread["low"] == pytest.approx(2.0 - 4.303 / math.sqrt(3)) and spread["n"] == 3
    assert interval([5.0])["half_width"] is None
    assert cell_text("LVE", spread) == "2.0000e+00 ± 2.5e+00"
    assert cell_text("lip_closure", 0.875) == "87.5"
    assert growth_exponent([1.0, 2.0, 4.0], [3.0, 12.0, 48.0]) == pytest.approx(2.0)
    assert growth_exponent([2.0], [1.0]) is None

    from voxmesh.data.layout import Phoneme, Sequence

    phonemes = [Phoneme("b", 0.1, 0.2), Phoneme("aa", 0.2, 0.4), Phoneme("t", 0.4, 0.5), Phoneme("m", 0.5, 0.6),
                Phoneme("a", 0.6, 0.8), Phoneme("p", 0.8, 0.9)]
    sequence = Sequence(name="s", subject="a", audio=np.zeros(16000, np.float32), vertices=np.zeros((30, 3, 3)),
                        template=np.zeros((3, 3)), fps=30.0, phonemes=phonemes)
    picks = strip_frames(sequence)
    assert [label for label, _ in picks] == ["/b/ closed", "/aa/ open", "/m/ closed", "/a/ open"]
    assert [frame for _, frame in picks] == sorted(frame for _, frame in picks)
    sequence.phonemes = None
    assert len(strip_frames(sequence)) == 4  # evenly spaced without timings


def test_benchmark_command_is_wired():
    result = CliRunner().invoke(app, ["benchmark", "--help"])
    assert result.exit_code == 0
    for option in ("--data", "--runs", "--quick", "--out", "--method"):
        assert option in result.output
    bad = CliRunner().invoke(app, ["benchmark", "--data", "x", "--runs", "y", "--method", "voca"])
    assert bad.exit_code == 2 and "Unknown method voca" in bad.output


def test_bench_small_shares_the_run_table():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_small.py"
    spec = importlib.util.spec_from_file_location("bench_small", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from voxmesh import benchmark

    assert module.RUNS is benchmark.RUNS and module.COMPARED == list(METHODS)


def test_a_run_still_training_is_not_trained_again(tmp_path):
    from voxmesh.errors import VoxmeshError

    run = tmp_path / "runs" / "faceformer"
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text('{"stage": "main", "split": "train", "step": 1, "seconds": 2.5}\n')
    with pytest.raises(VoxmeshError, match="still running"):
        ensure_trained("faceformer", tmp_path / "data", tmp_path / "runs")


def test_update_measures_one_method_and_keeps_the_others(quick, tmp_path):
    import shutil

    root, _, _ = quick
    docs = tmp_path / "docs"
    shutil.copytree(root / "docs", docs)
    before = json.loads((docs / "benchmarks.json").read_text())
    result = run_benchmark(root / "data", root / "runs", out=docs / "benchmarks.md", quick=True, progress=False,
                           methods=("faceformer",), update=True)
    after = json.loads((docs / "benchmarks.json").read_text())
    assert after["methods"] == list(METHODS) and result["updated"]["measured"] == ["faceformer"]
    for method in METHODS:
        if method == "faceformer":  # measured again: deterministic, so the same numbers; new timings
            assert after["splits"]["test"]["rows"][method] == before["splits"]["test"]["rows"][method]
            assert after["cost"][method]["model_rtf"] != before["cost"][method]["model_rtf"]
        else:  # kept as they were
            for split in ("test", "test_unseen"):
                assert after["splits"][split]["rows"][method] == before["splits"][split]["rows"][method]
            assert after["cost"][method] == before["cost"][method] and after["speed"][method] == before["speed"][method]
    assert after["ddim"] == before["ddim"]
    assert after["strip"]["rows"] == ["ground truth"] + [TITLES[m] for m in METHODS]
    markdown = (docs / "benchmarks.md").read_text()
    assert "* Updated: FaceFormer measured in this run; CodeTalker, GLDiTalker, EmoFace kept" in markdown
    for title in (TITLES[m] for m in METHODS):
        assert f"| {title}" in markdown
    with pytest.raises(Exception, match="does not exist"):
        run_benchmark(root / "data", root / "runs", out=tmp_path / "none" / "b.md", quick=True, progress=False,
                      methods=("faceformer",), update=True)
