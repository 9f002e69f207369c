"""Audio loading and speech encoders."""

from __future__ import annotations

import importlib
from typing import Any

from voxmesh.audio.io import SAMPLE_RATE, AudioStream, load_audio

# Encoders pull in torch (and transformers on use); they load on first access so that
# `from voxmesh.audio import load_audio` stays light for data code.
_LAZY = {
    "SpeechEncoder": "voxmesh.audio.encoders",
    "MelEncoder": "voxmesh.audio.encoders",
    "HFWav2Vec2Encoder": "voxmesh.audio.encoders",
    "WhisperSpeechEncoder": "voxmesh.audio.encoders",
    "build_encoder": "voxmesh.audio.encoders",
    "mel_filterbank": "voxmesh.audio.encoders",
    "whisper_log_mel": "voxmesh.audio.encoders",
    "align_features": "voxmesh.audio.features",
    "mesh_frames": "voxmesh.audio.features",
    "FeatureCache": "voxmesh.audio.features",
    "load_ct2_whisper_encoder": "voxmesh.audio.whisper_ct2",
    "read_ct2_model": "voxmesh.audio.whisper_ct2",
}

__all__ = ["SAMPLE_RATE", "AudioStream", "load_audio", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
