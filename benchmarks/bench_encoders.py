"""Speed of the speech encoders on CPU, and the exactness of the Whisper tiny.en
conversion from CTranslate2.

Real-time factor (RTF) = seconds of compute per second of audio, for one 10 s clip of
synthetic speech-like audio through ``SpeechEncoder.encode`` (no grad, batch 1): the
built-in mel encoder and Whisper tiny.en (which always encodes a whole 30 s window).
CTranslate2's own encoder on the same window is timed for reference. Seconds are the
best of --repeats runs after one warm-up.

The exactness check feeds the same log-mel window to our transformers encoder and to
``ctranslate2.models.Whisper.encode`` (float32 compute) and reports the largest and mean
absolute difference, beside the float32 round-off of our own encoder (the same weights run
in float64).

Prints a table and writes benchmarks/results/encoders.json.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import platform
import time
from pathlib import Path

from timing import best_seconds

import numpy as np
import torch

from voxmesh.audio.encoders import build_encoder

RESULTS = Path(__file__).resolve().parent / "results" / "encoders.json"
SR = 16_000


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced-sounding test signal: a 150 Hz harmonic stack with a 4 Hz syllable
    envelope plus a little noise, float32 ``[seconds * 16000]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0.0, None)
    voice = sum(np.sin(2 * np.pi * 150.0 * k * t) / k for k in range(1, 12))
    return (0.1 * envelope * voice + 0.005 * rng.standard_normal(t.size)).astype(np.float32)




def exactness(encoder, clip: np.ndarray) -> dict[str, float] | None:
    """Compare with CTranslate2 on one 30 s window holding ``clip``; None without ctranslate2."""
    if importlib.util.find_spec("ctranslate2") is None:
        return None
    import ctranslate2

    from voxmesh.audio.whisper_ct2 import find_whisper_tiny_en

    window = torch.zeros(1, encoder.window_samples)
    window[0, : clip.size] = torch.from_numpy(clip)
    with torch.no_grad():
        features = encoder.log_mel(window)
        ours = encoder.encode_log_mel(features).numpy()
        reference64 = copy.deepcopy(encoder.model).double()(features.double()).last_hidden_state.numpy()
    model = ctranslate2.models.Whisper(str(find_whisper_tiny_en()), device="cpu", compute_type="float32",
                                       intra_threads=torch.get_num_threads())
    theirs = np.array(model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features.numpy()))))
    difference = np.abs(ours - theirs)
    return {
        "max_abs_diff": float(difference.max()),
        "mean_abs_diff": float(difference.mean()),
        "max_abs_output": float(np.abs(theirs).max()),
        "float32_roundoff_max": float(np.abs(ours - reference64).max()),
        "float32_roundoff_mean": float(np.abs(ours - reference64).mean()),
        "ctranslate2_seconds": best_seconds(
            lambda: model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features.numpy()))), 3,
            warmup=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    clip = speechlike(args.seconds)
    rows = []
    for spec in ({"kind": "mel"}, {"kind": "whisper-tiny.en"}):
        start = time.perf_counter()
        encoder = build_encoder(spec)
        build_s = time.perf_counter() - start
        seconds = best_seconds(lambda: encoder.encode(clip), args.repeats, warmup=True)
        frames = encoder.encode(clip).shape[0]
        rows.append({"encoder": encoder.name, "build_s": build_s, "seconds": seconds,
                     "rtf": seconds / args.seconds, "frames": frames, "frame_rate": encoder.frame_rate,
                     "output_dim": encoder.output_dim})
    check = exactness(build_encoder("whisper-tiny.en"), clip)
    if check is not None:
        rows.append({"encoder": "ctranslate2 whisper tiny.en (reference)", "build_s": None,
                     "seconds": check["ctranslate2_seconds"], "rtf": check["ctranslate2_seconds"] / args.seconds,
                     "frames": 1500, "frame_rate": 50.0, "output_dim": 384})

    print(f"{args.seconds:g} s of audio, CPU, {torch.get_num_threads()} threads, batch 1")
    print(f"{'encoder':42s} {'build s':>8s} {'encode s':>9s} {'RTF':>8s} {'frames':>7s}")
    for row in rows:
        build = "-" if row["build_s"] is None else f"{row['build_s']:.2f}"
        print(f"{row['encoder']:42s} {build:>8s} {row['seconds']:9.4f} {row['rtf']:8.4f} {row['frames']:7d}")
    if check is not None:
        print(f"whisper-tiny.en vs ctranslate2 (same log-mel, float32): max |diff| {check['max_abs_diff']:.3g}, "
              f"mean {check['mean_abs_diff']:.3g} (outputs up to {check['max_abs_output']:.3g}); "
              f"our own float32 vs float64: max {check['float32_roundoff_max']:.3g}, "
              f"mean {check['float32_roundoff_mean']:.3g}")
    else:
        print("ctranslate2 is not installed: exactness check skipped")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "audio_seconds": args.seconds, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "encoders": rows, "ctranslate2_exactness": check,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
