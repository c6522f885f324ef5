"""One rule for every file and folder the project writes (SAE folders, captures, reports, organisms, checkpoints).

* A new artifact is written under a temporary sibling name (``.<name>.tmp-<pid>-<random>``), fsynced, then renamed
  into place. A folder that replaces an earlier one moves the earlier one aside (``.<name>.old-<pid>-<random>``)
  only once the new one is complete, and removes it only after the new one is in place: at every instant a
  complete earlier or a complete new artifact is on disk.
* A path that is not an artifact of the same kind (a regular file where a folder goes, a folder of unrelated
  files) is never replaced: the write is refused, naming the path and what it holds.
* One writer per output: :class:`OutputLock` (a ``.<name>.lock`` beside the output, held with ``flock``) makes a
  second writer fail at once, naming the holder's pid and start time; the kernel drops the lock of a process that
  dies, so a lock file left by a dead process is taken over (and said so). Readers take no lock.
* Temporaries of writers that are gone (their pid is no longer alive) are removed by the next writer.
* A full disk is reported as such, naming the file, with what was kept.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import inspect
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from loguru import logger

_LIBC = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-z]+$")


class OutputBusyError(RuntimeError):
    """Another live process is writing the same output."""


class NotAnArtifactError(FileExistsError):
    """The path exists and is not an artifact of the kind being written: replacing it could lose data."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def temporary_name(target: Path, kind: str = "tmp") -> Path:
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temporary(name: str) -> bool:
    return _TEMPORARY.match(name) is not None


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temporaries(folder: Path, name: str | None = None) -> list[Path]:
    """Remove temporaries in ``folder`` (of ``name`` only, if given) whose writer process is gone; an artifact
    such a writer had moved aside and not replaced is put back."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.glob(f".{name}.*" if name else ".*")):
        match = _TEMPORARY.match(path.name)
        if match and (name is None or match["name"] == name) and not pid_alive(int(match["pid"])):
            target = folder / match["name"]
            if match["kind"] == "old" and not target.exists() and not target.is_symlink():
                os.replace(path, target)  # killed between moving the old artifact aside and the new one in
                logger.warning(f"{target}: restored the previous artifact that a killed writer had moved aside")
                continue
            remove_path(path)
            removed.append(path)
    if removed:
        logger.info(
            f"removed {len(removed)} temporary file(s)/folder(s) of killed writers in {folder}: "
            f"{[p.name for p in removed][:4]}"
        )
    return removed


def fsync(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes the renames in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            fsync(path)
    for path in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
        fsync(path)
    fsync(folder)


def no_space(err: BaseException, target: Path, kept: str) -> OSError:
    """The error to raise for a failed write: ENOSPC becomes a plain sentence naming the file and what was kept."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return OSError(
            errno.ENOSPC,
            f"no space left on device while writing {target}; nothing was lost ({kept}): "
            f"free space and rerun (a resumable run resumes)",
        )
    return err


def _kept(target: Path) -> str:
    return f"{target} keeps its previous content" if target.exists() else f"{target} was not created"


def atomic_write(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary name beside ``target``, fsync it, rename it into place, fsync the folder.

    A folder at ``target`` is refused (a file never replaces a folder)."""
    target = Path(target)
    if target.is_dir() and not target.is_symlink():
        raise NotAnArtifactError(
            f"{target}: is a folder; refusing to replace it with a file: pass a file path or move the folder away"
        )
    clean_stale_temporaries(target.parent, target.name)
    tmp = temporary_name(target)
    try:
        write(tmp)
        fsync(tmp)
        os.replace(tmp, target)
        fsync(target.parent)
    except OSError as err:
        raise no_space(err, target, _kept(target)) from err
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_write_bytes(target: str | Path, data: bytes) -> Path:
    """:func:`atomic_write` of ``data`` (written through ``os.write``, so a full disk raises ``OSError``)."""

    def write(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    return atomic_write(target, write)


def atomic_write_text(target: str | Path, text: str) -> Path:
    return atomic_write_bytes(target, text.encode())


@dataclass(frozen=True)
class ArtifactKind:
    """What a folder artifact is, so that a write refuses a path that is something else."""

    name: str  # e.g. "SAE folder", for messages
    owns: Callable[[str], bool]  # whether an entry name is one of the artifact's own files (not carried over)
    marker: Callable[[Path], bool]  # whether an existing folder is an artifact of this kind


def check_replaceable(target: Path, kind: ArtifactKind) -> None:
    """Raise :class:`NotAnArtifactError` unless ``target`` is absent, an empty folder or a ``kind`` folder."""
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir():
        raise NotAnArtifactError(
            f"{target}: exists and is a file, not {kind.name}; refusing to replace it (its "
            f"content would be lost): pass another path, or move the file away"
        )
    entries = sorted(p.name for p in target.iterdir() if not is_temporary(p.name))
    if entries and not kind.marker(target):
        raise NotAnArtifactError(
            f"{target}: holds {entries[:6]}{' ...' if len(entries) > 6 else ''} and is not "
            f"{kind.name}; refusing to write into it: pass a new or empty folder"
        )


def carry_over(old: Path, new: Path, owns: Callable[[str], bool]) -> None:
    """Hard-link into ``new`` what ``old`` holds besides the artifact's own files (a user's notes, other runs)."""
    for entry in old.iterdir():
        dest = new / entry.name
        if dest.exists() or owns(entry.name) or is_temporary(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, dest, copy_function=os.link, symlinks=True)
        elif entry.is_symlink():
            dest.symlink_to(os.readlink(entry))
        else:
            os.link(entry, dest)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(new: Path, target: Path) -> None:
    """Put the complete ``new`` at ``target``. An existing ``target`` is exchanged with it in one atomic step, so
    ``new`` then holds the earlier artifact, for the caller to remove. Where the filesystem cannot exchange, the
    earlier one is moved aside first and removed after; a writer killed between those two renames leaves it as
    ``.<name>.old-<pid>-*``, which the next writer puts back."""
    if not target.exists() or exchange(new, target):
        if not target.exists():
            os.replace(new, target)
        fsync(target.parent)
        return
    old = temporary_name(target, "old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    try:
        fsync(target.parent)
    finally:
        remove_path(old)


def start_folder(target: Path, kind: ArtifactKind) -> Path:
    """Check ``target`` may be replaced, clean dead writers' temporaries, create and return a temporary sibling."""
    target.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable(target, kind)
    clean_stale_temporaries(target.parent, target.name)
    tmp = temporary_name(target)
    tmp.mkdir()
    return tmp


