"""CodeTalker on tiny tensors: both stages learn, stages own disjoint parameters, the
VQ-VAE stays frozen in the predictor stage, padding, generation, state round trip."""

from pathlib import Path

import pytest
import torch
import yaml

from voxmesh.data.batching import Batch
from voxmesh.errors import VoxmeshError
from voxmesh.models import CodeTalker, model_class

V, C = 42, 16
SPEAKERS = ["alice", "bob"]
CONFIG = {
    "vq_hidden_dim": 32, "vq_layers": 1, "vq_heads": 4, "vq_ff_dim": 64, "vq_dropout": 0.0, "num_parts": 4,
    "code_dim": 8, "num_codes": 32, "d_model": 32, "num_heads": 4, "num_layers": 1, "period": 4, "dropout": 0.0,
}
ENCODER = {"kind": "mel", "dim": C}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def make_model(seed: int = 0, **overrides) -> CodeTalker:
    torch.manual_seed(seed)
    return CodeTalker({**CONFIG, **overrides}, num_vertices=V, speakers=SPEAKERS, fps=30.0, encoder=ENCODER)


def make_batch(lengths: list[int], seed: int = 0) -> Batch:
    """Smooth motion of a few centimetres, a linear function of the speech features."""
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
    return Batch(audio=torch.zeros(batch, 160), audio_mask=torch.ones(batch, 160, dtype=torch.bool), vertices=vertices,
                 frame_mask=frame_mask, template=template, names=[f"s{i}" for i in range(batch)],
                 subjects=[SPEAKERS[i % 2] for i in range(batch)], emotions=[None] * batch,
                 intensities=[None] * batch, fps=30.0, sample_rate=16000, audio_features=features)


def smooth_batch(lengths: list[int], seed: int = 0) -> Batch:
    """Motion in a 3-dimensional subspace moved by slow sinusoids, as faces move."""
    generator = torch.Generator().manual_seed(seed)
    batch, frames = len(lengths), max(lengths)
    basis = torch.randn(3, V * 3, generator=torch.Generator().manual_seed(7)) * 0.02
    phase = torch.rand(batch, 3, generator=generator) * 6.28
    t = torch.arange(frames).float()
    weights = torch.sin(t[None, :, None] * torch.tensor([0.3, 0.7, 1.1]) + phase[:, None])  # [B, T, 3]
    out = make_batch(lengths, seed)
    motion = (weights @ basis).reshape(batch, frames, V, 3)
    out.vertices = (out.template[:, None] + motion) * out.frame_mask[..., None, None]
    return out


def select(batch: Batch, index: int, frames: int) -> Batch:
    return Batch(audio=batch.audio[index:index + 1], audio_mask=batch.audio_mask[index:index + 1],
                 vertices=batch.vertices[index:index + 1, :frames], frame_mask=batch.frame_mask[index:index + 1, :frames],
                 template=batch.template[index:index + 1], names=[batch.names[index]], subjects=[batch.subjects[index]],
                 emotions=[None], intensities=[None], fps=batch.fps, sample_rate=batch.sample_rate,
                 audio_features=batch.audio_features[index:index + 1, :frames])


def train_steps(model: CodeTalker, batch: Batch, stage: str, steps: int, lr: float = 2e-3) -> list[float]:
    optimiser = torch.optim.Adam(model.trainable_parameters(stage), lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(batch, stage)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def perturb_decoder(model: CodeTalker) -> None:
    """Give the zero-initialised VQ decoder output weights, so decoded motion varies."""
    with torch.no_grad():
        model.vqvae.decoder.output.weight.normal_(0.0, 0.05)


def test_registered_with_two_stages():
    assert model_class("codetalker") is CodeTalker
    assert CodeTalker.method == "codetalker" and CodeTalker.stages == ("vqvae", "predictor")
    with pytest.raises(VoxmeshError, match="stages"):
        make_model()(make_batch([4]), "main")
    with pytest.raises(VoxmeshError, match="code_dims"):
        make_model(code_dims=3)


def test_stage_parameters_are_disjoint_and_cover_the_model():
    model = make_model()
    vqvae = {id(p) for p in model.trainable_parameters("vqvae")}
    predictor = {id(p) for p in model.trainable_parameters("predictor")}
    assert vqvae and predictor and not vqvae & predictor
    assert vqvae == {id(p) for p in model.vqvae.parameters()}
    encoder = {id(p) for p in model.audio_encoder.parameters()}
    assert encoder and encoder <= predictor  # the trainable mel encoder learns in stage 2 only
    assert vqvae | predictor == {id(p) for p in model.parameters()}


def test_vqvae_reconstruction_loss_falls():
    model = make_model()
    batch = smooth_batch([12, 16, 10])
    first = model(batch, "vqvae")
    assert set(first) == {"loss", "reconstruction_loss", "codebook_loss", "commitment_loss", "perplexity"}
    # the paper's loss balance (metres against latent units) starts slowly: 100 steps
    train_steps(model, batch, "vqvae", 100)
    last = model(batch, "vqvae")
    assert last["reconstruction_loss"].item() < 0.5 * first["reconstruction_loss"].item()
    assert last["perplexity"].item() > 1.0


def test_vqvae_reconstructs_the_template_at_initialisation():
    model = make_model().eval()
    batch = make_batch([6])
    motion = (batch.vertices - batch.template[:, None]).reshape(1, 6, -1)
    out = model(batch, "vqvae")
    assert out["reconstruction_loss"].item() == pytest.approx(motion.abs().mean().item(), rel=1e-5)
    generated = model.generate(batch.audio_features, batch.template, torch.tensor([0]))
    assert torch.equal(generated, batch.template[:, None].expand_as(generated))


def test_predictor_learns_while_the_vqvae_stays_frozen():
    model = make_model()
    batch = make_batch([12, 16])
    train_steps(model, batch, "vqvae", 20)
    frozen = {name: value.clone() for name, value in model.vqvae.state_dict().items()}
    model.zero_grad(set_to_none=True)
    model.train()
    losses = train_steps(model, batch, "predictor", 40)
    assert losses[-1] < 0.5 * losses[0]
    for name, value in model.vqvae.state_dict().items():
        assert torch.equal(value, frozen[name]), name
    assert all(p.grad is None for p in model.vqvae.parameters())  # no gradient even reaches them
    assert not model.vqvae.training  # kept in eval mode (no dropout, no codebook updates)
    out = model(batch, "predictor")
    assert set(out) == {"loss", "feature_loss", "motion_loss", "vertex_loss", "ground_truth_share"}


def decoded_codes_are_codebook_rows(model, batch: Batch, train: bool) -> bool:
    """Whether a VQ-VAE stage step (CodeTalker's or GLDiTalker's) in this mode decodes
    codebook entries (quantised) on the batch's real frames."""
    seen = {}
    decode = model.vqvae.decode

    def spy(codes, *args, **kwargs):
        seen["codes"] = codes.detach()
        return decode(codes, *args, **kwargs)

    model.vqvae.decode = spy
    model.train(train)
    try:
        model(batch, "vqvae")
    finally:
        del model.vqvae.decode
        model.train()
    flat = seen["codes"][batch.frame_mask].reshape(-1, seen["codes"].shape[-1])  # real frames only
    return bool(torch.cdist(flat, model.vqvae.quantizer.codebook).min(dim=1).values.max() < 1e-3)


def test_vqvae_warm_up_trains_without_codes_then_starts_the_codebook_from_latents():
    model = make_model(vq_warmup_steps=5, codebook_init="data", normalize_latents=True)
    batch = smooth_batch([16, 12])
    codebook = model.vqvae.quantizer.codebook.detach().clone()
    assert decoded_codes_are_codebook_rows(model, batch, train=False)  # validation quantises: never a "best"
    assert not decoded_codes_are_codebook_rows(model, batch, train=True)  # a warm-up training step does not
    model.vqvae.training_steps.fill_(0)
    for _ in range(5):
        model(batch, "vqvae")
    assert int(model.vqvae.training_steps) == 5 and not model.vqvae.warming_up
    assert torch.equal(model.vqvae.quantizer.codebook, codebook)  # untouched while warming up
    assert not bool(model.vqvae.codebook_initialised)
    model(batch, "vqvae")  # the first quantised step starts the codebook from these latents
    assert bool(model.vqvae.codebook_initialised)
    assert not torch.equal(model.vqvae.quantizer.codebook, codebook)
    z = model.vqvae.encode((batch.vertices - batch.template[:, None]).reshape(2, 16, -1), batch.frame_mask)
    nearest = torch.cdist(z.detach().reshape(-1, z.shape[-1]), model.vqvae.quantizer.codebook).min(dim=1).values
    assert nearest.mean() < 0.5 * z.detach().reshape(-1, z.shape[-1]).norm(dim=1).mean()
    # eval mode neither counts nor warms up; the paper's default has no warm-up buffer at all
    model.eval()
    model(batch, "vqvae")
    assert int(model.vqvae.training_steps) == 6
    assert "vqvae.training_steps" not in make_model().state_dict()


@pytest.mark.parametrize("feedback", ["motion", "codes"])
def test_self_feeding_second_pass_follows_the_schedule(feedback):
    model = make_model(self_feeding=True, self_feeding_warmup=0.1, self_feeding_end=0.5, feedback=feedback)
    batch = make_batch([12, 16])
    calls = {"n": 0}
    real = model.predict_features

    def counted(features, motion, style, frame_mask=None):
        calls["n"] += 1
        calls["motion"] = motion
        return real(features, motion, style, frame_mask)

    model.predict_features = counted
    model.train()
    ground_truth = (batch.vertices - batch.template[:, None]).reshape(2, 16, -1)
    for progress, share, passes in [(0.05, 1.0, 1), (0.3, 0.5, 2), (0.9, 0.0, 2)]:
        calls["n"] = 0
        model.set_progress(progress)
        out = model(batch, "predictor")
        assert calls["n"] == passes and float(out["ground_truth_share"]) == pytest.approx(share)
    # fully self-fed: no real frame of the second pass's input is the ground truth's
    fed = calls["motion"]
    if feedback == "codes":
        motion = (batch.vertices - batch.template[:, None]).reshape(2, 16, -1)
        with torch.no_grad():
            ground_truth = model.vqvae.quantize(model.vqvae.encode(motion, batch.frame_mask), update=False).quantized
        ground_truth = ground_truth.flatten(2)
    assert fed.shape == ground_truth.shape
    assert not torch.isclose(fed[0, :12], ground_truth[0, :12]).all(dim=-1).any()
    out["loss"].backward()  # gradients flow through both passes to the predictor only
    assert all(p.grad is None for p in model.vqvae.parameters())
    model.eval()
    calls["n"] = 0
    model(batch, "predictor")
    assert calls["n"] == 1  # validation: teacher forcing only
    plain = make_model()
    plain.train()
    plain.set_progress(0.9)
    assert float(plain(batch, "predictor")["ground_truth_share"]) == 1.0


def test_vqvae_stage_leaves_the_predictor_alone():
    model = make_model()
    batch = make_batch([8])
    model(batch, "vqvae")["loss"].backward()
    assert all(p.grad is None for p in model.trainable_parameters("predictor"))
    assert any(p.grad is not None for p in model.vqvae.parameters())


def test_dead_code_restarts_and_ema_options_train():
    model = make_model(ema_decay=0.9, dead_code_threshold=0.5)
    batch = make_batch([10, 12])
    before = model.vqvae.quantizer.codebook.clone()
    losses = train_steps(model, batch, "vqvae", 5)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert not torch.equal(model.vqvae.quantizer.codebook, before)


def test_scaled_data_initialised_normalised_stage_one_fits_better_and_keeps_metres():
    """The synthetic config's stage-1 settings: codes start at the first batch's latents,
    latents are layer-normalised, and the motion is scaled inside the VQ-VAE only."""
    batch = smooth_batch([12, 16, 10])
    plain = make_model()
    tuned = make_model(motion_scale=100.0, codebook_init="data", normalize_latents=True, ema_decay=0.99)
    assert not bool(tuned.vqvae.codebook_initialised)
    tuned.train()
    tuned(batch, "vqvae")
    assert bool(tuned.vqvae.codebook_initialised)
    z = tuned.vqvae.encode((batch.vertices - batch.template[:, None]).reshape(3, 16, -1), batch.frame_mask)
    assert torch.allclose(z.mean(-1), torch.zeros(()), atol=1e-5)  # layer-normalised latents
    for model in (plain, tuned):
        train_steps(model, batch, "vqvae", 60)
    def error(model):
        model.eval()
        motion = (batch.vertices - batch.template[:, None]).reshape(3, 16, -1)
        codes = model.vqvae.quantize(model.vqvae.encode(motion, batch.frame_mask), batch.frame_mask, update=False)
        decoded = model.vqvae.decode(codes.quantized, batch.frame_mask)  # metres, whatever the scale inside
        return ((decoded - motion).abs() * batch.frame_mask[..., None]).sum() / batch.frame_mask.sum()
    assert error(tuned) < 0.5 * error(plain)
    with pytest.raises(VoxmeshError, match="codebook_init"):
        make_model(codebook_init="kmeans")


def test_padding_does_not_change_an_item():
    model = make_model()
    perturb_decoder(model)
    train_steps(model, make_batch([10, 12], seed=5), "vqvae", 5)
    model.eval()
    batch = make_batch([7, 12], seed=3)
    alone = select(batch, 0, 7)
    padded = select(batch, 0, 12)
    for stage in CodeTalker.stages:
        for key, value in model(alone, stage).items():
            assert model(padded, stage)[key].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-7), (stage, key)
    with torch.no_grad():
        motion = (batch.vertices - batch.template[:, None]).reshape(2, 12, -1)
        together = model.vqvae.encode(motion, batch.frame_mask)
        single = model.vqvae.encode(motion[:1, :7], alone.frame_mask)
    assert torch.allclose(together[0, :7], single[0], atol=1e-5)
    generated = model.generate(batch.audio_features, batch.template, torch.tensor([0, 1]))
    generated_alone = model.generate(alone.audio_features, alone.template, torch.tensor([0]))
    # the final decode is bidirectional: compare codes, which are causal
    _, codes = model.generate(batch.audio_features, batch.template, torch.tensor([0, 1]), return_indices=True)
    _, codes_alone = model.generate(alone.audio_features, alone.template, torch.tensor([0]), return_indices=True)
    assert torch.equal(codes[0, :7], codes_alone[0])
    masked = model.generate(batch.audio_features, batch.template, torch.tensor([0, 1]), frame_mask=batch.frame_mask)
    assert torch.allclose(masked[0, :7], generated_alone[0], atol=1e-6)
    assert torch.allclose(masked[1], generated[1], atol=1e-6)
    assert generated.shape == (2, 12, V, 3) and generated_alone.shape == (1, 7, V, 3)


