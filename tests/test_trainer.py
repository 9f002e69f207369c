"""The trainer: configs, loss going down, staged methods, resume, the feature cache, the
run folder (log.jsonl, loss.png, checkpoints) and the `voxmesh train` command. Tiny
models on a miniature dataset, on CPU."""

from __future__ import annotations

import json
import shutil
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from miniature import write_dataset
from safetensors.torch import load_file
from typer.testing import CliRunner

from voxmesh.cli import app
from voxmesh.errors import VoxmeshError
from voxmesh.mesh import load_templates
from voxmesh.train.config import config_from_dict, load_config
from voxmesh.inference import frame_audio
from voxmesh.train.trainer import train

FACEFORMER_MODEL = {"d_model": 16, "num_heads": 2, "num_layers": 1, "period": 15}
CODETALKER_MODEL = {"vq_hidden_dim": 16, "vq_layers": 1, "vq_heads": 2, "vq_ff_dim": 32, "num_parts": 2, "code_dim": 8,
                    "num_codes": 16, "d_model": 16, "num_heads": 2, "num_layers": 1, "period": 15}
MEL = {"kind": "mel", "dim": 16, "hidden": 16}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def write_run_dataset(root: Path) -> Path:
    """Three seen subjects (two train sentences, one val, one test) and one unseen
    subject (test only), 0.6 s clips of 42 vertices; each clip has its own tone, so
    audio contents (and feature cache keys) differ, and motion of about a centimetre
    (the miniature's millimetre is below what a few Adam steps resolve); emotions and
    intensities set."""
    seen = {f"s{i}": ["a0", "a1", "a2", "a3"] for i in range(3)}
    names = {**seen, "u9": ["a3"]}
    manifest = []
    for subject, sequences in names.items():
        for sequence in sequences:
            split = {"a0": "train", "a1": "train", "a2": "val", "a3": "test"}[sequence]
            manifest.append({"name": f"{subject}_{sequence}", "split": split,
                             "emotion": "happy" if sequence == "a1" else "neutral", "intensity": 1 + (sequence == "a1")})
    write_dataset(root, names, seconds=0.6, sample_rate=16000, manifest=manifest)
    templates = load_templates(root / "templates.pkl")
    for number, wav in enumerate(sorted((root / "wav").iterdir())):
        t = np.arange(int(0.6 * 16000)) / 16000
        soundfile.write(wav, 0.1 * np.sin(2 * np.pi * (150 + 20 * number) * t), 16000)
        npy = root / "vertices_npy" / f"{wav.stem}.npy"
        template = templates[wav.stem.split("_")[0]].reshape(1, -1)
        np.save(npy, (template + 10 * (np.load(npy) - template)).astype(np.float32))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_run_dataset(tmp_path_factory.mktemp("data"))


def tiny_config(method: str = "faceformer", encoder: dict | None = None, **train_settings):
    settings = {"epochs": 2, "lr": 1.0e-3, "log_every": 1, "val_every": 100, "schedule": "constant",
                "val_max_sequences": 1}
    settings.update(train_settings)
    return config_from_dict({
        "method": method, "encoder": encoder or MEL,
        "model": FACEFORMER_MODEL if method == "faceformer" else CODETALKER_MODEL,
        "data": {"window_seconds": 0.4, "batch_size": 2}, "train": settings,
    })


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and re.search(r"\.\s+[A-Z]", message) is None


# ---- config ---------------------------------------------------------------------------------

def test_config_file_overrides_and_stage_settings(tmp_path):
    path = tmp_path / "ct.yaml"
    path.write_text("method: codetalker\nencoder: mel\nmodel: {}\n"
                    "train: {epochs: 5, lr: 1e-4}\nstages: {vqvae: {epochs: 2}}\n")
    config = load_config(path, ["train.lr=3.0e-4", "stages.predictor.max_steps=7", "data.batch_size=1"])
    assert config.train.lr == pytest.approx(3e-4) and config.data.batch_size == 1
    assert config.stage_names() == ("vqvae", "predictor")
    assert config.stage_settings("vqvae").epochs == 2 and config.stage_settings("vqvae").lr == pytest.approx(3e-4)
    assert config.stage_settings("predictor").max_steps == 7 and config.stage_settings("predictor").epochs == 5
    assert load_config(tmp_path / "ct.yaml").train.lr == pytest.approx(1e-4)  # "1e-4" without a dot still reads


