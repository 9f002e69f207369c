"""FaceFormer on tiny tensors: learning, masks, padding, generation, state round trip."""

from pathlib import Path

import pytest
import torch
import yaml

from voxmesh.data.batching import Batch
from voxmesh.errors import VoxmeshError
from voxmesh.models import FaceFormer, model_class

V, C = 42, 16
SPEAKERS = ["alice", "bob", "carol"]
CONFIG = {"d_model": 32, "num_heads": 4, "num_layers": 1, "period": 4, "dropout": 0.0}
ENCODER = {"kind": "mel", "dim": C}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def make_model(seed: int = 0, **overrides) -> FaceFormer:
    torch.manual_seed(seed)
    return FaceFormer({**CONFIG, **overrides}, num_vertices=V, speakers=SPEAKERS, fps=30.0, encoder=ENCODER)


def make_batch(lengths: list[int], seed: int = 0, subjects: list[str] | None = None) -> Batch:
    """Motion that is a fixed linear function of the speech features (learnable), smoothed
    in time; padded frames are zero as collate_sequences leaves them."""
    generator = torch.Generator().manual_seed(seed)
    batch, frames = len(lengths), max(lengths)
    mixing = torch.randn(C, V * 3, generator=torch.Generator().manual_seed(123)) * 0.02
    features = torch.randn(batch, frames, C, generator=generator)
    features = (features + features.roll(1, dims=1)) / 2
    template = torch.randn(batch, V, 3, generator=generator) * 0.1
    vertices = template[:, None] + (features @ mixing).reshape(batch, frames, V, 3)
    frame_mask = torch.arange(frames)[None] < torch.tensor(lengths)[:, None]
    vertices = vertices * frame_mask[..., None, None]
    features = features * frame_mask[..., None]
    subjects = subjects or [SPEAKERS[i % len(SPEAKERS)] for i in range(batch)]
    return Batch(audio=torch.zeros(batch, 160), audio_mask=torch.ones(batch, 160, dtype=torch.bool), vertices=vertices,
                 frame_mask=frame_mask, template=template, names=[f"s{i}" for i in range(batch)], subjects=subjects,
                 emotions=[None] * batch, intensities=[None] * batch, fps=30.0, sample_rate=16000,
                 audio_features=features)


def select(batch: Batch, index: int, frames: int) -> Batch:
    """Item ``index`` alone, cut to ``frames``."""
    return Batch(audio=batch.audio[index:index + 1], audio_mask=batch.audio_mask[index:index + 1],
                 vertices=batch.vertices[index:index + 1, :frames], frame_mask=batch.frame_mask[index:index + 1, :frames],
                 template=batch.template[index:index + 1], names=[batch.names[index]], subjects=[batch.subjects[index]],
                 emotions=[None], intensities=[None], fps=batch.fps, sample_rate=batch.sample_rate,
                 audio_features=batch.audio_features[index:index + 1, :frames])


def perturb_output(model: FaceFormer, scale: float = 0.05) -> None:
    """Give the zero-initialised output layer weights, so outputs depend on the inputs."""
    with torch.no_grad():
        model.motion_decoder.weight.normal_(0.0, scale)
        model.motion_decoder.bias.normal_(0.0, scale)


def test_registered_with_its_stages():
    assert model_class("faceformer") is FaceFormer
    assert FaceFormer.method == "faceformer" and FaceFormer.stages == ("main",)


def test_unknown_setting_is_an_error():
    with pytest.raises(VoxmeshError, match="perod"):
        make_model(perod=30)


def test_output_is_the_template_at_initialisation():
    model = make_model().eval()
    batch = make_batch([6, 9])
    style = torch.eye(3)[[0, 1]]
    predicted = model.teacher_forced(batch.audio_features, batch.template, batch.vertices, style, batch.frame_mask)
    assert torch.equal(predicted, batch.template[:, None].expand_as(predicted))
    generated = model.generate(batch.audio_features, batch.template, torch.tensor([0, 1]))
    assert torch.equal(generated, batch.template[:, None].expand_as(generated))


