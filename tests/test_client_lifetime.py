"""A client dropped without ``close()`` leaves nothing behind: counted at the sink.

Each case makes N clients in a subprocess, runs one workflow on each and drops them, in the ways
users hold clients: a plain one, one whose registered workflow is a closure referring to it, an
app object holding it whose bound methods are its workflow, leaf (quick, in the pool, or slow
enough to move the engine off its thread) or observer, one used in a ``with`` block and one
closed explicitly. It counts the clients that one collection right after the last run leaves
alive; then it waits until every client's store object is freed (each frees its store when it is
closed and collected), nudging the cyclic collector meanwhile, and counts what is left: clients
alive (weak references), threads, file descriptors, descriptors open on the SQLite file and
PostgreSQL sessions. The process-wide thread that closes collected clients is started before
counting begins: it is one per process, not one per client.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support import python

N = 5

MEASURE = textwrap.dedent('''
    import gc, os, sys, threading, time, weakref
    from vow import CanceledError, PermanentError, Throttled, Vow
    from vow.records import Kind

    url, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = url.removeprefix("sqlite:") if url.startswith("sqlite:") else None
    freed = threading.Semaphore(0)  # released once per client store freed

    def fds():
        return os.listdir("/proc/self/fd")

    def db_fds():
        found = 0
        for fd in fds():
            try:
                found += db is not None and os.readlink(f"/proc/self/fd/{fd}").startswith(db)
            except OSError:
                pass
        return found

    def sessions():
        if db is not None:
            return 0
        import psycopg
        with psycopg.connect(url, autocommit=True) as con:
            return con.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND pid <> pg_backend_pid()").fetchone()[0]

    def leaf(ctx, x):
        return x + 1

    def flow(ctx, x):
        return (yield ctx.run(leaf, x))

    class App:
        """A web app's object: it holds the client and registers its own bound methods."""

        def __init__(self):
            self.vow = Vow(url, observers=[self] if kind == "app-observer" else (),
                           inline_leaves=kind != "app-leaf-pool")
            self.events = 0
            self.vow.register(self.flow)

        def on_event(self, event):
            self.events += 1

        def leaf(self, ctx, x):
            return x + 1

        def slow_leaf(self, ctx, x):
            time.sleep(0.05)  # the work of a slow leaf: the engine moves off it, pooling the leaf queued behind
            return x + 1

        def flow(self, ctx, x):
            if kind == "app-leaf-slow":
                first = yield ctx.begin_run(self.slow_leaf, x)
                second = yield ctx.begin_run(self.leaf, x)
                return (yield ctx.all([first, second]))[1]
            return (yield ctx.run(self.leaf if kind.startswith("app-leaf") else leaf, x))

    def closure_client():
        client = Vow(url)

        @client.register
        def wf(ctx, x):
            assert client is not None  # refers back to the client, as a workflow made in a function does
            return (yield ctx.run(leaf, x))

        return client, wf

    def refused(ctx):
        raise PermanentError("the provider refused it")

    def failed_client():
        """A closure client whose run fails: its leaf raised, on the engine's thread (run inline)."""
        client = Vow(url)

        @client.register
        def wf(ctx, x):
            assert client is not None
            return (yield ctx.run(refused))

        return client, wf

    def throttled(ctx):
        raise Throttled(wait=3600)  # a shared rate limit has no token for an hour

    def stopped_client(i):
        """A closure client whose run is canceled from outside (through the store, as another process
        would) while it sleeps for an hour or waits for a promise: the caller gets CanceledError."""
        client = Vow(url)

        @client.register
        def wf(ctx, x):
            assert client is not None
            if kind == "canceled-sleep":
                yield ctx.sleep(3600)
            elif kind == "canceled-throttled":
                yield ctx.run(throttled)
            else:
                yield (yield ctx.promise())
            return x

        handle = client.begin_run(f"r/{i}", wf, i)
        waits = Kind.PROMISE if kind == "canceled-wait" else Kind.SLEEP  # a throttled leaf's wait is a sleep
        while not any(r.kind is waits for r in client.store.tree(f"r/{i}")):  # stored: the run waits
            time.sleep(0.005)
        client.cancel(f"r/{i}")
        try:
            handle.result(30)
        except CanceledError:
            return client
        raise AssertionError("the canceled run returned")

    def one(i):
        if kind == "plain":
            client = Vow(url)
            assert client.run(f"r/{i}", flow, i) == i + 1
        elif kind in ("closure", "with", "close"):
            client, wf = closure_client()
            if kind == "with":
                with client:
                    assert client.run(f"r/{i}", wf, i) == i + 1
            else:
                assert client.run(f"r/{i}", wf, i) == i + 1
                if kind == "close":
                    client.close()
        elif kind.startswith("canceled"):
            client = stopped_client(i)
        elif kind == "failed-leaf":
            client, wf = failed_client()
            try:
                client.run(f"r/{i}", wf, i)
            except PermanentError:
                pass
            else:
                raise AssertionError("the failed run returned")
        else:
            app = App()
            client = app.vow
            assert client.run(f"r/{i}", app.flow, i) == i + 1
            assert kind != "app-observer" or app.events > 0
        weakref.finalize(client.store, freed.release)
        return weakref.ref(client)

    Vow("memory:").close()  # starts the process-wide closer thread before counting
    threads_before, fds_before, sessions_before = set(threading.enumerate()), len(fds()), sessions()
    refs = [one(i) for i in range(n)]
    gc.collect()  # as a user would, right after the last run returned
    at_once = sum(ref() is not None for ref in refs)
    deadline = time.monotonic() + 30
    stores = 0
    while stores < n and time.monotonic() < deadline:
        if freed.acquire(timeout=0.05):
            stores += 1
        else:
            gc.collect()
    gc.collect()
    for thread in set(threading.enumerate()) - threads_before:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = set(threading.enumerate()) - threads_before
    print("at_once", at_once, "alive", sum(ref() is not None for ref in refs), "stores", n - stores,
          "threads", len(left), "fds", len(fds()) - fds_before, "db_fds", db_fds(),
          "sessions", sessions() - sessions_before)
