"""Registers the ``postgresql`` store with vow (entry point ``postgresql = "vow_postgres.plugin"``)."""

from __future__ import annotations

from vow.hookspecs import Register, hookimpl
from vow_postgres.store import PostgresOptions, open_postgres


@hookimpl
def vow_register_stores(register: Register) -> None:
    """The ``postgresql`` store, chosen by ``postgresql://`` and ``postgres://`` URLs."""
    register("postgresql", open_postgres, PostgresOptions,
             description="promises on a PostgreSQL server shared by workers on many machines (postgresql://...)")
