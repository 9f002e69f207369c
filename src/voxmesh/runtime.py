"""Where voxmesh computes: the device a command asks for, checked before any work."""

from __future__ import annotations

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
