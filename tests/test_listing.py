"""Listings on the SQLite store: the run queries seek an index, whatever the filter.

(The rules themselves are in the contract suite, vow.stores.contract; this checks the SQLite
store's plans, which no rule can see.)
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from vow.records import State
from vow.stores.base import pipeline_workflow
from vow.stores.sqlite import _RUN_NAME, SQLiteStore


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "listing.sqlite")
    yield store
    store.close()


@pytest.mark.parametrize("filters", [
    {"state": State.PENDING}, {"state": State.RESOLVED}, {"name": "orders"},
    {"state": State.PENDING, "before": (1.0, "x")}, {"name": "orders", "since": 5.0}, {}, {"before": (1.0, "x")},
])
def test_every_runs_query_seeks_an_index(store: SQLiteStore, filters: dict) -> None:
    query = {"state": None, "name": None, "since": None, "until": None, "before": None, "limit": 20, **filters}
    sql, params = store._runs_query(**query)
    plan = " ".join(row[-1] for row in store._con().execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "USING INDEX" in plan and "SCAN" not in plan, plan
    if "state" in filters:
        assert "promises_runs_by_state" in plan
    elif "name" in filters:
        assert "promises_runs_by_name" in plan


def test_the_run_name_index_knows_the_pipeline_workflow() -> None:
    assert f"func = '{pipeline_workflow()}'" in _RUN_NAME


def test_vow_ls_filters_by_state_and_name(tmp_path) -> None:
    from click.testing import CliRunner

    from vow import Vow
    from vow.cli import cli

    def leaf(ctx) -> int:
        return 1

    def flow(ctx):
        return (yield ctx.run(leaf))

    def other(ctx):
        return (yield ctx.run(leaf))

    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    with Vow(store) as vow:
        vow.register(flow)
        vow.register(other)
        vow.run("done/1", flow)
        vow.submit("waiting/1", flow)
        vow.submit("waiting/2", other)
    runner = CliRunner()

    def ids(*args: str) -> list[str]:
        result = runner.invoke(cli, ["ls", "--store", store, *args])
        assert result.exit_code == 0, result.output
        return [line.split()[0] for line in result.output.splitlines()[1:]]

    assert ids() == ["waiting/2", "waiting/1", "done/1"]
    assert ids("--state", "pending") == ["waiting/2", "waiting/1"]
    assert ids("--state", "pending", "--name", "flow") == ["waiting/1"]
    assert ids("--limit", "1") == ["waiting/2"]
    result = runner.invoke(cli, ["ls", "--store", store, "--state", "canceled", "--name", "flow"])
    assert result.output.startswith("no runs in state canceled named flow in sqlite://")


def test_vow_ls_and_vow_prune_take_one_vocabulary_of_states(tmp_path) -> None:
    """`vow ls --state` took only stored states and `vow prune --state` only outcome words: `vow ls
    --state failed` was "Invalid value ... 'failed' is not one of 'pending', 'resolved', ...". Both take
    both now (and `parked`, which `vow ls` shows), several at once, in any case."""
    import json
    import sqlite3

    from click.testing import CliRunner

    from vow import Vow
    from vow.cli import cli

    def leaf(ctx) -> int:
        return 1

    def flow(ctx):
        return (yield ctx.run(leaf))

    def broken(ctx):
        yield ctx.run(leaf)
        raise ValueError("no")

    def slow(ctx):
        yield ctx.sleep(60)

    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    with Vow(store) as vow:
        for f in (flow, broken, slow):
            vow.register(f)
        vow.run("ok/1", flow)
        with pytest.raises(Exception, match="no"):
            vow.run("bad/1", broken)
        with pytest.raises(Exception):  # noqa: B017 - the run's own timeout error
            vow.run("late/1", slow, timeout=0.05)
        vow.submit("gone/1", flow)
        vow.cancel("gone/1")
        vow.submit("waiting/1", flow)
        vow.submit("stuck/1", flow)
    with sqlite3.connect(tmp_path / "vow.sqlite") as con:  # as the store parks a run whose process kept dying
        con.execute("INSERT OR REPLACE INTO leases (root, owner, token, expires_at, recoveries, parked) "
                    "VALUES ('stuck/1', '', 1, 0, 5, 'kept dying')")
    con.close()
    runner = CliRunner()

    def ids(*args: str) -> list[str]:
        result = runner.invoke(cli, ["ls", "--store", store, *args])
        assert result.exit_code == 0, result.output
        return sorted(line.split()[0] for line in result.output.splitlines()[1:] if not line.startswith("parked "))

    assert ids("--state", "resolved") == ids("--state", "succeeded") == ids("--state", "SUCCEEDED") == ["ok/1"]
    assert ids("--state", "failed") == ["bad/1", "late/1"] == ids("--state", "rejected,timedout")
    assert ids("--state", "canceled") == ids("--state", "cancelled") == ["gone/1"]
    assert ids("--state", "pending") == ["stuck/1", "waiting/1"]  # a parked run is pending, as before
    assert ids("--state", "parked") == ["stuck/1"]
    assert ids("--state", "succeeded, canceled") == ["gone/1", "ok/1"]
    assert ids("--state", "failed", "--limit", "1") == ["late/1"]  # newest first over both states
    listed = json.loads(runner.invoke(cli, ["ls", "--store", store, "--state", "failed", "--json"]).output)
    assert sorted(r["state"] for r in listed) == ["rejected", "timedout"]

    refused = runner.invoke(cli, ["ls", "--store", store, "--state", "done"])
    assert refused.exit_code == 2
    assert ("--state: unknown state 'done'; allowed: pending, parked, resolved, rejected, timedout, canceled "
            "(or succeeded, failed, cancelled)") in refused.output

    pruned = runner.invoke(cli, ["prune", "--store", store, "--older-than", "0s", "--dry-run", "--json",
                                 "--state", "timedout,cancelled"])
    assert pruned.exit_code == 0, pruned.output
    assert sorted(r["id"] for r in json.loads(pruned.output)["removed"]) == ["gone/1", "late/1"]
    for state in ("pending", "parked"):
        refused = runner.invoke(cli, ["prune", "--store", store, "--older-than", "0s", "--state", state])
        assert refused.exit_code == 2
        assert (f"--state: unknown state {state!r} (a pending run is never pruned); allowed: resolved, rejected, "
                "timedout, canceled (or succeeded, failed, cancelled)") in refused.output


def test_vow_ls_escapes_what_would_spoof_a_terminal_and_aligns_wide_text(tmp_path) -> None:
    """A run id given through the Python API may hold any text. A right-to-left override (U+202E) made
    `inv/<RLO>gpj.exe` read `inv/exe.jpg` on a terminal, a line separator (U+2028) broke the line on some,
    a zero-width space hid a difference between two ids; and a column after an id in CJK (two cells a
    character) or with a combining accent (none) stood out of line."""
    from click.testing import CliRunner

    from vow import Vow
    from vow.cli import cli

    def leaf(ctx) -> int:
        return 1

    def flow(ctx):
        return (yield ctx.run(leaf))

    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    ids = ["inv/\u202egpj.exe", "line\u2028sep", "z\u200bw", "日本語/注文", "e\u0301/comb", "ok/1"]
    with Vow(store) as vow:
        vow.register(flow)
        for rid in ids:
            vow.run(rid, flow)
    result = CliRunner().invoke(cli, ["ls", "--store", store])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 + len(ids)
    for shown in ("inv/\\u202egpj.exe", "line\\u2028sep", "z\\u200bw"):
        assert any(line.startswith(f"{shown} ") for line in lines), result.output
    assert not any(c in result.output for c in "\u202e\u2028\u200b")

    def cells(text: str) -> int:
        import unicodedata

        return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
                   for c in text)

    state_at = {cells(line[:line.index("resolved")]) for line in lines[1:]}
    assert state_at == {cells(lines[0][:lines[0].index("STATE")])}  # one column, whatever the ids
    pruned = CliRunner().invoke(cli, ["prune", "--store", store, "--older-than", "0s", "--dry-run"])
    assert pruned.exit_code == 0, pruned.output
    assert "inv/\\u202egpj.exe" in pruned.output and not any(c in pruned.output for c in "\u202e\u2028\u200b")
    listed = pruned.output.splitlines()[1:]
    assert len(listed) == len(ids) and len({cells(line[:line.index("resolved")]) for line in listed}) == 1


def _nested_run(tmp_path, run_id: str, leaf, branches: int) -> str:
    """Run ``run_id``: ``branches`` calls of ``leaf`` (0, 1, ...), then a child workflow calling ``leaf(1)``;
    the store's URL."""
    from vow import Vow

    def inner(ctx):
        return (yield ctx.run(leaf, 1))

    def flow(ctx):
        for n in range(branches):
            yield ctx.run(leaf, n)
        return (yield ctx.run(inner))

    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    with Vow(store) as vow:
        vow.register(flow)
        vow.register(inner)
        vow.run(run_id, flow)
    return store