def test_loss_falls_on_one_batch():
    model = make_model(velocity_weight=0.5)
    batch = make_batch([12, 16, 9])
    optimiser = torch.optim.Adam(model.trainable_parameters(), lr=2e-3)
    losses = []
    for _ in range(50):
        out = model(batch)
        optimiser.zero_grad()
        out["loss"].backward()
        optimiser.step()
        losses.append(out["loss"].item())
    assert set(out) == {"loss", "vertex_loss", "velocity_loss"}
    assert losses[-1] < 0.5 * losses[0]


def test_vertex_loss_is_the_mse_over_real_frames():
    model = make_model().eval()
    batch = make_batch([5, 8])
    offsets = batch.vertices - batch.template[:, None]
    squared = (offsets ** 2).sum(dim=(2, 3)) * batch.frame_mask  # the untrained model outputs the template
    expected = squared.sum() / (batch.frame_mask.sum() * V * 3)
    assert model(batch)["vertex_loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_padding_does_not_change_an_item():
    model = make_model()
    perturb_output(model)
    model.eval()
    batch = make_batch([7, 12], seed=3)
    alone = select(batch, 0, 7)
    with torch.no_grad():
        assert model(select(batch, 0, 12))["loss"].item() == pytest.approx(model(alone)["loss"].item(), rel=1e-5)
        style = torch.eye(3)[[0, 1]]
        together = model.teacher_forced(batch.audio_features, batch.template, batch.vertices, style, batch.frame_mask)
        single = model.teacher_forced(alone.audio_features, alone.template, alone.vertices, style[:1], alone.frame_mask)
    assert torch.allclose(together[0, :7], single[0], atol=1e-6)
    generated = model.generate(batch.audio_features, batch.template, torch.tensor([0, 1]))
    generated_alone = model.generate(alone.audio_features, alone.template, torch.tensor([0]))
    assert torch.allclose(generated[0, :7], generated_alone[0], atol=1e-6)


def test_teacher_forcing_does_not_leak_the_future():
    model = make_model()
    perturb_output(model)
    with torch.no_grad():
        model.motion_encoder.weight.mul_(50.0)  # make the motion input matter
    model.eval()
    batch = make_batch([10])
    style = torch.eye(3)[[0]]
    before = model.teacher_forced(batch.audio_features, batch.template, batch.vertices, style)
    t = 4
    changed = batch.vertices.clone()
    changed[:, t + 1] += 0.05  # the target of frame t+1, which is the input of frame t+2
    after = model.teacher_forced(batch.audio_features, batch.template, changed, style)
    assert torch.allclose(after[:, : t + 2], before[:, : t + 2], atol=1e-7)
    assert not torch.allclose(after[:, t + 2:], before[:, t + 2:], atol=1e-5)


def test_generate_shape_determinism_and_agreement_with_teacher_forcing():
    model = make_model()
    perturb_output(model)
    batch = make_batch([9, 9])
    model.train()  # generate switches to eval itself and restores the mode
    first = model.generate(batch.audio_features, batch.template, torch.tensor([2, 0]), seed=1)
    second = model.generate(batch.audio_features, batch.template, torch.tensor([2, 0]), seed=2)
    assert model.training
    assert first.shape == (2, 9, V, 3)
    assert torch.equal(first, second)
    # fed its own output as ground truth, the teacher-forced pass reproduces generation
    model.eval()
    with torch.no_grad():
        replay = model.teacher_forced(batch.audio_features, batch.template, first, torch.eye(3)[[2, 0]])
    assert torch.allclose(replay, first, atol=1e-5)


def test_style_weights_and_unknown_speakers():
    model = make_model()
    perturb_output(model, 0.2)
    with torch.no_grad():
        model.style_embedding.weight.normal_(0.0, 1.0)
    batch = make_batch([6, 6])
    by_id = model.generate(batch.audio_features, batch.template, torch.tensor([1, 2]))
    by_weight = model.generate(batch.audio_features, batch.template, torch.tensor([-1, -1]),
                               style_weights=torch.eye(3)[[1, 2]])
    assert torch.allclose(by_id, by_weight)
    assert torch.allclose(by_id, model.generate(batch.audio_features, batch.template, None,
                                                style_weights=torch.eye(3)[[1, 2]]))
    unknown = model.generate(batch.audio_features, batch.template, torch.tensor([-1, 7]))
    uniform = model.generate(batch.audio_features, batch.template, torch.tensor([0, 0]),
                             style_weights=torch.full((2, 3), 1 / 3))
    assert torch.allclose(unknown, uniform)
    assert not torch.allclose(by_id, uniform)
    with pytest.raises(VoxmeshError, match="style_weights"):
        model.generate(batch.audio_features, batch.template, torch.tensor([0, 0]), style_weights=torch.ones(2, 2))


def test_state_dict_round_trip_gives_identical_generation():
    model = make_model(seed=1)
    batch = make_batch([8, 5])
    optimiser = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    for _ in range(3):
        optimiser.zero_grad()
        model(batch)["loss"].backward()
        optimiser.step()
    restored = make_model(seed=2)
    restored.load_state_dict(model.state_dict())
    ids = torch.tensor([0, 1])
    assert torch.equal(model.generate(batch.audio_features, batch.template, ids),
                       restored.generate(batch.audio_features, batch.template, ids))


def test_synthetic_config_builds_and_paper_configs_parse():
    config = yaml.safe_load((CONFIGS / "faceformer_synthetic.yaml").read_text())
    assert config["method"] == "faceformer" and config["encoder"]["kind"] == "mel"
    model = model_class(config["method"])(config["model"], num_vertices=V, speakers=SPEAKERS, fps=30.0,
                                          encoder=config["encoder"])
    assert model.audio_projection.in_features == config["encoder"]["dim"]
    for name, d_model, period in (("vocaset", 64, 30), ("biwi", 128, 25)):
        paper = yaml.safe_load((CONFIGS / f"faceformer_{name}.yaml").read_text())
        assert paper["model"]["d_model"] == d_model and paper["model"]["period"] == period
        assert paper["encoder"] == {"kind": "hf", "model": "facebook/wav2vec2-base-960h", "freeze": False}
        assert set(paper["model"]) <= set(model.settings)


def test_training_through_the_mel_encoder_on_a_written_dataset(tmp_path):
    from miniature import write_dataset

    from voxmesh.data import collate_sequences, open_dataset

    root = write_dataset(tmp_path / "data", {"alice": ["01", "02"], "bob": ["01"]}, seconds=0.4)
    dataset = open_dataset(root)
    sequences = [dataset[i] for i in range(len(dataset))]
    for sequence in sequences:  # the miniature's 1 mm motion, made 3 cm so a few steps show learning
        sequence.vertices = sequence.template + 30.0 * (sequence.vertices - sequence.template)
    sequences[0].vertices = sequences[0].vertices[:8]  # unequal lengths, so the batch pads
    sequences[0].audio = sequences[0].audio[: 8 * 16000 // 30]
    batch = collate_sequences(sequences)
    torch.manual_seed(0)
    model = FaceFormer(CONFIG, num_vertices=batch.vertices.shape[2], speakers=["alice", "bob"], fps=30.0,
                       encoder=ENCODER)
    assert any(p is q for p in model.trainable_parameters() for q in model.audio_encoder.parameters())
    optimiser = torch.optim.Adam(model.trainable_parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = model(batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        features = model.audio_features(batch)
    assert features.shape == (len(batch), batch.vertices.shape[1], C)
    out = model.generate(features, batch.template, torch.tensor([0, 0, 1]))
    assert out.shape == batch.vertices.shape
