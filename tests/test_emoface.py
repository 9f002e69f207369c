"""EmoFace on tiny meshes: the self-growing schedule, both fusions, emotion override and
classification, cross-reconstruction pairs, generation against teacher forcing, training
through the trainer with a falling loss, and checkpoints that reload to identical output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from miniature import tiny_topology
from test_pairs import write_pair_dataset
from test_trainer import rows, write_run_dataset

from voxmesh.data.batching import Batch
from voxmesh.errors import VoxmeshError
from voxmesh.models import model_class
from voxmesh.models.emoface import EmoFace, ground_truth_share

pytestmark = pytest.mark.usefixtures("torch_one_thread")

C = 16
SPEAKERS = ["alice", "bob"]
EMOTIONS = ["happy", "neutral", "sad"]
CONFIG = {"d_model": 16, "num_heads": 2, "num_layers": 1, "period": 4, "dropout": 0.0, "attention_factors": [],
          "attention_channels": [4, 4], "attention_reduce": 4, "spiral_length": 7, "temporal_kernel": 2}
ENCODER = {"kind": "mel", "dim": C, "hidden": 16}


def make_model(seed: int = 0, subdivisions: int = 1, emotions: list[str] | None = EMOTIONS, **overrides) -> EmoFace:
    vertices, faces = tiny_topology(subdivisions)
    torch.manual_seed(seed)
    return EmoFace({**CONFIG, **overrides}, num_vertices=len(vertices), speakers=SPEAKERS, fps=30.0, encoder=ENCODER,
                   faces=faces, neutral=vertices, emotions=emotions)


def make_batch(model: EmoFace, frames: int = 10, batch: int = 2, seed: int = 0) -> Batch:
    """Motion that is a linear function of the features plus an offset of the emotion."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, frames, C, generator=generator)
    mixing = torch.randn(C, model.vertex_dim, generator=generator) * 0.002
    emotion_ids = torch.arange(batch) % len(EMOTIONS)
    emotion_offset = torch.randn(len(EMOTIONS), model.vertex_dim, generator=generator) * 0.01
    template = torch.randn(batch, model.num_vertices, 3, generator=generator) * 0.1
    motion = features @ mixing + emotion_offset[emotion_ids][:, None]
    vertices = template[:, None] + motion.reshape(batch, frames, model.num_vertices, 3)
    return Batch(audio=torch.zeros(batch, 160), audio_mask=torch.ones(batch, 160, dtype=torch.bool), vertices=vertices,
                 frame_mask=torch.ones(batch, frames, dtype=torch.bool), template=template,
                 names=[f"x{i}" for i in range(batch)], subjects=[SPEAKERS[i % 2] for i in range(batch)],
                 emotions=[EMOTIONS[i] for i in emotion_ids.tolist()], intensities=[1] * batch, fps=30.0,
                 sample_rate=16000, audio_features=features, speaker_ids=torch.arange(batch) % 2,
                 emotion_ids=emotion_ids, intensity_ids=torch.zeros(batch, dtype=torch.long))


def perturb_outputs(model: EmoFace, scale: float = 0.05) -> None:
    """Give the zero-initialised output layers weights, so outputs depend on the inputs."""
    layers = [model.content_motion_decoder, model.emotion_motion_decoder]
    if model.mesh_attention is not None:
        layers.append(model.mesh_attention.convs[-1])
    with torch.no_grad():
        for layer in layers:
            layer.weight.normal_(0.0, scale)
            layer.bias.normal_(0.0, scale)


# ---- construction ------------------------------------------------------------------------