def test_predicted_features_do_not_see_the_future():
    model = make_model()
    with torch.no_grad():
        model.motion_encoder.weight.mul_(50.0)
    model.eval()
    batch = make_batch([10])
    motion = (batch.vertices - batch.template[:, None]).reshape(1, 10, -1)
    style = torch.eye(2)[[0]]
    before = model.predict_features(batch.audio_features, motion, style)
    changed = motion.clone()
    changed[:, 5] += 0.05
    after = model.predict_features(batch.audio_features, changed, style)
    assert torch.allclose(after[:, :6], before[:, :6], atol=1e-7)
    assert not torch.allclose(after[:, 6:], before[:, 6:], atol=1e-5)


def test_generate_shape_determinism_and_codes():
    model = make_model()
    perturb_decoder(model)
    batch = make_batch([9, 9])
    model.train()
    first, indices = model.generate(batch.audio_features, batch.template, torch.tensor([1, 0]), seed=0,
                                    return_indices=True)
    second = model.generate(batch.audio_features, batch.template, torch.tensor([1, 0]), seed=5)
    assert model.training
    assert first.shape == (2, 9, V, 3) and indices.shape == (2, 9, 4)
    assert indices.min() >= 0 and indices.max() < 32
    assert torch.equal(first, second)
    # the output is the frozen decoder's reading of the chosen codes
    codes = model.vqvae.quantizer.lookup(indices)
    model.eval()
    with torch.no_grad():
        decoded = model.vqvae.decode(codes).reshape(2, 9, V, 3)
    assert torch.allclose(first, batch.template[:, None] + decoded, atol=1e-6)
    # a decode context as long as the clip changes nothing
    model.decode_context = 9
    assert torch.allclose(model.generate(batch.audio_features, batch.template, torch.tensor([1, 0])), first, atol=1e-6)
    model.decode_context = 3
    assert model.generate(batch.audio_features, batch.template, torch.tensor([1, 0])).shape == first.shape


