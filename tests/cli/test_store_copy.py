"""``vow store copy``: every run with its whole tree, leases left behind, refused onto existing ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from vow import Vow
from vow.records import Batch
from vow.stores.copy import CopyRefused, copy_store, root_ids
from vow.stores.memory import MemoryStore
from vow.stores.sqlite import SQLiteStore
from vow.testing import register_sample_workflows, run_sample_workflows


def _trees(store) -> dict[str, list]:
    return {root: store.tree(root) for root in root_ids(store)}


def test_copy_between_sqlite_files_on_the_command_line(sandbox, tmp_path: Path) -> None:
    with Vow(sandbox.store) as client:
        kinds = run_sample_workflows(client)
    target = tmp_path / "copy.sqlite"

    done = sandbox.run("store", "copy", sandbox.store, f"sqlite:{target}")
    assert done.returncode == 0, done.stderr
    source, copy = SQLiteStore(sandbox.store_file), SQLiteStore(target)
    try:
        trees = _trees(source)
        assert set(trees) == set(kinds)
        promises = sum(len(t) for t in trees.values())
        assert done.stdout.strip() == (f"copied 4 runs ({promises} promises) from {source.url} to {copy.url}; "
                                       "every tree read back equal")
        assert _trees(copy) == trees
        assert {root: copy.get(root).state.value for root in kinds} == kinds
        assert all(copy.lease(root) is None for root in kinds), "leases stay behind"

        again = sandbox.run("store", "copy", sandbox.store, f"sqlite:{target}")
        assert again.returncode == 2
        error = again.stderr.splitlines()[-1]
        assert error.startswith(f"error: {copy.url} already holds {promises} of the ids to copy ('sample/done', ")
        assert error.endswith(", ...); nothing was written")
        assert _trees(copy) == trees
    finally:
        source.close()
        copy.close()


def test_a_copied_pending_run_finishes_in_the_copy(tmp_path: Path) -> None:
    source = MemoryStore()
    with Vow(source) as client:
        run_sample_workflows(client)
        copy = SQLiteStore(tmp_path / "copy.sqlite")
        summary = copy_store(source, copy)
        assert summary.runs == 4 and summary.promises == sum(len(t) for t in _trees(source).values())
    with Vow(copy) as moved:
        register_sample_workflows(moved)
        moved.resolve("sample/waiting.approval", 100)
        assert moved.resume("sample/waiting").result(60) == 5 + 100
        assert moved.resume("sample/submitted").result(60) == 1


def test_a_copy_onto_a_store_holding_one_of_the_ids_writes_nothing(tmp_path: Path) -> None:
    source = MemoryStore()
    target = SQLiteStore(tmp_path / "target.sqlite")
    with Vow(source) as client:  # closes the source at the end
        run_sample_workflows(client)
        target.apply(Batch(creates=[source.get("sample/done.2")]))
        with pytest.raises(CopyRefused, match=r"already holds 1 of the ids to copy \('sample/done.2'\)"):
            copy_store(source, target)
    assert [r.id for r in target.search()] == ["sample/done.2"]
    target.close()
