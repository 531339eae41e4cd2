"""``vow ls`` and ``vow show``: what runs there are, and one run's promise tree.

Both only read the store: they open it directly (no client, no engine thread) and import the
rest when they print, so they answer in well under a quarter of a second. ``vow show`` lists
every attempt of a promise that was retried, each with its error (:mod:`vow.history`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from vow.cli.common import UserError, existing_store_option, json_option, pipeline_name, print_json, utf8_text
from vow.history import FailedAttempt, RateLimitWait, failed_attempts, is_engine_timer, rate_limit_waits
from vow.records import Kind, PromiseRecord, State

if TYPE_CHECKING:
    from vow.records import Lease
    from vow.stores.base import Store

CLIP_CHARS = 1000
"""``vow show --json``: longer strings are cut to this many characters (``--full``: never)."""
CLIP_ITEMS = 100
"""``vow show --json``: longer lists and objects keep this many entries (``--full``: all)."""


def _took(record: PromiseRecord) -> float | None:
    return (record.settled_at - record.created_at) if record.settled_at else None


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):  # beyond what the platform's time_t holds (a back-off of inf)
        return "never"


@click.command("ls")
@click.option("--state", metavar="STATES",
              help="Only runs in these states, comma-separated: pending, parked, resolved, rejected, timedout, "
                   "canceled (or succeeded, failed: rejected or timedout).")
@click.option("--name", metavar="NAME", callback=utf8_text, help="Only runs of this workflow, or of this pipeline.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many runs.")
@existing_store_option
@json_option
def ls(state: str | None, name: str | None, limit: int, store: str | None, as_json: bool) -> None:
    """List runs, newest first. A run parked after its process kept dying shows as parked, with the reason."""
    from vow.progress import cells, pad, printable, seconds  # imported here: `vow --help` stays quick
    from vow.retention import parse_state_names
    from vow.stores import open_store

    states = parse_state_names(state, what="--state") if state is not None else None  # before the store opens
    # The store alone: listing needs no engine, so `vow ls` stays quick on a big store.
    opened = open_store(store, read_only=True)
    try:
        # At most 2**63 - 1: the largest LIMIT a store's SQL takes, and more runs than any store holds.
        records, parked = _runs(opened, states, name, min(limit, 2**63 - 1))
        url = opened.url
    finally:
        opened.close()
    if as_json:
        print_json([{"id": r.id, "state": "parked" if r.id in parked else r.state.value, "workflow": r.func,
                     "pipeline": pipeline_name(r), "attempt": r.attempt, "created_at": r.created_at,
                     "settled_at": r.settled_at, "elapsed": _took(r), "parked": parked.get(r.id)}
                    for r in records])
        return
    if not records:
        filters = "".join(f" {what} {value}" for what, value in (("in state", state), ("named", name)) if value)
        click.echo(f"no runs{filters} in {url}")
        return
    table = [("ID", "STATE", "WORKFLOW", "STARTED", "TOOK")]
    for r in records:
        name = pipeline_name(r)
        # An id or a workflow's name given through the Python API may be any text.
        table.append((printable(r.id), "parked" if r.id in parked else r.state.value,
                      printable(f"pipeline {name}" if name else r.func), _when(r.created_at),
                      seconds(_took(r)) if r.settled else "-"))
    widths = [max(cells(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(pad(cell, w) for cell, w in zip(row, widths)).rstrip())
    for rid, reason in parked.items():
        click.echo(printable(f"parked {rid}: {reason}"))


def _runs(store: Store, states: frozenset[str] | None, name: str | None,
          limit: int) -> tuple[list[PromiseRecord], dict[str, str]]:
    """The newest ``limit`` runs in ``states`` (:data:`vow.retention.STATE_NAMES`; ``None``: any), and
    the reason of each listed run that is parked."""
    from vow.stores.base import ParkedLeasesStore

    wanted = [None] if states is None else sorted({State.PENDING if s == "parked" else State(s) for s in states})
    found: list[PromiseRecord] = []
    parked: dict[str, str] = {}
    for state in wanted:
        if (state is State.PENDING and states is not None and "pending" not in states
                and isinstance(store, ParkedLeasesStore)):
            # The parked runs alone: paging through every pending run for them read each one's lease
            # in turn (2 s for 100,000 pending runs).
            found += _parked_runs(store, store.parked_leases(), name, limit, parked)
            continue
        kept, before = 0, None
        while kept < limit:  # another page only when `parked` picks some of the pending and left others out
            page = store.runs(state=state, name=name, before=before, limit=limit)
            for r in page:
                reason = None if r.settled or (lease := store.lease(r.id)) is None else lease.parked
                if states is None or r.state.value in states or (reason and "parked" in states):
                    found.append(r)
                    kept += 1
                    if reason:
                        parked[r.id] = reason
            if len(page) < limit:
                break
            before = (page[-1].created_at, page[-1].id)
    found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return found[:limit], {r.id: parked[r.id] for r in found[:limit] if r.id in parked}


def _parked_runs(store: Store, leases: list[Lease], name: str | None, limit: int,
                 parked: dict[str, str]) -> list[PromiseRecord]:
    """The newest ``limit`` pending runs (named ``name``) among the roots of the parked ``leases``; each
    one's reason is put in ``parked``. The runs paging through ``runs(state=PENDING)`` would keep."""
    from vow.stores.base import run_key, run_matches

    reasons = {lease.root: lease.parked for lease in leases if lease.parked}
    records = store.get_many(reasons)
    runs = sorted((r for r in records.values() if r.state is State.PENDING and r.parent is None
                   and r.kind is Kind.WORKFLOW and run_matches(r, name, None, None, None)), key=run_key, reverse=True)
    for r in runs[:limit]:
        parked[r.id] = reasons[r.id]
    return runs[:limit]