def test_vow_show_of_one_branch_reads_that_branch_not_its_whole_run(tmp_path, monkeypatch) -> None:
    """`vow show RUN.3` read the whole run's tree to print one branch: 2.3 s on a run of 100,000 branches.
    It reads the branch and what is under it now; the output is the same."""
    from click.testing import CliRunner

    from vow.cli import cli
    from vow.stores.sqlite import SQLiteStore

    def leaf(ctx, n: int) -> int:
        return n

    store = _nested_run(tmp_path, "big/1", leaf, branches=5)
    runner = CliRunner()
    whole = runner.invoke(cli, ["show", "big/1", "--store", store])
    assert whole.exit_code == 0, whole.output
    branch = next(line.split()[1] for line in whole.output.splitlines() if " inner " in line)
    before = runner.invoke(cli, ["show", branch, "--store", store, "--json"])
    read: list[str] = []
    real_tree = SQLiteStore.tree
    monkeypatch.setattr(SQLiteStore, "tree", lambda self, root: read.append(root) or real_tree(self, root))
    shown = runner.invoke(cli, ["show", branch, "--store", store, "--json"])
    assert shown.exit_code == 0, shown.output
    assert shown.output == before.output and len(json.loads(shown.output)["children"]) == 1
    assert read == []  # no whole tree read
    assert runner.invoke(cli, ["show", "big/1", "--store", store]).output == whole.output
    assert read == ["big/1"]