def test_registered_and_bad_settings_are_one_sentence_errors():
    assert model_class("emoface") is EmoFace and EmoFace.stages == ("main",) and EmoFace.needs_pairs
    with pytest.raises(VoxmeshError, match="Unknown emoface setting"):
        make_model(fusoin="add")
    with pytest.raises(VoxmeshError, match="fusion 'concat'"):
        make_model(fusion="concat")
    with pytest.raises(VoxmeshError, match="self_growing_warmup"):
        make_model(self_growing_warmup=0.6)
    vertices, _ = tiny_topology()
    without_faces = {"num_vertices": len(vertices), "speakers": SPEAKERS, "fps": 30.0, "encoder": ENCODER}
    with pytest.raises(VoxmeshError, match="faces"):
        EmoFace(dict(CONFIG), **without_faces)
    assert EmoFace({**CONFIG, "fusion": "add"}, **without_faces).mesh_attention is None


# ---- self-growing --------------------------------------------------------------------------

def test_self_growing_schedule_values():
    # warm-up θ = 0.1, zero at the midpoint: 1, then a half cosine, then 0
    expected = {0.0: 1.0, 0.05: 1.0, 0.1: 1.0, 0.2: 0.5 * (1 + math.cos(math.pi / 4)), 0.3: 0.5,
                0.4: 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.5: 0.0, 0.75: 0.0, 1.0: 0.0}
    for progress, share in expected.items():
        assert ground_truth_share(progress, 0.1, 0.5) == pytest.approx(share, abs=1e-12), progress
    model = make_model(self_growing_warmup=0.2, self_growing_end=0.6)
    model.set_progress(0.4)
    assert model.ground_truth_share() == pytest.approx(0.5)
    model.set_progress(7.0)  # clamped to the end of training
    assert model.ground_truth_share() == 0.0


def count_passes(model: EmoFace, batch: Batch) -> tuple[int, dict[str, torch.Tensor]]:
    calls = {"n": 0}
    real = model.teacher_forced

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    model.teacher_forced = counted
    try:
        losses = model(batch)
    finally:
        del model.teacher_forced
    return calls["n"], losses


def test_second_pass_runs_after_the_warm_up_only_and_not_without_self_growing():
    model = make_model()
    batch = make_batch(model)
    model.train()
    for progress, passes in [(0.05, 1), (0.3, 2), (0.9, 2)]:
        model.set_progress(progress)
        count, losses = count_passes(model, batch)
        assert count == passes and float(losses["ground_truth_share"]) == pytest.approx(ground_truth_share(progress))
    batch.progress = 0.05  # the batch may carry the progress too, and wins
    assert count_passes(model, batch)[0] == 1
    del batch.progress
    model.eval()  # validation: teacher forcing only
    assert count_passes(model, batch)[0] == 1
    plain = make_model(self_growing=False)
    plain.train()
    plain.set_progress(0.9)
    assert count_passes(plain, batch)[0] == 1


# ---- the network -----------------------------------------------------------------------------

@pytest.mark.parametrize("fusion, subdivisions, factors", [("attention", 1, []), ("attention", 2, [4]), ("add", 1, [])])
def test_generation_agrees_with_teacher_forcing_on_its_own_output(fusion, subdivisions, factors):
    model = make_model(fusion=fusion, subdivisions=subdivisions, attention_factors=factors)
    perturb_outputs(model)
    batch = make_batch(model, frames=9)
    features, template = batch.audio_features, batch.template
    parts = model.generate(features, template, batch.speaker_ids, emotion_ids=batch.emotion_ids,
                           intensity_ids=batch.intensity_ids, return_parts=True)
    assert parts["vertices"].shape == (2, 9, model.num_vertices, 3)
    style = torch.eye(2)[batch.speaker_ids]
    emotion = torch.eye(len(EMOTIONS))[batch.emotion_ids]
    intensity = torch.eye(2)[batch.intensity_ids]
    model.eval()
    with torch.no_grad():
        outputs = model.teacher_forced(model.content_projection(features), model.emotion_projection(features),
                                       parts["vertices"] - template[:, None], model.content_style(style),
                                       model.emotion_condition(style, emotion, intensity))
    torch.testing.assert_close(outputs.fused + template[:, None], parts["vertices"], atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs.content + template[:, None], parts["content"], atol=1e-5, rtol=0)
    if fusion == "attention":
        assert parts["alpha"].shape == (2, 9, model.num_vertices, 1)
        assert 0 < float(parts["alpha"].min()) and float(parts["alpha"].max()) < 1
        assert parts["alpha"].std() > 0  # per vertex and frame, not one number
        torch.testing.assert_close(outputs.alpha, parts["alpha"], atol=1e-5, rtol=0)
    else:
        assert "alpha" not in parts and outputs.alpha is None
        torch.testing.assert_close(parts["vertices"], (parts["content"] + parts["emotion"]) / 2, atol=1e-6, rtol=0)


