"""`voxmesh evaluate` peak memory against the number of sequences in the split.

The issue behind it: a test split of 10,000 sequences. ``evaluate_run`` reads the split in
one pass (one sequence, its features, predictions and baselines in memory at a time, the
metrics accumulated by ``MetricAccumulator``), so its peak should not grow with the split;
the version before it held every sequence, feature and prediction in lists.

Setup, in a temporary folder: miniature datasets in the shared layout (tests/miniature.py's
``write_dataset``: the 42-vertex icosphere, 16 kHz audio, ``--seconds`` per clip, three
subjects) whose test split has N sequences, every one with timed /m/, /b/, /p/ so that
lip-closure accuracy is accumulated too, and two training sentences per subject; a tiny
FaceFormer (mel encoder, d_model 16) trained for one epoch on them through
``voxmesh.train.trainer.train``.

Each case runs ``voxmesh evaluate RUN --data DATA --split test`` in a fresh child process
(the command line's own ``app``), with ``OMP_NUM_THREADS`` = ``--threads``. Per case:
the peak RSS during the command (``VmRSS`` sampled every 10 ms) and what it added to the
RSS after imports, the peak of its anonymous memory (``RssAnon``: heap without mapped file
pages), the child's ``ru_maxrss`` (which, for small splits, is the transient peak of
importing torch, not of evaluating), the evaluate seconds and the child's whole wall time. ``--compare-ref REV``
also runs the ``src/voxmesh/eval/evaluate.py`` of git revision REV (loaded in the child in
place of the current module; the metrics are today's) for ``--compare-sizes``, so the
table shows how the peak grew before; its numbers must equal the current code's.

Prints a table and writes ``benchmarks/results/evaluate_memory.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SIZES = (100, 1_000, 10_000)
SUBJECTS = ("s0", "s1", "s2")
# Bilabial midpoints at 0.075, 0.275 and 0.45 s: inside every clip of 0.5 s or more.
PHONEMES = [["m", 0.05, 0.1], ["a", 0.1, 0.25], ["b", 0.25, 0.3], ["p", 0.4, 0.5]]
MODEL = {"method": "faceformer", "encoder": {"kind": "mel", "dim": 16, "hidden": 16},
         "model": {"d_model": 16, "num_heads": 2, "num_layers": 1, "period": 15},
         "data": {"window_seconds": 0.4, "batch_size": 2},
         "train": {"epochs": 1, "lr": 1.0e-3, "log_every": 1, "val_every": 100, "schedule": "constant",
                   "val_max_sequences": 1}}


# ---- the data and the model --------------------------------------------------------------------

def write_split(root: Path, sequences: int, seconds: float) -> Path:
    """A miniature dataset whose test split holds ``sequences`` clips (spread over the three
    subjects, all of them training speakers) and whose train split two clips a subject."""
    sys.path.insert(0, str(ROOT / "tests"))
    from miniature import write_dataset

    names = {subject: ["t0", "t1"] for subject in SUBJECTS}
    manifest = [{"name": f"{s}_{n}", "split": "train"} for s in SUBJECTS for n in ("t0", "t1")]
    for k in range(sequences):
        subject = SUBJECTS[k % len(SUBJECTS)]
        names[subject].append(f"e{k:05d}")
        manifest.append({"name": f"{subject}_e{k:05d}", "split": "test", "phonemes": PHONEMES})
    return write_dataset(root, names, seconds=seconds, sample_rate=16_000, manifest=manifest)


def train_tiny_model(data: Path, run: Path) -> Path:
    import torch

    from voxmesh.train.config import config_from_dict
    from voxmesh.train.trainer import train

    torch.manual_seed(0)
    train(config_from_dict(MODEL), data, run, progress=False, overwrite=True)
    return run


# ---- one case, in a child process ----------------------------------------------------------------

def status_kb(field: str) -> int | None:
    """A field of /proc/self/status in kB (``VmRSS``, ``RssAnon``), None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class MemoryPeaks:
    """Peaks of this process's resident memory (``VmRSS``) and of its anonymous part
    (``RssAnon``: heap, without mapped file pages) while the block runs, sampled every
    10 ms. ``ru_maxrss`` alone would not do: importing torch passes through a transient
    peak higher than what a small evaluation ever reaches."""

    def __init__(self):
        import threading

        self.rss_kb: int | None = None
        self.anon_kb: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _take(self) -> None:
        rss, anon = status_kb("VmRSS"), status_kb("RssAnon")
        if rss is not None:
            self.rss_kb = max(self.rss_kb or 0, rss)
        if anon is not None:
            self.anon_kb = max(self.anon_kb or 0, anon)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._take()

    def __enter__(self):
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._take()


