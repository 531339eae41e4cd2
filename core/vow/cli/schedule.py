"""``vow schedule add FILE | ls | pause NAME | resume NAME | rm NAME``: schedules in the store.

A schedule is stored in the store, not in a process: ``vow worker`` (any number of them, on any
machine sharing the store) fires its ticks. These commands only read and write the store; ``add``
also plans the file once, as its first tick will be, so a mistake in it is reported now.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from vow.cli.common import (
    existing_store_option,
    installed_plugins,
    json_option,
    print_json,
    store_option,
    writable,
)

# The store, the schedules and the pipeline code are imported inside the commands: `vow --help`
# imports this module to list its commands and must stay fast (tests/cli/test_run.py checks it).


@contextlib.contextmanager
def _opened(store: str | None, *, read_only: bool = False) -> Iterator[Any]:
    from vow.stores import open_store

    opened = open_store(store, read_only=read_only)
    try:
        yield opened if read_only else writable(opened)
    finally:
        opened.close()


def _when(text: str | None) -> str:
    """A tick (UTC, as in run ids) in local time for people, or ``-``."""
    if text is None:
        return "-"
    from vow.schedules.timing import parse_tick_text

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(parse_tick_text(text)))


def _line(info: Any) -> str:
    state = "paused" if info.paused else f"next {_when(info.to_dict()['next_tick'])}"
    definition = info.definition
    return (f"{info.name}: {definition.timing.describe()}, catch_up {definition.catch_up}, starts "
            f"{definition.kind} {definition.what}; {state}")


@click.group()
def schedule() -> None:
    """Start pipelines and workflows on a cron expression or an interval.

    Schedules live in the store: every `vow worker` sharing it fires each tick once, as run
    NAME/TICK (the tick in UTC, such as nightly/2025-06-01T02:00:00Z), however many workers there
    are. Ticks missed while no worker ran start by the schedule's catch_up policy.
    """


@schedule.command("add")
@click.argument("file")
@click.option("--name", metavar="NAME", help="The schedule's name [default: schedule.name in the file, else the "
                                             "pipeline's name].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set one input key for every run.")
@click.option("--input", "inputs", multiple=True, metavar="JSON|@FILE", help="Input for every run (JSON or @file).")
@store_option
@json_option
def add(file: str, name: str | None, sets: tuple[str, ...], inputs: tuple[str, ...], store: str | None,
        as_json: bool) -> None:
    """Store the schedule of pipeline FILE (its `schedule:` block says when).

    The file is checked as its first run will be planned, then its text and input are stored:
    editing the file later changes nothing until you add it again. Adding the same name again
    replaces the schedule (and keeps its progress when the timing is unchanged).
    """
    from vow.pipeline.inputs import command_line_input
    from vow.pipeline.source import read
    from vow.schedules.manage import add_pipeline

    if store is None:  # as for `vow run`: --store, else $VOW_STORE, else the file's store:
        data = read(file).data
        given = data.get("store") if isinstance(data, dict) else None
        store = given if isinstance(given, str) else None
    with _opened(store) as opened:
        info = add_pipeline(opened, file, name=name, input=command_line_input(inputs, sets),
                            plugins=installed_plugins())
        url = opened.url
    if as_json:
        print_json(info.to_dict())
        return
    click.echo(f"scheduled {_line(info)}")
    click.echo(f"  first run: {info.next_run_id} (started by `vow worker --store {url}`)")


@schedule.command("ls")
@existing_store_option
@json_option
def ls(store: str | None, as_json: bool) -> None:
    """List the schedules with their next tick."""
    from vow.schedules.manage import listing

    problems: list[str] = []
    with _opened(store, read_only=True) as opened:
        infos = listing(opened, problems=problems)
        url = opened.url
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)
    if as_json:
        print_json([i.to_dict() for i in infos])
        return
    if not infos:
        if not problems:
            click.echo(f"no schedules in {url} (vow schedule add FILE)")
        return
    table = [("NAME", "WHEN", "CATCH_UP", "STARTS", "LAST TICK", "NEXT")]
    for i in infos:
        data = i.to_dict()
        table.append((i.name, i.definition.timing.describe(), i.definition.catch_up,
                      f"{i.definition.kind} {i.definition.what}", _when(data["last_tick"]),
                      "paused" if i.paused else _when(data["next_tick"])))
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@schedule.command("pause")
@click.argument("name")
@existing_store_option
def pause(name: str, store: str | None) -> None:
    """Stop starting runs of schedule NAME; ticks that pass meanwhile are skipped."""
    from vow.schedules.manage import pause as pause_schedule

    click.echo(f"paused {_line(_change(store, name, pause_schedule))}")


@schedule.command("resume")
@click.argument("name")
@existing_store_option
def resume(name: str, store: str | None) -> None:
    """Start runs of schedule NAME again, from its next tick."""
    from vow.schedules.manage import resume as resume_schedule

    click.echo(f"resumed {_line(_change(store, name, resume_schedule))}")


@schedule.command("rm")
@click.argument("name")
@existing_store_option
def rm(name: str, store: str | None) -> None:
    """Delete schedule NAME (the runs it started stay)."""
    from vow.schedules.manage import remove

    _change(store, name, remove)
    click.echo(f"removed schedule {name}")


def _change(store: str | None, name: str, change: Callable[[Any, str], Any]) -> Any:
    """``change(store, name)`` on the opened store; what it returns."""
    with _opened(store) as opened:
        return change(opened, name)
