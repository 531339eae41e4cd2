"""The fixtures vow.testing gives plugin authors work as documented."""

from __future__ import annotations

from vow import Context, LeafContext


def double(ctx: LeafContext, x: int) -> int:
    return 2 * x


def twice(ctx: Context, x: int):
    return (yield ctx.run(double, x))


def test_vow_client_runs_on_a_real_sqlite_file(vow_client) -> None:
    assert vow_client.run("t/1", twice, 21) == 42
    assert vow_client.store.url.startswith("sqlite")


def test_memory_vow_and_an_empty_plugin_manager(memory_vow, plugins) -> None:
    assert memory_vow.run("t/1", twice, 2) == 4
    assert plugins.channels.names() == []
