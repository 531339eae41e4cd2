"""Workflows that use one id again, for the crash tests of reused ids:
``python -m tests.durability.reused_id_app STORE SINK HOLD [clash]`` (from the checkout's root).

Runs ``reuse/1`` (:func:`reuse`; with ``clash``, ``clash/1``:
:func:`clash`) on STORE with a short lease and prints its result. Every leaf
appends ``<id> <n> <attempt> <pid>`` to SINK (one O_APPEND write) before anything else. The leaf
whose ``<id> <n>`` is HOLD (``-`` for none) then creates ``SINK.held`` and waits for ever: the
test kills the process once that file is there, so it knows exactly what was sent and committed.
"""

from __future__ import annotations

import os
import sys
import time

from vow import Context, DuplicateIdError, LeafContext, Vow

SINK = ""
HOLD = ""


def send(ctx: LeafContext, n: int) -> int:
    """The side effect: one line at the sink per execution."""
    line = f"{ctx.id} {n} {ctx.attempt} {os.getpid()}\n"
    fd = os.open(SINK, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    if f"{ctx.id} {n}" == HOLD:
        open(SINK + ".held", "w").close()
        while True:  # killed here
            time.sleep(1)
    return n


def child(ctx: Context, shared: str):
    """A child workflow that uses its parent's id."""
    return (yield ctx.run(send, 1).options(id=shared))


def reuse(ctx: Context):
    """``{id}.x`` first, then a marker leaf, then ``{id}.x`` again (a settled call: its outcome), from
    a child workflow too, then a last marker."""
    shared = f"{ctx.id}.x"
    first = yield ctx.run(send, 1).options(id=shared)
    yield ctx.run(send, 10)  # {id}.2: the first use of x is settled and committed once this runs
    again = yield ctx.run(send, 2).options(id=shared)
    kid = yield ctx.run(child, shared)
    yield ctx.run(send, 20)  # {id}.5
    return [first, again, kid, (yield ctx.run(send, 3).options(id=shared))]


def child_a(ctx: Context):
    return (yield ctx.run(send, 1))


def child_b(ctx: Context):
    return (yield ctx.run(send, 2))


def clash(ctx: Context):
    """A settled child's id given to another child workflow (DuplicateIdError), then a marker leaf."""
    first = yield ctx.run(child_a).options(id=f"{ctx.id}.kid")
    try:
        yield ctx.run(child_b).options(id=f"{ctx.id}.kid")
    except DuplicateIdError:
        refused = True
    else:
        refused = False
    return [first, refused, (yield ctx.run(send, 30))]


def main() -> None:
    global SINK, HOLD
    store, SINK, HOLD = sys.argv[1:4]
    name = sys.argv[4] if len(sys.argv) > 4 else "reuse"
    v = Vow(store=store, lease_ttl=1.0, poll_interval=0.05)
    for fn in (reuse, child, clash, child_a, child_b):
        v.register(fn)
    try:
        print(v.run(f"{name}/1", reuse if name == "reuse" else clash, timeout=120), flush=True)
    finally:
        v.close()


if __name__ == "__main__":
    main()
