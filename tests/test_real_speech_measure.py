"""The pure measures of benchmarks/bench_real_speech.py on synthetic arrays (no recordings,
no apt, no network)."""

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_real_speech.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_real_speech", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def lips(gaps, sideways=None):
    """Vertices [T, 4, 3]: two upper rim vertices (0, 1) and their lower partners (2, 3)
    ``gaps[t]`` metres below them; ``sideways`` shifts the lower ones along x."""
    gaps = np.asarray(gaps, dtype=np.float64)
    v = np.zeros((len(gaps), 4, 3))
    v[:, 0, 0], v[:, 1, 0] = -0.01, 0.01
    v[:, 2, 0], v[:, 3, 0] = -0.01, 0.01
    v[:, 2, 1] = v[:, 3, 1] = -gaps
    if sideways is not None:
        v[:, 2:, 0] += np.asarray(sideways)[:, None]
    return v


UPPER, LOWER = np.array([0, 1]), np.array([2, 3])


# ---- mouth opening ------------------------------------------------------------------------

def test_lip_sets_prefer_inner_lip_pairs_then_midpoints_then_regions(bench):
    pairs = {"inner_lip_pairs": np.array([[0, 2], [1, 3]]), "lip_midpoints": np.array([[5, 6]])}
    regions = {"upper_lip": np.array([7, 8, 9]), "lower_lip": np.array([10, 11])}
    up, lo, how = bench.lip_vertex_sets(SimpleNamespace(vertex_pairs=pairs, regions=regions))
    assert how == "inner_lip_pairs" and list(up) == [0, 1] and list(lo) == [2, 3]
    up, lo, how = bench.lip_vertex_sets(SimpleNamespace(vertex_pairs={"lip_midpoints": pairs["lip_midpoints"]},
                                                        regions=regions))
    assert how == "lip_midpoints" and list(up) == [5] and list(lo) == [6]
    up, lo, how = bench.lip_vertex_sets(SimpleNamespace(vertex_pairs={}, regions=regions))
    assert "centroids" in how and len(up) == 3 and len(lo) == 2
    with pytest.raises(ValueError, match="mouth opening"):
        bench.lip_vertex_sets(SimpleNamespace(vertex_pairs={}, regions={"lips": np.arange(3)}))


def test_mouth_opening_is_the_lip_gap_minus_its_median(bench):
    gaps = np.array([0.0, 0.004, 0.010, 0.002, 0.0])
    v = lips(gaps)
    np.testing.assert_allclose(bench.mouth_opening(v, UPPER, LOWER, "none"), gaps, atol=1e-12)
    np.testing.assert_allclose(bench.mouth_opening(v, UPPER, LOWER), gaps - np.median(gaps), atol=1e-12)
    np.testing.assert_allclose(bench.mouth_opening(v, UPPER, LOWER, "first"), gaps - gaps[0], atol=1e-12)
    np.testing.assert_allclose(bench.mouth_opening(v, UPPER, LOWER, "none", "euclidean"), gaps, atol=1e-12)


def test_crossed_lips_read_as_closed_vertically_but_open_as_a_distance(bench):
    gaps = np.array([0.003, -0.002])  # the second frame pushes the upper rim 2 mm below the lower one
    v = lips(gaps)
    np.testing.assert_allclose(bench.mouth_opening(v, UPPER, LOWER, "none", "vertical"), gaps, atol=1e-12)
    np.testing.assert_allclose(bench.mouth_opening(v, UPPER, LOWER, "none", "euclidean"), np.abs(gaps), atol=1e-12)


def test_sideways_slide_moves_only_the_euclidean_opening(bench):
    v = lips(np.full(3, 0.003), sideways=[0.0, 0.004, 0.0])
    np.testing.assert_allclose(bench.mouth_opening(v, UPPER, LOWER, "none"), 0.003, atol=1e-12)
    np.testing.assert_allclose(bench.mouth_opening(v, UPPER, LOWER, "none", "euclidean")[1], 0.005, atol=1e-12)


