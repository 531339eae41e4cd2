"""Processes for the deployment tests: forked clients, workers in containers, stepped clocks.

    python -m tests.durability.deploy_app fork-run STORE SINK CHILDREN
    python -m tests.durability.deploy_app fork-workers STORE SINK CHILDREN
    python -m tests.durability.deploy_app worker STORE SINK [TTL] [MAX_RECOVERIES]
    python -m tests.durability.deploy_app run STORE SINK WORKFLOW RUN_ID [ARG ...]

Every effect is one line appended to SINK (one O_APPEND write): ``start ROOT PID``, ``end ROOT PID``
for a leaf, ``body ROOT PID`` for a workflow body, so the test counts effects across processes.
``VOW_TEST_REMOTE=1`` makes this process look like one on another machine (no liveness lock: only
lease expiry frees its leases). ``VOW_TEST_FIXED=1`` makes the poison leaf behave.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import vow.ratelimit
from vow import Context, LeafContext, Vow
from vow.errors import StoreError
from vow.stopping import stop_on_signals

SINK = ""


def effect(kind: str, root: str) -> None:
    fd = os.open(SINK, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{kind} {root} {os.getpid()} {time.monotonic():.3f}\n".encode())
    finally:
        os.close(fd)


def say(*words: object) -> None:
    """One line on stdout in one write, so lines of forked children never interleave."""
    os.write(1, (" ".join(map(str, words)) + "\n").encode())


def hold(ctx: LeafContext, seconds: float, how: str) -> str:
    """A leaf that takes ``seconds``: sleeping, or busy on the CPU in pure Python (holding the GIL
    but for the interpreter's switches)."""
    effect("start", ctx.root_id)
    end = time.monotonic() + seconds
    if how == "cpu":
        while time.monotonic() < end:
            pass
    else:
        time.sleep(seconds)
    effect("end", ctx.root_id)
    return "held"


def poison(ctx: LeafContext) -> str:
    effect("start", ctx.root_id)
    if not os.environ.get("VOW_TEST_FIXED"):
        os._exit(1)  # as a segfault or an OOM kill: no cleanup, no release
    return "fixed"


def job(ctx: Context, seconds: float, how: str = "sleep"):
    return (yield ctx.run(hold, seconds, how))


def busy_body(ctx: Context, seconds: float):
    effect("body", ctx.id)
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # the workflow body itself keeps the engine thread busy
        pass
    return (yield ctx.run(hold, 0.0, "sleep"))


def poisoned(ctx: Context):
    return (yield ctx.run(poison))


def sleeper(ctx: Context, seconds: float):
    effect("body", ctx.id)
    yield ctx.sleep(seconds)
    effect("woke", ctx.id)
    return "woke"


def send(ctx: LeafContext) -> str:
    """A call limited to 4 a second, shared by every process on the store (one token each)."""
    vow.ratelimit.take(ctx, "shared", per_second=4.0)
    effect("sent", ctx.root_id)
    return "sent"


def limited(ctx: Context, calls: float):
    for _ in range(int(calls)):
        yield ctx.run(send)
    return "sent"


def ticker(ctx: Context, steps: int):
    for _ in range(int(steps)):
        yield ctx.sleep(0.05)  # a commit every 50 ms
    return "done"


WORKFLOWS = {f.__name__: f for f in (job, busy_body, poisoned, sleeper, ticker, limited)}


def client(store: str, ttl: float = 2.0, max_recoveries: int | None = 5) -> Vow:
    if os.environ.get("VOW_TEST_REMOTE"):
        import vow.stores.owners

        vow.stores.owners.OwnerLocks.hold = lambda self, owner: False  # type: ignore[method-assign]
    v = Vow(store=f"sqlite:{store}", lease_ttl=ttl, poll_interval=0.02, max_recoveries=max_recoveries)
    for name, fn in WORKFLOWS.items():
        v.register(fn, name=name)
    return v


def fork_run(store: str, children: int) -> None:
    """One client, used, then forked: every child runs the same id at once."""
    v = client(store)
    print("parent", v.owner, v.run("warm/1", "job", 0.0), flush=True)
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            try:
                result = v.run("fork/1", "job", 0.5)
                say("child", os.getpid(), v.owner, result)
                os._exit(0)
            except BaseException as exc:  # noqa: BLE001 - report and fail this child
                say("child-error", os.getpid(), repr(exc))
                os._exit(3)
        pids.append(pid)
    codes = [os.waitpid(pid, 0)[1] for pid in pids]
    print("codes", *codes, flush=True)
    v.close()


def fork_workers(store: str, children: int) -> None:
    """One client, used, then forked into workers (gunicorn --preload, Celery prefork)."""
    v = client(store)
    print("parent", v.owner, v.run("warm/1", "job", 0.0), flush=True)
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            work(v)
        pids.append(pid)
    stop = threading.Event()
    stop_on_signals(stop, [signal.SIGTERM])
    stop.wait()
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for pid in pids:
        os.waitpid(pid, 0)
    v.close()


def work(v: Vow) -> None:
    """A forked child: work as a worker until SIGTERM, then exit."""
    stop = threading.Event()
    stop_on_signals(stop, [signal.SIGTERM])
    say("worker", os.getpid(), v.owner)
    v.worker(stop=stop, poll_interval=0.02)
    v.close()
    os._exit(0)


def worker(store: str, ttl: float, max_recoveries: int | None) -> None:
    v = client(store, ttl, max_recoveries)
    stop = threading.Event()
    stop_on_signals(stop, [signal.SIGTERM])
    print("owner", v.owner, flush=True)
    v.worker(stop=stop, poll_interval=0.02)
    v.close()


def run(store: str, workflow: str, run_id: str, args: list[str]) -> None:
    v = client(store)
    try:
        print("result", v.run(run_id, workflow, *[float(a) for a in args]), flush=True)
    except StoreError as exc:
        print("store-error", exc, flush=True)
        sys.exit(3)
    finally:
        v.close()


def main(argv: list[str]) -> None:
    global SINK
    mode, store, SINK = argv[:3]
    rest = argv[3:]
    if mode == "fork-run":
        fork_run(store, int(rest[0]))
    elif mode == "fork-workers":
        fork_workers(store, int(rest[0]))
    elif mode == "worker":
        ttl = float(rest[0]) if rest else 2.0
        max_recoveries = int(rest[1]) if len(rest) > 1 else 5
        worker(store, ttl, max_recoveries)
    elif mode == "run":
        run(store, rest[0], rest[1], rest[2:])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