''')

KINDS = ["plain", "closure", "app-workflow", "app-observer", "app-leaf", "app-leaf-pool", "app-leaf-slow", "with",
         "close", "canceled-sleep", "canceled-wait", "canceled-throttled",
         "failed-leaf"]
CLEAN = ["at_once", "0", "alive", "0", "stores", "0", "threads", "0", "fds", "0", "db_fds", "0", "sessions", "0"]


@pytest.mark.parametrize("kind", KINDS)
def test_dropped_clients_leave_nothing_on_sqlite(tmp_path: Path, kind: str) -> None:
    done = python("-c", MEASURE, f"sqlite:{tmp_path / 's.db'}", kind, str(N))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == CLEAN, done.stdout


@pytest.mark.parametrize("kind", ["plain", "closure", "app-observer", "with", "close"])
def test_dropped_clients_leave_nothing_on_postgres(postgres_url: str, kind: str) -> None:
    done = python("-c", MEASURE, postgres_url, kind, str(N))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == CLEAN, done.stdout


COLLECTED_IN_FLIGHT = textwrap.dedent('''
    import gc, sys, threading, time, weakref
    from vow import Vow

    url, sink = sys.argv[1], sys.argv[2]
    entered, release, collected, first_done = threading.Event(), threading.Event(), threading.Event(), threading.Event()

    def send(ctx, x):
        with open(sink, "a") as f:
            f.write(f"start {x}\\n")
        if x == "b" and not entered.is_set():  # the first attempt of b is in flight when its client goes
            entered.set()
            assert release.wait(30)
            first_done.set()
        with open(sink, "a") as f:
            f.write(f"sent {x}\\n")
        return x

    def flow(ctx):
        a = yield ctx.run(send, "a")
        b = yield ctx.run(send, "b")
        return a + b

    Vow("memory:").close()  # starts the process-wide closer thread before counting
    threads_before = set(threading.enumerate())

    def work():
        client = Vow(url, inline_leaves=False)  # b blocks in the pool, not on an engine thread
        client.register(flow)
        client.submit("w/1", flow)
        stop = threading.Event()
        worker = threading.Thread(target=client.worker, kwargs={"stop": stop})
        worker.start()
        assert entered.wait(30)
        stop.set()  # the worker returns; its run goes on with nothing referring to the client
        worker.join(30)
        weakref.finalize(client, collected.set)

    work()
    deadline = time.monotonic() + 30
    while not collected.wait(0.05) and time.monotonic() < deadline:
        gc.collect()
    print("collected", collected.is_set())
    for thread in set(threading.enumerate()) - threads_before:  # its engine stops: the run's lease goes back
        thread.join(max(0.0, deadline - time.monotonic()))
    print("threads", sorted(t.name for t in set(threading.enumerate()) - threads_before))
    release.set()  # the interrupted attempt ends now; no engine takes its outcome, as after a crash
    with Vow(url) as again:
        again.register(flow)
        print("result", again.resume("w/1").result(30))
    assert first_done.wait(30)
    lines = open(sink).read().splitlines()
    print(*(f"{line} {lines.count(line)}" for line in sorted(set(lines))), sep="\\n")
''')


def test_a_client_collected_while_its_run_is_in_flight_stops_it_like_a_crash(tmp_path: Path) -> None:
    """A worker's run keeps no client alive (a started one does: see test_resources.py); a client
    collected while the run's leaf is in flight stops the run as a crash would. What settled stays
    settled and runs no more; the attempt in flight runs again when the next client resumes the run."""
    done = python("-c", COLLECTED_IN_FLIGHT, f"sqlite:{tmp_path / 's.db'}", tmp_path / "sink")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["collected True", "threads []", "result ab", "sent a 1", "sent b 2",
                                        "start a 1", "start b 2"], done.stdout


WARNED = textwrap.dedent('''
    import gc, sys
    from vow import Vow

    url, kind = sys.argv[1], sys.argv[2]
    client = Vow(url)
    if kind == "with":
        with client:
            pass
    elif kind == "close":
        client.close()
    del client
    gc.collect()
''')


@pytest.mark.parametrize(("kind", "warned"), [("dropped", True), ("with", False), ("close", False)])
def test_a_client_collected_unclosed_gives_a_resource_warning(tmp_path: Path, kind: str, warned: bool) -> None:
    """As an unclosed file or SQLite connection does: silent unless warnings are shown."""
    done = python("-W", "default::ResourceWarning", "-c", WARNED, f"sqlite:{tmp_path / 's.db'}", kind)
    assert done.returncode == 0, done.stderr
    assert ("ResourceWarning: unclosed Vow client (store 'sqlite:" in done.stderr) is warned, done.stderr
    assert done.stderr.count("ResourceWarning") == warned, done.stderr
