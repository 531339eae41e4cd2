"""A worker process for the concurrent-worker tests:
``python -m tests.durability.worker_app STORE LOG [LEASE_TTL [MAX_RUNNING]]`` (from the checkout's root).

It registers :func:`fan` and runs :meth:`vow.Vow.worker` until SIGTERM, then closes cleanly and
exits 0; SIGUSR1 writes every thread's stack to stderr. Every leaf attempt appends
``start <id> <attempt> <pid> <time>`` to LOG and every root this worker picks up appends
``resumed <root> <pid> <time>`` (one O_APPEND write per line), so the test can count executions
across processes and see who ran what, when.

``DURABILITY_REMOTE_OWNER=1`` makes this worker's lease owner id name another host, as a worker
on another machine would: its leases are then taken over only once they expire, never because
its process is gone.

``DURABILITY_GATE=PATH`` holds every leaf, once it has logged its start, until the file PATH
exists: the test decides when the work may go on, so a worker it kills surely has leaves in
flight however fast or slow the machine is.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time

from vow import Context, LeafContext, Vow
from vow.events import Event, EventKind
from vow.stopping import stop_on_signals

LOG_FD = -1


def _log(line: str) -> None:
    os.write(LOG_FD, (line + "\n").encode())


def work(ctx: LeafContext, i: int, ms: int) -> int:
    """A small leaf that takes ``ms`` milliseconds: its value depends only on ``i``."""
    _log(f"start {ctx.id} {ctx.attempt} {os.getpid()} {time.time()!r}")
    gate = os.environ.get("DURABILITY_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.01)
    time.sleep(ms / 1000)
    _log(f"end {ctx.id} {ctx.attempt} {os.getpid()} {time.time()!r}")  # its body ran to the end
    return i * i


def fan(ctx: Context, n: int, ms: int = 0):
    """Fan out ``n`` leaves of ``ms`` milliseconds each and add up their values."""
    handles = []
    for i in range(n):
        handles.append((yield ctx.begin_run(work, i, ms)))
    total = 0
    for handle in handles:
        total += yield handle
    return total


def expected(n: int) -> int:
    return sum(i * i for i in range(n))


class Pickups:
    """Observer: one line per root workflow this worker resumes."""

    def on_event(self, event: Event) -> None:
        if event.kind is EventKind.RESUMED:
            _log(f"resumed {event.id} {os.getpid()} {event.time!r}")


def main(argv: list[str]) -> None:
    global LOG_FD
    store, log = argv[0], argv[1]
    lease_ttl = float(argv[2]) if len(argv) > 2 else 15.0
    max_running = int(argv[3]) if len(argv) > 3 else 256
    LOG_FD = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if os.environ.get("DURABILITY_REMOTE_OWNER"):
        import vow.stores.owners

        # As a worker on another machine: its owner id names another host, and no process here
        # can see its liveness lock (so only lease expiry frees its leases).
        vow.stores.owners.socket.gethostname = lambda: f"elsewhere-{os.getpid()}"
        vow.stores.owners.OwnerLocks.hold = lambda self, owner: False
    stop = threading.Event()
    stop_on_signals(stop, [signal.SIGTERM])
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the fleet asks a stuck worker where it is
    client = Vow(store=store, lease_ttl=lease_ttl, observers=[Pickups()])
    client.register(fan)
    print("owner", client.owner, flush=True)
    client.worker(stop=stop, poll_interval=0.05, max_running=max_running)
    client.close()
    print("stopped", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