def test_untrained_output_is_the_template_and_fusion_add_also_learns():
    for fusion in ("attention", "add"):
        model = make_model(fusion=fusion)
        batch = make_batch(model)
        generated = model.generate(batch.audio_features, batch.template, batch.speaker_ids)
        torch.testing.assert_close(generated, batch.template[:, None].expand_as(generated))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        model.set_progress(0.3)
        first = None
        for _ in range(15):
            losses = model(batch)
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()
            first = first if first is not None else float(losses["loss"].detach())
        assert float(losses["loss"].detach()) < 0.7 * first, (fusion, first, float(losses["loss"].detach()))
        assert {"self_l1", "velocity_l1", "content_l1", "emotion_l1", "cross_l1", "emotion_ce"} <= set(losses)


def test_explicit_emotion_overrides_the_heard_one():
    model = make_model()
    perturb_outputs(model)
    with torch.no_grad():
        model.emotion_embedding.weight.normal_(0.0, 1.0)
    batch = make_batch(model, batch=1)
    features, template, speaker = batch.audio_features, batch.template, batch.speaker_ids

    def generate(**options):
        return model.generate(features, template, speaker, **options)

    happy, sad = generate(emotion_ids=torch.tensor([0])), generate(emotion_ids=torch.tensor([2]))
    assert (happy - sad).abs().max() > 1e-4
    heard = generate()
    torch.testing.assert_close(generate(emotion_ids=torch.tensor([-1])), heard)  # -1: what is heard
    probabilities = model.classify_emotion(features)
    assert probabilities.shape == (1, 3) and float(probabilities.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(generate(emotion_weights=probabilities), heard)  # heard_emotion: soft
    with pytest.raises(VoxmeshError, match="emotion_weights"):
        generate(emotion_weights=torch.ones(1, 2))


# ---- cross-reconstruction --------------------------------------------------------------------

def test_cross_reconstruction_uses_pairs_from_the_pair_index(tmp_path):
    from voxmesh.data.layout import FaceDataset
    from voxmesh.train.pairs import PairIndex, collate_pair_windows
    from voxmesh.train.trainer import Collate, SequenceStore, WindowDataset

    data = FaceDataset(write_pair_dataset(tmp_path / "data"))
    records = [r for r in data.all_records if r.split == "train"]
    store = SequenceStore(data)
    index = PairIndex(records, store.get)
    emotions = ["happy", "neutral"]
    model = EmoFace(dict(CONFIG), num_vertices=42, speakers=["s0"], fps=30.0, encoder=ENCODER,
                    faces=data.topology().faces, neutral=data.topology().vertices, emotions=emotions)
    perturb_outputs(model)
    windows = WindowDataset(store, records, 8)
    items = [windows[(i, 0.5)] for i in range(len(records))]
    batch = Collate(["s0"], emotions)(items)
    assert model(batch)["cross_l1"] == 0  # no pairs: the cross loss is skipped

    starts = [min(int(0.5 * (store.get(r).num_frames - 8 + 1)), store.get(r).num_frames - 8) for r in records]
    pairs = [index.window(r.name, s, 8) for r, s in zip(records, starts)]
    assert sum(p is not None for p in pairs) == 2  # sentence 2 has no partner
    for name, value in collate_pair_windows(pairs, 8, emotions).items():
        setattr(batch, name, value)
    model.train()
    model.set_progress(0.0)
    losses = model(batch)  # the partners' audio runs through the (trainable) mel encoder
    assert float(losses["cross_l1"].detach()) > 0
    model.zero_grad()
    (losses["cross_l1"] * 1000).backward()
    assert model.emotion_projection.weight.grad.abs().sum() > 0 and model.audio_encoder.conv_out.weight.grad.abs().sum() > 0
    # cached features at the item's frames work the same way
    batch.pair_audio_features = torch.randn(len(records), 8, C)
    assert float(model(batch)["cross_l1"].detach()) > 0


# ---- training through the trainer, checkpoints ----------------------------------------------

def test_trains_through_the_trainer_and_reloads_to_identical_output(tmp_path):
    from test_trainer import fixed_batch_loss, untrained

    from voxmesh.data.layout import FaceDataset
    from voxmesh.train.checkpoint import load_checkpoint, save_checkpoint
    from voxmesh.train.config import config_from_dict
    from voxmesh.train.trainer import train

    dataset = write_run_dataset(tmp_path / "data")
    config = config_from_dict({
        "method": "emoface", "encoder": ENCODER, "model": {**CONFIG, "period": 15},
        "data": {"window_seconds": 0.4, "batch_size": 2},
        "train": {"epochs": 30, "lr": 3.0e-4, "log_every": 1, "val_every": 30, "schedule": "constant",
                  "val_max_sequences": 1},
    })
    run = tmp_path / "run"
    train(config, dataset, run, progress=False)
    # An L1 loss on random windows: a noisy curve, so compare tens of steps and a fixed batch.
    losses = [r["loss"] for r in rows(run) if r["split"] == "train"]
    assert len(losses) == 90 and np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), losses
    before = fixed_batch_loss(untrained(config, dataset), dataset)
    assert fixed_batch_loss(load_checkpoint(run / "main" / "last"), dataset) < 0.9 * before
    info = json.loads((run / "model" / "model.json").read_text())
    assert info["method"] == "emoface" and info["emotions"] == ["happy", "neutral"]
    assert info["config"]["fusion"] == "attention" and "LVE" in info["val_metrics"]["metrics"]

    model = load_checkpoint(run / "model")
    data = FaceDataset(dataset)
    sequence = data.load(next(r for r in data.all_records if r.split == "test"))
    from voxmesh.inference import generate_sequence

    first = generate_sequence(model, sequence, 0)
    assert first.shape == sequence.vertices.shape and np.abs(first - sequence.template).max() > 0
    save_checkpoint(model, tmp_path / "again", template=data.topology())
    again = generate_sequence(load_checkpoint(tmp_path / "again"), sequence, 0)
    np.testing.assert_array_equal(first, again)

    # Evaluation: the heard emotion by default, the label on request, and the classifier's accuracy.
    from voxmesh.eval.evaluate import evaluate_run

    heard = evaluate_run(run, dataset, split="test", out=tmp_path / "heard")
    labelled = evaluate_run(run, dataset, split="test", out=tmp_path / "label", emotion_source="label")
    assert heard["emotion_source"] == "heard" and labelled["emotion_source"] == "label"
    classification = heard["emotion_classification"]
    assert classification["sequences"] == 4 and classification["chance"] == 0.5
    assert np.sum(classification["confusion"]) == 4 and 0.0 <= classification["accuracy"] <= 1.0
    assert "Emotion accuracy from the voice" in (tmp_path / "heard.md").read_text()
    with pytest.raises(VoxmeshError, match="emotion_source"):
        evaluate_run(run, dataset, split="test", out=tmp_path / "bad", emotion_source="guess")


