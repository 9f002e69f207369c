"""GLDiTalker on a 42-vertex icosphere: both stages through the trainer, stage 1's
reconstruction, quantisation, DDIM, seeds, batched samples, windows with cross-fade,
checkpoint round trip, configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from miniature import tiny_topology
from test_codetalker import decoded_codes_are_codebook_rows
from test_trainer import write_run_dataset

from voxmesh.data.batching import Batch
from voxmesh.errors import VoxmeshError
from voxmesh.models import GLDiTalker, model_class
from voxmesh.models.gldi import GLDI_DEFAULTS, crossfade_weights, plan_windows
from voxmesh.models.gldi.vqvae import spiral_conv_channels_first
from voxmesh.models.layers.diffusion import LatentDiffusion
from voxmesh.models.layers.spiral_conv import SpiralConv
from voxmesh.train.config import config_from_dict
from voxmesh.train.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

C = 16
SPEAKERS = ["s0", "s1", "s2"]
ENCODER = {"kind": "mel", "dim": C, "hidden": 16}
TINY = {
    "pyramid_factors": [2, 2, 2], "mesh_channels": [4, 4, 8, 8], "pool_slots": [4, 4, 4, 4], "hidden_dim": 32,
    "vq_layers": 1, "vq_heads": 2, "vq_ff_dim": 64, "vq_dropout": 0.0, "num_parts": 2, "code_dim": 8,
    "num_codes": 32, "ema_decay": 0.9, "dead_code_threshold": 0.5, "vq_warmup_steps": 6, "displacement_slots": 16,
    "d_model": 32, "num_heads": 2, "num_layers": 1, "ff_dim": 64,
    "dropout": 0.0, "sampling_steps": 5, "window_seconds": 0.4, "overlap_seconds": 0.1,
}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def make_model(seed: int = 0, regions: dict | None = None, **overrides) -> GLDiTalker:
    vertices, faces = tiny_topology()
    torch.manual_seed(seed)
    return GLDiTalker({**TINY, **overrides}, num_vertices=len(vertices), speakers=SPEAKERS, fps=30.0, encoder=ENCODER,
                      faces=faces, neutral=vertices, regions=regions)


def smooth_batch(batch: int = 2, frames: int = 12, seed: int = 0) -> Batch:
    """Motion of a few centimetres: three smooth displacement fields over the sphere,
    moved by sinusoids in time, as faces move."""
    vertices, _ = tiny_topology()
    template = torch.from_numpy(vertices)[None].repeat(batch, 1, 1)
    fields = torch.sin(template[0] @ (torch.randn(3, 3, generator=torch.Generator().manual_seed(7)) * 30).T)
    directions = torch.randn(3, 3, generator=torch.Generator().manual_seed(8))
    basis = 0.02 * fields.T[:, :, None] * directions[:, None, :]  # [3, V, 3]
    generator = torch.Generator().manual_seed(seed)
    phase = torch.rand(batch, 3, generator=generator) * 6.28
    weights = torch.sin(torch.arange(frames).float()[None, :, None] * torch.tensor([0.3, 0.7, 1.1]) + phase[:, None])
    motion = torch.einsum("btk,kvc->btvc", weights, basis)
    features = torch.randn(batch, frames, C, generator=generator)
    return Batch(audio=torch.zeros(batch, 160), audio_mask=torch.ones(batch, 160, dtype=torch.bool),
                 vertices=template[:, None] + motion, frame_mask=torch.ones(batch, frames, dtype=torch.bool),
                 template=template, names=[f"n{i}" for i in range(batch)], subjects=SPEAKERS[:batch],
                 emotions=[None] * batch, intensities=[None] * batch, fps=30.0, sample_rate=16000,
                 audio_features=features)


def randomize(model: GLDiTalker, seed: int = 0) -> GLDiTalker:
    """Give the zero-initialised layers (adaLN gates, output layers) random weights, so
    that an untrained model's output depends on its noise and conditions."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if (parameter.dim() >= 1 and not parameter.any()) or "modulation" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean() / b.abs().mean())


# ---- building blocks ----------------------------------------------------------------------------

