"""Speech encoders, frame alignment and the feature cache, on tiny random transformers
models saved to a temporary folder and loaded offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from voxmesh.audio.encoders import (  # noqa: E402
    HFWav2Vec2Encoder,
    MelEncoder,
    SpeechEncoder,
    WhisperSpeechEncoder,
    build_encoder,
    mel_filterbank,
    whisper_log_mel,
)
from voxmesh.audio.features import FeatureCache, align_features, mesh_frames  # noqa: E402
from voxmesh.errors import VoxmeshError  # noqa: E402

SR = 16_000
# Tiny conv stack whose strides multiply to 320 samples (50 frames/s), like the real ones.
CONV = {"conv_dim": (8, 8, 8), "conv_kernel": (10, 8, 4), "conv_stride": (5, 8, 8)}
TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
        "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, **CONV}
# Whisper's window is 2 * max_source_positions mel frames of 10 ms: 50 positions = 1 s windows.
WHISPER_WINDOW_S = 1.0


def one_sentence(message: str) -> bool:
    """One sentence: ends with a period, no line breaks, no '. X' sentence break inside."""
    return message.endswith(".") and "\n" not in message and re.search(r"[.;:!?]\s+[A-Z][a-z]", message) is None


def speechlike(seconds: float, seed: int = 0, freq: float = 180.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    return (0.2 * envelope * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random wav2vec2 (group norm), HuBERT (layer norm), WavLM and Whisper models,
    saved with save_pretrained."""
    root = tmp_path_factory.mktemp("hf_models")
    torch.manual_seed(0)
    folders = {}
    specs = {
        "wav2vec2": (transformers.Wav2Vec2Config(**TINY, feat_extract_norm="group"), transformers.Wav2Vec2Model),
        "hubert": (transformers.HubertConfig(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True),
                   transformers.HubertModel),
        "wavlm": (transformers.WavLMConfig(**TINY, num_buckets=16, max_bucket_distance=40), transformers.WavLMModel),
    }
    for key, (config, cls) in specs.items():
        folders[key] = root / key
        cls(config).save_pretrained(folders[key])
    # HuBERT gets a feature extractor config that asks for the attention mask, as large models do.
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folders["hubert"])
    whisper = transformers.WhisperConfig(
        d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
        decoder_attention_heads=2, decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=int(WHISPER_WINDOW_S * 50),
        max_target_positions=16, vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )
    folders["whisper"] = root / "whisper"
    transformers.WhisperModel(whisper).save_pretrained(folders["whisper"])
    return folders


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


# --------------------------------------------------------------------------- mel

def test_mel_filterbank_and_whisper_log_mel_match_transformers():
    from transformers.audio_utils import mel_filter_bank

    theirs = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0, max_frequency=8000.0,
                             sampling_rate=SR, norm="slaney", mel_scale="slaney")
    ours = mel_filterbank(400, 80, SR, 0.0, 8000.0).numpy()
    assert np.abs(ours - theirs).max() < 1e-7
    audio = speechlike(3.0)
    reference = transformers.WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=SR, return_tensors="np")
    window = torch.zeros(1, 30 * SR)
    window[0, : audio.size] = torch.from_numpy(audio)
    assert np.abs(whisper_log_mel(window, torch.from_numpy(ours)).numpy() - reference.input_features).max() < 1e-5


def test_mel_encoder_shapes_frame_rate_and_gradients():
    encoder = build_encoder({"kind": "mel", "dim": 32, "hidden": 24})
    assert isinstance(encoder, MelEncoder) and isinstance(encoder, SpeechEncoder)
    assert encoder.frame_rate == 100.0 and encoder.output_dim == 32 and encoder.trainable
    audio = torch.from_numpy(speechlike(1.5))[None].repeat(2, 1).requires_grad_(False)
    features, mask = encoder(audio)
    assert features.shape == (2, 150, 32) and mask.shape == (2, 150) and bool(mask.all())
    features.pow(2).mean().backward()
    for parameter in encoder.parameters():
        assert parameter.grad is not None and float(parameter.grad.abs().sum()) > 0
    assert encoder.encode(speechlike(0.333)).shape == (34, 32)  # ceil(5328 / 160)


