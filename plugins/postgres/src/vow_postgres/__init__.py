"""vow-postgres: the PostgreSQL store for vow, for workers on many machines sharing one server.

Choose it by URL: ``Vow("postgresql://user@host:5432/db")``, ``vow worker --store postgresql://...``.
"""

from vow_postgres.store import PostgresOptions, PostgresStore, open_postgres

__all__ = ["PostgresOptions", "PostgresStore", "open_postgres"]
