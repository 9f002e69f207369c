"""The one timing helper the benchmarks share."""

from __future__ import annotations

import time
from typing import Callable


def best_seconds(fn: Callable[[], object], repeats: int, warmup: bool = False) -> float:
    """The fastest of ``repeats`` wall-clock runs of ``fn`` (the least disturbed by other
    work on the machine); ``warmup`` runs it once first, untimed."""
    if warmup:
        fn()  # first-call allocations and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