def test_vow_show_prints_a_run_nested_deeper_than_pythons_recursion_limit(tmp_path) -> None:
    """A workflow that calls itself as a child 1,100 levels deep runs (the engine has no depth limit), and
    `vow show` of it died with a RecursionError traceback, as text and as JSON."""
    import time

    from click.testing import CliRunner

    from vow.cli import cli
    from vow.records import Batch, Kind, PromiseRecord, State
    from vow.stores.sqlite import SQLiteStore

    now = time.time()
    records, parent = [], None
    for depth in range(1500):  # as the engine stores a workflow calling itself, without running 1,500 of them
        rid = "deep/1" if parent is None else f"deep/1.{depth}"
        records.append(PromiseRecord(rid, State.RESOLVED, Kind.WORKFLOW, "deep/1", func="rec", args="[]",
                                     value=str(depth), parent=parent, created_at=now + depth,
                                     settled_at=now + 3000 - depth))
        parent = rid
    path = tmp_path / "vow.sqlite"
    store = SQLiteStore(path)
    store.apply(Batch(creates=records))
    store.close()
    runner = CliRunner()
    text = runner.invoke(cli, ["show", "deep/1", "--store", f"sqlite:{path}"])
    assert text.exit_code == 0, text.output[-500:]
    lines = text.output.splitlines()
    assert len(lines) == 1500 and lines[-1].startswith(" " * 4 * 1498 + "└── deep/1.1499  ok")
    as_json = runner.invoke(cli, ["show", "deep/1", "--store", f"sqlite:{path}", "--json"])
    assert as_json.exit_code == 0, as_json.output[-500:]
    assert as_json.output.count('"id": ') == 1500 and as_json.output.rstrip().endswith("]\n}")


def test_vow_show_json_is_what_json_dumps_writes(tmp_path) -> None:
    """`vow show --json` writes its tree without recursion; the text is json.dumps(..., indent=2)'s."""
    from click.testing import CliRunner

    from vow.cli import cli

    def leaf(ctx, n: int) -> float:
        return float("nan") if n == 2 else n

    store = _nested_run(tmp_path, "j/1", leaf, branches=3)
    shown = CliRunner().invoke(cli, ["show", "j/1", "--store", store, "--json"])
    assert shown.exit_code == 0, shown.output
    tree = json.loads(shown.output)
    assert shown.output == json.dumps(tree, indent=2) + "\n"
    assert [len(c["children"]) for c in tree["children"]][-1] == 1 and "NaN" not in shown.output