def test_trainer_feeds_partners_and_training_progress(tmp_path):
    """Through ``voxmesh train``: windows come with their partners (cross_l1 is logged
    above zero) and the trainer's step moves the self-growing share from 1 to 0."""
    from voxmesh.train.config import config_from_dict
    from voxmesh.train.trainer import train

    dataset = write_pair_dataset(tmp_path / "data")
    config = config_from_dict({
        "method": "emoface", "encoder": ENCODER, "model": {**CONFIG, "period": 15},
        "data": {"window_seconds": 0.4, "batch_size": 3},
        "train": {"epochs": 10, "lr": 1.0e-3, "log_every": 1, "schedule": "constant"},
    })
    train(config, dataset, tmp_path / "run", progress=False)
    logged = [r["losses"] for r in rows(tmp_path / "run") if r["split"] == "train"]
    assert len(logged) == 10
    assert all(r["cross_l1"] > 0 for r in logged)  # two of the three sequences have a partner in every batch
    shares = [r["ground_truth_share"] for r in logged]
    assert shares[0] == 1.0 and shares[-1] == 0.0 and all(a >= b for a, b in zip(shares, shares[1:]))


def test_synthetic_config_builds_on_the_head_and_paper_configs_parse():
    from pathlib import Path

    import yaml

    from voxmesh.mesh.head import build_head
    from voxmesh.train.config import load_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("synthetic", "ravdess3d", "vocaset"):
        config = load_config(configs / f"emoface_{name}.yaml")
        assert config.method == "emoface" and config.stage_names() == ("main",)
        assert set(config.model) <= set(EmoFace({**CONFIG, "fusion": "add"}, num_vertices=3, speakers=SPEAKERS, fps=30.0,
                                                encoder=ENCODER).settings)
    head = build_head()
    synthetic = yaml.safe_load((configs / "emoface_synthetic.yaml").read_text())
    model = EmoFace(synthetic["model"], num_vertices=head.num_vertices, speakers=SPEAKERS, fps=30.0,
                    encoder=synthetic["encoder"], faces=head.faces, neutral=head.vertices, emotions=EMOTIONS)
    assert model.mesh_attention.vertex_embedding.shape[0] < head.num_vertices / 10  # runs on a coarse level
    assert model.mesh_attention.upsample.shape == (head.num_vertices, model.mesh_attention.vertex_embedding.shape[0])
    torch.testing.assert_close(model.mesh_attention.upsample.sum(dim=1), torch.ones(head.num_vertices))


