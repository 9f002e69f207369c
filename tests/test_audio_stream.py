"""AudioStream: a file decoded and resampled forward in blocks gives exactly the samples
of load_audio, with memory bounded by the span read, whatever the file's length."""

import tracemalloc

import numpy as np
import pytest
import soundfile

from voxmesh.audio import AudioStream, load_audio
from voxmesh.errors import VoxmeshError


def tone(path, seconds: float, rate: int, channels: int = 1, fmt: str | None = None):
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    data = np.stack([signal * (1 + 0.1 * c) for c in range(channels)], axis=1) if channels > 1 else signal
    soundfile.write(path, data.astype(np.float32), rate, format=fmt)
    return path


def windows(total: int, size: int, hop: int):
    start = 0
    while True:
        yield start, min(start + size, total)
        if start + size >= total:
            return
        start += hop


@pytest.mark.parametrize("rate,channels,suffix", [(16000, 1, "wav"), (44100, 2, "wav"), (22050, 1, "flac"),
                                                  (48000, 6, "wav"), (8000, 1, "ogg")])
def test_windows_equal_the_whole_file_loaded(tmp_path, rate, channels, suffix):
    path = tone(tmp_path / f"a.{suffix}", 7.3, rate, channels)
    whole = load_audio(path)
    with AudioStream(path, block_seconds=1.0) as stream:
        assert stream.num_samples == len(whole)
        for first, last in windows(len(whole), 16000 * 2, 16000 * 2 - 4000):  # 2 s windows, 0.25 s overlap
            np.testing.assert_array_equal(stream.read(first, last), whole[first:last])


def test_reads_only_forward_and_pads_past_the_end(tmp_path):
    path = tone(tmp_path / "a.wav", 1.0, 16000)
    with AudioStream(path) as stream:
        stream.read(8000, 12000)
        with pytest.raises(ValueError, match="forward only"):
            stream.read(100, 200)
        tail = stream.read(15000, 17000)
    assert len(tail) == 2000 and not tail[1000:].any() and tail[:1000].any()


def test_memory_is_bounded_by_the_window_not_the_file(tmp_path):
    path = tone(tmp_path / "long.wav", 120.0, 44100)
    tracemalloc.start()
    try:
        load_audio(path)
        whole_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with AudioStream(path, block_seconds=2.0) as stream:
            for first, last in windows(stream.num_samples, 16000 * 4, 16000 * 3):
                stream.read(first, last)
        stream_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert whole_peak > 120 * 16000 * 4  # the whole recording at 16 kHz float32, at least
    assert stream_peak < whole_peak / 10


def test_bad_files_are_one_sentence_naming_the_file(tmp_path):
    with pytest.raises(VoxmeshError, match="missing.wav does not exist"):
        AudioStream(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(VoxmeshError, match="Cannot read audio file .*junk.wav"):
        AudioStream(tmp_path / "junk.wav")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(VoxmeshError, match="empty.wav holds no samples"):
        AudioStream(tmp_path / "empty.wav")
    samples = np.zeros(32000, np.float32)
    samples[20000] = np.nan
    soundfile.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    with AudioStream(tmp_path / "nan.wav", block_seconds=0.5) as stream:
        stream.read(0, 4000)  # the NaN is further on: found when its block is decoded
        with pytest.raises(VoxmeshError, match="nan.wav contains NaN"):
            stream.read(4000, 32000)