def finish_folder(tmp: Path, target: Path, kind: ArtifactKind) -> Path:
    """Carry the old folder's other files over, fsync everything, swap ``tmp`` in as ``target``."""
    try:
        if target.is_dir():
            carry_over(target, tmp, kind.owns)
        fsync_tree(tmp)
        swap_in(tmp, target)
    except OSError as err:
        raise no_space(err, target, _kept(target)) from err
    return target


def publish_folder(target: str | Path, write: Callable[[Path], None], kind: ArtifactKind) -> Path:
    """Build a ``kind`` folder with ``write(tmp)`` and swap it in as ``target``, under :class:`OutputLock`."""
    target = Path(target)
    with OutputLock(target):
        tmp = start_folder(target, kind)
        try:
            try:
                write(tmp)
            except OSError as err:
                raise no_space(err, target, _kept(target)) from err
            return finish_folder(tmp, target, kind)
        finally:
            remove_path(tmp)


class OutputLock:
    """Exclusive right to write ``target``: a second writer (another process) fails at once with
    :class:`OutputBusyError` naming the holder's pid and start time. Re-entrant within a process."""

    _held: ClassVar[dict[Path, int]] = {}  # lock path -> depth, this process

    def __init__(self, target: str | Path):
        target = Path(target)
        self.target = target
        self.path = target.parent.absolute() / f".{target.name}.lock"
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        if self._held.get(self.path):
            self._held[self.path] += 1
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputBusyError(
                    f"{self.target}: another process is writing it ({_describe(holder)}, lock "
                    f"{self.path}); wait for it to finish, or stop it, or write elsewhere"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the previous holder removed the file between our open and flock: take the new one
                break
            os.close(fd)
        previous = _read_holder(fd)
        if previous.get("pid") not in (None, os.getpid()):
            logger.warning(f"{self.target}: taking over the lock left by {_describe(previous)}, which is gone")
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            json.dumps(
                {"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname()}
            ).encode(),
            0,
        )
        self.fd = fd
        self._held[self.path] = 1
        return self

    def __exit__(self, *exc) -> None:
        self._held[self.path] -= 1
        if self._held[self.path] or self.fd is None:
            return
        del self._held[self.path]
        self.path.unlink(missing_ok=True)  # before unlocking: a waiter that opened it retries on the new file
        os.close(self.fd)
        self.fd = None


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (ValueError, OSError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "pid unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


def report_folder(folder: str | Path, index: str = "report.json") -> ArtifactKind:
    """A report folder: ``index`` (written last) lists the report's files under ``"files"``; anything else in the
    folder (a user's notes, other runs' subfolders) is carried over when a new report replaces it."""
    folder = Path(folder)
    listed = {index}
    try:
        files = json.loads((folder / index).read_text()).get("files", {})
        listed |= {Path(str(name)).name for name in (files.values() if isinstance(files, dict) else files)}
    except (OSError, ValueError, AttributeError):
        pass
    return ArtifactKind("a report folder", listed.__contains__, lambda f: (f / index).is_file())


def holds_output(argument: str):
    """Decorator for a run that writes into the folder passed as ``argument``: the whole call holds
    :class:`OutputLock` on it (none when it is None), so a second concurrent run fails at once, before any work."""

    def wrap(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def call(*args, **kwargs):
            target = signature.bind(*args, **kwargs).arguments.get(argument)
            if target is None:
                return function(*args, **kwargs)
            with OutputLock(target):
                return function(*args, **kwargs)

        return call

    return wrap
