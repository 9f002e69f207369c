"""`voxmesh animate` on a busy machine: its own thread choice against OMP_NUM_THREADS=1 and
against taking every core (torch's default).

Every core is kept busy by a spinning process (``--busy N``, default: one per core), the
one-minute load average is waited for until it shows it, and then the real command
``voxmesh animate SPEECH -o out.npy`` runs once per case in a child process (Python start,
imports, model load, animation, writing: what a user waits for):

* ``voxmesh default``: no OMP_NUM_THREADS, no --threads (voxmesh takes the idle cores, at
  least 1, at most 4);
* ``OMP_NUM_THREADS=1``: what the issue measured as the fast setting;
* ``every core``: ``--threads`` = the core count, torch's own default.

The cases run in turn (``--repeats 2``: twice each in alternating order, the faster kept),
so slow drift in the background load touches them alike; the ratios to OMP_NUM_THREADS=1
come from the same run. Prints a table and writes ``benchmarks/results/threads.json``.

    python benchmarks/bench_threads.py [--seconds 60] [--busy 2] [--repeats 1] [--model default]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_animate import SAMPLE_RATE, speech_audio  # noqa: E402 (the benchmarks' shared speech)

RESULTS = HERE / "results"


def spin_forever() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def wait_for_load(target: float, limit: float = 90.0) -> float:
    start = time.monotonic()
    while os.getloadavg()[0] < target and time.monotonic() - start < limit:
        time.sleep(2)
    return os.getloadavg()[0]


def run_case(name: str, wav: Path, model: str, scratch: Path, cores: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    extra: list[str] = []
    if name == "OMP_NUM_THREADS=1":
        env["OMP_NUM_THREADS"] = "1"
    elif name == "every core":
        extra = ["--threads", str(cores)]
    out = scratch / "out.npy"
    out.unlink(missing_ok=True)
    from voxmesh.runtime import choose_threads

    chosen = choose_threads() if name == "voxmesh default" else (1 if name == "OMP_NUM_THREADS=1" else cores)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "voxmesh.cli", "animate", str(wav), "-o", str(out),
                           "--model", model, *extra], capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"case '{name}' failed: {done.stderr.strip()}")
    return {"case": name, "threads": chosen, "seconds": seconds, "load_before": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the speech (default 60 s)")
    parser.add_argument("--busy", type=int, default=None, help="spinning processes (default: one per core)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the cases, in alternating order")
    parser.add_argument("--cases", nargs="+", default=["voxmesh default", "OMP_NUM_THREADS=1", "every core"],
                        choices=["voxmesh default", "OMP_NUM_THREADS=1", "every core"])
    parser.add_argument("--out", type=Path, default=RESULTS / "threads.json")
    args = parser.parse_args(argv)

    import soundfile

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = cores if args.busy is None else args.busy
    cases = tuple(args.cases)
    with tempfile.TemporaryDirectory(prefix="voxmesh-bench-threads-") as folder:
        scratch = Path(folder)
        wav = scratch / "speech.wav"
        soundfile.write(wav, speech_audio(args.seconds), SAMPLE_RATE)
        spinners = [spin_forever() for _ in range(busy)]
        try:
            load = wait_for_load(busy - 0.5)
            print(f"{busy} spinning processes on {cores} cores; load average {load:.2f}", flush=True)
            rows: list[dict] = []
            for order in [cases if k % 2 == 0 else tuple(reversed(cases)) for k in range(args.repeats)]:
                for name in order:
                    rows.append(run_case(name, wav, args.model, scratch, cores))
                    print(f"  {name:<18} {rows[-1]['seconds']:7.1f} s", flush=True)
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
    best = {name: min((r for r in rows if r["case"] == name), key=lambda r: r["seconds"]) for name in cases}
    reference = best["OMP_NUM_THREADS=1"]["seconds"] if "OMP_NUM_THREADS=1" in best else float("nan")
    print(f"\n`voxmesh animate` {args.seconds:g} s of speech -> .npy, model {args.model}, {busy} busy processes "
          f"on {cores} cores (best of {args.repeats})")
    print(f"| case | threads | seconds | RTF | / OMP_NUM_THREADS=1 |\n|---|---|---|---|---|")
    for name in cases:
        row = best[name]
        print(f"| {name} | {row['threads']} | {row['seconds']:.1f} | {row['seconds'] / args.seconds:.2f} | "
              f"{row['seconds'] / reference:.2f} |")
    report = {"seconds_of_speech": args.seconds, "model": args.model, "cores": cores, "busy_processes": busy,
              "python": platform.python_version(), "repeats": args.repeats, "runs": rows,
              "best": {name: {**row, "ratio_to_omp1": row["seconds"] / reference} for name, row in best.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