@click.command()
@click.argument("promise_id", metavar="ID", callback=utf8_text)
@existing_store_option
@json_option
@click.option("--full", is_flag=True,
              help=f"With --json: every value whole (by default strings over {CLIP_CHARS:,} characters and lists "
                   f"or objects over {CLIP_ITEMS:,} entries are cut, and the node says \"truncated\": true).")
def show(promise_id: str, store: str | None, as_json: bool, full: bool) -> None:
    """Show the promise tree of run ID (or of any promise in it): states, attempts, timings."""
    from vow.stores import open_store
    from vow.stores.base import tree_holding

    opened = open_store(store, read_only=True)
    try:
        record = opened.get(promise_id)
        if record is None:
            raise UserError(f"no promise with id {promise_id!r} in {opened.url} (vow ls lists the runs)")
        tree = tree_holding(opened, record)
    finally:
        opened.close()
    children: dict[str, list[PromiseRecord]] = {}
    for r in tree:
        if r.parent is not None:
            children.setdefault(r.parent, []).append(r)
    if as_json:
        click.echo(_tree_json(record, children, full=full))
    elif sys.stdout.isatty():
        from rich.console import Console
        from rich.tree import Tree

        rich_tree = Tree(_label(record, rich=True))
        _add_rich(rich_tree, record, children)
        Console(highlight=False).print(rich_tree)
    else:
        click.echo(_label(record))
        _print_plain(record, children)


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
    from vow.progress import WORDS, describe_outcome, printable, seconds

    word = WORDS.get(record.state.value, record.state.value) if record.settled else "pending"
    parts = [printable(record.id), word, printable(_kind(record))]
    if record.kind in (Kind.STEP, Kind.WORKFLOW):
        parts.append(f"attempt {record.attempt}")
    took = _took(record)
    parts.append(seconds(took) if took is not None else f"since {_when(record.created_at)}")
    shown = (record.settled and record.kind in (Kind.STEP, Kind.PROMISE)) or record.state is State.REJECTED
    detail = describe_outcome(record) if shown else ""
    if detail:
        parts.append(printable(detail))
    if not rich:
        return "  ".join(parts)
    from rich.text import Text

    text = Text()
    text.append(parts[0], style="bold")
    text.append("  ")
    text.append(word, style=_STYLES.get(record.state.value, ""))
    text.append("  " + "  ".join(parts[2:]), style="dim" if record.state is State.RESOLVED else "")
    return text


Shown = FailedAttempt | RateLimitWait | PromiseRecord


def _shown(children: dict[str, list[PromiseRecord]], record: PromiseRecord) -> list[Shown]:
    """What stands under ``record``: its failed attempts and waits for a rate limit (read from the
    engine's timers, which get no line of their own), then its children — but not the durable clock
    reading a run takes to time itself (``{run}.started``), whose time the run's line shows."""
    kids = children.get(record.id, [])
    history: list[FailedAttempt | RateLimitWait] = [*failed_attempts(record, kids), *rate_limit_waits(record, kids)]
    history.sort(key=lambda h: (h.attempt, isinstance(h, FailedAttempt)))  # an attempt's waits, then its failure
    shown: list[Shown] = list(history)
    shown += [c for c in kids
              if not is_engine_timer(c) and not (c.kind is Kind.STEP and c.func.rsplit(".", 1)[-1] == "wall_clock")]
    return shown


def _attempt_label(attempt: FailedAttempt | RateLimitWait, *, rich: bool = False) -> Any:
    from vow.progress import printable, seconds

    if isinstance(attempt, RateLimitWait):
        until = (f"waited {seconds(max(0.0, attempt.until - attempt.began))}" if attempt.waited and attempt.until
                 else f"until {_when(attempt.until)}")
        return f"attempt {attempt.attempt}  held back by a rate limit ({until})"
    if attempt.waited and attempt.retry_at is not None:
        after = f"retried after {seconds(max(0.0, attempt.retry_at - attempt.failed_at))}"
    else:
        after = f"next attempt at {_when(attempt.retry_at)}"
    error = printable(attempt.error)
    if not rich:
        return f"attempt {attempt.attempt}  failed  {error}  ({after})"
    from rich.text import Text

    text = Text(f"attempt {attempt.attempt}  ")
    text.append("failed", style=_STYLES["rejected"])
    text.append(f"  {error}  ({after})")
    return text