def test_classifier_norm_standardises_with_training_statistics_only():
    model = make_model(classifier_norm=True)
    batch = make_batch(model, frames=12, batch=4)
    stats = model.classifier_input_stats
    assert int(stats.count) == 0
    model.train()
    for _ in range(3):  # every pass in a step (and the partner's) may update: no in-place error
        losses = model(batch)
        losses["loss"].backward()
    assert int(stats.count) >= 3 and not torch.equal(stats.std, torch.ones_like(stats.std))
    memory = model.emotion_projection(batch.audio_features).detach()
    assert torch.allclose(stats.mean, memory.reshape(-1, memory.shape[-1]).mean(0), atol=1e-5)  # plain mean so far
    model.eval()
    before = {k: v.clone() for k, v in stats.state_dict().items()}
    first = model.classify_emotion(batch.audio_features)
    assert all(torch.equal(before[k], v) for k, v in stats.state_dict().items())  # eval never updates
    assert torch.allclose(first.sum(-1), torch.ones(4)) and torch.equal(first, model.classify_emotion(batch.audio_features))
    reloaded = make_model(seed=5, classifier_norm=True)
    reloaded.load_state_dict(model.state_dict())  # the statistics travel with the weights
    reloaded.eval()
    assert torch.equal(reloaded.classify_emotion(batch.audio_features), first)
    assert "classifier_input_stats.mean" not in make_model().state_dict()  # the paper's classifier: none
