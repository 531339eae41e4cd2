"""Owner liveness on a file system (``vow.stores.owners``): an owner that starts while another
owner's sweep looks at its file still ends up holding its lock, so its death is seen at once.

A sweep (run by every owner that starts) locks each owner file it finds free and unlinks it when
no lease names that owner. A starting owner creates its file and then locks it; a sweep between the
two either holds the file at the moment the owner tries its lock, or unlinks the file the owner
then locks. Either way the owner used to give up: it held no file others could see, so when it
died its leases waited for expiry instead of being taken over at once. These tests put a real
sweep (another ``OwnerLocks`` on the same directory, real ``flock`` and ``unlink``) exactly into
that gap, through the one call between the two steps.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from vow.stores import owners
from vow.stores.owners import OwnerLocks, new_owner_id


def _sweep_before_first_lock(monkeypatch: pytest.MonkeyPatch, path: str, sweep) -> list[int]:
    """Run ``sweep()`` at the moment the first ``flock`` of ``path`` is asked for; returns the list of
    file descriptors that asked (to check the sweep ran)."""
    real_flock = fcntl.flock
    asked: list[int] = []

    def flock(fd: int, operation: int) -> None:
        if not asked and os.path.realpath(f"/proc/self/fd/{fd}").startswith(path):
            asked.append(fd)
            return sweep(lambda: real_flock(fd, operation))
        return real_flock(fd, operation)

    monkeypatch.setattr(owners.fcntl, "flock", flock)
    return asked


def test_an_owner_whose_new_file_a_sweep_unlinks_before_its_lock_still_holds_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = str(tmp_path / "owners")
    starting, sweeper = OwnerLocks(directory), OwnerLocks(directory)
    owner = new_owner_id()

    def sweep_then_lock(lock):
        sweeper.sweep(lambda _owner: False)  # the new file is free: locked, found without leases, unlinked
        assert not os.path.exists(starting._path(owner))
        return lock()  # the starting owner now locks the file it opened, which is gone

    asked = _sweep_before_first_lock(monkeypatch, starting._path(owner), sweep_then_lock)
    assert starting.hold(owner)
    assert asked, "the sweep did not run between the create and the lock"
    monkeypatch.undo()
    assert OwnerLocks(directory).alive(owner) is True
    starting.release(owner)
    assert OwnerLocks(directory).alive(owner) is False  # its death is seen, not unknown


def test_an_owner_whose_new_file_a_sweep_holds_at_that_moment_still_holds_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = str(tmp_path / "owners")
    starting = OwnerLocks(directory)
    owner = new_owner_id()
    path = starting._path(owner)

    def lock_while_a_sweep_holds_it(lock):
        fd = os.open(path, os.O_RDWR)  # the sweep's own open file, locked while it looks up leases
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            return lock()  # refused: the sweep holds it
        finally:
            os.unlink(path)  # the sweep found no lease for it
            os.close(fd)

    asked = _sweep_before_first_lock(monkeypatch, path, lock_while_a_sweep_holds_it)
    assert starting.hold(owner)
    assert asked, "the sweep did not hold the file when the owner tried its lock"
    monkeypatch.undo()
    assert OwnerLocks(directory).alive(owner) is True
    starting.release(owner)
    assert OwnerLocks(directory).alive(owner) is False


def test_an_id_another_live_owner_holds_is_not_held_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = str(tmp_path / "owners")
    owner = new_owner_id()
    first, second = OwnerLocks(directory), OwnerLocks(directory)  # two open files: flock tells them apart
    assert first.hold(owner)
    monkeypatch.setattr(owners, "HOLD_WAIT", 0.2)
    assert not second.hold(owner)
    assert second.alive(owner) is True
    first.release(owner)
    assert second.alive(owner) is False