@pytest.mark.parametrize("text, words", [
    ("method: nosuch\nencoder: mel\ntrain: {epochs: 1}\n", ["unknown method 'nosuch'", "faceformer"]),
    ("encoder: mel\ntrain: {epochs: 1}\n", ["no 'method'"]),
    ("method: faceformer\nencoder: mel\n", ["train.epochs", "train.max_steps"]),
    ("method: faceformer\nencoder: mel\ntrain: {epochs: 1, lr: -1}\n", ["'train.lr'", "-1"]),
    ("method: faceformer\nencoder: mel\ntrain: {epochs: 1, schedule: linear}\n", ["'train.schedule'", "cosine"]),
    ("method: faceformer\nencoder: mel\ntrain: {epochs: 1, mixed_precision: fp8}\n", ["'train.mixed_precision'"]),
    ("method: faceformer\nencoder: mel\ntrain: {epochs: 1}\ndata: {batch: 3}\n", ["'data.batch'"]),
    ("method: faceformer\nencoder: mel\ntrain: {epochs: 1}\ndata: {preset: nosuch}\n", ["'data.preset'", "nosuch"]),
    ("method: faceformer\nencoder: mel\ntrain: {epochs: 1}\nstages: {vqvae: {epochs: 2}}\n", ["stage 'vqvae'"]),
    ("method: [faceformer\n", ["not valid YAML"]),
    ("method: faceformer\nencoder: mel\ntrain: {epochs: 1, keep_last: 0}\n", ["'train.keep_last'", "positive"]),
])
def test_config_errors_name_the_key_and_the_file(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(VoxmeshError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and one_sentence(message), message
    for word in words:
        assert word in message, message


def test_bad_override_is_one_sentence(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("method: faceformer\nencoder: mel\ntrain: {epochs: 1}\n")
    with pytest.raises(VoxmeshError, match="no '='"):
        load_config(path, ["train.lr"])
    with pytest.raises(VoxmeshError, match="'train.epochs'"):
        load_config(path, ["train.epochs=zero"])


# ---- training --------------------------------------------------------------------------------

def fixed_batch_loss(model, dataset_root: Path, stage: str = "main") -> float:
    """Loss of a model (no dropout) on the first and the last training window (0.4 s,
    as trained: positions past the window length are never trained) of every training
    sequence."""
    from voxmesh.data.layout import FaceDataset
    from voxmesh.train.trainer import Collate, SequenceStore, WindowDataset

    data = FaceDataset(dataset_root)
    records = [r for r in data.all_records if r.split == "train"]
    items = WindowDataset(SequenceStore(data), records, 12)
    batch = Collate(data.train_subjects, [])([items[(i, u)] for i in range(len(records)) for u in (0.0, 0.999)])
    model.eval()
    with torch.no_grad():
        return float(model(batch, stage=stage)["loss"])


def untrained(config, dataset_root: Path):
    from accelerate.utils import set_seed

    from voxmesh.data.layout import FaceDataset
    from voxmesh.train.checkpoint import build_model

    data = FaceDataset(dataset_root)
    topology = data.topology()
    set_seed(config.train.seed)
    return build_model(config.method, config.model, num_vertices=topology.num_vertices, speakers=data.train_subjects,
                       fps=data.fps, encoder=config.encoder, faces=topology.faces, neutral=topology.vertices)


def test_faceformer_trains_loss_falls_and_writes_the_run_folder(dataset, tmp_path):
    from voxmesh.train.checkpoint import load_checkpoint

    config = tiny_config(epochs=10, lr=3.0e-4, val_every=5)
    run = tmp_path / "run"
    summary = train(config, dataset, run, progress=False)
    assert summary["model"] == str(run / "model") and summary["stages"]["main"]["steps"] == 10 * 3

    before = fixed_batch_loss(untrained(config, dataset), dataset)
    after = fixed_batch_loss(load_checkpoint(run / "main" / "last"), dataset)
    assert after < 0.85 * before, (before, after)

    log = rows(run)
    train_rows = [r for r in log if r["split"] == "train"]
    val_rows = [r for r in log if r["split"] == "val"]
    assert [r["step"] for r in train_rows] == list(range(1, 31))
    losses = [r["loss"] for r in train_rows]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), losses
    assert {"step", "epoch", "stage", "loss", "losses", "lr", "seconds"} <= set(train_rows[0])
    assert [r["step"] for r in val_rows] == [15, 30]  # every 5 epochs of 3 steps
    assert {"LVE", "MVE", "FDD"} <= set(val_rows[-1]["metrics"]) and val_rows[-1]["loss"] > 0
    png = (run / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    for folder in (run / "main" / "last", run / "main" / "best", run / "model"):
        assert (folder / "model.safetensors").is_file() and (folder / "model.json").is_file()
    assert (run / "main" / "last" / "trainer_state.pt").is_file() and not (run / "model" / "trainer_state.pt").exists()
    best = json.loads((run / "model" / "model.json").read_text())
    assert best["step"] == summary["stages"]["main"]["best"]["step"] and summary["stages"]["main"]["best"]["key"] == "val LVE"
    assert best["data"] == {"preset": "generic", "fps": 30.0} and best["speakers"] == ["s0", "s1", "s2"]
    assert best["emotions"] == ["happy", "neutral"]
    # training again into the same folder needs --resume or --overwrite
    with pytest.raises(VoxmeshError, match="--resume"):
        train(config, dataset, run, progress=False)


def test_codetalker_trains_both_stages_the_second_from_the_first(dataset, tmp_path):
    from voxmesh.train.checkpoint import load_checkpoint

    config = tiny_config("codetalker", epochs=4)
    run = tmp_path / "run"
    with pytest.raises(VoxmeshError, match=r"train stage 'vqvae' first"):
        train(config, dataset, run, stage="predictor", progress=False)
    summary = train(config, dataset, run, stage="vqvae", progress=False)
    assert summary["model"] is None and not (run / "model").exists()
    summary = train(config, dataset, run, stage="predictor", progress=False)
    assert summary["model"] == str(run / "model")

    log = rows(run)
    for stage in ("vqvae", "predictor"):
        losses = [r["loss"] for r in log if r["stage"] == stage and r["split"] == "train"]
        assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3]), (stage, losses)
    assert {r["stage"] for r in log if r["split"] == "val"} == {"vqvae", "predictor"}
    assert "LVE" in [r for r in log if r["split"] == "val" and r["stage"] == "predictor"][-1]["metrics"]
    # The predictor stage starts from the best VQ-VAE and keeps it frozen.
    vq_best = load_file(str(run / "vqvae" / "best" / "model.safetensors"))
    final = load_file(str(run / "model" / "model.safetensors"))
    vq_keys = [k for k in vq_best if k.startswith("vqvae.")]
    assert vq_keys and all(torch.equal(vq_best[k], final[k]) for k in vq_keys)
    assert json.loads((run / "model" / "model.json").read_text())["stage"] == "predictor"
    model = load_checkpoint(run / "model")
    assert fixed_batch_loss(model, dataset, "predictor") < fixed_batch_loss(untrained(config, dataset), dataset, "predictor")

    # One stage 1 serves a second stage with another speech encoder (the shipped model's recipe).
    other = tmp_path / "other"
    shutil.copytree(run / "vqvae", other / "vqvae")
    wider = tiny_config("codetalker", encoder={**MEL, "dim": 24}, epochs=1)
    train(wider, dataset, other, stage="predictor", progress=False)
    final_other = load_file(str(other / "model" / "model.safetensors"))
    assert all(torch.equal(vq_best[k], final_other[k]) for k in vq_keys)


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "main" / "last" / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_after_a_crash_matches_an_uninterrupted_run(dataset, tmp_path, monkeypatch):
    import voxmesh.train.trainer as trainer

    # cosine schedule with warm-up and dropout: everything a resume must restore
    config = tiny_config(epochs=3, schedule="cosine", warmup_steps=2, val_every=1)
    train(config, dataset, tmp_path / "straight", progress=False)

    real = trainer._losses_to_floats
    calls = {"n": 0}

    def crash_at_step_5(losses):
        calls["n"] += 1
        if calls["n"] == 5:  # in the middle of the second epoch (3 steps an epoch)
            raise KeyboardInterrupt
        return real(losses)

    monkeypatch.setattr(trainer, "_losses_to_floats", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(config, dataset, tmp_path / "crashed", progress=False)
    monkeypatch.setattr(trainer, "_losses_to_floats", real)
    state = torch.load(tmp_path / "crashed" / "main" / "last" / "trainer_state.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (3, 1, 0)

    summary = train(config, dataset, tmp_path / "crashed", resume=True, progress=False)
    assert summary["stages"]["main"]["steps"] == 9
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(tmp_path / "crashed"))
    resumed = [r for r in rows(tmp_path / "crashed") if r["split"] == "train"]
    assert [r["step"] for r in resumed] == list(range(1, 10))  # the rows after the checkpoint were rewritten
    straight = [r for r in rows(tmp_path / "straight") if r["split"] == "train"]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
    assert [r["lr"] for r in resumed] == [r["lr"] for r in straight]


def test_resume_in_the_middle_of_an_epoch(dataset, tmp_path):
    # max_steps stops mid-epoch; a longer resumed run skips the batches already seen
    train(tiny_config(max_steps=7, epochs=None), dataset, tmp_path / "straight", progress=False)
    train(tiny_config(max_steps=4, epochs=None), dataset, tmp_path / "split", progress=False)
    state = torch.load(tmp_path / "split" / "main" / "last" / "trainer_state.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (4, 1, 1)
    train(tiny_config(max_steps=7, epochs=None), dataset, tmp_path / "split", resume=True, progress=False)
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(tmp_path / "split"))


def test_keep_last_keeps_the_last_epoch_checkpoints_and_each_resumes(dataset, tmp_path):
    from voxmesh.train.checkpoint import load_checkpoint

    config = tiny_config(epochs=4, keep_last=2)
    train(config, dataset, tmp_path / "run", progress=False)
    stage = tmp_path / "run" / "main"
    assert sorted(p.name for p in stage.iterdir()) == ["best", "epoch-0003", "epoch-0004", "last"]
    assert_same_weights(load_file(str(stage / "epoch-0004" / "model.safetensors")), final_weights(tmp_path / "run"))
    for epoch in (3, 4):
        folder = stage / f"epoch-{epoch:04d}"
        state = torch.load(folder / "trainer_state.pt", weights_only=True)
        assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (3 * epoch, epoch, 0)
        assert load_checkpoint(folder).checkpoint_info["step"] == 3 * epoch
    # An epoch checkpoint put back as `last` resumes to the same end.
    shutil.copytree(tmp_path / "run", tmp_path / "back")
    shutil.rmtree(tmp_path / "back" / "main" / "last")
    shutil.copytree(stage / "epoch-0003", tmp_path / "back" / "main" / "last")
    train(config, dataset, tmp_path / "back", resume=True, progress=False)
    assert_same_weights(final_weights(tmp_path / "run"), final_weights(tmp_path / "back"))
    # the default keeps `last` alone
    train(tiny_config(epochs=2), dataset, tmp_path / "default", progress=False)
    assert sorted(p.name for p in (tmp_path / "default" / "main").iterdir()) == ["best", "last"]


def test_resume_undoes_a_kill_while_last_was_replaced_and_refuses_a_changed_last(dataset, tmp_path, capsys):
    config = tiny_config(epochs=3)
    train(config, dataset, tmp_path / "straight", progress=False)
    train(tiny_config(epochs=3, max_steps=4), dataset, tmp_path / "killed", progress=False)
    # As a SIGKILL between atomic_folder's two renames leaves it: `last` moved aside, the
    # new folder half written under its temporary name.
    stage = tmp_path / "killed" / "main"
    (stage / "last").rename(stage / ".last.old-0123abcd")
    (stage / ".last.k1ll3d_x.tmp").mkdir()
    (stage / ".last.k1ll3d_x.tmp" / "model.safetensors").write_bytes(b"half")
    train(config, dataset, tmp_path / "killed", resume=True, progress=False)
    assert "restored" in capsys.readouterr().err
    assert sorted(p.name for p in stage.iterdir()) == ["best", "last"]
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed"))

    weights = stage / "last" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(VoxmeshError) as info:
        train(tiny_config(epochs=4), dataset, tmp_path / "killed", resume=True, progress=False)
    assert str(weights) in str(info.value) and "sha256" in str(info.value) and one_sentence(str(info.value))


def test_frozen_encoder_features_come_from_the_cache(dataset, tmp_path, monkeypatch):
    from voxmesh.audio.encoders import MelEncoder

    config = tiny_config(encoder={**MEL, "freeze": True}, epochs=2)
    first = train(config, dataset, tmp_path / "first", progress=False)["stages"]["main"]
    # 6 training + 1 validation sequence (val_max_sequences), each its own audio
    assert first["feature_cache"] == {"hits": 0, "misses": 7}

    calls = {"n": 0}
    real_forward = MelEncoder.forward

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(MelEncoder, "forward", counted)
    second = train(config, dataset, tmp_path / "second", progress=False)["stages"]["main"]
    assert second["feature_cache"] == {"hits": 7, "misses": 0}
    assert calls["n"] == 0  # neither training nor validation ran the frozen encoder
    assert_same_weights(final_weights(tmp_path / "first"), final_weights(tmp_path / "second"))
    # the frozen encoder's weights are rebuilt from its spec, not stored
    assert not any(k.startswith("audio_encoder.") for k in final_weights(tmp_path / "first"))


def test_frame_audio_cuts_and_pads_to_the_frames():
    audio = np.arange(16000, dtype=np.float32)
    piece = frame_audio(audio, 3, 6, 30.0)
    assert piece.shape == (3200,) and piece[0] == 1600
    tail = frame_audio(audio, 27, 6, 30.0)  # runs 0.1 s past the recording: zero padded
    assert tail.shape == (3200,) and tail[1600:].max() == 0


def test_train_command_line(dataset, tmp_path):
    path = tmp_path / "ff.yaml"
    path.write_text(
        "method: faceformer\nencoder: {kind: mel, dim: 16, hidden: 16}\n"
        "model: {d_model: 16, num_heads: 2, period: 15}\n"
        "data: {window_seconds: 0.4, batch_size: 3}\n"
        "train: {epochs: 1, lr: 1.0e-3, val_max_sequences: 1}\n"
    )
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(path), "--data", str(dataset), "--out", str(tmp_path / "run"),
                                 "--set", "train.max_steps=1"])
    assert result.exit_code == 0, result.output
    assert "stage main: 1 steps" in result.output and (tmp_path / "run" / "model" / "model.json").is_file()
    result = runner.invoke(app, ["train", str(path), "--data", str(dataset), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "--resume" in result.output
    result = runner.invoke(app, ["train", str(path), "--data", str(dataset), "--out", str(tmp_path / "run2"),
                                 "--stage", "vqvae"])
    assert result.exit_code == 2 and "stages main" in result.output
