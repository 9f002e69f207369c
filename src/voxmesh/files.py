"""Where voxmesh caches derived data, how it writes files so that a crash never leaves a
file that looks whole (and never replaces one without ``--overwrite``), and how it reads
the field's pickles without running code from them.

Outputs are written under a hidden temporary name beside the final one,
``.<name>.<pid>-<random>.tmp<suffix>``, and published by a rename when complete. Without
``overwrite`` the rename refuses to replace a file or folder that appeared meanwhile (two
runs to one output: exactly one wins, the other says so). A temporary whose process is
gone (SIGKILL, power loss) is removed by the next run that writes the same output.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import io
import os
import pickle
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from voxmesh.errors import VoxmeshError

# The longest file name most file systems take (bytes); temporary names are kept under it.
MAX_NAME_BYTES = 255
# ``.<name>.<pid>-<8 random>.tmp<suffix>`` (mkstemp/mkdtemp give the 8 random characters;
# voxmesh before 0.2 wrote no pid).
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp(?P<suffix>\.[A-Za-z0-9]+)?$")
# The previous folder while atomic_folder replaces it.
OLD_FOLDER = re.compile(r"^\.(?P<name>.+)\.old-[0-9a-f]{8}$")


# ---- refusing to replace ---------------------------------------------------------------------

def refuse_existing(*paths: str | os.PathLike | None, overwrite: bool, instead: str = "choose another name",
                    folder_of: Callable[[str], bool] | None = None) -> None:
    """Refuse to replace an output that exists unless ``overwrite``: raise a
    :class:`~voxmesh.errors.VoxmeshError` naming the first such path, in the one sentence
    every command uses (``instead``: what else the user can do). Commands call it
    before any work, so that a refused command writes nothing. None entries are skipped.

    The outputs are files, unless ``folder_of`` is given: then they are folders that
    voxmesh fills, and ``folder_of(name)`` tells whether an entry is of the kind voxmesh
    writes there. Even with ``overwrite``, a folder is never replaced where a file is
    asked for (or the reverse), nor a folder holding entries voxmesh did not write."""
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        exists = path.exists() or path.is_symlink()
        if exists and folder_of is None and path.is_dir():
            raise VoxmeshError(f"Output {path} is a folder, not a file; choose a file name or remove the folder.")
        if exists and folder_of is not None and not path.is_dir():
            raise VoxmeshError(f"Output {path} is a file, not a folder; choose a folder name or remove the file.")
        if exists and not overwrite:
            raise VoxmeshError(f"Output {path} already exists; {instead} or pass --overwrite.")
        if exists and folder_of is not None:
            foreign = sorted(entry.name for entry in path.iterdir()
                             if not folder_of(entry.name) and not TEMP_NAME.match(entry.name))
            if foreign:
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise VoxmeshError(f"Folder {path} holds files voxmesh did not write ({shown}), and --overwrite "
                                   "replaces only what voxmesh wrote; choose another folder or move them out.")


def check_output_name(path: str | os.PathLike) -> None:
    """Refuse an output whose name the file system cannot hold (over 255 bytes)."""
    name = Path(path).name
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        raise VoxmeshError(f"Output name {name[:40]}... is {len(os.fsencode(name))} bytes long, more than the "
                           f"{MAX_NAME_BYTES} a file name may have; choose a shorter name.")


# ---- temporary names, publishing and leftovers ------------------------------------------------

def _temp_prefix(target: Path) -> str:
    """``.<name>.<pid>-``: the name cut (with a hash of the whole) so that the temporary
    name stays within MAX_NAME_BYTES however long the output's name is."""
    name = target.name
    room = MAX_NAME_BYTES - len(f"..{os.getpid()}-12345678.tmp{target.suffix}") - 1
    if len(os.fsencode(name)) > room:
        digest = content_hash(name, length=8)
        name = os.fsdecode(os.fsencode(name)[: room - 9]).rstrip("\ufffd") + "~" + digest
    return f".{name}.{os.getpid()}-"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that earlier runs writing ``target`` left behind when they
    were killed: entries beside it of this module's naming for the same output, whose
    process is gone. A live writer's temporary is left alone. Returns what was removed."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    stem = _temp_prefix(target)[:-(len(str(os.getpid())) + 1)]  # ".<name>." without our pid
    removed = []
    for entry in target.parent.iterdir():
        match = TEMP_NAME.match(entry.name)
        if not match or not entry.name.startswith(stem) or (match["pid"] and process_alive(int(match["pid"]))):
            continue
        if f".{match['name']}." != stem:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _renameat2_noreplace() -> Callable[[str, str], int] | None:
    """Linux's renameat2(..., RENAME_NOREPLACE) from the C library, or None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, noreplace = -100, 1

    def rename(source: str, target: str) -> int:
        if function(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), noreplace) == 0:
            return 0
        return ctypes.get_errno()

    return rename


_RENAME_NOREPLACE = _renameat2_noreplace()


def publish(source: Path, target: Path, *, replace: bool) -> None:
    """Move the finished ``source`` onto ``target``. With ``replace`` an existing file is
    replaced atomically; without, a ``target`` that exists (made by another process while
    this one worked) is never replaced: a VoxmeshError says so and ``source`` is kept for
    the caller to remove."""
    if replace:
        os.replace(source, target)
        return
    if _RENAME_NOREPLACE is not None:
        code = _RENAME_NOREPLACE(str(source), str(target))
        if code == 0:
            return
        if code == errno.EEXIST:
            raise _appeared(target)
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(target))
    # File systems without renameat2: a hard link fails if the name exists.
    if source.is_dir():
        if target.exists() or target.is_symlink():
            raise _appeared(target)
        os.rename(source, target)
        return
    try:
        os.link(source, target)
    except FileExistsError:
        raise _appeared(target) from None
    except OSError:  # no hard links either (FAT, some network file systems): check, then rename
        if target.exists() or target.is_symlink():
            raise _appeared(target) from None
        os.rename(source, target)
        return
    source.unlink()


def _appeared(target: Path) -> VoxmeshError:
    return VoxmeshError(f"Output {target} was written by another run while this one worked, and voxmesh does "
                        "not replace it; keep that one, or pass --overwrite to let the last run win.")


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created (deepest last)."""
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.exists():
            break
        missing.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed write created, deepest first, where still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            break


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, replace: bool = True, sweep: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block
    finishes. On error (or a signal) the temporary file is removed, and so are folders
    made for it, so readers see either the old file, no file, or the complete new one.
    ``replace=False`` (outputs without ``--overwrite``) refuses to replace a file that
    another process wrote meanwhile; caches and checkpoints replace. ``sweep`` removes
    killed runs' temporaries of ``path`` first (a listing of its folder: caches that write
    thousands of entries into one folder turn it off)."""
    target = Path(path)
    check_output_name(target)
    created = _make_parents(target.parent)
    try:
        if sweep:
            remove_stale_temporaries(target)
        fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp" + target.suffix,
                                        dir=target.parent)
        os.close(fd)
    except BaseException:
        _remove_empty(created)
        raise
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.is_file():  # mkstemp makes private files; give the usual permissions
            os.chmod(tmp, 0o666 & ~_umask())
        publish(tmp, target, replace=replace)
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_empty(created)
        raise


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder``; when the block finishes it
    takes the place of ``folder`` (an existing one is moved aside first, then deleted).
    On error the temporary folder is deleted and ``folder`` is left as it was.
    ``replace=False`` refuses to replace a folder that another process made meanwhile
    (an empty folder that was there before is taken, as commands promise)."""
    target = Path(folder)
    check_output_name(target)
    created = _make_parents(target.parent)
    try:
        remove_stale_temporaries(target)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield tmp
        # mkdtemp and some writers make private files; give the usual permissions.
        mask = _umask()
        os.chmod(tmp, 0o777 & ~mask)
        for path in tmp.iterdir():
            if path.is_file():
                os.chmod(path, 0o666 & ~mask)
        if target.is_dir() and not target.is_symlink() and (replace or not any(target.iterdir())):
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            publish(tmp, target, replace=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
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


# ---- operating-system errors as one sentence --------------------------------------------------

_OS_ADVICE = {
    errno.ENOSPC: ("there is no space left on the device", "free some space or write elsewhere"),
    errno.EDQUOT: ("the disk quota is used up", "free some space or write elsewhere"),
    errno.EACCES: ("permission is denied", "choose a folder you may write to"),
    errno.EPERM: ("the operation is not permitted", "choose a folder you may write to"),
    errno.EROFS: ("the file system is read-only", "choose a folder you may write to"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter name"),
    errno.EISDIR: ("it is a folder", "choose a file name"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "check the path"),
    errno.EEXIST: ("it already exists", "choose another name"),
    errno.EFBIG: ("the file is larger than this system allows", "write a shorter output or elsewhere"),
}


def os_error_sentence(exc: OSError) -> str | None:
    """One sentence for an operating-system error that a user can act on (disk full,
    read-only folder, ...), naming the file; None for other errors."""
    advice = _OS_ADVICE.get(exc.errno or -1)
    if advice is None:
        return None
    reason, todo = advice
    where = exc.filename2 if exc.errno == errno.EEXIST and exc.filename2 else exc.filename
    where = os.fsdecode(where) if where is not None else "an output"
    return f"Cannot write {where}: {reason}; {todo}."


# ---- reading the field's pickles without running them ------------------------------------------

def _numpy_callables() -> dict[tuple[str, str], Any]:
    """The few numpy constructors that a pickle of arrays, dtypes and scalars names,
    under numpy 1's and numpy 2's module names."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = core.multiarray._reconstruct
        allowed[(module, "scalar")] = core.multiarray.scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = core.numeric._frombuffer
    return allowed


# Plain containers and the bytes helper that protocol 0-2 pickles use (harmless to call).
_BUILTINS = {("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "bytearray"): bytearray,
             ("builtins", "complex"): complex, ("builtins", "slice"): slice,
             ("collections", "OrderedDict"): __import__("collections").OrderedDict,
             ("_codecs", "encode"): __import__("codecs").encode}


class _DataUnpickler(pickle.Unpickler):
    """Builds only dicts, lists, tuples, strings, numbers, numpy arrays, dtypes and
    scalars: any other callable a pickle names (``os.system``, ``eval``, a class of
    some library) is refused before it is called."""

    def __init__(self, handle: io.BufferedReader, **kwargs: Any):
        super().__init__(handle, **kwargs)
        self._allowed = {**_numpy_callables(), **_BUILTINS}

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found


class _Refused(pickle.UnpicklingError):
    """A pickle named a callable outside the data types."""


def read_data_pickle(path: str | os.PathLike, what: str, store: str) -> Any:
    """The contents of a pickle that holds data only (templates, masks, VOCASET's
    audio and index files; Python 2 pickles included, read with ``latin1``). Code in
    the file is never run: a pickle that names anything else is refused in one sentence
    (``what``: "Templates file", ``store``: what the file should hold)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return _DataUnpickler(handle, encoding="latin1").load()
    except _Refused as exc:
        raise VoxmeshError(f"{what} {path} asks to run {exc}, which voxmesh never does when it reads data; "
                           f"store only {store} in it.") from None
    except Exception as exc:
        raise VoxmeshError(f"Cannot read {what.lower()} {path} ({type(exc).__name__}: it is truncated or not a "
                           f"pickle); rewrite it as a pickle of {store}.") from None


# ---- caches ------------------------------------------------------------------------------------

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
