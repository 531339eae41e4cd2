"""vow closes what it opens: a client that ran async leaves leaves no event loop or socket behind.

Found by ``filterwarnings = error``: such leaks surface as ResourceWarnings when garbage is
collected, in whatever test happens to run then.
"""

from __future__ import annotations

from pathlib import Path

from tests.support import python

ASYNC_RUN = """
import gc
import threading
from vow import Vow

async def leaf(ctx):
    return 1

def wf(ctx):
    return (yield ctx.run(leaf))

with Vow("memory:") as vow:
    assert vow.run("a/1", wf) == 1
for thread in threading.enumerate():  # the loop's thread ends once the loop stops
    if thread.name == "vow-async-leaves":
        thread.join(60)
del vow
gc.collect()
"""


def test_closing_a_client_closes_the_event_loop_of_its_async_leaves() -> None:
    done = python("-X", "dev", "-W", "error::ResourceWarning", "-c", ASYNC_RUN)
    assert done.returncode == 0, done.stderr
    assert "unclosed" not in done.stderr, done.stderr


UNREFERENCED_CLIENTS = """
import gc, os, sys, threading, time, weakref
from vow import Vow

def leaf(ctx, x):
    return x + 1

def flow(ctx, x):
    return (yield ctx.run(leaf, x))

url = "sqlite:///" + sys.argv[1]
def fds():
    return len(os.listdir("/proc/self/fd"))

Vow(url).close()  # what lasts the process's life (the thread that closes collected clients) is there now
before_threads, before_fds = set(threading.enumerate()), fds()

def one(i):
    client = Vow(url)  # never closed, as in a request handler that makes its own
    assert client.run(f"r/{i}", flow, i) == i + 1
    return weakref.ref(client)

refs = [one(i) for i in range(20)]
gc.collect()
print("alive", sum(ref() is not None for ref in refs))
def wal():
    return os.path.getsize(sys.argv[1] + "-wal") if os.path.exists(sys.argv[1] + "-wal") else 0

deadline = time.monotonic() + 30
for thread in set(threading.enumerate()) - before_threads:
    thread.join(max(0, deadline - time.monotonic()))  # what the closer thread stops
while (fds() > before_fds or wal()) and time.monotonic() < deadline:
    time.sleep(0.01)  # the closer thread closes each store after its engine stopped
print("threads", len(set(threading.enumerate()) - before_threads), "fds", fds() - before_fds)
print("wal", wal())
"""


def test_a_client_nobody_refers_to_is_closed(tmp_path: Path) -> None:
    done = python("-c", UNREFERENCED_CLIENTS, tmp_path / "s.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["alive", "0", "threads", "0", "fds", "0", "wal", "0"], done.stdout


FIRE_AND_FORGET = """
import gc, os, sys, threading, time, weakref
from vow import Vow

url, sink = "sqlite:///" + sys.argv[1], sys.argv[2]
entered, release, collected = threading.Event(), threading.Event(), threading.Event()

def send(ctx, x):
    entered.set()
    release.wait(30)
    with open(sink, "a") as f:
        f.write(f"sent {x}\\n")
    return x

def flow(ctx, x):
    return (yield ctx.run(send, x))

def start():
    client = Vow(url)
    client.begin_run("fire/1", flow, 7)  # the handle is dropped: the run must still finish
    weakref.finalize(client, collected.set)

start()
assert entered.wait(30)
gc.collect()
print("alive while running", not collected.is_set())
release.set()
deadline = time.monotonic() + 30
while not collected.is_set() and time.monotonic() < deadline:
    gc.collect()
    collected.wait(0.01)
print("collected after", collected.is_set())
deadline = time.monotonic() + 30
for thread in threading.enumerate():
    if thread is not threading.current_thread() and thread.name != "vow-close":  # that one lasts
        thread.join(max(0, deadline - time.monotonic()))
with Vow(url) as reader:
    print("state", reader.store.get("fire/1").state.value)
print(open(sink).read().strip())
"""


def test_a_run_started_by_a_client_nobody_refers_to_finishes_first(tmp_path: Path) -> None:
    done = python("-c", FIRE_AND_FORGET, tmp_path / "s.db", tmp_path / "sink")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["alive while running True", "collected after True", "state resolved",
                                        "sent 7"], done.stdout


HANDLE_KEEPS_CLIENT = """
import gc, sys
from vow import Vow

def leaf(ctx, x):
    return x * 2

def flow(ctx, x):
    return (yield ctx.run(leaf, x))

handle = Vow("sqlite:///" + sys.argv[1]).begin_run("h/1", flow, 21)
gc.collect()
print(handle.result(30))
"""


def test_a_handle_keeps_its_client_open(tmp_path: Path) -> None:
    done = python("-c", HANDLE_KEEPS_CLIENT, tmp_path / "s.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["42"], done.stdout


SHARED_STORE = """
import gc, sys
from vow import Vow
from vow.stores.sqlite import SQLiteStore

def leaf(ctx, x):
    return x + 1

def flow(ctx, x):
    return (yield ctx.run(leaf, x))

store = SQLiteStore(sys.argv[1])  # the caller's: clients made on it do not own it
client = Vow(store)
print(client.run("a/1", flow, 1))
client = Vow(store)  # the first client is dropped, and collected
gc.collect()
print(client.run("a/2", flow, 2))
client.close()
"""


def test_a_collected_client_leaves_a_store_it_was_given_open(tmp_path: Path) -> None:
    done = python("-c", SHARED_STORE, tmp_path / "s.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "3"], done.stdout