def test_mel_padded_batch_equals_single_clips():
    encoder = build_encoder("mel")
    clips = [speechlike(1.0, seed=1), speechlike(0.43, seed=2)]
    audio = torch.zeros(2, clips[0].size)
    audio_mask = torch.zeros(2, clips[0].size, dtype=torch.bool)
    for i, clip in enumerate(clips):
        audio[i, : clip.size] = torch.from_numpy(clip)
        audio_mask[i, : clip.size] = True
    audio[1, clips[1].size:] = 0.7  # garbage in the padding must not leak in
    with torch.no_grad():
        features, mask = encoder(audio, audio_mask)
    assert mask.sum(1).tolist() == [100, 43]
    for i, clip in enumerate(clips):
        single = encoder.encode(clip)
        np.testing.assert_allclose(features[i, : len(single)].numpy(), single, atol=1e-5)
        assert float(features[i, len(single):].abs().sum()) == 0.0


def test_frozen_mel_encoder_has_no_trainable_parameters():
    encoder = build_encoder({"kind": "mel", "freeze": True})
    assert not encoder.trainable and all(not p.requires_grad for p in encoder.parameters())


def test_spec_round_trip_gives_same_outputs(models):
    audio = speechlike(1.2)
    for spec in ({"kind": "mel", "dim": 16, "hidden": 8, "seed": 3},
                 {"kind": "hf", "model": str(models["wav2vec2"]), "layer": 1},
                 {"kind": "hf", "model": str(models["whisper"])}):
        encoder = build_encoder(spec)
        rebuilt = build_encoder(json.loads(json.dumps(encoder.spec())))
        assert rebuilt.spec() == encoder.spec() and rebuilt.name == encoder.name
        np.testing.assert_array_equal(rebuilt.encode(audio), encoder.encode(audio))
    assert build_encoder({"kind": "mel", "seed": 4}).weights_hash() != build_encoder({"kind": "mel", "seed": 5}).weights_hash()


# --------------------------------------------------------------------------- transformers models

@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm"])
def test_hf_encoder_loads_offline_with_shapes_and_frame_rate(models, kind):
    encoder = build_encoder({"kind": "hf", "model": str(models[kind])})
    assert isinstance(encoder, HFWav2Vec2Encoder)
    assert encoder.frame_rate == 50.0 and encoder.output_dim == 16
    assert not encoder.trainable and all(not p.requires_grad for p in encoder.parameters())
    assert re.fullmatch(r"hf:[0-9a-f]{16}:layer-1", encoder.name)
    audio = torch.from_numpy(np.stack([speechlike(2.0, seed=1), speechlike(2.0, seed=2)]))
    audio_mask = torch.ones_like(audio, dtype=torch.bool)
    audio_mask[1, SR:] = False
    encoder.train()  # a frozen encoder stays in eval mode inside a training model
    assert not encoder.model.training
    features, mask = encoder(audio, audio_mask)
    assert features.shape == (2, 100, 16) and not features.requires_grad
    assert mask.sum(1).tolist() == [100, 50]  # the conv stack's output lengths: 50 frames/s
    assert float(features[1, 50:].abs().sum()) == 0.0


def test_hf_attention_mask_makes_padded_items_match_single_clips(models):
    encoder = build_encoder({"kind": "hf", "model": str(models["hubert"])})
    assert encoder.use_attention_mask and encoder.do_normalize
    clips = [speechlike(1.5, seed=3), speechlike(0.8, seed=4)]
    audio = torch.zeros(2, clips[0].size)
    audio_mask = torch.zeros_like(audio, dtype=torch.bool)
    for i, clip in enumerate(clips):
        audio[i, : clip.size], audio_mask[i, : clip.size] = torch.from_numpy(clip), True
    features, mask = encoder(audio, audio_mask)
    single = encoder.encode(clips[1])
    assert int(mask[1].sum()) == len(single)
    np.testing.assert_allclose(features[1, : len(single)].numpy(), single, atol=1e-4)