def child(run: str, data: str, out: str, evaluate_file: str) -> dict:
    if evaluate_file:
        # Another revision's evaluate.py in place of the current module, before the command imports it.
        spec = importlib.util.spec_from_file_location("voxmesh.eval.evaluate", evaluate_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules["voxmesh.eval.evaluate"] = module
        spec.loader.exec_module(module)
    import torch

    from voxmesh.cli import app

    after_imports_kb = status_kb("VmRSS") or 0
    peak_at_imports_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with MemoryPeaks() as peaks:
        start = time.perf_counter()
        app(["evaluate", run, "--data", data, "--split", "test", "--out", out], standalone_mode=False)
        seconds = time.perf_counter() - start
    result = json.loads(Path(out + ".json").read_text())
    return {"sequences": result["sequences"], "frames": result["frames"], "evaluate_seconds": seconds,
            "rss_after_imports_mb": after_imports_kb / 1024,
            "peak_rss_at_imports_mb": peak_at_imports_kb / 1024,
            "evaluate_peak_rss_mb": (peaks.rss_kb or 0) / 1024,
            "evaluate_peak_anon_mb": None if peaks.anon_kb is None else peaks.anon_kb / 1024,
            "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads(), "rows": result["rows"],
            "closures": result["masks"].get("lip_closure", {}).get("closures")}


def run_case(run: Path, data: Path, out: Path, threads: int, code: str, evaluate_file: Path | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", str(run), str(data), str(out),
                           str(evaluate_file or "")], capture_output=True, text=True, env=env, check=False)
    command_seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{code} evaluate of {data.name} failed:\n{done.stderr.strip()}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {"code": code, **row, "command_seconds": command_seconds,
            "evaluate_added_mb": row["evaluate_peak_rss_mb"] - row["rss_after_imports_mb"],
            "ms_per_sequence": 1000 * row["evaluate_seconds"] / row["sequences"]}


# ---- the report ----------------------------------------------------------------------------------

def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for code, style in (("old", "o--"), ("new", "o-")):
        group = sorted((r for r in rows if r["code"] == code), key=lambda r: r["sequences"])
        if group:
            label = "before (lists)" if code == "old" else "streaming"
            ax.plot([r["sequences"] for r in group], [r["evaluate_peak_rss_mb"] for r in group], style, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("sequences in the test split")
    ax.set_ylabel("peak RSS of `voxmesh evaluate` (MB)")
    ax.set_title("voxmesh evaluate: peak memory against split size", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="test split sizes of the current code")
    parser.add_argument("--compare-ref", default=None, help="git revision whose evaluate.py is run too (the lists version)")
    parser.add_argument("--compare-sizes", type=int, nargs="+", default=[100, 1_000])
    parser.add_argument("--seconds", type=float, default=0.6, help="seconds of each clip (at least 0.5)")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of each case (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "evaluate_memory.json")
    parser.add_argument("--child", nargs=4, metavar=("RUN", "DATA", "OUT", "EVALUATE_PY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="voxmesh-bench-evaluate-") as scratch:
        scratch = Path(scratch)
        os.environ["VOXMESH_CACHE"] = str(scratch / "cache")  # feature cache of this run only
        old_file = None
        if args.compare_ref:
            source = subprocess.run(["git", "show", f"{args.compare_ref}:src/voxmesh/eval/evaluate.py"], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout
            old_file = scratch / "evaluate_old.py"
            old_file.write_text(source)
        cases = [("new", n) for n in args.sizes] + [("old", n) for n in (args.compare_sizes if old_file else [])]
        datasets: dict[int, Path] = {}
        started = time.perf_counter()
        for n in sorted({n for _, n in cases}):
            datasets[n] = write_split(scratch / f"data_{n}", n, args.seconds)
        write_seconds = time.perf_counter() - started
        run = train_tiny_model(datasets[min(datasets)], scratch / "run")
        for code, n in sorted(cases, key=lambda c: (c[1], c[0])):
            rows.append(run_case(run, datasets[n], scratch / f"eval_{code}_{n}", args.threads, code,
                                 old_file if code == "old" else None))
            print(".", end="", flush=True, file=sys.stderr)
    print(file=sys.stderr)

    # The two versions must agree number for number where both ran.
    agree = {}
    for n in args.compare_sizes if old_file else []:
        new, old = (next(r for r in rows if r["code"] == c and r["sequences"] == n) for c in ("new", "old"))
        worst = max(abs(new["rows"][row][k] - old["rows"][row][k]) / max(abs(old["rows"][row][k]), 1e-300)
                    for row in old["rows"] for k in old["rows"][row])
        agree[str(n)] = worst

    print(f"voxmesh evaluate on a miniature split (42 vertices, {args.seconds:g} s clips, tiny FaceFormer); "
          f"{args.threads} thread(s); load average {os.getloadavg()[0]:.1f}")
    print(f"{'code':<4} {'sequences':>9} {'frames':>7} {'peak RSS MB':>11} {'evaluate +MB':>12} {'peak anon MB':>12} "
          f"{'ru_maxrss MB':>12} {'evaluate s':>10} {'ms/seq':>6} {'command s':>9}")
    for r in rows:
        anon = f"{r['evaluate_peak_anon_mb']:>12.0f}" if r["evaluate_peak_anon_mb"] is not None else f"{'-':>12}"
        print(f"{r['code']:<4} {r['sequences']:>9} {r['frames']:>7} {r['evaluate_peak_rss_mb']:>11.0f} "
              f"{r['evaluate_added_mb']:>12.0f} {anon} {r['process_peak_rss_mb']:>12.0f} {r['evaluate_seconds']:>10.1f} "
              f"{r['ms_per_sequence']:>6.1f} {r['command_seconds']:>9.1f}")
    for n, worst in agree.items():
        print(f"old and new numbers at {n} sequences: largest relative difference {worst:.1e}")

    report = {
        "command": "voxmesh evaluate RUN --data DATA --split test (the CLI's app in a fresh child process)",
        "dataset": f"tests/miniature.py write_dataset: 42-vertex icosphere, 3 subjects (all training speakers), "
                   f"{args.seconds:g} s clips of 16 kHz audio at 30 fps, every test clip with timed /m/, /b/, /p/",
        "model": "FaceFormer, mel encoder, d_model 16, 1 layer, trained 1 epoch on 6 clips",
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "compare_ref": args.compare_ref,
        "dataset_write_seconds": write_seconds,
        "measures": {"evaluate_peak_rss_mb": "peak VmRSS of the child during the command, sampled every 10 ms",
                     "evaluate_peak_anon_mb": "peak RssAnon (heap, no mapped file pages) during the command, sampled "
                                              "every 10 ms",
                     "process_peak_rss_mb": "ru_maxrss of the child: the whole process, imports included",
                     "rss_after_imports_mb": "VmRSS of the child after importing torch and voxmesh.cli",
                     "peak_rss_at_imports_mb": "ru_maxrss of the child after those imports (their transient peak, "
                                               "above what small evaluations reach)",
                     "evaluate_added_mb": "evaluate_peak_rss_mb minus rss_after_imports_mb",
                     "evaluate_seconds": "the evaluate command inside the child (model load, every sequence, report)",
                     "command_seconds": "the child's whole wall time (Python start, imports, evaluate)",
                     "code": "new: the working tree's evaluate.py; old: compare_ref's"},
        "old_vs_new_largest_relative_difference": agree,
        "rows": [{k: v for k, v in r.items() if k != "rows"} | {"model_LVE": r["rows"]["model"]["LVE"]} for r in rows],
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(args.out.with_suffix(".png"), rows)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
