"""Anonymous memory of `animate` window by window, to tell growth from fluctuation.

`bench_animate.py` reports one peak a length; a peak is the largest of many samples, so a
longer run can show a higher one without any memory being kept. This script animates
``--seconds`` of synthesized speech from a file with the default model (``--steps`` DDIM
steps, one thread) through ``AnimationModel.iter_animation`` (the audio decoded a window at
a time) and records the process's ``RssAnon`` after every ``--every``-th window. Growth
shows as a trend between the first and the last third; fluctuation does not. Prints the
thirds and writes ``benchmarks/results/animate_memory_trace.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_animate import RESULTS, SAMPLE_RATE, AnonymousPeak, speech_audio  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "animate_memory_trace.json")
    args = parser.parse_args(argv)

    import soundfile
    import torch

    from voxmesh.animate import load_model

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="voxmesh-trace-") as scratch:
        wav = Path(scratch) / "speech.wav"
        soundfile.write(wav, speech_audio(args.seconds), SAMPLE_RATE, subtype="PCM_16")
        model = load_model("default")
        after_load = AnonymousPeak.now_kb() / 1024
        trace = []
        for index, _block in enumerate(model.iter_animation(wav, steps=args.steps)):
            if index % args.every == 0:
                trace.append({"window": index, "anon_mb": AnonymousPeak.now_kb() / 1024})
    thirds = [trace[: len(trace) // 3], trace[len(trace) // 3: 2 * len(trace) // 3], trace[2 * len(trace) // 3:]]
    summary = [{"windows": f"{part[0]['window']}-{part[-1]['window']}",
                "mean_mb": statistics.mean(r["anon_mb"] for r in part),
                "max_mb": max(r["anon_mb"] for r in part)} for part in thirds]
    print(f"animate {args.seconds:g} s, default model, {args.steps} DDIM steps, 1 thread; anonymous memory "
          f"after load {after_load:.0f} MB")
    for name, row in zip(("first third", "middle third", "last third"), summary):
        print(f"  {name:<13} windows {row['windows']:>9}: mean {row['mean_mb']:.0f} MB, max {row['max_mb']:.0f} MB")
    args.out.write_text(json.dumps({"seconds": args.seconds, "steps": args.steps, "every": args.every,
                                    "after_load_mb": after_load, "thirds": summary, "trace": trace}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
