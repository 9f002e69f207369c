"""Does the mouth open and close with the syllables of REAL human speech?

A model is trained on synthesized speech; this checks it on recordings of people. For
each clip the model animates the face (``voxmesh.load_model(MODEL).animate(audio,
seed=0)`` -> ``[T, V, 3]``) and two curves are compared frame by frame:

* mouth opening: how far the upper inner-lip rim sits above the lower one (the mean
  over the template's ``inner_lip_pairs``, the pairs voxmesh's MOD metric uses, of the
  upper vertex's height minus the lower one's; templates without them fall back to
  ``lip_midpoints``, then to the centroids of the ``upper_lip`` and ``lower_lip``
  regions), minus its median over the clip. It is signed on purpose: a model can push
  the upper rim through the lower one, which a plain distance (``--opening euclidean``,
  what the rig and MOD use) would read as an open mouth;
* loudness: the RMS of the 16 kHz audio the model hears, in a window centred on each
  mesh frame (frame k shows the instant k / fps; the window is two frames long unless
  ``--window-ms`` says otherwise), linear and in dB (floored 60 dB below the clip's
  loudest frame, so digital silence does not dominate).

Per clip: Pearson r on linear RMS, r on dB, and the best r over lags of -3..+3 frames
with its lag (positive lag: the mouth moves that many frames after the sound). Since
a mouth that is merely open during speech and shut in pauses already scores well,
``r_dB speech`` repeats r on dB over the frames within 30 dB of the clip's loudest one
(syllables, not speech against silence). The table also gives how far the mouth moves
(95th minus 5th percentile of the opening, mm) and how often the lips cross (frames
whose upper rim lies below the lower one on average).

Prints the table, writes ``benchmarks/results/real_speech.json`` (with the model used)
and ``benchmarks/results/real_speech_<model>.png``: the normalised opening and loudness
over time for the longest clip, and r against lag for every clip.

Recordings: the Debian package ``codec2-examples`` (``apt-get install codec2-examples``,
or run this script with ``--install``) ships real speech recordings, raw 16-bit signed
little-endian mono at 8 kHz, under /usr/share/codec2/raw/ (plus one 16 kHz wav,
speech_orig_16k.wav). They are read from there and never copied into this repository.
Their licence, from /usr/share/doc/codec2-examples/copyright (codec2-examples 1.0.5-1)::

    Upstream-Name: codec2
    Source: https://github.com/drowe67/codec2/
    Files: ... raw/* ... wav/* ...
    Copyright: Copyright 2007-2019 David Rowe
    License: LGPL-2.1

    License: LGPL-2.1
        This library is free software; you can redistribute it and/or
        modify it under the terms of the GNU Lesser General Public
        License as published by the Free Software Foundation; either
        version 2.1 of the License, or (at your option) any later version.

        This library is distributed in the hope that it will be useful,
        but WITHOUT ANY WARRANTY; without even the implied warranty of
        MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the GNU
        Lesser General Public License for more details.

        On Debian systems, the complete text of the GNU Lesser General Public
        License (LGPL) version 2.1 can be found in the file
        '/usr/share/common-licenses/LGPL-2.1'.

Which files are speech (checked by reading their samples and spectrograms): see
``CLIPS`` and ``SKIPPED``. Modem and sine test signals are left out, so are codec
outputs (f2400, m2400 are forig, morig after a 2400 bit/s codec) and excerpts of other
files (hts1a, hts2a, hts1 and hts2 are parts of hts; ve9qrp is the long version of
ve9qrp_10s).

Usage::

    python benchmarks/bench_real_speech.py [--model default|RUN_OR_CHECKPOINT] [--install]
        [--clips hts,kristoff,...] [--device cpu] [--window-ms MS] [--list]
"""

from __future__ import annotations

import os

# On a machine shared with other jobs, spinning OpenMP threads make small ops slow.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

RAW_DIR = Path("/usr/share/codec2/raw")
COPYRIGHT = Path("/usr/share/doc/codec2-examples/copyright")
RESULTS = Path(__file__).resolve().parent / "results"
RAW_RATE = 8000
SAMPLE_RATE = 16000
LAGS = range(-3, 4)
DB_RANGE = 60.0
SPEECH_DB = 30.0  # "speech" frames: within this many dB of the clip's loudest frame
INSTALL_HINT = "run `apt-get install codec2-examples` (or this script with --install)"