def test_unequal_sets_compare_centroids(bench):
    v = lips([0.0, 0.006])
    opening = bench.mouth_opening(v, np.array([0, 1]), np.array([2]), "none")
    np.testing.assert_allclose(opening, [0.0, 0.006], atol=1e-12)


def test_mouth_opening_rejects_bad_input(bench):
    with pytest.raises(ValueError, match=r"\[T, V, 3\]"):
        bench.mouth_opening(np.zeros((4, 3)), UPPER, LOWER)
    with pytest.raises(ValueError, match="reference"):
        bench.mouth_opening(lips([0.0, 1.0]), UPPER, LOWER, "mean")
    with pytest.raises(ValueError, match="mode"):
        bench.mouth_opening(lips([0.0, 1.0]), UPPER, LOWER, "none", "area")


# ---- loudness envelope --------------------------------------------------------------------

@pytest.mark.parametrize("seconds, fps, frames", [(1.0, 30.0, 30), (2.37, 30.0, 71), (1.0, 25.0, 25), (0.5, 30.0, 40)])
def test_envelope_has_one_value_per_mesh_frame(bench, seconds, fps, frames):
    x = np.random.default_rng(0).normal(size=int(seconds * 16000))
    env = bench.loudness_envelope(x, 16000, fps, frames)
    assert env.shape == (frames,) and np.all(np.isfinite(env)) and np.all(env >= 0)
    if frames / fps > seconds + 0.1:  # frames past the end of the audio are silent
        assert env[-1] == 0.0


def test_envelope_of_a_steady_sine_is_its_rms(bench):
    t = np.arange(16000) / 16000
    env = bench.loudness_envelope(0.5 * np.sin(2 * np.pi * 220 * t), 16000, 30.0, 30)
    np.testing.assert_allclose(env[1:-1], 0.5 / np.sqrt(2), rtol=0.02)
    assert env[0] < env[1]  # the first window is half outside the signal (zeros)


@pytest.mark.parametrize("fps", [25.0, 30.0, 60.0])
def test_envelope_windows_are_centred_on_the_frame_instants(bench, fps):
    x = np.zeros(2 * 16000)
    for k in (7, 23, 40):  # a 5 ms click at the instant of frame k (k / fps)
        centre = round(k / fps * 16000)
        x[centre - 40:centre + 40] = 1.0
    env = bench.loudness_envelope(x, 16000, fps, int(2 * fps), window_seconds=1.0 / fps)
    peaks = np.nonzero(env > 0.5 * env.max())[0]
    assert list(peaks) == [7, 23, 40]


def test_db_is_floored_below_the_peak(bench):
    db = bench.to_db(np.array([1.0, 0.1, 0.0, 1e-9]), floor_db=60.0)
    np.testing.assert_allclose(db, [0.0, -20.0, -60.0, -60.0], atol=1e-9)


# ---- correlation with lags ----------------------------------------------------------------

def test_pearson(bench):
    a = np.array([1.0, 2.0, 3.0, 5.0])
    assert bench.pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert bench.pearson(a, -a) == pytest.approx(-1.0)
    assert np.isnan(bench.pearson(a, np.ones(4)))
    assert np.isnan(bench.pearson(a[:2], a[:2]))
    with pytest.raises(ValueError, match="equal lengths"):
        bench.pearson(a, a[:3])


@pytest.mark.parametrize("shift", [-3, -1, 0, 2, 3])
def test_best_lag_finds_how_many_frames_the_mouth_follows_the_sound(bench, shift):
    rng = np.random.default_rng(1)
    loud = np.convolve(rng.random(200), np.ones(3) / 3, mode="same")
    mouth = np.roll(loud, shift)  # mouth[t + shift] = loud[t]: positive shift, mouth after sound
    by_lag = bench.lagged_correlations(mouth, loud)
    assert set(by_lag) == set(range(-3, 4))
    lag, r = bench.best_lag(by_lag)
    assert lag == shift and r > 0.99
    if shift != 0:
        assert by_lag[0] < r