def list_parked_runs_counting_reads(url: str, store_class: type, store_module: Any,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Store 300 pending runs, 3 of them parked (and a parked lease on a canceled run), and check that
    `vow ls --state parked` reads no lease one at a time, decodes the parked runs' records alone, and
    prints what it printed when it paged through every pending run (as for a store that is no
    ParkedLeasesStore), for several filters, as text and as JSON."""
    from click.testing import CliRunner

    import vow.stores.base
    from vow.cli import cli
    from vow.records import Batch, Kind, PromiseRecord, Settle
    from vow.stores import open_store

    def run(rid: str, func: str, at: float) -> PromiseRecord:
        return PromiseRecord(rid, State.PENDING, Kind.WORKFLOW, rid, func=func, args="[]", created_at=1000.0 + at)

    pending = [run(f"wait/{n:03}", "other" if n % 7 == 0 else "flow", n) for n in range(300)]
    stuck = ["wait/010", "wait/014", "wait/250"]  # flow, other, flow
    store = open_store(url)
    try:
        store.apply(Batch(creates=[*pending, run("gone/1", "flow", 400)]))
        store.apply(Batch(settles=[Settle("gone/1", State.CANCELED, None, 2000.0)]))
        for root in [*stuck, "gone/1"]:  # as a worker parks a run whose process kept dying
            store.claim(root, "died", 1.0, now=0.0)
            assert store.claim(root, "next", 1.0, now=100.0, max_recoveries=0) is None
        store.claim_many([r.id for r in pending[20:40]], "alive", 3600.0)
        assert sorted(lease.root for lease in store.parked_leases()) == sorted([*stuck, "gone/1"])
    finally:
        store.close()
    runner = CliRunner()
    filters = [["--state", "parked"], ["--state", "parked", "--limit", "2"], ["--state", "parked", "--name", "other"],
               ["--state", "parked", "--name", "nothing"], ["--state", "parked,canceled"]]
    outputs = []
    leases: list[str] = []
    records: list[str] = []
    real_lease, real_record = store_class.lease, store_module._record
    for args in filters:
        for form in ([], ["--json"]):
            leases.clear()
            records.clear()
            with monkeypatch.context() as patched:
                patched.setattr(store_class, "lease", lambda self, root: leases.append(root) or real_lease(self, root))
                patched.setattr(store_module, "_record", lambda row: records.append(row[0]) or real_record(row))
                listed = runner.invoke(cli, ["ls", "--store", url, *args, *form])
            assert listed.exit_code == 0, listed.output
            assert leases == [], f"{len(leases)} leases read one at a time"
            assert set(records) <= {*stuck, "gone/1"}, f"{len(records)} records read"
            outputs.append(listed.output)
    assert [line.split()[0] for line in outputs[0].splitlines()[1:]] == [
        "wait/250", "wait/014", "wait/010", "parked", "parked", "parked"]
    assert [r["id"] for r in json.loads(outputs[5])] == ["wait/014"]
    assert [r["state"] for r in json.loads(outputs[9])] == ["canceled", "parked", "parked", "parked"]
    with monkeypatch.context() as patched:
        # as it was: every pending run, and its lease (not delattr: isinstance caches what it found)
        patched.setattr(vow.stores.base, "ParkedLeasesStore", type("NotThatStore", (), {}))
        paged = [runner.invoke(cli, ["ls", "--store", url, *args, *form]).output
                 for args in filters for form in ([], ["--json"])]
    assert outputs == paged


def test_vow_ls_of_parked_runs_reads_the_parked_leases_not_every_pending_runs(tmp_path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`vow ls --state parked` paged through every pending run and read each one's lease in turn, to
    keep the parked: 2 s for 100,000 pending runs. It reads the parked leases, then their runs."""
    import vow.stores.sqlite as sqlite_store

    list_parked_runs_counting_reads(f"sqlite:{tmp_path / 'vow.sqlite'}", SQLiteStore, sqlite_store, monkeypatch)


def test_a_file_made_before_the_index_of_parked_leases_gets_it_when_it_may_be_written(tmp_path) -> None:
    """A file of the same format made by an earlier vow has no index of parked leases: read-only, its
    parked leases are read all the same (without it), and any store that may write makes it, with no
    new format (which would make an earlier vow refuse the file)."""
    import sqlite3

    from vow.stores.base import FORMAT_VERSION

    path = tmp_path / "vow.sqlite"
    store = SQLiteStore(path)
    store.claim("r", "died", 1.0, now=0.0)
    store.claim("r", "next", 1.0, now=100.0, max_recoveries=0)
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("DROP INDEX leases_parked")  # as the vow before it left the file
        con.commit()
    reader = SQLiteStore(path, read_only=True)
    try:
        assert [(lease.root, bool(lease.parked)) for lease in reader.parked_leases()] == [("r", True)]
    finally:
        reader.close()
    query = "SELECT root FROM leases WHERE parked IS NOT NULL ORDER BY root"
    with contextlib.closing(sqlite3.connect(path)) as con:
        assert "leases_parked" not in " ".join(row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + query))
    store = SQLiteStore(path)
    try:
        assert [lease.root for lease in store.parked_leases()] == ["r"]
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path)) as con:
        plan = " ".join(row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + query))
        assert plan == "SCAN leases USING INDEX leases_parked", plan  # a partial index: the parked rows alone
        assert con.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION == 3