class Clip(NamedTuple):
    name: str
    file: str
    kind: str  # "clean", "noisy" (background noise) or "off-air" (HF radio recording)
    note: str


CLIPS = [
    Clip("hts", "hts.raw", "clean", "sentences, 24 s (hts1, hts2 are its first 12 s)"),
    Clip("kristoff", "kristoff.raw", "clean", "one speaker"),
    Clip("cq_ref", "cq_ref.raw", "clean", "one speaker, two phrases"),
    Clip("big_dog", "big_dog.raw", "clean", "one sentence"),
    Clip("cross", "cross.raw", "clean", "one sentence"),
    Clip("morig", "morig.raw", "clean", "one sentence (codec2's male original)"),
    Clip("forig", "forig.raw", "clean", "one sentence (codec2's female original)"),
    Clip("speech_orig_16k", "speech_orig_16k.wav", "clean", "wideband 16 kHz wav, several sentences"),
    Clip("mmt1", "mmt1.raw", "noisy", "speech over strong background noise"),
    Clip("g3plx", "g3plx.raw", "off-air", "HF radio recording"),
    Clip("ve9qrp_10s", "ve9qrp_10s.raw", "off-air", "HF radio recording, first 10 s of ve9qrp"),
    Clip("vk5qi", "vk5qi.raw", "off-air", "HF radio recording"),
]

SKIPPED = {
    "700d_end_over.raw": "FreeDV 700D modem signal",
    "sine1k_2Hz_spread.raw": "1 kHz sine test signal",
    "sine1k_2ms_delay_2Hz_spread.raw": "1 kHz sine test signal",
    "test_datac1_006.raw": "data modem signal",
    "testframes_700d.raw": "modem test frames",
    "f2400.raw": "forig after a 2400 bit/s codec (not an original recording)",
    "m2400.raw": "morig after a 2400 bit/s codec (not an original recording)",
    "hts1.raw": "seconds 0-6 of hts",
    "hts2.raw": "seconds 6-12 of hts",
    "hts1a.raw": "seconds 0-3 of hts1",
    "hts2a.raw": "seconds 0-3 of hts2",
    "ve9qrp.raw": "112 s version of ve9qrp_10s",
}


# ---- pure measures (tested in tests/test_real_speech_measure.py) ------------------------

def lip_vertex_sets(template) -> tuple[np.ndarray, np.ndarray, str]:
    """(upper, lower, how) vertex indices that measure the mouth opening of a template
    (an object with ``vertex_pairs`` and ``regions`` dicts, like voxmesh's Template).
    Equal-length sets are paired vertex by vertex; otherwise their centroids are used."""
    pairs = getattr(template, "vertex_pairs", {}) or {}
    regions = getattr(template, "regions", {}) or {}
    for name in ("inner_lip_pairs", "lip_midpoints"):
        if name in pairs and len(pairs[name]):
            p = np.asarray(pairs[name], dtype=np.int64).reshape(-1, 2)
            return p[:, 0], p[:, 1], name
    if "upper_lip" in regions and "lower_lip" in regions:
        return (np.asarray(regions["upper_lip"], np.int64), np.asarray(regions["lower_lip"], np.int64),
                "upper_lip/lower_lip centroids")
    raise ValueError("The template has neither inner_lip_pairs, lip_midpoints nor upper_lip/lower_lip regions; "
                     "the mouth opening cannot be measured on it.")


