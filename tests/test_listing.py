"""Listings on the SQLite store: the run queries seek an index, whatever the filter.

(The rules themselves are in the contract suite, vow.stores.contract; this checks the SQLite
store's plans, which no rule can see.)
"""

from __future__ import annotations

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