def test_hf_fine_tuning_keeps_feature_extractor_frozen(models):
    encoder = build_encoder({"kind": "hf", "model": str(models["wav2vec2"]), "freeze": False})
    assert encoder.trainable
    assert all(not p.requires_grad for p in encoder.model.feature_extractor.parameters())
    assert all(p.requires_grad for p in encoder.model.encoder.parameters())
    encoder.train()
    assert encoder.model.encoder.training and not encoder.model.feature_extractor.training
    features, _ = encoder(torch.from_numpy(speechlike(1.0))[None])
    features.pow(2).mean().backward()
    assert all(p.grad is None for p in encoder.model.feature_extractor.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in encoder.model.encoder.parameters())
    everything = build_encoder({"kind": "hf", "model": str(models["wav2vec2"]), "freeze": False,
                                "freeze_feature_extractor": False})
    assert all(p.requires_grad for p in everything.model.feature_extractor.parameters())


@pytest.mark.parametrize("kind", ["wavlm", "whisper"])
def test_layer_choice_changes_output(models, kind):
    audio = speechlike(1.0)
    outputs = {layer: build_encoder({"kind": "hf", "model": str(models[kind]), "layer": layer}).encode(audio)
               for layer in (0, 1, -1)}
    assert outputs[0].shape == outputs[1].shape == outputs[-1].shape
    assert not np.allclose(outputs[0], outputs[1]) and not np.allclose(outputs[1], outputs[-1])
    np.testing.assert_array_equal(
        build_encoder({"kind": "hf", "model": str(models[kind]), "layer": 2}).encode(audio), outputs[-1])
    with pytest.raises(VoxmeshError, match="layer 7"):
        build_encoder({"kind": "hf", "model": str(models[kind]), "layer": 7})


def test_whisper_encoder_windows_long_audio(models):
    encoder = build_encoder({"kind": "hf", "model": str(models["whisper"])})
    assert isinstance(encoder, WhisperSpeechEncoder)
    assert encoder.frame_rate == 50.0 and encoder.window_samples == int(WHISPER_WINDOW_S * SR)
    assert not encoder.trainable
    audio = speechlike(2.5 * WHISPER_WINDOW_S, seed=5)
    features = encoder.encode(audio)
    assert features.shape == (125, 16)  # three windows, cut to the real 2.5 windows
    window = encoder.window_samples
    second = encoder.encode(audio[window: 2 * window])
    np.testing.assert_allclose(features[50:100], second, atol=1e-5)
    np.testing.assert_allclose(features[:50], encoder.encode(audio[:window]), atol=1e-5)
    # In a batch, a short clip beside the long one gets the same features as alone.
    short = speechlike(0.3, seed=6)
    batch = torch.zeros(2, audio.size)
    batch[0], batch[1, : short.size] = torch.from_numpy(audio), torch.from_numpy(short)
    mask = torch.zeros_like(batch, dtype=torch.bool)
    mask[0], mask[1, : short.size] = True, True
    with torch.no_grad():
        batched, feature_mask = encoder(batch, mask)
    assert feature_mask.sum(1).tolist() == [125, 15]
    np.testing.assert_allclose(batched[1, :15].numpy(), encoder.encode(short), atol=1e-5)


def test_whisper_fine_tuning_freezes_convs_by_default(models):
    encoder = build_encoder({"kind": "hf", "model": str(models["whisper"]), "freeze": False})
    assert encoder.trainable
    assert not encoder.model.conv1.weight.requires_grad and not encoder.model.conv2.weight.requires_grad
    assert encoder.model.layers[0].fc1.weight.requires_grad


def test_missing_model_errors_are_one_sentence(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(VoxmeshError) as folder_error:
        build_encoder({"kind": "hf", "model": str(missing)})
    assert str(missing) in str(folder_error.value) and one_sentence(str(folder_error.value))
    with pytest.raises(VoxmeshError) as hub_error:
        build_encoder("hf:voxmesh-tests/no-such-model")
    message = str(hub_error.value)
    assert "voxmesh-tests/no-such-model" in message and "save_pretrained" in message and one_sentence(message)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VoxmeshError) as empty_error:
        build_encoder({"kind": "hf", "model": str(empty)})
    assert one_sentence(str(empty_error.value))


def test_bad_specs_are_rejected():
    with pytest.raises(VoxmeshError, match="unknown"):
        build_encoder({"kind": "spectrogram"})
    with pytest.raises(VoxmeshError, match="'layers'"):
        build_encoder({"kind": "mel", "layers": 3})


# --------------------------------------------------------------------------- alignment

