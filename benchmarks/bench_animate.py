"""`voxmesh animate` end to end: real-time factor and peak memory on this machine's CPU.

For 10 s and 60 s of speech, to .npy and to .mp4, each case runs in a fresh child
process that does what the command does: ``voxmesh.animate.load_model(MODEL)`` then
``voxmesh.animate.animate_to_file(...)`` (read the audio, animate it in windows, write
the file). Per case:

* RTF (animate): seconds of ``animate_to_file`` per second of audio;
* RTF (command): the child's whole wall-clock time (Python start, imports, model load,
  animate, write) per second of audio: what a user waits for;
* peak RSS: the child's resident set size peak (``ru_maxrss``), the part of it the
  animation added over the loaded model, the peak of its anonymous memory alone
  (``RssAnon``, sampled: heap without file pages, such as the page cache of the .npy being
  written), and ffmpeg's own peak for .mp4 (a process of its own, so not in the child's).

``--steps N`` samples diffusion models with N DDIM steps instead of the checkpoint's: memory
does not depend on it (one window's tensors at a time), so the memory-against-length runs
(``--seconds 60 600 3600 --formats npy --steps 5``) use few steps to finish in minutes.

Threads: ``--threads`` (default 2) torch, OpenMP and numba (renderer) threads,
``OMP_WAIT_POLICY=PASSIVE``; the load average is recorded, as other jobs on a shared
machine slow every number here.
Audio: voxmesh's synthesized speech (espeak-ng, several voices) of generated sentences,
joined with short pauses and cut to each length, mono 16 kHz.

Model: ``--model`` is a built-in name (default "default") or a checkpoint / training run
folder. Prints a table and writes ``benchmarks/results/animate.json`` with the model used
(the same name whichever model, so a run with the built-in model replaces one made with a
stand-in checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
LENGTHS = (10.0, 60.0)
FORMATS = ("npy", "mp4")
SAMPLE_RATE = 16_000


# ---- the speech ------------------------------------------------------------------------------------

def speech_audio(seconds: float, seed: int = 0):
    """At least ``seconds`` of synthesized speech, mono 16 kHz float32: generated sentences
    said by a few voices in turn, 0.3 s of silence between them."""
    import numpy as np

    from voxmesh.data.synthetic import generate_sentences, speaker_voices, synthesize

    voices = speaker_voices(4, seed=seed)
    pause = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    parts, total, count = [], 0, 0
    while total < seconds * SAMPLE_RATE:
        sentences = generate_sentences(count + 8, seed=seed)[count:]
        for sentence in sentences:
            clip = synthesize(sentence, voices[count % len(voices)], lead_silence=0.1, tail_silence=0.1)
            parts += [clip.audio, pause]
            total += len(clip.audio) + len(pause)
            count += 1
    return np.concatenate(parts)[: round(seconds * SAMPLE_RATE)]


# ---- one case, in a child process ------------------------------------------------------------------

class AnonymousPeak:
    """The peak of this process's anonymous resident memory (``RssAnon``: heap, not the
    pages of mapped files such as the .npy memory map), sampled every 10 ms (Linux)."""

    def __init__(self):
        import threading

        self.peak_kb: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def now_kb() -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            value = self.now_kb()
            if value is not None:
                self.peak_kb = max(self.peak_kb or 0, value)

    def __enter__(self):
        self.peak_kb = self.now_kb()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def child(model: str, wav: str, out: str, threads: int, steps: int | None = None) -> dict:
    import torch

    torch.set_num_threads(threads)
    from voxmesh.animate import animate_to_file, load_model

    start = time.perf_counter()
    animation = load_model(model)
    load_seconds = time.perf_counter() - start
    loaded_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    anonymous_after_load = AnonymousPeak.now_kb()
    with AnonymousPeak() as anonymous:
        start = time.perf_counter()
        options = {} if steps is None else {"steps": steps}
        result = animate_to_file(animation, wav, out, seed=0, progress=False, **options)
        animate_seconds = time.perf_counter() - start
    return {"load_seconds": load_seconds, "animate_seconds": animate_seconds, "frames": result["frames"],
            "audio_seconds": result["seconds"], "output_bytes": path_bytes(Path(out)),
            "rss_after_load_mb": loaded_kb / 1024,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "anon_after_load_mb": None if anonymous_after_load is None else anonymous_after_load / 1024,
            "peak_anon_mb": None if anonymous.peak_kb is None else anonymous.peak_kb / 1024,
            "ffmpeg_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def path_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def run_case(model: str, wav: Path, fmt: str, threads: int, scratch: Path, steps: int | None = None) -> dict:
    out = scratch / f"out.{fmt}"
    # numba's render kernels (.mp4) get the same thread count: its OpenMP pool would otherwise
    # use every core and, sharing torch's libgomp, set torch's thread count to it as well.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "NUMBA_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", model, str(wav), str(out), str(threads),
                           "0" if steps is None else str(steps)],
                          capture_output=True, text=True, env=env, check=False)
    command_seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"case {wav.name} -> .{fmt} failed:\n{done.stderr.strip()}")
    out.unlink()
    row = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = row["audio_seconds"]
    return {"format": fmt, **row, "command_seconds": command_seconds,
            "animate_rtf": row["animate_seconds"] / seconds, "command_rtf": command_seconds / seconds,
            "animate_added_mb": row["peak_rss_mb"] - row["rss_after_load_mb"]}


# ---- main ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="built-in name or a run/checkpoint folder")
    parser.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads of each case (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per case; the fastest (animate seconds) is kept, with its memory")
    parser.add_argument("--seconds", type=float, nargs="+", default=list(LENGTHS))
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=["npy", "mp4", "glb"])
    parser.add_argument("--out", type=Path, default=RESULTS / "animate.json")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps of diffusion models (default: the model's)")
    parser.add_argument("--child", nargs=5, metavar=("MODEL", "WAV", "OUT", "THREADS", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        model, wav, out, threads, steps = args.child
        print(json.dumps(child(model, wav, out, int(threads), int(steps) or None)))
        return 0

    from voxmesh.animate import builtin_model_path, resolve_checkpoint
    from voxmesh.errors import VoxmeshError

    builtin = builtin_model_path(args.model)
    if builtin is not None and not (builtin / "model.json").is_file():
        print(f"The built-in model '{args.model}' is not available yet; pass a trained checkpoint folder with --model PATH.")
        return 0
    try:
        folder = resolve_checkpoint(args.model)
    except VoxmeshError as error:
        print(error)
        return 2

    import soundfile

    from voxmesh.train.checkpoint import read_checkpoint_info

    info = read_checkpoint_info(folder)
    rows = []
    with tempfile.TemporaryDirectory(prefix="voxmesh-bench-animate-") as scratch:
        scratch = Path(scratch)
        audio = speech_audio(max(args.seconds))
        for seconds in args.seconds:
            wav = scratch / f"speech_{seconds:g}s.wav"
            soundfile.write(wav, audio[: round(seconds * SAMPLE_RATE)], SAMPLE_RATE, subtype="PCM_16")
            for fmt in args.formats:
                runs = [run_case(args.model, wav, fmt, args.threads, scratch, args.steps)
                        for _ in range(max(1, args.repeats))]
                best = min(runs, key=lambda r: r["animate_seconds"])
                rows.append(best)
                print(".", end="", flush=True, file=sys.stderr)
    print(file=sys.stderr)

    method, vertices = info.get("method"), info.get("num_vertices")
    print(f"voxmesh animate, model {args.model} ({method}, {vertices} vertices, {info.get('fps', 30):g} fps); "
          f"{args.threads} threads; load average {os.getloadavg()[0]:.1f}")
    print(f"{'audio s':>7} {'format':<6} {'frames':>6} {'load s':>6} {'animate s':>9} {'RTF animate':>11} "
          f"{'RTF command':>11} {'peak RSS MB':>11} {'animate +MB':>11} {'peak anon MB':>12} {'ffmpeg MB':>9}")
    for r in rows:
        ffmpeg = f"{r['ffmpeg_peak_rss_mb']:>9.0f}" if r["format"] == "mp4" else f"{'-':>9}"
        anon = f"{r['peak_anon_mb']:>12.0f}" if r["peak_anon_mb"] is not None else f"{'-':>12}"
        print(f"{r['audio_seconds']:>7.1f} {r['format']:<6} {r['frames']:>6} {r['load_seconds']:>6.2f} "
              f"{r['animate_seconds']:>9.2f} {r['animate_rtf']:>11.3f} {r['command_rtf']:>11.3f} "
              f"{r['peak_rss_mb']:>11.0f} {r['animate_added_mb']:>11.0f} {anon} {ffmpeg}")
    report = {
        "model": args.model,
        "model_folder": str(folder.resolve()),
        "builtin_model": builtin is not None,
        "method": method,
        "step": info.get("step"),
        "encoder": (info.get("encoder") or {}).get("name"),
        "num_vertices": vertices,
        "fps": info.get("fps"),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        "load_average_1min": os.getloadavg()[0],
        "repeats": args.repeats,
        "steps": args.steps,
        "audio": "voxmesh synthesized speech (espeak-ng, 4 voices), generated sentences with 0.3 s pauses, "
                 "mono 16 kHz PCM_16 wav",
        "measures": {"animate_rtf": "animate_to_file seconds / audio seconds",
                     "command_rtf": "child process wall time (start, imports, load_model, animate_to_file) / audio seconds",
                     "peak_rss_mb": "ru_maxrss of the child (Python) process",
                     "animate_added_mb": "peak_rss_mb minus ru_maxrss after load_model",
                     "peak_anon_mb": "peak RssAnon of the child during animate_to_file, sampled every 10 ms: "
                                     "memory without mapped file pages (the .npy is written through a memory "
                                     "map whose dirty pages count in RSS and grow with the length)",
                     "ffmpeg_peak_rss_mb": "ru_maxrss of the child's children (ffmpeg, .mp4 only)"},
        "rows": rows,
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
