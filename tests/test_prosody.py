"""Prosody contours (pitch, voicing, loudness) and the encoder option that appends them."""

import numpy as np
import pytest
import torch

from voxmesh.audio import build_encoder
from voxmesh.audio.encoders import ProsodyEncoder
from voxmesh.audio.prosody import CHANNELS, prosody_contours
from voxmesh.errors import VoxmeshError

RATE = 16000


def tone(freq: float, seconds: float = 1.0, amplitude: float = 0.3) -> torch.Tensor:
    t = np.arange(int(seconds * RATE)) / RATE
    return torch.tensor(amplitude * np.sin(2 * np.pi * freq * t), dtype=torch.float32)


@pytest.mark.parametrize("freq", [90.0, 150.0, 220.0, 330.0])
def test_pitch_of_a_tone_within_two_percent(freq):
    contours, mask = prosody_contours(tone(freq)[None])
    assert contours.shape == (1, 100, len(CHANNELS)) and mask.all()
    inner = contours[0, 5:-5]
    assert inner[:, 1].eq(1).all()  # voiced
    heard = 100 * 2 ** inner[:, 0]
    assert torch.allclose(heard, torch.full_like(heard, freq), rtol=0.02)


def test_silence_and_noise_are_unvoiced_and_loudness_orders_levels():
    silence = torch.zeros(1, RATE)
    noise = torch.randn(1, RATE, generator=torch.Generator().manual_seed(0)) * 0.1
    quiet_loud = torch.cat([tone(150, 0.5, 0.03), tone(150, 0.5, 0.3)])[None]
    assert prosody_contours(silence)[0][..., :2].abs().max() == 0
    assert prosody_contours(noise)[0][0, 5:-5, 1].mean() < 0.1
    loudness = prosody_contours(quiet_loud)[0][0, :, 2]
    assert loudness[60:95].mean() - loudness[5:40].mean() == pytest.approx(1.0, abs=0.05)  # 20 dB = 1 unit


def test_padding_changes_nothing():
    clip = torch.cat([tone(140, 0.4), tone(200, 0.5)])
    alone, _ = prosody_contours(clip[None])
    padded = torch.cat([clip, torch.randn(5000)])[None]  # junk after the end: masked out
    mask = torch.zeros_like(padded, dtype=torch.bool)
    mask[0, : len(clip)] = True
    together, frame_mask = prosody_contours(padded, mask)
    assert torch.allclose(together[:, : alone.shape[1]], alone, atol=1e-5)
    assert together[:, alone.shape[1]:].abs().max() == 0 and frame_mask.sum() == alone.shape[1]


def test_encoder_option_appends_the_channels_at_the_inner_rate():
    encoder = build_encoder({"kind": "mel", "dim": 8, "hidden": 8, "prosody": True})
    assert isinstance(encoder, ProsodyEncoder) and encoder.output_dim == 8 + len(CHANNELS)
    assert encoder.name.endswith("+prosody") and encoder.name != build_encoder({"kind": "mel", "dim": 8, "hidden": 8}).name
    audio = torch.stack([tone(180, 0.7), tone(260, 0.7)])
    with torch.no_grad():
        features, mask = encoder(audio)
        inner, _ = encoder.inner(audio)
        rebuilt = build_encoder(encoder.spec())(audio)[0]  # the spec rebuilds it (checkpoints, caches)
    assert torch.equal(features[..., :8], inner)
    assert 100 * 2 ** features[0, 20:50, 8].mean() == pytest.approx(180, rel=0.03)
    assert torch.equal(rebuilt, features)
    with pytest.raises(VoxmeshError, match="'prosody' is 'yes'"):
        build_encoder({"kind": "mel", "prosody": "yes"})
