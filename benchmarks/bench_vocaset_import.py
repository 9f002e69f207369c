"""`voxmesh data import vocaset` peak memory against the size of data_verts.npy.

The issue behind it: VOCASET's data_verts.npy holds every frame of every sequence (several
GB). The importer maps it and reads one sequence at a time, handing the pages it read back
after each (madvise DONTNEED), so its memory should not grow with the file; only the audio
pickle, which Python reads whole, grows with the number of sequences.

Setup, in a temporary folder deleted afterwards: a fake download of VOCASET per size
(``--sizes``, GB of data_verts.npy): data_verts.npy float32 ``[N, 5023, 3]`` made as a
sparse file through a memmap (zeros: the importer copies values, it does not look at
them), sequences of ``--seconds`` at 60 fps spread over VOCASET's 12 subject names and
sentences 01-40, their audio int16 at 22 kHz in raw_audio_fixed.pkl, subj_seq_to_idx.pkl and
templates.pkl as protocol 2 pickles.

Each case runs ``voxmesh data import vocaset RAW OUT`` in a fresh child process (the
command line's own ``app``). Per case: the peak RSS of the child (``VmRSS`` sampled every
10 ms, and ``ru_maxrss`` from ``wait4``), the peak of its anonymous memory (``RssAnon``:
heap, without mapped file pages), what the peak adds to the RSS of a child that only
imports the importer (``baseline``), and the wall seconds. The case ``no page release``
runs the largest size with the importer's page release turned off, to show what it is
for: mapped pages read stay in the process's RSS.

Prints a table and writes ``benchmarks/results/vocaset_import.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
NUM_VERTICES = 5023
FPS = 60
RATE = 22000
SUBJECTS = ("FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
            "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
            "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA", "FaceTalk_170811_03275_TA",
            "FaceTalk_170908_03277_TA", "FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA")
IMPORTS_ONLY = "import voxmesh.cli, voxmesh.data.importers"
# The command line with the importer's page release turned off.
NO_RELEASE = ("import sys, voxmesh.data.importers as importers; importers._release = lambda verts, rows: None; "
              "from voxmesh.cli import app; sys.argv = ['voxmesh'] + sys.argv[1:]; app()")


def write_download(raw: Path, gigabytes: float, seconds: float) -> dict:
    """A fake VOCASET download whose data_verts.npy is ``gigabytes`` GB (sparse)."""
    raw.mkdir(parents=True)
    frames = int(round(seconds * FPS))
    bytes_per_row = NUM_VERTICES * 3 * 4
    sequences = max(1, int(gigabytes * 1e9 // (frames * bytes_per_row)))
    verts = np.lib.format.open_memmap(raw / "data_verts.npy", mode="w+", dtype=np.float32,
                                      shape=(sequences * frames, NUM_VERTICES, 3))
    del verts  # left sparse: zeros are read as any value would be
    index, audio = {}, {}
    t = np.arange(frames * RATE // FPS) / RATE
    for number in range(sequences):
        subject, sentence = SUBJECTS[number % len(SUBJECTS)], f"sentence{number // len(SUBJECTS) + 1:02d}"
        index.setdefault(subject, {})[sentence] = {f: number * frames + f for f in range(frames)}
        wave = (8000 * np.sin(2 * np.pi * (120 + number % 50) * t)).astype(np.int16)
        audio.setdefault(subject, {})[sentence] = {"audio": wave, "sample_rate": RATE}
    rng = np.random.default_rng(0)
    templates = {s: rng.normal(0, 0.05, (NUM_VERTICES, 3)) for s in index}
    for name, content in (("subj_seq_to_idx.pkl", index), ("raw_audio_fixed.pkl", audio), ("templates.pkl", templates)):
        (raw / name).write_bytes(pickle.dumps(content, protocol=2))
    size = (raw / "data_verts.npy").stat().st_size
    return {"data_verts_bytes": size, "data_verts_disk_bytes": (raw / "data_verts.npy").stat().st_blocks * 512,
            "sequences": sequences, "frames": sequences * frames,
            "audio_pickle_bytes": (raw / "raw_audio_fixed.pkl").stat().st_size}


def _status(pid: int) -> dict[str, int]:
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return values


def run_child(args: list[str], threads: int) -> dict:
    """Run ``python ARGS`` and return its peak VmRSS / RssAnon (sampled), ru_maxrss and seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    errors = tempfile.TemporaryFile()
    child = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=errors, cwd=ROOT)
    peaks = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for key, value in _status(child.pid).items():
                peaks[key] = max(peaks[key], value)
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        errors.seek(0)
        raise RuntimeError(f"child failed ({child.returncode}): {errors.read().decode()[-2000:]}")
    errors.close()
    return {"peak_rss_bytes": peaks["VmRSS"], "peak_anon_bytes": peaks["RssAnon"], "peak_file_bytes": peaks["RssFile"],
            "ru_maxrss_bytes": usage.ru_maxrss * 1024, "seconds": round(seconds, 2), "output": output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.2, 2.0], help="GB of data_verts.npy")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each fake sequence")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-release-case", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the largest size without the page release")
    parser.add_argument("--out", type=Path, default=RESULTS / "vocaset_import.json")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench_vocaset_import_"))
    try:
        baseline = run_child(["-c", IMPORTS_ONLY], args.threads)
        cases = []
        runs = [(size, True) for size in args.sizes]
        if args.no_release_case:
            runs.append((max(args.sizes), False))
        for number, (size, release) in enumerate(runs):
            raw, out = workdir / f"raw{number}", workdir / f"out{number}"
            made = write_download(raw, size, args.seconds)
            command = ["-m", "voxmesh.cli"] if release else ["-c", NO_RELEASE]
            result = run_child([*command, "data", "import", "vocaset", str(raw), str(out)], args.threads)
            assert f"imported  {made['sequences']} sequences" in result.pop("output")
            written = sum(p.stat().st_size for p in (out / "vertices_npy").iterdir())
            cases.append({"case": f"{size:g} GB" + ("" if release else ", no page release"), "gigabytes": size,
                          "page_release": release, **made, "written_vertices_bytes": written, **result,
                          "above_baseline_bytes": result["peak_rss_bytes"] - baseline["peak_rss_bytes"]})
            shutil.rmtree(raw)
            shutil.rmtree(out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for case in cases:  # mapped file pages above the imports' own (libraries): data_verts.npy held at once
        case["mapped_above_baseline_bytes"] = case["peak_file_bytes"] - baseline["peak_file_bytes"]
    released = [c for c in cases if c["page_release"]]
    small, large = released[0], released[-1]
    summary = {
        "data_verts_ratio": round(large["data_verts_bytes"] / small["data_verts_bytes"], 2),
        "peak_rss_ratio": round(large["peak_rss_bytes"] / small["peak_rss_bytes"], 3),
        "above_baseline_ratio": round(large["above_baseline_bytes"] / max(1, small["above_baseline_bytes"]), 3),
        "mapped_above_baseline_ratio": round(large["mapped_above_baseline_bytes"]
                                             / max(1, small["mapped_above_baseline_bytes"]), 3),
        "audio_pickle_ratio": round(large["audio_pickle_bytes"] / small["audio_pickle_bytes"], 2),
        "note": "the mapped pages of data_verts.npy stay at about one sequence; what grows is anonymous memory, "
                "the audio pickle that Python reads whole (about twice its size at the peak of reading it)",
    }
    baseline.pop("output")
    report = {
        "benchmark": "bench_vocaset_import", "sizes_gb": args.sizes, "seconds_per_sequence": args.seconds,
        "threads": args.threads, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                             "python": platform.python_version()},
        "baseline_imports_only": baseline, "cases": cases, "summary": summary,
    }
    mb = 1 / 2 ** 20
    print(f"{'case':<26}{'verts MB':>9}{'seqs':>5}{'audio MB':>9}{'peak RSS':>9}{'anon':>6}{'mapped':>7}"
          f"{'maxrss':>7}{'+base':>6}{'+mapped':>8}{'s':>6}")
    print(f"{'baseline (imports only)':<26}{'':>9}{'':>5}{'':>9}{baseline['peak_rss_bytes'] * mb:>9.0f}"
          f"{baseline['peak_anon_bytes'] * mb:>6.0f}{baseline['peak_file_bytes'] * mb:>7.0f}"
          f"{baseline['ru_maxrss_bytes'] * mb:>7.0f}{'':>6}{'':>8}{baseline['seconds']:>6.1f}")
    for case in cases:
        print(f"{case['case']:<26}{case['data_verts_bytes'] * mb:>9.0f}{case['sequences']:>5}"
              f"{case['audio_pickle_bytes'] * mb:>9.1f}{case['peak_rss_bytes'] * mb:>9.0f}"
              f"{case['peak_anon_bytes'] * mb:>6.0f}{case['peak_file_bytes'] * mb:>7.0f}"
              f"{case['ru_maxrss_bytes'] * mb:>7.0f}{case['above_baseline_bytes'] * mb:>6.0f}"
              f"{case['mapped_above_baseline_bytes'] * mb:>8.0f}{case['seconds']:>6.1f}")
    print(f"(MB) data_verts.npy x{summary['data_verts_ratio']:g}: peak RSS x{summary['peak_rss_ratio']:g}, above the "
          f"imports x{summary['above_baseline_ratio']:g}, mapped pages above the imports "
          f"x{summary['mapped_above_baseline_ratio']:g} (audio pickle x{summary['audio_pickle_ratio']:g})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
