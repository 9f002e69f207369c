"""Where voxmesh computes: the device a command asks for, checked before any work, and
how many CPU threads it takes."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from voxmesh.errors import VoxmeshError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` (None: ``cuda`` when this torch build sees a GPU,
    else ``cpu``). A device this machine does not have is refused in one sentence."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise VoxmeshError(f"Device '{device}' is not one torch knows; give cpu or cuda (cuda:1 for the second GPU).") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build of torch" if torch.version.cuda is None else "no GPU that torch can use"
            raise VoxmeshError(f"Device '{device}' was asked for but this machine has {build}; use --device cpu.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise VoxmeshError(f"Device '{device}' does not exist: this machine has {torch.cuda.device_count()} GPU(s); "
                               "pick one from cuda:0.")
    elif resolved.type != "cpu":
        raise VoxmeshError(f"Device '{device}' is not supported; use cpu or cuda.")
    return resolved


# More threads than this rarely pay for the small matrices of these models on a CPU.
MAX_DEFAULT_THREADS = 4


def idle_cores() -> int:
    """The cores this process may use that are not busy now: the affinity count minus the
    one-minute load average (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


def choose_threads(requested: int | None = None) -> int:
    """Threads for torch and the renderer: ``requested``, else ``OMP_NUM_THREADS`` when set,
    else the idle cores (at most MAX_DEFAULT_THREADS). Taking every core while other work
    runs makes OpenMP's threads wait on each other: 3-4x slower than one thread."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise VoxmeshError(f"--threads {requested} must be 1 or more; leave it out to use the idle cores.")
        return requested
    from_environment = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_environment.isdigit() and int(from_environment) > 0:
        return int(from_environment)
    return min(idle_cores(), MAX_DEFAULT_THREADS)


@contextlib.contextmanager
def using_threads(threads: int) -> Iterator[None]:
    """Run the block with numba's threads (the renderer's) and torch's set to ``threads``
    (torch's last, since starting numba's OpenMP layer resets them); restore both after."""
    try:
        import numba
    except ImportError:
        numba = None
    before = (torch.get_num_threads(), numba.get_num_threads() if numba is not None else None)
    if numba is not None:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        if numba is not None:
            numba.set_num_threads(before[1])
        torch.set_num_threads(before[0])