def test_registered_with_an_alias_and_two_stages():
    assert model_class("gldi") is GLDiTalker and model_class("glditalker") is GLDiTalker
    assert GLDiTalker.method == "gldi" and GLDiTalker.stages == ("vqvae", "diffusion")
    model = make_model()
    assert model.pyramid.num_vertices == [42, 22, 12, 7]
    with pytest.raises(VoxmeshError, match="stages"):
        model(smooth_batch(), "main")
    with pytest.raises(VoxmeshError, match="mesh_chanels"):
        make_model(mesh_chanels=[4, 4, 4, 4])
    with pytest.raises(VoxmeshError, match="one value a pyramid level"):
        make_model(mesh_channels=[4, 4])
    vertices, _ = tiny_topology()
    with pytest.raises(VoxmeshError, match="topology.ply"):
        GLDiTalker(TINY, num_vertices=42, speakers=SPEAKERS, fps=30.0, encoder=ENCODER, neutral=vertices)


def test_channels_first_spiral_conv_equals_spiral_conv():
    vertices, faces = tiny_topology(2)
    from voxmesh.mesh import spiral_indices

    conv = SpiralConv(5, 7, spiral_indices(faces, 9, vertices=vertices, cache=False))
    torch.nn.init.normal_(conv.linear.bias)
    x = torch.randn(11, len(vertices), 5)
    channels_first = spiral_conv_channels_first(conv, x.permute(2, 1, 0).contiguous()).permute(2, 1, 0)
    torch.testing.assert_close(channels_first, conv(x), atol=1e-5, rtol=1e-5)


def test_stage_parameters_are_disjoint_and_cover_the_model():
    model = make_model()
    vqvae = {id(p) for p in model.trainable_parameters("vqvae")}
    diffusion = {id(p) for p in model.trainable_parameters("diffusion")}
    assert vqvae == {id(p) for p in model.vqvae.parameters()} and not vqvae & diffusion
    assert {id(p) for p in model.audio_encoder.parameters()} <= diffusion  # the mel encoder learns in stage 2
    assert vqvae | diffusion == {id(p) for p in model.parameters()}
    with pytest.raises(VoxmeshError, match="'vqvae' then 'diffusion'"):
        model.trainable_parameters("predictor")


def test_windows_cover_the_sequence_and_weights_cross_fade_linearly():
    assert plan_windows(10, 12, 3) == [(0, 10)]
    windows = plan_windows(100, 12, 3)
    assert windows[0][0] == 0 and windows[-1][1] == 100 and all(e - s == 12 for s, e in windows)
    assert all(b[0] - a[0] <= 9 for a, b in zip(windows, windows[1:]))  # overlap of 3 or more
    weights = crossfade_weights(windows, 100, 3)
    torch.testing.assert_close(weights.sum(0), torch.ones(100))
    two = crossfade_weights([(0, 12), (9, 21)], 21, 3)
    torch.testing.assert_close(two[1, 9:12], torch.tensor([0.25, 0.5, 0.75]))  # linear ramp over the overlap
    assert torch.equal(two[0, :9], torch.ones(9)) and torch.equal(two[1, 12:], torch.ones(9))


