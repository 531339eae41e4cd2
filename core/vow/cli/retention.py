"""``vow prune``: delete finished runs older than a cutoff, and say what went."""

from __future__ import annotations

import time

import click

from vow.cli.common import existing_store_option, installed_plugins, json_option, print_json, writable
from vow.retention import PruneResult, describe_seconds, parse_age, parse_states

# The client and the engine under it are imported inside the commands: `vow --help` imports this
# module to list its commands and must stay fast (tests/cli/test_run.py checks what it loads).

SHOWN = 20
"""Runs listed by name in the text report (``--json`` lists them all)."""


@click.command()
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Only runs that settled longer ago than this: 30d, 12h, 90m, 45s, 2w (or 1d12h); "
                   "at most 36500d.")
@click.option("--state", "states", metavar="STATES", default=None,
              help="Only runs that ended so, comma-separated: resolved, rejected, timedout, canceled (or succeeded, "
                   "failed: rejected or timedout) [default: all four].")
@click.option("--dry-run", is_flag=True, help="Delete nothing; list what would be deleted.")
@click.option("--compact", is_flag=True,
              help="Also rewrite the store file to give all free space back to the disk (SQLite: needed once "
                   "for a file made without incremental vacuum; writers wait meanwhile, so stop workers first).")
@existing_store_option
@json_option
def prune(older_than: str, states: str | None, dry_run: bool, compact: bool, store: str | None,
          as_json: bool) -> None:
    """Delete finished runs (each root with its whole promise tree) that settled before a cutoff.

    A pending run is never touched, nor any part of one. The space is given back to the disk where
    the store can do it without blocking writers, and the SQLite log is truncated.
    """
    from vow.client import Vow

    seconds = parse_age(older_than, what="--older-than")  # checked before the store is opened
    chosen = parse_states(states, what="--state")
    with Vow(store, plugins=installed_plugins()) as vow:
        if not dry_run:  # a dry run only reads
            writable(vow.store)
        cutoff = vow.store.now() - seconds  # the store's clock, as for leases and deadlines
        result = vow.store.prune(before=cutoff, states=chosen, dry_run=dry_run, compact=compact)
        url = vow.store.url
    if as_json:
        print_json({"store": url, "cutoff": cutoff, **result.to_json()})
        return
    _report(result, url, cutoff, seconds)


def _report(result: PruneResult, url: str, cutoff: float, seconds: float) -> None:
    verb = "would remove" if result.dry_run else "removed"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(cutoff))
    if not result.runs:
        click.echo(f"no finished runs settled before {when} ({describe_seconds(seconds)} ago) in {url}")
    else:
        states = ", ".join(f"{n} {s}" for s, n in sorted(result.by_state().items()))
        click.echo(f"{verb} {_count(len(result.runs), 'run')} ({states}) holding "
                   f"{_count(result.promises, 'promise')}, settled before {when}, from {url}")
        from vow.progress import cells, pad, printable

        shown = [(printable(run.id), run) for run in result.runs[:SHOWN]]  # an id may be any text
        width = max(cells(text) for text, _ in shown)
        for text, run in shown:
            settled = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.settled_at))
            click.echo(f"  {pad(text, width)}  {run.state.value:<9}  "
                       f"{_count(run.promises, 'promise'):>14}  settled {settled}")
        if len(result.runs) > SHOWN:
            click.echo(f"  ... and {len(result.runs) - SHOWN:,} more (--json lists them all)")
    if result.dry_run or result.bytes_before is None or not (result.runs or result.compacted):
        return
    disk = f"on disk: {_size(result.bytes_before)} -> {_size(result.bytes_after or 0)}"
    if result.compacted:
        disk += " (file rewritten with incremental vacuum on: later prunes give space back by themselves)"
    if result.wal_truncated is False:
        disk += "; the log could not be truncated now (the store is busy): the next checkpoint will do it"
    click.echo(disk)
    if result.free_bytes and not result.compacted:
        click.echo(f"{_size(result.free_bytes)} stay free inside the file for new promises; "
                   "`vow prune --compact` (with no worker running) gives them back to the disk once, "
                   "and every prune does after that")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover
