"""Workflows run in real subprocesses by the durability tests.

Usage: ``python crash_app.py WORKFLOW STORE LOG ID [ARGS_JSON]``. Every leaf appends
``"<leaf id> <pid>"`` to LOG (O_APPEND, one write per line) *before* returning, so a test can
count how often each leaf ran across processes. The process prints the workflow's result as
JSON on its last line; its first line is ``started <pid> <wall-clock time>``, printed once the
client is built and just before the workflow runs.

A test that kills the process with some leaves settled and the rest not sets ``CRASH_APP_GATE=PATH``
and ``CRASH_APP_HOLD_FROM=N``: leaf ``i`` of ``fanout`` or ``sequence`` with ``i >= N`` waits,
before it does anything, until PATH exists, so the first N settle and the rest are in flight at
the kill however fast or slow the machine; the test creates PATH before it resumes the workflow.
"""

from __future__ import annotations

import json
import os
import sys
import time

from vow import Context, LeafContext, Vow

LOG_FD = -1


def _log(ctx: LeafContext) -> None:
    os.write(LOG_FD, f"{ctx.id} {os.getpid()} {ctx.attempt}\n".encode())


def _wait_at_gate(i: int) -> None:
    """Hold leaf ``i`` until the gate file exists, when the process was started with one (see above)."""
    gate, hold_from = os.environ.get("CRASH_APP_GATE"), os.environ.get("CRASH_APP_HOLD_FROM")
    if gate is None or hold_from is None or i < int(hold_from):
        return
    while not os.path.exists(gate):
        time.sleep(0.01)


def slow(ctx: LeafContext, i: int, seconds: float) -> int:
    _wait_at_gate(i)
    time.sleep(seconds)
    _log(ctx)
    return i * 10


def step(ctx: LeafContext, i: int) -> int:
    _log(ctx)
    return i


def fanout(ctx: Context, n: int, seconds: float):
    """n branches that take ``seconds * (i + 1)`` each: they settle one by one."""
    handles = []
    for i in range(n):
        handles.append((yield ctx.begin_run(slow, i, seconds * (i + 1)).options(id=f"{ctx.id}.b{i}")))
    total = 0
    for h in handles:
        total += yield h
    return total


def sequence(ctx: Context, n: int, delay: float):
    total = 0
    for i in range(n):
        total += yield ctx.run(slow, i, delay)
    return total


def sleeper(ctx: Context, seconds: float):
    before = yield ctx.run(step, 1)
    yield ctx.sleep(seconds)
    after = yield ctx.run(step, 2)
    return before + after


def send_once(ctx: LeafContext) -> list[object]:
    """Logs its attempt as it starts; in a process started with CRASH_APP_HANG=1, never returns (the
    test kills it)."""
    _log(ctx)
    while os.environ.get("CRASH_APP_HANG") == "1":
        time.sleep(60)
    return [ctx.attempt, ctx.resumed]


def sender(ctx: Context):
    return (yield ctx.run(send_once))


def approval(ctx: Context):
    p = yield ctx.promise(id=f"{ctx.id}.approval")
    decision = yield p
    yield ctx.run(step, 3)
    return decision


WORKFLOWS = {f.__name__: f for f in (fanout, sequence, sleeper, sender, approval)}


def main(argv: list[str]) -> None:
    global LOG_FD
    name, store, log, wid = argv[:4]
    args = json.loads(argv[4]) if len(argv) > 4 else []
    LOG_FD = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    vow = Vow(store=store, lease_ttl=float(os.environ.get("CRASH_APP_LEASE_TTL", "15")))
    for fn in WORKFLOWS.values():
        vow.register(fn)
    print("started", os.getpid(), time.time(), flush=True)
    result = vow.run(wid, WORKFLOWS[name], *args)
    print(json.dumps(result), flush=True)
    vow.close()


if __name__ == "__main__":
    main(sys.argv[1:])