def mouth_opening(vertices: np.ndarray, upper: np.ndarray, lower: np.ndarray, reference: str = "median",
                  mode: str = "vertical", up_axis: int = 1) -> np.ndarray:
    """Mouth opening per frame ``[T]`` (the vertices' units) of ``vertices [T, V, 3]``.

    mode "vertical": the height of the upper set above the lower one along ``up_axis``
    (y); negative when the upper lip's rim is pushed below the lower one's, so lips that
    cross read as more closed than closed rather than as open. "euclidean": the distance
    (what voxmesh's rig and MOD metric use), blind to which lip is on top. Upper and lower
    sets of equal length are paired vertex by vertex (mean over the pairs); otherwise
    their centroids are compared. ``reference``: "median" or "first" subtracts that
    frame's value, "none" keeps the raw opening."""
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 3 or v.shape[2] != 3:
        raise ValueError(f"vertices have shape {v.shape}; expected [T, V, 3].")
    upper, lower = np.asarray(upper, np.int64).reshape(-1), np.asarray(lower, np.int64).reshape(-1)
    if len(upper) == len(lower):
        gap = v[:, upper] - v[:, lower]  # [T, P, 3]
    else:
        gap = (v[:, upper].mean(axis=1) - v[:, lower].mean(axis=1))[:, None]  # [T, 1, 3]
    if mode == "vertical":
        opening = gap[..., up_axis].mean(axis=1)
    elif mode == "euclidean":
        opening = np.linalg.norm(gap, axis=-1).mean(axis=1)
    else:
        raise ValueError(f"mode is {mode!r}; use 'vertical' or 'euclidean'.")
    if reference == "median":
        return opening - np.median(opening) if opening.size else opening
    if reference == "first":
        return opening - opening[0] if opening.size else opening
    if reference == "none":
        return opening
    raise ValueError(f"reference is {reference!r}; use 'median', 'first' or 'none'.")


