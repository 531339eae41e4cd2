"""The workflow ``benchmarks/workers.py`` runs on ``vow worker`` processes (``--app worker_bench_app``)."""

from __future__ import annotations

from typing import Any

from vow import Vow


def noop(ctx: Any, i: int) -> int:
    return i


def fan(ctx: Any, n: int):
    """``n`` no-op branches, fanned in: returns ``sum(range(n))``."""
    handles = []
    for i in range(n):
        handles.append((yield ctx.begin_run(noop, i)))
    values = yield ctx.all(handles)
    return sum(values)


def register(vow: Vow) -> None:
    """Register ``fan`` on ``vow`` (what ``--app worker_bench_app:register`` does in a worker)."""
    vow.register(fan, name="fan")
