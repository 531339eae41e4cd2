"""Copying a whole store into another: every run with its whole promise tree, nothing else.

This is how a deployment moves from one store to another (SQLite on one machine to a
PostgreSQL server shared by many). Only the read and write methods of the store protocol are
used, so it works between any two stores. Leases stay behind: a pending run in the copy is
free for the first worker that claims it there. Stop the workers on the source first; a run
that changes during the copy makes the check at the end fail.

Three passes over the source: (1) every id is looked up in the destination, and the copy is
refused, with nothing written, if any is there already; (2) the trees are written, many runs
per batch, each tree oldest first (so records created at the same time keep their order);
(3) every tree in the destination is read back and compared record by record with the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs

from vow.errors import VowError
from vow.records import Batch, PromiseRecord
from vow.stores.base import Store

_ALL = 2**62
"""A ``limit`` that means "all of them" to every store."""


class CopyRefused(VowError):
    """The destination already holds some of the ids to copy; nothing was written."""


class CopyMismatch(VowError):
    """After the copy, a tree in the destination differs from the source (one changed meanwhile)."""


@attrs.frozen
class CopySummary:
    """What :func:`copy_store` copied."""

    runs: int
    promises: int


def root_ids(store: Store) -> list[str]:
    """The id of every tree's root in ``store`` (records without a parent), oldest first."""
    return [r.id for r in reversed(store.search(roots_only=True, limit=_ALL))]


def copy_store(source: Store, destination: Store, *, batch_size: int = 2000,
               progress: Callable[[str], None] | None = None) -> CopySummary:
    """Copy every run of ``source`` (each root and its whole tree) into ``destination``.

    Raises :class:`CopyRefused` (nothing written) if ``destination`` holds any of the ids, and
    :class:`CopyMismatch` if a tree read back from ``destination`` differs from ``source``.
    """
    say = progress or (lambda _text: None)
    roots = root_ids(source)
    say(f"{len(roots)} runs in {source.url}")

    taken: list[str] = []
    pending: list[str] = []
    for tree in _trees(source, roots):
        pending += [r.id for r in tree]
        if len(pending) >= batch_size:
            taken += destination.get_many(pending)
            pending = []
    taken += destination.get_many(pending)
    if taken:
        shown = ", ".join(repr(i) for i in sorted(taken)[:5])
        raise CopyRefused(f"{destination.url} already holds {len(taken)} of the ids to copy ({shown}"
                          f"{', ...' if len(taken) > 5 else ''}); nothing was written")

    promises = 0
    creates: list[PromiseRecord] = []
    for done, tree in enumerate(_trees(source, roots), 1):
        creates += tree
        if len(creates) >= batch_size:
            promises += _write(destination, creates)
            creates = []
            say(f"copied {done} of {len(roots)} runs")
    promises += _write(destination, creates)

    for root, tree in zip(roots, _trees(source, roots)):
        copied = destination.tree(root)
        if copied != tree:
            raise CopyMismatch(f"run {root!r}: {len(tree)} promises in {source.url}, {len(copied)} in "
                               f"{destination.url}, and they differ; was the source written to during the copy? "
                               "Stop its workers and copy into an empty store again")
    say(f"verified {len(roots)} runs")
    return CopySummary(len(roots), promises)


def _trees(store: Store, roots: list[str]) -> Iterator[list[PromiseRecord]]:
    for root in roots:
        yield store.tree(root)


def _write(destination: Store, creates: list[PromiseRecord]) -> int:
    if not creates:
        return 0
    result = destination.apply(Batch(creates=creates))
    if result.existing:
        shown = ", ".join(sorted(result.existing)[:5])
        raise CopyRefused(f"{destination.url} gained ids while the copy ran ({shown}); "
                          "another process is writing to it")
    return len(creates)