def test_latent_diffusion_schedule_and_one_step_sampling():
    schedule = LatentDiffusion()
    assert schedule.num_train_timesteps == 1000
    # scaled-linear: sqrt(beta) linear from sqrt(0.00085) to sqrt(0.012)
    betas = schedule.training_scheduler.betas
    assert betas[0] == pytest.approx(0.00085, rel=1e-4) and betas[-1] == pytest.approx(0.012, rel=1e-4)
    x0, noise = torch.randn(4, 5), torch.randn(4, 5)
    steps = torch.tensor([0, 10, 500, 999])
    noisy = schedule.add_noise(x0, noise, steps)
    a = schedule.alphas_cumprod[steps][:, None]
    torch.testing.assert_close(noisy, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    seen = []
    out = schedule.sample(lambda x, t: seen.append(int(t)) or x0, noise, steps=1)
    assert seen == [999] and torch.equal(out, x0)  # one step: the x0 prediction from pure noise
    seen.clear()
    schedule.sample(lambda x, t: seen.append(int(t)) or x0, noise, steps=5)
    assert seen == [999, 799, 599, 399, 199]
    with pytest.raises(VoxmeshError, match="between 1 and 1000"):
        schedule.ddim(0)


# ---- stage 1 ----------------------------------------------------------------------------------

def fit(model: GLDiTalker, batch: Batch, stage: str, steps: int, lr: float = 3e-3) -> list[dict[str, float]]:
    optimiser = torch.optim.Adam(model.trainable_parameters(stage), lr=lr)
    model.train()
    history = []
    for _ in range(steps):
        losses = model(batch, stage)
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return history


def test_vqvae_reconstructs_a_training_sequence_after_a_short_fit():
    model = make_model(vq_warmup_steps=100)
    batch = smooth_batch()
    motion = batch.vertices - batch.template[:, None]
    history = fit(model, batch, "vqvae", 300)
    losses, first = history[-1], history[0]["loss"]
    assert {"reconstruction_loss", "velocity_loss", "codebook_loss", "commitment_loss", "perplexity"} <= set(losses)
    assert losses["perplexity"] > 10.0  # the codebook (32 codes) is in use
    assert history[99]["codebook_loss"] == 0.0 and history[100]["commitment_loss"] > 0.0  # quantised after warm-up
    model.eval()
    with torch.no_grad():
        z, mask = model.vqvae.encode(motion)
        quantized = model.vqvae.quantize(z, mask, update=False)
        reconstruction = model.vqvae.decode(quantized.quantized, mask)
    error = relative_error(reconstruction, motion)
    assert error < 0.2, error  # mean absolute error under a fifth of the motion's mean size
    torch.testing.assert_close(model.reconstruct(batch.vertices, batch.template), batch.template[:, None] + reconstruction)
    assert losses["loss"] < 0.4 * first
    assert quantized.indices.shape == (2, 12, 2)
    assert int(quantized.indices.min()) >= 0 and int(quantized.indices.max()) < TINY["num_codes"]
    # the latent statistics followed the codes (after the warm-up), for stage 2's normalisation
    assert float(model.vqvae.latent_count) == 200 and not torch.equal(model.vqvae.latent_std, torch.ones(8))


def test_untrained_vqvae_outputs_the_template_and_downsampling_halves_time():
    model = make_model(temporal_downsample=1)
    batch = smooth_batch(frames=11)
    motion = batch.vertices - batch.template[:, None]
    z, mask = model.vqvae.encode(motion, batch.frame_mask)
    assert z.shape == (2, 6, 2, 8) and mask.shape == (2, 6)
    decoded = model.vqvae.decode(z, mask)
    assert decoded.shape == (2, 12, 42, 3) and not decoded.any()  # zero-initialised output layer


@pytest.mark.parametrize("variant", [{"mesh_encoder": "linear"}, {"attention": "joint"}, {"temporal_downsample": 1},
                                     {"displacement_slots": 0, "ema_decay": None}])
def test_variants_train_and_generate(variant):
    model = make_model(**variant)
    batch = smooth_batch(frames=11)
    for stage in model.stages:
        losses = fit(model, batch, stage, 2)
        assert all(np.isfinite(v) for v in losses[-1].values())
    out = randomize(model).generate(batch.audio_features, batch.template, torch.tensor([0, 1]), seed=0)
    assert out.shape == (2, 11, 42, 3) and torch.isfinite(out).all()
    with pytest.raises(VoxmeshError, match="mesh_encoder 'graph' is unknown"):
        make_model(mesh_encoder="graph")


# ---- stage 2 and generation ------------------------------------------------------------------

def test_denoiser_learns_with_the_vqvae_frozen():
    model = make_model()
    batch = smooth_batch()
    fit(model, batch, "vqvae", 30)  # codes and latent statistics worth predicting
    frozen = {k: v.clone() for k, v in model.vqvae.state_dict().items()}

    def fixed_loss() -> float:
        torch.manual_seed(5)  # the same steps and noise each time
        model.eval()
        with torch.no_grad():
            return float(model(batch, "diffusion")["loss"])

    before = fixed_loss()
    losses = fit(model, batch, "diffusion", 60)[-1]
    assert {"latent_loss", "latent_velocity_loss"} <= set(losses)
    assert fixed_loss() < 0.65 * before  # 0.41 here (0.32-0.50 over model seeds)
    assert all(torch.equal(frozen[k], v) for k, v in model.vqvae.state_dict().items())
    with_vertices = make_model(vertex_weight=1.0)(batch, "diffusion")
    assert float(with_vertices["vertex_loss"].detach()) > 0


def test_ddim_steps_seeds_samples_guidance_and_snapping():
    model = randomize(make_model())
    batch = smooth_batch()
    features, template, ids = batch.audio_features, batch.template, torch.tensor([0, 1])
    one = model.generate(features, template, ids, seed=0, steps=1)
    five = model.generate(features, template, ids, seed=0, steps=5)
    assert one.shape == five.shape == (2, 12, 42, 3) and torch.isfinite(one).all() and not torch.equal(one, five)
    # same seed -> same motion; another seed -> another motion
    assert torch.equal(five, model.generate(features, template, ids, seed=0, steps=5))
    other = model.generate(features, template, ids, seed=1, steps=5)
    assert float((other - five).abs().mean()) > 1e-3 * float((five - template[:, None]).abs().mean())
    # several samples in one batched call; for one item, sample 0 is generate's
    samples = model.sample(features[:1], template[:1], ids[:1], num_samples=3, seed=0)
    assert samples.shape == (1, 3, 12, 42, 3)
    assert torch.equal(samples[:, 0], model.generate(features[:1], template[:1], ids[:1], seed=0))
    assert not torch.equal(samples[0, 0], samples[0, 1]) and not torch.equal(samples[0, 1], samples[0, 2])
    stacked = model.generate(features, template, ids, seed=0, num_samples=3)
    assert stacked.shape == (6, 12, 42, 3)
    torch.testing.assert_close(stacked.reshape(2, 3, 12, 42, 3),
                               model.sample(features, template, ids, num_samples=3, seed=0))
    # guidance (joint, and with its own style scale) changes the motion
    guided = model.generate(features, template, ids, seed=0, guidance=2.0)
    separate = model.generate(features, template, ids, seed=0, guidance=2.0, style_guidance=3.0)
    assert not torch.equal(guided, five) and not torch.equal(guided, separate) and torch.isfinite(separate).all()
    # snapped latents are codebook rows; indices in range
    _, latents = model.sample(features, template, ids, seed=0, return_latents=True)
    codebook = model.vqvae.quantizer.codebook
    indices = model.vqvae.quantizer.nearest(latents)
    assert int(indices.min()) >= 0 and int(indices.max()) < TINY["num_codes"]
    torch.testing.assert_close(latents, codebook[indices])
    _, free = model.sample(features, template, ids, seed=0, return_latents=True, snap_to_codebook=False)
    assert not torch.equal(free, latents)
    assert model.generate(features[:, :0], template, ids).shape == (2, 0, 42, 3)


def test_long_audio_is_generated_in_cross_faded_windows_without_seams():
    model = randomize(make_model(snap_to_codebook=False))
    frames = 100  # windows of 12 frames overlapping by 3 or more: 11 windows
    features = torch.randn(1, frames, C, generator=torch.Generator().manual_seed(3))
    template = smooth_batch(1).template
    ids = torch.tensor([0])
    long = model.generate(features, template, ids, seed=0)
    assert long.shape == (1, frames, 42, 3) and torch.isfinite(long).all()
    assert len(plan_windows(frames, 12, 3)) == 11
    # a window longer than the input is one plain pass
    short = model.generate(features[:, :12], template, ids, seed=0)
    assert torch.equal(short, model.generate(features[:, :12], template, ids, seed=0, window_seconds=10.0))

    # With a denoiser whose windows disagree (each predicts its own constant), cut windows
    # jump at every edge; cross-faded ones change linearly across every overlap.
    model.denoiser.forward = lambda x_t, *args, **kwargs: 5 * x_t.mean(dim=(1, 2, 3), keepdim=True).expand_as(x_t)

    def largest_step(overlap_seconds: float | None) -> tuple[float, float]:
        _, latents = model.sample(features, template, ids, seed=0, overlap_seconds=overlap_seconds,
                                  return_latents=True)
        steps = (latents[0, 0, 1:] - latents[0, 0, :-1]).abs().amax(dim=(1, 2))
        return float(steps.max()), float(latents.max() - latents.min())

    faded, faded_range = largest_step(None)
    cut, _ = largest_step(0.0)
    assert faded < 0.2 * faded_range and faded < 0.5 * cut, (faded, faded_range, cut)


def test_region_weights_scale_the_stage_one_loss_of_their_vertices():
    regions = {"upper_face": np.arange(0, 10), "eyes": np.arange(5, 15)}
    weighted = make_model(region_weights={"upper_face": 10.0, "eyes": 3.0}, vq_warmup_steps=100, regions=regions)
    assert weighted.vertex_weights[:10].eq(10.0).all() and weighted.vertex_weights[10:15].eq(3.0).all()
    assert weighted.vertex_weights[15:].eq(1.0).all()  # overlaps take the larger weight
    plain = make_model(vq_warmup_steps=100)
    plain.load_state_dict(weighted.state_dict(), strict=False)
    assert not hasattr(plain, "vertex_weights")
    batch = smooth_batch(2)
    inside = batch.vertices.clone()
    inside[:, :, 10:] = batch.template[:, None, 10:]  # motion only where the weight is 10
    batch.vertices = inside
    weighted.eval()
    plain.eval()  # untrained: both reconstruct the template, so the error is the motion itself
    ratio = weighted(batch, "vqvae")["reconstruction_loss"] / plain(batch, "vqvae")["reconstruction_loss"]
    assert float(ratio.detach()) == pytest.approx(10.0, rel=1e-5)
    with pytest.raises(VoxmeshError, match="region_weights names region 'brows'.*upper_face"):
        make_model(region_weights={"brows": 2.0}, regions=regions)
    with pytest.raises(VoxmeshError, match="positive"):
        make_model(region_weights={"eyes": 0.0}, regions=regions)


@pytest.mark.parametrize("downsample", [0, 1])
def test_region_parts_encode_their_region_alone(downsample):
    regions = {"upper_face": np.arange(0, 12)}
    model = make_model(num_parts=3, region_parts={"upper_face": 1}, temporal_downsample=downsample, regions=regions)
    model.eval()
    batch = smooth_batch(2, frames=12)
    motion = batch.vertices - batch.template[:, None]
    z, mask = model.vqvae.encode(motion, batch.frame_mask)
    assert z.shape == (2, 12 // 2 ** downsample, 3, 8) and mask.all()
    outside = motion.clone()
    outside[:, :, 12:] *= -2.0  # the rest of the face moves otherwise: the region part must not notice
    z_outside, _ = model.vqvae.encode(outside, batch.frame_mask)
    assert torch.allclose(z_outside[:, :, 2], z[:, :, 2], atol=1e-6)
    assert (z_outside[:, :, :2] - z[:, :, :2]).abs().max() > 1e-2
    inside = motion.clone()
    inside[:, :, :12] *= -2.0
    z_inside, _ = model.vqvae.encode(inside, batch.frame_mask)
    assert (z_inside[:, :, 2] - z[:, :, 2]).abs().max() > 1e-2
    decoded = model.vqvae.decode(model.vqvae.quantize(z, mask, update=False).quantized, mask)
    assert decoded.shape == motion.shape
    with pytest.raises(VoxmeshError, match="region_parts names region 'brows'.*upper_face"):
        make_model(num_parts=3, region_parts={"brows": 1}, regions=regions)
    with pytest.raises(VoxmeshError, match="at least one of the num_parts"):
        make_model(num_parts=2, region_parts={"upper_face": 2}, regions=regions)


# ---- through the trainer ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    dataset = write_run_dataset(tmp_path_factory.mktemp("gldi_data"))
    run = tmp_path_factory.mktemp("gldi_run") / "run"
    config = config_from_dict({
        "method": "gldi", "encoder": ENCODER, "model": {**TINY, "region_weights": {"upper_face": 4.0}, "num_parts": 3,
                                                 "region_parts": {"upper_face": 1}},
        "data": {"window_seconds": 0.4, "batch_size": 2},
        "train": {"epochs": 8, "lr": 3.0e-3, "log_every": 1, "val_every": 100, "schedule": "constant",
                  "val_max_sequences": 1},
    })
    summary = train(config, dataset, run, progress=False)
    assert summary["model"] == str(run / "model")
    return run


def test_both_stages_train_through_the_trainer_with_falling_losses(trained_run):
    rows = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    for stage in ("vqvae", "diffusion"):
        losses = [r["loss"] for r in rows if r["stage"] == stage and r["split"] == "train"]
        assert len(losses) == 8 * 3 and np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6]), (stage, losses)
    vqvae_row = next(r for r in rows if r["stage"] == "vqvae" and r["split"] == "train")
    assert vqvae_row["losses"]["perplexity"] >= 1.0  # codebook usage is logged
    final_val = [r for r in rows if r["stage"] == "diffusion" and r["split"] == "val"][-1]
    assert {"LVE", "MVE", "FDD"} <= set(final_val["metrics"])
    meta = json.loads((trained_run / "model" / "model.json").read_text())
    assert meta["method"] == "gldi" and meta["stage"] == "diffusion" and meta["config"]["pyramid_factors"] == [2, 2, 2]


