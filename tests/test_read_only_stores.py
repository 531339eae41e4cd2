"""A store opened read-only through its URL, used from Python: a run fails with the real cause and its fix
(drop the read-only setting from the URL), writes nothing and runs no leaf."""

from __future__ import annotations

from pathlib import Path

import pytest

from vow import Context, LeafContext, Vow
from vow.errors import StoreError

SENT: list[str] = []


def send(ctx: LeafContext) -> str:
    SENT.append(ctx.id)
    return "sent"


def notify(ctx: Context):
    return (yield ctx.run(send))


# Before, the SQLite store said "cannot be written (opened read-only): vow ls and vow show can read it; to
# change it, give a store you may write (--store, $VOW_STORE)": the file could be written, the URL was at
# fault, and --store is no part of the Python API. PostgreSQL said "it is a standby or
# default_transaction_read_only is on (for the server, database or role): point the store at the primary,
# or have the setting turned off", when the store's own URL had turned it on.
READ_ONLY = {
    "sqlite": ("?read_only=true", r"^SQLite store \S+: opened read-only \(read_only=true\), so it takes no "
                                  r"writes: drop read_only=true from the store URL to write to it$"),
    "postgres": ("?options=-c%20default_transaction_read_only%3Don",
                 r"^PostgreSQL store postgresql://\S+: opened read-only \(default_transaction_read_only=on, set by "
                 r"the URL's options or PGOPTIONS\), so the server takes no writes \(cannot execute [A-Z ]+ in a "
                 r"read-only transaction\): drop it from the URL's options or from PGOPTIONS to write to it$"),
}


@pytest.mark.parametrize("kind", list(READ_ONLY))
def test_a_run_in_a_store_opened_read_only_by_its_url_says_to_drop_that_from_the_url(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:{tmp_path / 'vow.sqlite'}" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    suffix, message = READ_ONLY[kind]
    with Vow(store=url) as writer:
        assert writer.run("ro/1", notify) == "sent"
    SENT.clear()
    with Vow(store=url + suffix) as reader:
        assert reader.get("ro/1").state.value == "resolved"  # type: ignore[union-attr]
        with pytest.raises(StoreError, match=message):
            reader.run("ro/2", notify)
    with Vow(store=url) as writer:
        assert writer.get("ro/2") is None and [r.id for r in writer.store.runs()] == ["ro/1"]
    assert SENT == []
    if kind == "postgres":  # a schema not made yet: its creation is the first write, at the opening
        with pytest.raises(StoreError, match=message):
            Vow(store=f"{url}{suffix}&schema=never_made")


def test_vow_run_on_a_postgresql_store_opened_read_only_by_its_url_is_refused_before_a_run(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As for SQLite's read_only=true (tests/cli/test_read_only_store.py): vow run printed "failed: q/1 unknown
    after -: StoreError ...", exit 1, and told to `vow show` a run it never stored."""
    from click.testing import CliRunner

    from vow.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    Vow(store=postgres_url).close()  # the schema, made by a store that may write
    (tmp_path / "q.yaml").write_text("version: 1\nname: q\nid: q/1\nfan_out:\n"
                                     "  - {channel: slack, to: '#general', body: hi}\n")
    result = CliRunner().invoke(cli, ["run", "q.yaml", "--store", postgres_url + READ_ONLY["postgres"][0]],
                                prog_name="vow")
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.endswith(
        ": opened read-only (default_transaction_read_only=on, set by the URL's options or PGOPTIONS): vow run needs "
        "to write to it; drop it from the URL's options or from PGOPTIONS (vow ls and vow show read it as it is)\n"), \
        result.stderr
    with Vow(store=postgres_url) as reader:
        assert reader.get("q/1") is None
