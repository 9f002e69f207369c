"""Where voxmesh caches derived data, and how it writes files so that a crash never
leaves a file that looks whole (and never replaces one without ``--overwrite``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from voxmesh.errors import VoxmeshError


def refuse_existing(*paths: str | os.PathLike | None, overwrite: bool, instead: str = "choose another name") -> None:
    """Refuse to replace an output that exists unless ``overwrite``: raise a
    :class:`~voxmesh.errors.VoxmeshError` naming the first such path, in the one sentence
    every command uses (``instead``: what else the user can do). Commands call it
    before any work, so that a refused command writes nothing. None entries are skipped."""
    if overwrite:
        return
    for path in paths:
        if path is not None and (Path(path).exists() or Path(path).is_symlink()):
            raise VoxmeshError(f"Output {path} already exists; {instead} or pass --overwrite.")


def cache_dir(*parts: str) -> Path:
    """The cache folder (``$VOXMESH_CACHE`` or ``~/.cache/voxmesh``), created on demand."""
    root = Path(os.environ.get("VOXMESH_CACHE", Path.home() / ".cache" / "voxmesh"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def content_hash(*chunks: bytes | str, length: int = 16) -> str:
    """A short, stable hex digest of the given bytes/strings, used as a cache key."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk.encode() if isinstance(chunk, str) else chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:length]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the
    block finishes. On error the temporary file is removed, so readers see either the
    old file, no file, or the complete new one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix,
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.is_file():  # mkstemp makes private files; give the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
