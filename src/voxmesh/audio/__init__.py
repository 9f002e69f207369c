"""Audio loading and speech encoders."""

from voxmesh.audio.io import SAMPLE_RATE, load_audio

__all__ = ["SAMPLE_RATE", "load_audio"]
