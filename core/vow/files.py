"""Writing a file so that no reader ever sees half of it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from vow.errors import PermanentError, TransientError

__all__ = ["locked_folder", "output_errors", "path_problem", "remove_orphans", "write_atomic", "write_output"]

# Errors that another attempt may not meet: the disk or the quota may have room by then; a temp file
# or folder removed under the writer (ENOENT: where flock is local to each machine, another host's
# tidying can take a live temp file) is made again by the next attempt.
_TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR, errno.EBUSY,
                               errno.ESTALE, errno.ETIMEDOUT, errno.ENOENT})

FOLDER_LOCK_WAIT = 30.0
"""Seconds :func:`locked_folder` waits for another writer's lock (writing a gallery takes milliseconds)."""

_TMP = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{16}\.tmp\Z", re.DOTALL)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` to ``path`` so a reader never sees half a file (temp file, then rename).

    Missing folders are made. A text ``data`` is written as UTF-8. The data reaches the disk
    (fsync) before the rename, so a power cut leaves the old file or the new one, never an empty
    one. A symlink at ``path`` is replaced, not followed. The temp file (``.NAME.<hex>.tmp``
    beside ``path``) is locked while it is written: the temp files of ``path`` a killed writer left
    behind (no lock) are removed by the next write of ``path``, and a live writer's never are, so
    two processes may write the same file at once (the last rename wins).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    fd, tmp = _locked_temp(path)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            _sync(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        os.close(fd)  # only now: the lock must cover the temp file until it is renamed


def _sync(fd: int) -> None:
    """fsync ``fd``, or nothing on a file system that has no fsync (some FUSE and network file
    systems answer EINVAL or ENOTSUP): the write must not fail for a durability it cannot give."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise


def write_output(path: str | os.PathLike[str], data: bytes | str, what: str) -> None:
    """:func:`write_atomic` for a run's output file: an ``OSError`` becomes an error naming ``what``
    and ``path`` — a :class:`~vow.errors.TransientError` when another attempt may succeed (a full
    disk or quota), else a :class:`~vow.errors.PermanentError` (a read-only or unwritable folder, a
    file where a folder should be), which no retry can fix."""
    with output_errors(path, what):
        write_atomic(path, data)


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Make ``folder`` if missing and hold an exclusive lock on it (flock, released at a crash too),
    so files written together in it (a page and its manifest) come from one writer; OS errors as in
    :func:`write_output`. A lock held longer than :data:`FOLDER_LOCK_WAIT` seconds (its holder
    stopped, not dead: ``kill -STOP``, a hung mount) is a :class:`~vow.errors.TransientError`, so
    the step is retried later instead of waiting forever."""
    with output_errors(folder, what):
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Some file systems lock no folder (NFS emulates flock with write locks, which a folder
        # opened read-only cannot take): each file is still written whole, only not as a pair.
        deadline = time.monotonic() + FOLDER_LOCK_WAIT
        while not _lock(fd, wait=False):
            if time.monotonic() >= deadline:
                raise TransientError(f"could not write {what} {os.fspath(folder)}: another writer has held it "
                                     f"locked for {FOLDER_LOCK_WAIT:g} s", code="locked")
            time.sleep(0.05)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def output_errors(path: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into the error :func:`write_output` describes."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        # The folder in the way is worth naming; the path itself or its temp file adds nothing.
        name = os.fspath(exc.filename) if exc.filename else ""
        where = f" ({name})" if name and name != os.fspath(path) and not _TMP.match(os.path.basename(name)) else ""
        code = errno.errorcode.get(exc.errno or 0, "oserror")
        message = f"could not write {what} {os.fspath(path)}: {reason}{where}"
        if exc.errno in _TRANSIENT_ERRNOS:
            raise TransientError(message, code=code) from exc
        raise PermanentError(f"{message}; no retry can fix that: check the output folder", code=code) from exc
    except ValueError as exc:  # a path no file system takes (a NUL: "embedded null byte")
        problem = path_problem(os.fspath(path)) or str(exc)
        raise PermanentError(f"could not write {what} {os.fspath(path)!r}: the path {problem}",
                             code="bad_path") from exc


def path_problem(path: str) -> str | None:
    """Why no file system takes ``path`` as a folder or file name, or ``None``: a NUL character, a
    lone surrogate (not encodable), or a part longer than 255 bytes (the usual ``NAME_MAX``)."""
    if "\x00" in path:
        return "holds a NUL character (\\x00), which no file name can"
    try:
        encoded = os.fsencode(path)
    except UnicodeEncodeError:
        return "holds a lone surrogate, which no file name can"
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > 255:
        return f"has a part of {len(longest)} bytes ({os.fsdecode(longest[:40])}...): a file name holds at most 255"
    return None


def _temp_base(name: str) -> str:
    """``name`` as its temp files start, cut to 200 bytes: with the 22 bytes a temp name adds, a
    legal name of up to 255 bytes must not make an illegal temp name."""
    encoded = os.fsencode(name)
    return name if len(encoded) <= 200 else encoded[:200].decode("utf-8", "ignore")


def _locked_temp(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path``, open for writing and locked (flock) by this process."""
    while True:
        tmp = str(path.parent / f".{_temp_base(path.name)}.{secrets.token_hex(8)}.tmp")
        # Mode 0666 less the umask, as open() gives any new file (mkstemp's 0600 would keep a web
        # server from serving a gallery).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            _lock(fd)
            # Between open and flock another writer's remove_orphans may have taken the new, still
            # unlocked file for an orphan and removed it: then take another name.
            if os.fstat(fd).st_nlink > 0:
                return fd, tmp
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)


# What flock raises where a file system has no locks (NFS without its lock service, some FUSE
# file systems): there, files are written unlocked, and remove_orphans, unable to lock either,
# removes nothing.
_NO_LOCKS = (errno.EBADF, errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP)


def _lock(fd: int, *, wait: bool = True) -> bool:
    """Lock ``fd`` exclusively, or nothing where the file system has no locks; ``False`` when
    ``wait`` is false and another holds the lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise
    return True


def remove_orphans(path: str | os.PathLike[str]) -> list[str]:
    """Remove the temp files of ``path`` that no live :func:`write_atomic` holds; return their names.

    A writer killed between creating its temp file and the rename (``kill -9``, a crash) leaves
    ``.NAME.<hex>.tmp`` behind; its lock died with it, which is how it is told from a live one.
    """
    path = Path(path)
    removed: list[str] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:  # no folder yet, or none to read: nothing to tidy, and the write says what is wrong
        return removed
    for entry in entries:
        match = _TMP.match(entry.name)
        if not match or match.group("name") != _temp_base(path.name):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:  # gone already, or a symlink someone put there: not a temp file of ours
            continue
        # Tidying is a courtesy: nothing found here (a folder or a FIFO under a temp file's name, a
        # file this process may not remove) may fail the write itself.
        try:
            mine = os.fstat(fd)
            if not stat.S_ISREG(mine.st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's
            there = os.stat(entry.path, follow_symlinks=False)
            if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed
