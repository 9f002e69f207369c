"""The loss curves of a run, drawn from its log.jsonl (matplotlib, Agg backend)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from voxmesh.files import atomic_path


def read_log(path: str | Path) -> list[dict]:
    """Rows of a run's log.jsonl (lines cut by a crash are skipped)."""
    path = Path(path)
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_losses(log_path: str | Path, out_path: str | Path) -> Path | None:
    """One panel a stage: train loss (a point a logging interval) and val loss (a
    point a validation) against the step. Returns the PNG path, or None when the log
    has no losses yet, or when matplotlib (the ``bench`` extra) is not installed."""
    from voxmesh.extras import available

    if not available("matplotlib"):
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display: files only, safe in any process
    import matplotlib.pyplot as plt

    rows = [r for r in read_log(log_path) if isinstance(r.get("loss"), (int, float))]
    if not rows:
        return None
    stages = list(dict.fromkeys(r.get("stage", "main") for r in rows))
    figure, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.6), squeeze=False)
    for axis, stage in zip(axes[0], stages):
        for split, style in (("train", "-"), ("val", "o-")):
            points = sorted((r["step"], r["loss"]) for r in rows if r.get("stage", "main") == stage and r.get("split") == split)
            if points:
                axis.plot([p[0] for p in points], [p[1] for p in points], style, label=f"{split} loss", markersize=3)
        values = [r["loss"] for r in rows if r.get("stage", "main") == stage]
        if values and min(values) > 0:
            axis.set_yscale("log")  # losses fall over decades
        axis.set_title(f"stage {stage}")
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # the temporary file was created private
    plt.close(figure)
    return out_path


__all__ = ["plot_losses", "read_log"]