def test_lagged_correlations_need_equal_lengths_and_best_lag_skips_nan(bench):
    with pytest.raises(ValueError, match="must match"):
        bench.lagged_correlations(np.zeros(10), np.zeros(9))
    assert bench.best_lag({-1: float("nan"), 0: 0.2, 1: 0.5}) == (1, 0.5)
    assert bench.best_lag({-1: 0.5, 0: 0.5, 1: 0.5}) == (0, 0.5)
    lag, r = bench.best_lag({0: float("nan")})
    assert lag == 0 and np.isnan(r)


# ---- one clip, end to end -----------------------------------------------------------------

def test_measure_a_mouth_that_follows_syllables_a_frame_late(bench):
    sr, fps, seconds = 16000, 30.0, 3.0
    t = np.arange(int(seconds * sr)) / sr
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0.0, None)  # four syllables a second
    audio = syllables * np.random.default_rng(2).normal(size=len(t))
    frames = int(seconds * fps)
    frame_env = np.clip(np.sin(2 * np.pi * 4.0 * np.arange(frames) / fps), 0.0, None)
    gaps = 0.01 * np.concatenate([[0.0], frame_env[:-1]])  # the mouth opens one frame after the sound
    result = bench.measure(lips(gaps), audio, sr, fps, UPPER, LOWER)
    assert result["frames"] == frames
    assert result["best_lag"] == 1 and result["best_r"] > 0.9
    assert result["r"] > 0.5 and result["r"] < result["best_r"]
    assert result["mouth_range_mm"] == pytest.approx(10.0, abs=0.5)
    assert result["lips_crossed_fraction"] == 0.0
    assert set(result["curves"]) == {"opening", "rms", "db"}
    assert all(len(c) == frames for c in result["curves"].values())


def test_measure_counts_crossed_lips_and_a_still_mouth_gives_nan(bench):
    audio = np.random.default_rng(3).normal(size=16000)
    crossed = bench.measure(lips(np.r_[np.full(10, -0.001), np.full(20, 0.002)]), audio, 16000, 30.0, UPPER, LOWER)
    assert crossed["lips_crossed_fraction"] == pytest.approx(1 / 3)
    still = bench.measure(lips(np.zeros(30)), audio, 16000, 30.0, UPPER, LOWER)
    assert np.isnan(still["r"]) and np.isnan(still["best_r"])
    assert bench.jsonable({"r": still["r"], "x": [np.float32(1.5)], "n": np.int64(2)}) == {"r": None, "x": [1.5],
                                                                                          "n": 2}


# ---- what the script says when something is missing ------------------------------------

def test_missing_recordings_are_one_sentence_pointing_at_apt(bench, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "RAW_DIR", tmp_path / "no-codec2")
    assert bench.main(["--model", "anything"]) == 0
    out = capsys.readouterr().out.strip()
    assert "apt-get install codec2-examples" in out and out.count("\n") == 0


def test_missing_default_model_is_one_sentence(bench, monkeypatch, tmp_path, capsys):
    import voxmesh.animate

    monkeypatch.setattr(bench, "RAW_DIR", tmp_path)
    monkeypatch.setattr(voxmesh.animate, "builtin_model_path", lambda name: tmp_path / "weights" / name)
    assert bench.main([]) == 0
    out = capsys.readouterr().out.strip()
    assert "'default' is not available yet" in out and out.count("\n") == 0


def test_model_slug(bench):
    assert bench.model_slug("/work/runs/ff_small/model") == "ff_small"
    assert bench.model_slug("/work/runs/ff small") == "ff_small"
    assert bench.model_slug("default") == "default"
