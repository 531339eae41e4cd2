"""``vow ls`` and ``vow show``: what runs there are, and one run's promise tree."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from vow import encoding
from vow.cli.common import UserError, json_option, pipeline_name, print_json, store_option
from vow.progress import WORDS, describe_outcome, seconds
from vow.records import Kind, PromiseRecord, State


def _took(record: PromiseRecord) -> float | None:
    return (record.settled_at - record.created_at) if record.settled_at else None


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


@click.command("ls")
@click.option("--state", type=click.Choice([s.value for s in State]), help="Only runs in this state.")
@click.option("--name", metavar="NAME", help="Only runs of this workflow, or of this pipeline.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many runs.")
@store_option
@json_option
def ls(state: str | None, name: str | None, limit: int, store: str | None, as_json: bool) -> None:
    """List runs, newest first."""
    from vow.stores import open_store

    # The store alone: listing needs no engine, so `vow ls` stays quick on a big store.
    opened = open_store(store)
    try:
        records = opened.runs(state=State(state) if state else None, name=name, limit=limit)
        url = opened.url
    finally:
        opened.close()
    if as_json:
        print_json([{"id": r.id, "state": r.state.value, "workflow": r.func, "pipeline": pipeline_name(r),
                     "attempt": r.attempt, "created_at": r.created_at, "settled_at": r.settled_at,
                     "elapsed": _took(r)} for r in records])
        return
    if not records:
        filters = "".join(f" {what} {value}" for what, value in (("in state", state), ("named", name)) if value)
        click.echo(f"no runs{filters} in {url}")
        return
    table = [("ID", "STATE", "WORKFLOW", "STARTED", "TOOK")]
    for r in records:
        name = pipeline_name(r)
        table.append((r.id, r.state.value, f"pipeline {name}" if name else r.func, _when(r.created_at),
                      seconds(_took(r)) if r.settled else "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@click.command()
@click.argument("promise_id", metavar="ID")
@store_option
@json_option
def show(promise_id: str, store: str | None, as_json: bool) -> None:
    """Show the promise tree of run ID (or of any promise in it): states, attempts, timings."""
    from vow.client import Vow

    with Vow(store) as vow:
        record = vow.get(promise_id)
        if record is None:
            raise UserError(f"no promise with id {promise_id!r} in {vow.store.url} (vow ls lists the runs)")
        tree = vow.store.tree(record.root)
    children: dict[str, list[PromiseRecord]] = {}
    for r in tree:
        if r.parent is not None:
            children.setdefault(r.parent, []).append(r)
    if as_json:
        print_json(_node(record, children))
    elif sys.stdout.isatty():
        from rich.console import Console
        from rich.tree import Tree

        rich_tree = Tree(_label(record, rich=True))
        _add_rich(rich_tree, record, children)
        Console(highlight=False).print(rich_tree)
    else:
        click.echo(_label(record))
        _print_plain(record, children, "")


def _kind(record: PromiseRecord) -> str:
    if record.kind is Kind.PROMISE:
        return "promise (settled from outside)"
    if record.kind is Kind.SLEEP:
        return "sleep"
    name = record.func.rsplit(".", 1)[-1] if record.parent else record.func
    pipeline = pipeline_name(record)
    return f"{name} ({pipeline})" if pipeline else name


_STYLES = {"resolved": "green", "rejected": "bold red", "timedout": "red", "canceled": "magenta", "pending": "cyan"}


def _label(record: PromiseRecord, *, rich: bool = False) -> Any:
    word = WORDS.get(record.state.value, record.state.value) if record.settled else "pending"
    parts = [record.id, word, _kind(record)]
    if record.kind in (Kind.STEP, Kind.WORKFLOW):
        parts.append(f"attempt {record.attempt}")
    took = _took(record)
    parts.append(seconds(took) if took is not None else f"since {_when(record.created_at)}")
    shown = (record.settled and record.kind in (Kind.STEP, Kind.PROMISE)) or record.state is State.REJECTED
    detail = describe_outcome(record) if shown else ""
    if detail:
        parts.append(detail)
    if not rich:
        return "  ".join(parts)
    from rich.text import Text

    text = Text()
    text.append(record.id, style="bold")
    text.append("  ")
    text.append(word, style=_STYLES.get(record.state.value, ""))
    text.append("  " + "  ".join(parts[2:]), style="dim" if record.state is State.RESOLVED else "")
    return text


def _print_plain(record: PromiseRecord, children: dict[str, list[PromiseRecord]], indent: str) -> None:
    kids = children.get(record.id, [])
    for i, child in enumerate(kids):
        last = i == len(kids) - 1
        click.echo(f"{indent}{'└── ' if last else '├── '}{_label(child)}")
        _print_plain(child, children, indent + ("    " if last else "│   "))


def _add_rich(node: Any, record: PromiseRecord, children: dict[str, list[PromiseRecord]]) -> None:
    for child in children.get(record.id, []):
        _add_rich(node.add(_label(child, rich=True)), child, children)


def _node(record: PromiseRecord, children: dict[str, list[PromiseRecord]]) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": record.id, "state": record.state.value, "kind": record.kind.value, "func": record.func,
        "attempt": record.attempt, "created_at": record.created_at, "settled_at": record.settled_at,
        "elapsed": _took(record), "idempotency_key": record.idempotency_key,
    }
    if record.state is State.RESOLVED:
        node["value"] = encoding.decode(record.value)
    elif record.settled:
        node["error"] = describe_outcome(record)
    node["children"] = [_node(c, children) for c in children.get(record.id, [])]
    return node
