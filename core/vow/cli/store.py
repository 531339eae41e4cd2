"""``vow store copy SRC DST``: copy every run of one store into another (SQLite to PostgreSQL, say)."""

from __future__ import annotations

import click

from vow.cli.common import UserError, writable


@click.group("store")
def store_group() -> None:
    """Work on whole stores."""


@store_group.command("copy")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option("--batch", "batch_size", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Promises written per transaction.")
def copy(source: str, destination: str, batch_size: int) -> None:
    """Copy every run in SRC, with its whole promise tree, into DST, then check the copy.

    SRC and DST are store URLs (sqlite:PATH, postgresql://user@host/db, ...). Leases stay behind:
    a pending run is picked up by the first worker on DST. DST must not hold any of the ids (the
    copy is refused and nothing is written); stop the workers on SRC first, or the check fails.

    Moving to PostgreSQL: vow store copy sqlite:.vow/vow.sqlite postgresql://vow@db.internal/vow
    """
    from vow.stores import open_store
    from vow.stores.copy import CopyMismatch, CopyRefused, copy_store

    src = open_store(source, read_only=True)
    try:
        dst = open_store(destination)
        try:
            writable(dst)
            try:
                summary = copy_store(src, dst, batch_size=batch_size,
                                     progress=lambda text: click.echo(text, err=True))
            except (CopyRefused, CopyMismatch) as exc:
                raise UserError(str(exc)) from None
            click.echo(f"copied {summary.runs} runs ({summary.promises} promises) from {src.url} to {dst.url}; "
                       "every tree read back equal")
        finally:
            dst.close()
    finally:
        src.close()