def loudness_envelope(samples: np.ndarray, sample_rate: int, fps: float, num_frames: int,
                      window_seconds: float | None = None) -> np.ndarray:
    """RMS ``[num_frames]`` of ``samples`` in a window centred on each frame's instant
    k / fps (default length two frames); the signal is zero outside its ends."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    window = 2.0 / fps if window_seconds is None else float(window_seconds)
    half = max(1, round(window * sample_rate / 2))
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    centres = np.round(np.arange(num_frames) * sample_rate / fps).astype(np.int64)
    lo = np.clip(centres - half, 0, len(x))
    hi = np.clip(centres + half, 0, len(x))
    return np.sqrt(np.maximum(energy[hi] - energy[lo], 0.0) / (2 * half))


def to_db(rms: np.ndarray, floor_db: float = DB_RANGE) -> np.ndarray:
    """``20 log10(rms)`` floored ``floor_db`` below the loudest value."""
    rms = np.asarray(rms, dtype=np.float64)
    db = 20.0 * np.log10(np.maximum(rms, 1e-12))
    return np.maximum(db, db.max() - floor_db) if db.size else db


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either is constant or shorter than 3."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) != len(b):
        raise ValueError(f"pearson of {len(a)} and {len(b)} values; pass equal lengths.")
    if len(a) < 3:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 1e-300 else float("nan")


def lagged_correlations(mouth: np.ndarray, loudness: np.ndarray, lags=LAGS) -> dict[int, float]:
    """Pearson r for each lag over the overlapping frames; lag > 0 pairs the mouth at
    frame t + lag with the loudness at frame t (the mouth follows the sound)."""
    mouth, loudness = np.asarray(mouth), np.asarray(loudness)
    if len(mouth) != len(loudness):
        raise ValueError(f"{len(mouth)} mouth frames and {len(loudness)} loudness frames; they must match.")
    n, out = len(mouth), {}
    for lag in lags:
        if lag >= 0:
            out[int(lag)] = pearson(mouth[lag:], loudness[:n - lag])
        else:
            out[int(lag)] = pearson(mouth[:n + lag], loudness[-lag:])
    return out


def best_lag(correlations: dict[int, float]) -> tuple[int, float]:
    """(lag, r) of the highest r (NaN ignored; ties go to the smallest |lag|)."""
    valid = [(lag, r) for lag, r in correlations.items() if np.isfinite(r)]
    if not valid:
        return 0, float("nan")
    return max(valid, key=lambda item: (item[1], -abs(item[0]), -item[0]))


def normalise(x: np.ndarray) -> np.ndarray:
    """Scaled to 0..1 (a constant curve becomes zeros)."""
    x = np.asarray(x, dtype=np.float64)
    span = x.max() - x.min() if x.size else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def measure(vertices: np.ndarray, samples: np.ndarray, sample_rate: int, fps: float, upper: np.ndarray,
            lower: np.ndarray, window_seconds: float | None = None, lags=LAGS, mode: str = "vertical") -> dict:
    """Every number of one clip, plus its curves (under "curves")."""
    opening = mouth_opening(vertices, upper, lower, "median", mode)
    rms = loudness_envelope(samples, sample_rate, fps, len(opening), window_seconds)
    db = to_db(rms)
    by_lag, by_lag_db = lagged_correlations(opening, rms, lags), lagged_correlations(opening, db, lags)
    lag, r_best = best_lag(by_lag)
    lag_db, r_best_db = best_lag(by_lag_db)
    speech = db > db.max() - SPEECH_DB if db.size else db.astype(bool)
    paired = len(np.asarray(upper).reshape(-1)) == len(np.asarray(lower).reshape(-1))
    raw_gap = mouth_opening(vertices, upper, lower, "none", "vertical")
    other = "euclidean" if mode == "vertical" else "vertical"
    return {
        "frames": len(opening),
        "r": by_lag.get(0, pearson(opening, rms)),
        "r_db": by_lag_db.get(0, pearson(opening, db)),
        "best_lag": lag, "best_r": r_best,
        "best_lag_db": lag_db, "best_r_db": r_best_db,
        "r_db_speech": pearson(opening[speech], db[speech]),
        "speech_fraction": float(speech.mean()) if speech.size else 0.0,
        f"r_db_{other}": pearson(mouth_opening(vertices, upper, lower, "none", other), db),
        "r_by_lag": {str(k): v for k, v in by_lag.items()},
        "r_db_by_lag": {str(k): v for k, v in by_lag_db.items()},
        "mouth_range_mm": float(1000 * np.ptp(np.percentile(opening, [5, 95]))) if len(opening) else 0.0,
        # Frames whose upper lip rim lies (on average) below the lower one: the lips cross.
        "lips_crossed_fraction": float((raw_gap < 0).mean()) if paired and raw_gap.size else None,
        "curves": {"opening": opening, "rms": rms, "db": db},
    }


# ---- recordings ------------------------------------------------------------------------

def read_clip(clip: Clip, raw_dir: Path = RAW_DIR) -> np.ndarray:
    """The clip as mono float32 at 16 kHz (raw files: int16 little-endian, 8 kHz)."""
    import soxr

    path = raw_dir / clip.file
    if path.suffix == ".raw":
        samples, rate = np.fromfile(path, dtype="<i2").astype(np.float32) / 32768.0, RAW_RATE
    else:
        import soundfile

        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        samples = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)


def install_recordings() -> bool:
    """apt-get update and install codec2-examples (needs root); True when it worked."""
    if os.geteuid() != 0:
        print("--install needs root (apt-get); run `sudo apt-get install codec2-examples` instead.")
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "codec2-examples"]):
        print("$", " ".join(command), flush=True)
        if subprocess.call(command, env=env) != 0:
            print(f"`{' '.join(command)}` failed; install codec2-examples by hand.")
            return False
    return RAW_DIR.is_dir()


def package_version() -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "codec2-examples"], capture_output=True,
                             text=True, check=False)
        return out.stdout.strip() or None
    except OSError:
        return None


# ---- report ----------------------------------------------------------------------------

def model_slug(model: str) -> str:
    path = Path(model)
    name = path.parent.name if path.name == "model" and path.parent.name else path.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"


def fmt(x: float, width: int = 6) -> str:
    return f"{x:>{width}.3f}" if np.isfinite(x) else f"{'nan':>{width}}"


def pct(x: float | None) -> str:
    return f"{100 * x:>7.0f}%" if x is not None else f"{'-':>8}"


def print_table(rows: list[dict], summary: dict) -> None:
    print(f"{'clip':<16} {'kind':<8} {'seconds':>7} {'r':>6} {'r_dB':>6} {'best r':>6} {'lag':>4} "
          f"{'best r_dB':>9} {'lag':>4} {'r_dB speech':>11} {'mouth mm':>8} {'crossed':>8}")
    for row in rows:
        print(f"{row['clip']:<16} {row['kind']:<8} {row['seconds']:>7.2f} {fmt(row['r'])} {fmt(row['r_db'])} "
              f"{fmt(row['best_r'])} {row['best_lag']:>+4d} {fmt(row['best_r_db'], 9)} {row['best_lag_db']:>+4d} "
              f"{fmt(row['r_db_speech'], 11)} {row['mouth_range_mm']:>8.2f} {pct(row['lips_crossed_fraction'])}")
    for name, s in summary.items():
        print(f"{'mean ' + name:<16} {'':<8} {s['seconds']:>7.2f} {fmt(s['r'])} {fmt(s['r_db'])} "
              f"{fmt(s['best_r'])} {'':>4} {fmt(s['best_r_db'], 9)} {'':>4} {fmt(s['r_db_speech'], 11)} "
              f"{s['mouth_range_mm']:>8.2f} {pct(s['lips_crossed_fraction'])}")


def summarise(rows: list[dict]) -> dict:
    """Means over all clips and over the clean ones (each clip counts once)."""
    groups = {"all": rows, "clean": [r for r in rows if r["kind"] == "clean"]}
    out = {}
    for name, group in groups.items():
        if not group:
            continue
        out[name] = {"clips": len(group), "seconds": float(sum(r["seconds"] for r in group))}
        for key in ("r", "r_db", "best_r", "best_r_db", "r_db_speech", "mouth_range_mm", "lips_crossed_fraction"):
            values = [r[key] for r in group if r.get(key) is not None]
            out[name][key] = float(np.nanmean(values)) if values else None
    return out


def plot(path: Path, model: str, longest: dict, rows: list[dict], fps: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = longest["curves"]
    t = np.arange(len(curves["opening"])) / fps
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 7.5), gridspec_kw={"height_ratios": [2, 1]})
    top.fill_between(t, normalise(curves["db"]), color="tab:orange", alpha=0.25, lw=0, label="loudness (dB RMS)")
    top.plot(t, normalise(curves["rms"]), color="tab:orange", lw=0.8, label="loudness (linear RMS)")
    top.plot(t, normalise(curves["opening"]), color="tab:blue", lw=1.6, label="mouth opening")
    top.set_xlim(t[0], t[-1] if len(t) > 1 else 1.0)
    top.set_xlabel("seconds")
    top.set_ylabel("normalised 0..1")
    top.set_title(f"{model_slug(model)} on real speech '{longest['clip']}' ({longest['seconds']:.1f} s): "
                  f"r = {longest['r']:.2f}, r_dB = {longest['r_db']:.2f}, "
                  f"mouth moves {longest['mouth_range_mm']:.2f} mm (5-95%)", fontsize=10)
    top.legend(loc="upper right", fontsize=8)
    lags = [int(k) for k in rows[0]["r_db_by_lag"]]
    for row in rows:
        style = "-" if row["kind"] == "clean" else ":"
        bottom.plot(lags, [row["r_db_by_lag"][str(k)] for k in lags], style, marker="o", ms=3, lw=1,
                    label=row["clip"])
    bottom.axhline(0.0, color="grey", lw=0.6)
    bottom.set_xlabel(f"lag, frames at {fps:g} fps (> 0: mouth after sound)")
    bottom.set_ylabel("r (mouth, dB RMS)")
    bottom.legend(fontsize=7, ncol=6, loc="lower center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def jsonable(x):
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="built-in name or a run/checkpoint folder")
    parser.add_argument("--install", action="store_true", help="apt-get install codec2-examples when missing")
    parser.add_argument("--clips", default=None, help="comma-separated clip names (default: all of CLIPS)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--window-ms", type=float, default=None, help="RMS window (default: two mesh frames)")
    parser.add_argument("--opening", choices=["vertical", "euclidean"], default="vertical",
                        help="mouth opening: signed height of the upper lip rim above the lower (default) or "
                             "the distance between them")
    parser.add_argument("--list", action="store_true", help="list the clips and the skipped files, then stop")
    parser.add_argument("--out", type=Path, default=RESULTS / "real_speech.json")
    args = parser.parse_args(argv)

    if args.list:
        for clip in CLIPS:
            print(f"{clip.name:<16} {clip.kind:<8} {clip.file:<22} {clip.note}")
        for file, why in SKIPPED.items():
            print(f"{'(skipped)':<16} {'':<8} {file:<22} {why}")
        return 0

    clips = CLIPS
    if args.clips:
        by_name = {c.name: c for c in CLIPS}
        unknown = [n for n in args.clips.split(",") if n not in by_name]
        if unknown:
            print(f"Unknown clip(s) {', '.join(unknown)}; choose from {', '.join(by_name)}.")
            return 2
        clips = [by_name[n] for n in args.clips.split(",")]

    if not RAW_DIR.is_dir():
        if not args.install:
            print(f"The real speech recordings are not here ({RAW_DIR}); {INSTALL_HINT}.")
            return 0
        if not install_recordings():
            return 1

    from voxmesh.animate import builtin_model_path

    builtin = builtin_model_path(args.model)
    if builtin is not None and not (builtin / "model.json").is_file():
        print(f"The built-in model '{args.model}' is not available yet; pass a trained checkpoint with --model PATH.")
        return 0

    import torch

    import voxmesh

    started = time.perf_counter()
    animation = voxmesh.load_model(args.model, device=args.device)
    upper, lower, how = lip_vertex_sets(animation.template)
    window = None if args.window_ms is None else args.window_ms / 1000.0
    rows = []
    for clip in clips:
        samples = read_clip(clip)
        t0 = time.perf_counter()
        vertices = animation.animate(samples, sample_rate=SAMPLE_RATE, seed=0)
        seconds_compute = time.perf_counter() - t0
        result = measure(vertices, samples, SAMPLE_RATE, animation.fps, upper, lower, window, mode=args.opening)
        rows.append({"clip": clip.name, "file": str(RAW_DIR / clip.file), "kind": clip.kind, "note": clip.note,
                     "seconds": len(samples) / SAMPLE_RATE, "animate_seconds": round(seconds_compute, 2),
                     **result})
    summary = summarise(rows)
    print(f"model {args.model} ({animation.method}, {animation.fps:g} fps); mouth opening: {args.opening} "
          f"gap of {how}; "
          f"{torch.get_num_threads()} torch thread(s)")
    print_table(rows, summary)

    longest = max(rows, key=lambda r: r["seconds"])
    png = RESULTS / f"real_speech_{model_slug(args.model)}.png"
    plot(png, args.model, longest, rows, animation.fps)
    info = animation.info
    report = {
        "model": args.model,
        "model_folder": str(Path(args.model).resolve()) if builtin is None else str(builtin),
        "method": animation.method,
        "step": info.get("step"),
        "encoder": (info.get("encoder") or {}).get("name"),
        "fps": animation.fps,
        "seed": 0,
        "device": args.device,
        "mouth_opening": f"{args.opening} gap of {how} ({len(upper)} upper, {len(lower)} lower vertices), "
                         "minus the clip's median",
        "speech_frames": f"r_db_speech: frames within {SPEECH_DB:g} dB of the clip's loudest frame",
        "loudness": {"window_seconds": window if window is not None else 2.0 / animation.fps,
                     "centred_on": "frame k at k / fps", "db_floor_below_peak": DB_RANGE,
                     "audio": "16 kHz (8 kHz raw files resampled with soxr HQ)"},
        "lag_convention": "lag > 0: the mouth at frame t + lag is paired with the loudness at frame t",
        "recordings": {"package": "codec2-examples", "version": package_version(), "folder": str(RAW_DIR),
                       "licence": "LGPL-2.1, Copyright 2007-2019 David Rowe (see " + str(COPYRIGHT) + ")",
                       "skipped": SKIPPED},
        "clips": [{k: v for k, v in row.items() if k != "curves"} for row in rows],
        "summary": summary,
        "plot": str(png.relative_to(RESULTS.parent.parent)) if png.is_relative_to(RESULTS.parent.parent) else str(png),
        "plot_clip": longest["clip"],
        "seconds_total": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(jsonable(report), indent=2) + "\n")
    print(f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