@pytest.mark.parametrize("fps", [25, 30, 60])
def test_alignment_lengths_and_linear_ramp(fps):
    seconds = 2.37
    samples = int(seconds * SR)
    frames = mesh_frames(samples, fps)
    assert frames == round(seconds * fps)
    ramp = torch.linspace(0.0, 1.0, 118)[:, None] * torch.tensor([1.0, -2.0, 3.0])  # [F, C] at 50 frames/s
    aligned = align_features(ramp, frames)
    assert aligned.shape == (1, frames, 3)
    expected = torch.linspace(0.0, 1.0, frames)[:, None] * torch.tensor([1.0, -2.0, 3.0])
    torch.testing.assert_close(aligned[0], expected, atol=1e-6, rtol=0)
    # Without num_frames, the length comes from the features' duration.
    assert align_features(ramp, frame_rate=50.0, fps=fps).shape[1] == round(118 / 50 * fps)


@pytest.mark.parametrize("fps", [25, 30, 60])
def test_alignment_padded_items_match_single_items(fps):
    torch.manual_seed(0)
    lengths = [100, 37, 64]
    features = torch.randn(3, 100, 5)
    mask = torch.arange(100)[None] < torch.tensor(lengths)[:, None]
    features = torch.where(mask[..., None], features, torch.full_like(features, 9.0))  # padding garbage
    aligned = align_features(features, feature_mask=mask, frame_rate=50.0, fps=fps)
    targets = [int(n / 50 * fps + 0.5) for n in lengths]  # half up, as mesh_frames rounds
    assert aligned.shape == (3, max(targets), 5)
    for i, (n, t) in enumerate(zip(lengths, targets)):
        single = align_features(features[i, :n], t)
        torch.testing.assert_close(aligned[i, :t], single[0])
        assert float(aligned[i, t:].abs().sum()) == 0.0
    explicit = align_features(features, torch.tensor(targets), feature_mask=mask, total_frames=max(targets) + 4)
    assert explicit.shape == (3, max(targets) + 4, 5)
    torch.testing.assert_close(explicit[:, : max(targets)], aligned)
    assert float(explicit[:, max(targets):].abs().sum()) == 0.0


def test_mesh_frames_rounds_half_up():
    assert mesh_frames(16_000, 30) == 30
    assert mesh_frames(8_800, 25) == 14  # 13.75
    assert mesh_frames(1_600 * 5 + 320, 25) == 13  # 13.0
    assert mesh_frames(16_320, 25) == 26  # 25.5 -> 26


# --------------------------------------------------------------------------- cache

def test_feature_cache_hits_skip_the_encoder(tmp_path, models):
    encoder = build_encoder({"kind": "hf", "model": str(models["wavlm"])})
    calls = []
    encoder.register_forward_hook(lambda *_: calls.append(1))
    cache = FeatureCache(encoder, root=tmp_path)
    audio = speechlike(1.1)
    first = cache.get(audio)
    assert (cache.hits, cache.misses, len(calls)) == (0, 1, 1)
    second = cache.get(audio)
    assert (cache.hits, cache.misses, len(calls)) == (1, 1, 1)
    np.testing.assert_array_equal(first, second)
    assert cache.path_for(audio).is_file() and not list(cache.root.glob(".*tmp*"))
    cache.get(speechlike(1.1, seed=9))
    assert (cache.hits, cache.misses, len(calls)) == (1, 2, 2)
    # A second cache over the same frozen weights finds the files; another layer does not.
    assert FeatureCache(encoder, root=tmp_path).path_for(audio) == cache.path_for(audio)
    other = build_encoder({"kind": "hf", "model": str(models["wavlm"]), "layer": 1})
    assert FeatureCache(other, root=tmp_path).path_for(audio) != cache.path_for(audio)


def test_feature_cache_refuses_trainable_encoders(tmp_path):
    with pytest.raises(VoxmeshError, match="trainable") as error:
        FeatureCache(build_encoder("mel"), root=tmp_path)
    assert one_sentence(str(error.value))
    frozen = build_encoder({"kind": "mel", "freeze": True})
    cache = FeatureCache(frozen, root=tmp_path)
    frozen.requires_grad_(True)
    with pytest.raises(VoxmeshError):
        cache.get(speechlike(0.5))
