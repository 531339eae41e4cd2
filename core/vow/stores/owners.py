"""Lease owners: who they are, and how a store on one file system tells a live owner from a dead one.

An owner id names one running engine: ``host:pid:random``. The host and pid are there for
people reading ``vow ls``; liveness never rests on them, because two containers may share a host
name and a store file but not a PID namespace (the same pid is a different process on each side),
and a forked child keeps its parent's pid in the parent's namespace.

Liveness on a file system (:class:`OwnerLocks`): each live owner holds an exclusive ``flock`` on
its own file in a directory beside the store. The kernel drops the lock when the process dies —
however it dies — and the lock is visible to every process that opens the same file, in any PID
namespace. So "alive" means the owner's lock is held, and "dead" means its file exists and its
lock can be taken. An owner
without a file (it never called :meth:`OwnerLocks.hold`: an older vow, a hand-made id, a process
on a machine that sees another copy of the directory) is *unknown*: only lease expiry frees its
leases. Files of dead owners that hold no lease any more are removed when an owner starts.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable

__all__ = ["OwnerLocks", "new_owner_id", "is_owner_id"]

_OWNER_ID = re.compile(r"\A[^:/\x00]*:\d+:[0-9a-f]{16}\Z")  # \Z: "$" also matches before a final line break

HOLD_WAIT = 5.0
"""How long :meth:`OwnerLocks.hold` keeps trying while another process has the owner's file locked.
A sweep holds a starting owner's file for the moment it takes to look up its leases; a second live
process with the same id holds it for good."""


def new_owner_id() -> str:
    """A fresh lease owner id, ``host:pid:random`` (call it again after a fork)."""
    host = socket.gethostname().replace(":", "_").replace("/", "_")
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


def is_owner_id(owner: str) -> bool:
    """Whether ``owner`` is an id made by :func:`new_owner_id` (so it holds a liveness lock)."""
    return bool(_OWNER_ID.match(owner))


class OwnerLocks:
    """Owner liveness through ``flock`` files in ``directory`` (one file per owner)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._held: dict[str, int] = {}  # owner -> fd holding its lock
        self._lock = threading.Lock()
        _all_locks.add(self)

    def _path(self, owner: str) -> str:
        return os.path.join(self.directory, owner.replace(":", "_") + ".lock")

    def hold(self, owner: str) -> bool:
        """Take ``owner``'s lock for as long as this process lives (or until :meth:`release`).

        Returns ``False`` when it cannot be held (a read-only directory, a file system without
        locks, or another live process holding the same id for :data:`HOLD_WAIT` seconds)."""
        if not is_owner_id(owner):
            return False
        with self._lock:
            if owner in self._held:
                return True
            path = self._path(owner)
            try:
                os.makedirs(self.directory, exist_ok=True)
            except OSError:
                return False  # a read-only directory: others fall back to lease expiry
            deadline = time.monotonic() + HOLD_WAIT
            pause = 0.001
            while True:
                try:
                    fd = _lock_own_file(path)
                except OSError:
                    return False  # cannot be made, or no locks on this file system: unknown to others
                if fd is not None:
                    self._held[owner] = fd
                    return True
                if time.monotonic() >= deadline:
                    return False
                # A sweep (another owner starting) has the new file locked for a moment, or
                # unlinked it between our create and our lock: make it again and lock that.
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def release(self, owner: str) -> None:
        """Drop ``owner``'s lock: from now on it reads as dead. The file stays (a missing file reads
        as unknown) until a sweep finds that no lease names the owner any more."""
        with self._lock:
            fd = self._held.pop(owner, None)
        if fd is not None:
            os.close(fd)

    def alive(self, owner: str) -> bool | None:
        """``True`` while ``owner`` holds its lock, ``False`` once its file is there but unlocked (it
        died, or released it), ``None`` when there is no file to judge by (unknown)."""
        if owner in self._held:
            return True
        if not is_owner_id(owner):
            return None
        path = self._path(owner)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return None  # no file: an owner that never held one here (another machine, an older vow)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True  # its owner holds it
        except OSError:
            return None  # locks cannot be judged on this file system
        finally:
            os.close(fd)  # closing drops the lock we may have just taken
        return False

    def sweep(self, holds_leases: Callable[[str], bool]) -> None:
        """Remove the files of dead owners for which ``holds_leases(owner)`` is false."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if not name.endswith(".lock"):
                continue
            path = os.path.join(self.directory, name)
            owner = name[:-len(".lock")].replace("_", ":")
            if owner in self._held:
                continue
            fd = _lock_if_free(path)
            if fd is None:
                continue
            try:
                if not holds_leases(owner):
                    os.unlink(path)
            except OSError:
                pass
            finally:
                os.close(fd)

    def close(self) -> None:
        """Release every owner this object holds."""
        for owner in list(self._held):
            self.release(owner)

    def _forget_after_fork(self) -> None:
        # The child shares the parent's lock (flock locks belong to the open file, which fork
        # shares). Close the child's copies without unlocking: the parent still holds them, and
        # when the parent dies its owners read as dead even while this child lives on.
        for fd in self._held.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._held = {}
        self._lock = threading.Lock()


def _lock_own_file(path: str) -> int | None:
    """Create ``path`` if needed and lock it: the fd holding the lock of the file that is at
    ``path`` now, or ``None`` when that is worth trying again (someone holds the lock, or the file
    we locked was unlinked meanwhile). Raises :class:`OSError` when it is not (the file cannot be
    made, or this file system has no locks)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Held, and still the file at ``path`` (not one a sweep unlinked a moment ago).
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _lock_if_free(path: str) -> int | None:
    """An fd holding ``path``'s lock if nobody else held it (the owner is dead), else ``None``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None  # no file: unknown
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None  # the owner holds it (alive), or the lock cannot be judged (unknown)
    return fd


_all_locks: weakref.WeakSet[OwnerLocks] = weakref.WeakSet()
def _after_fork_in_child() -> None:
    for locks in list(_all_locks):
        locks._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
