"""Time to generate the synthetic dataset presets (target for `small`: under 2 minutes
on 2 cores), with clip counts, audio minutes and size on disk."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from voxmesh.data.synthetic.dataset import synthesize_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "synth.json"


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main(presets: list[str]) -> None:
    rows = []
    for preset in presets:
        scratch = Path(tempfile.mkdtemp(prefix="voxmesh-bench-synth-"))
        try:
            start = time.perf_counter()
            summary = synthesize_dataset(scratch / preset, preset=preset, seed=0, progress=False)
            seconds = time.perf_counter() - start
            rows.append({"preset": preset, "seconds": round(seconds, 2), "clips": summary["clips"],
                         "subjects": summary["subjects"], "audio_minutes": round(summary["seconds"] / 60, 2),
                         "megabytes": round(folder_bytes(scratch / preset) / 2**20, 1),
                         "cpus": os.cpu_count()})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'preset':<8} {'seconds':>8} {'clips':>6} {'subjects':>8} {'audio min':>9} {'MB':>8}")
    for r in rows:
        print(f"{r['preset']:<8} {r['seconds']:>8.1f} {r['clips']:>6} {r['subjects']:>8} {r['audio_minutes']:>9.1f} "
              f"{r['megabytes']:>8.0f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"synth": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["tiny", "small"])