def test_saved_model_reloads_with_identical_output(trained_run, tmp_path):
    from voxmesh.train.checkpoint import load_checkpoint, load_checkpoint_template, save_checkpoint

    model = load_checkpoint(trained_run / "model")
    stage_one = load_checkpoint(trained_run / "vqvae" / "best")
    # the region weights came from the dataset's regions.json and travel with the weights
    expected = torch.ones(model.num_vertices)
    expected[6:20] = 4.0
    assert torch.equal(model.vertex_weights, expected)
    assert model.vqvae.region_parts == {"upper_face": 1}
    assert torch.equal(model.vqvae.region_encoders["upper_face"].indices, torch.arange(6, 20))
    # stage 2 started from the best stage 1 and left it (and its latent statistics) alone
    for key, value in stage_one.vqvae.state_dict().items():
        assert torch.equal(value, model.vqvae.state_dict()[key]), key
    assert float(model.vqvae.latent_count) > 0
    batch = smooth_batch(2)
    ids = torch.tensor([0, 2])
    first = model.generate(batch.audio_features, batch.template, ids, seed=7)
    again = load_checkpoint(trained_run / "model").generate(batch.audio_features, batch.template, ids, seed=7)
    assert torch.equal(first, again)
    # the topology (faces, neutral) travels with the weights: the pyramid is rebuilt from it
    save_checkpoint(model, tmp_path / "copy", template=load_checkpoint_template(trained_run / "model"), stage="diffusion")
    copy = load_checkpoint(tmp_path / "copy")
    assert torch.equal(first, copy.generate(batch.audio_features, batch.template, ids, seed=7))