def test_state_dict_round_trip_gives_identical_generation():
    model = make_model(seed=1)
    batch = make_batch([8, 6])
    train_steps(model, batch, "vqvae", 3)
    train_steps(model, batch, "predictor", 3)
    restored = make_model(seed=2)
    restored.load_state_dict(model.state_dict())
    ids = torch.tensor([0, 1])
    assert torch.equal(model.generate(batch.audio_features, batch.template, ids),
                       restored.generate(batch.audio_features, batch.template, ids))


def test_synthetic_config_builds_and_paper_configs_parse():
    config = yaml.safe_load((CONFIGS / "codetalker_synthetic.yaml").read_text())
    assert config["method"] == "codetalker" and config["encoder"]["kind"] == "mel"
    model = model_class(config["method"])(config["model"], num_vertices=V, speakers=SPEAKERS, fps=30.0,
                                          encoder=config["encoder"])
    assert model.audio_projection.in_features == config["encoder"]["dim"]
    for name, parts, code_dim, period in (("vocaset", 16, 64, 30), ("biwi", 8, 128, 25)):
        paper = yaml.safe_load((CONFIGS / f"codetalker_{name}.yaml").read_text())["model"]
        assert (paper["num_parts"], paper["code_dim"], paper["num_codes"], paper["period"]) == (parts, code_dim, 256, period)
        assert paper["beta"] == 0.25 and set(paper) <= set(model.settings)


def test_code_feedback_generation_feeds_back_exactly_its_own_codes():
    """With feedback: codes, teacher-forcing the predictor on the codes it generated gives
    back the same codes: generation and training's self-fed pass see the same inputs."""
    model = make_model(feedback="codes")
    batch = make_batch([14])
    train_steps(model, batch, "vqvae", 20)
    train_steps(model, batch, "predictor", 10)
    model.eval()
    vertices, indices = model.generate(batch.audio_features, batch.template, torch.tensor([1]), return_indices=True)
    codes = model.vqvae.quantizer.lookup(indices)  # [1, T, P, D]
    style = torch.eye(2)[1:2]
    again = model.vqvae.quantize(model.predict_features(batch.audio_features, codes.flatten(2), style),
                                 update=False).indices
    assert torch.equal(again, indices)
    assert model.motion_encoder.in_features == model.vqvae.num_parts * model.vqvae.code_dim
    with pytest.raises(VoxmeshError, match="feedback 'vertices' is unknown"):
        make_model(feedback="vertices")