# A run may nest deeper than Python's recursion limit (a workflow calling itself as a child, 1,100
# levels deep, runs), so its tree is walked with a stack, never by recursion.


def _print_plain(record: PromiseRecord, children: dict[str, list[PromiseRecord]]) -> None:
    walk: list[tuple[list[Shown], int, str]] = [(_shown(children, record), 0, "")]
    while walk:
        kids, i, indent = walk.pop()
        if i == len(kids):
            continue
        walk.append((kids, i + 1, indent))
        child, last = kids[i], i == len(kids) - 1
        if not isinstance(child, PromiseRecord):
            click.echo(f"{indent}{'└── ' if last else '├── '}{_attempt_label(child)}")
            continue
        click.echo(f"{indent}{'└── ' if last else '├── '}{_label(child)}")
        walk.append((_shown(children, child), 0, indent + ("    " if last else "│   ")))


def _add_rich(node: Any, record: PromiseRecord, children: dict[str, list[PromiseRecord]]) -> None:
    walk = [(node, record)]
    while walk:
        parent, parent_record = walk.pop()
        for child in _shown(children, parent_record):
            if not isinstance(child, PromiseRecord):
                parent.add(_attempt_label(child, rich=True))
            else:
                walk.append((parent.add(_label(child, rich=True)), child))


def _fields(record: PromiseRecord, children: dict[str, list[PromiseRecord]], *, full: bool) -> dict[str, Any]:
    """``vow show --json``'s node for ``record``, but for its ``children``."""
    node: dict[str, Any] = {
        "id": record.id, "state": record.state.value, "kind": record.kind.value, "func": record.func,
        "attempt": record.attempt, "created_at": record.created_at, "settled_at": record.settled_at,
        "elapsed": _took(record), "idempotency_key": record.idempotency_key,
    }
    if record.state is State.RESOLVED:
        node["value"] = json.loads(record.value) if record.value is not None else None
    elif record.settled:
        from vow.progress import describe_outcome

        node["error"] = describe_outcome(record)
    attempts = failed_attempts(record, children.get(record.id, []))
    if attempts:  # every retried attempt's error; the one it ended on is "error" (or "value") above
        node["failed_attempts"] = [{"attempt": a.attempt, "error": a.error, "failed_at": a.failed_at,
                                    "retry_at": a.retry_at} for a in attempts]
    if not full:
        cut = False
        for key in ("value", "error", "failed_attempts"):
            if key in node:
                node[key], clipped = clip(node[key])
                cut = cut or clipped
        if cut:
            node["truncated"] = True
    return node


def _tree_json(record: PromiseRecord, children: dict[str, list[PromiseRecord]], *, full: bool = False) -> str:
    """``vow show --json``: the tree under ``record``, each node with its ``children``, as
    :func:`vow.cli.common.print_json` writes it (``json.dumps(..., indent=2)``, strict JSON), but written
    a node at a time: ``json.dumps`` of the whole tree recurses once per level."""
    from vow.encoding import json_safe

    out: list[str] = []
    walk: list[str | tuple[PromiseRecord, int]] = [(record, 0)]
    while walk:
        item = walk.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        node, level = item
        indent = "  " * level
        text = json.dumps(json_safe(_fields(node, children, full=full)), indent=2, allow_nan=False)
        head = text.replace("\n", "\n" + indent)[:-len(indent) - 2]  # without its closing "\n}"
        kids = children.get(node.id, [])
        if not kids:
            out.append(f'{head},\n{indent}  "children": []\n{indent}}}')
            continue
        out.append(f'{head},\n{indent}  "children": [')
        parts: list[str | tuple[PromiseRecord, int]] = []
        for i, kid in enumerate(kids):
            parts += [f"\n{indent}    ", (kid, level + 2), "," if i < len(kids) - 1 else ""]
        parts.append(f"\n{indent}  ]\n{indent}}}")
        walk.extend(reversed(parts))
    return "".join(out)


def clip(value: Any, *, chars: int = CLIP_CHARS, items: int = CLIP_ITEMS) -> tuple[Any, bool]:
    """``value`` with long strings, lists and objects cut short (each cut says how much it left
    out), and whether anything was cut. A run of thirty 10 MB images prints kilobytes, not 315 MB."""
    if isinstance(value, str):
        if len(value) <= chars:
            return value, False
        return f"{value[:chars]}... [{len(value) - chars:,} more characters; vow show --json --full]", True
    if isinstance(value, list):
        kept = [clip(v, chars=chars, items=items) for v in value[:items]]
        out, cut = [v for v, _ in kept], any(c for _, c in kept)
        if len(value) > items:
            out.append(f"... [{len(value) - items:,} more items; vow show --json --full]")
            cut = True
        return out, cut
    if isinstance(value, dict):
        out_dict: dict[Any, Any] = {}
        cut = len(value) > items
        for key in list(value)[:items]:
            out_dict[key], clipped = clip(value[key], chars=chars, items=items)
            cut = cut or clipped
        if len(value) > items:
            out_dict["..."] = f"{len(value) - items:,} more keys; vow show --json --full"
        return out_dict, cut
    return value, False