def test_evaluation_draws_samples_for_diversity(trained_run, tmp_path):
    from voxmesh.eval.evaluate import evaluate_run

    dataset = write_run_dataset(tmp_path / "data")
    result = evaluate_run(trained_run, dataset, split="test", out=tmp_path / "eval", samples=3)
    assert result["samples"] == 3 and result["units"]["diversity"] == "m"
    assert result["rows"]["model"]["diversity"] > 0  # different seeds, different motions
    assert "diversity" not in result["rows"]["static"]
    assert "Diversity: mean distance between 3 motions" in (tmp_path / "eval.md").read_text()
    one_step = evaluate_run(trained_run, dataset, split="test", out=tmp_path / "one", steps=1)
    assert one_step["steps"] == 1 and one_step["rows"]["model"]["LVE"] != result["rows"]["model"]["LVE"]
    assert 0 < one_step["generation_seconds"] < result["generation_seconds"] and one_step["audio_seconds"] > 0


# ---- configs -------------------------------------------------------------------------------------

def test_configs_parse_and_use_only_known_keys():
    for name in ("synthetic", "vocaset", "biwi"):
        raw = yaml.safe_load((CONFIGS / f"gldi_{name}.yaml").read_text())
        config = config_from_dict(raw, source=name)
        assert config.method == "gldi" and config.stage_names() == ("vqvae", "diffusion")
        assert set(raw["model"]) <= set(GLDI_DEFAULTS)
        model = raw["model"]
        assert len(model["mesh_channels"]) == len(model["pool_slots"]) == len(model["pyramid_factors"]) + 1
        assert model["num_train_timesteps"] == 1000 and model["beta"] == 0.25
    synthetic = yaml.safe_load((CONFIGS / "gldi_synthetic.yaml").read_text())
    baseline = yaml.safe_load((CONFIGS / "codetalker_synthetic.yaml").read_text())
    assert synthetic["data"] == baseline["data"] and synthetic["encoder"] == baseline["encoder"]
    assert synthetic["model"]["window_seconds"] == synthetic["data"]["window_seconds"]


def test_validation_during_the_warm_up_scores_the_quantised_reconstruction():
    """Only training steps skip the quantiser while warming up: a validation then scores
    codes, so a warm-up checkpoint (no codebook yet) never becomes stage 1's "best"."""
    model = make_model(vq_warmup_steps=100)
    batch = smooth_batch(2)
    assert not decoded_codes_are_codebook_rows(model, batch, train=True)
    assert decoded_codes_are_codebook_rows(model, batch, train=False)
    assert model.vqvae.warming_up and int(model.vqvae.training_steps) == 1  # eval steps are not counted
