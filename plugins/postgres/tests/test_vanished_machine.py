"""A worker's machine that vanishes (powered off, cut off the network) is seen dead within seconds.

A worker shows itself alive with an advisory lock held in a session of its own, which sits idle
by design; the server drops the lock when the session ends. A process that dies ends its session
at once (its machine's kernel closes the connection), but a machine that is gone says nothing, and
the server only learns of it from TCP keepalive probes: after two hours and more of silence with
the operating system's defaults, all that time showing the worker alive and its runs taken.

Here the worker runs in a network namespace of its own, joined to the server by a veth pair, and
"vanishes" when its end of the link loses its address: the server's packets to it are dropped
without an answer, as by a machine that lost power. Needs root (network namespaces); CI runs as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from vow.stores import open_store
from vow.testing_postgres import PostgresServer, PostgresUnavailable, find_bin_dir

# CI runs as root and installs ip: there it runs (and fails without them), elsewhere it may skip
pytestmark = pytest.mark.skipif((os.geteuid() != 0 or shutil.which("ip") is None) and not os.environ.get("CI"),
                                reason="needs root and the ip command (network namespaces)")

WORKER = """
import sys, time
from vow.stores import open_store
store = open_store(sys.argv[1])
assert store.hold_owner("vanisher")
print("ready", flush=True)
time.sleep(3600)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def link() -> Iterator[dict[str, str]]:
    """A network namespace joined to this one by a veth pair: the server's side and the worker's."""
    tag = str(os.getpid() % 100000)
    taken = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    third = next(n for k in range(250) if f"10.77.{(n := (os.getpid() + k) % 250)}." not in taken)
    subnet = f"10.77.{third}"  # one no other interface uses (another CI run may be testing beside this one)
    names = {"ns": f"vow-vanish-{tag}", "host": f"vvh{tag}", "peer": f"vvp{tag}",
             "server_ip": f"{subnet}.1", "worker_ip": f"{subnet}.2", "subnet": f"{subnet}.0/24"}
    _ip("netns", "add", names["ns"])
    try:
        _ip("link", "add", names["host"], "type", "veth", "peer", "name", names["peer"])
        _ip("link", "set", names["peer"], "netns", names["ns"])
        _ip("addr", "add", f"{names['server_ip']}/24", "dev", names["host"])
        _ip("link", "set", names["host"], "up")
        _ip("netns", "exec", names["ns"], "ip", "addr", "add", f"{names['worker_ip']}/24", "dev", names["peer"])
        _ip("netns", "exec", names["ns"], "ip", "link", "set", names["peer"], "up")
        yield names
    finally:
        subprocess.run(["ip", "link", "del", names["host"]], capture_output=True)
        subprocess.run(["ip", "netns", "del", names["ns"]], capture_output=True)


@pytest.fixture
def server(link: dict[str, str]) -> Iterator[PostgresServer]:
    """A server of this test's own, listening on loopback and on the link, taking the worker's side."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.fail("the PostgreSQL server binaries were not found") if os.environ.get("CI") else pytest.skip(
            "the PostgreSQL server binaries were not found")
    try:
        started = PostgresServer.start(bin_dir, settings={"listen_addresses": f"'127.0.0.1,{link['server_ip']}'"})
    except PostgresUnavailable as exc:
        pytest.fail(str(exc)) if os.environ.get("CI") else pytest.skip(str(exc))
    try:
        assert started.data_dir is not None
        with open(os.path.join(started.data_dir, "pg_hba.conf"), "a") as hba:
            hba.write(f"host all all {link['subnet']} trust\n")
        started._run("pg_ctl", "-D", started.data_dir, "reload")
        yield started
    finally:
        started.stop()


def test_a_worker_whose_machine_vanished_is_seen_dead_within_a_minute(link: dict[str, str],
                                                                       server: PostgresServer) -> None:
    url = server.create_database("vanish")
    over_the_link = url.replace("@127.0.0.1:", f"@{link['server_ip']}:")
    here: Any = open_store(url)
    worker = subprocess.Popen(["ip", "netns", "exec", link["ns"], sys.executable, "-c", WORKER, over_the_link],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert line == "ready\n", worker.stderr.read() if worker.stderr else line
        assert here.owner_alive("vanisher") is True

        # The machine is gone: what reaches its end of the link is dropped without a word (its
        # address is taken away; the link stays up, so the server's probes do leave, unanswered)
        _ip("netns", "exec", link["ns"], "ip", "addr", "flush", "dev", link["peer"])
        vanished = time.monotonic()
        # About 25 s with the store's probes (10 s of silence, then 3 probes 5 s apart); with the
        # operating system's defaults, two hours and more
        while here.owner_alive("vanisher") and time.monotonic() - vanished < 90:
            time.sleep(0.5)
        assert here.owner_alive("vanisher") is False, "still shown alive 90 s after its machine vanished"
    finally:
        worker.kill()
        worker.communicate()  # and closes its pipes
        here.close()


RUNNER = """
import sys
from vow import Vow

def leaf(ctx):
    print("leaf", flush=True)
    sys.stdin.readline()
    return 1

def flow(ctx):
    return (yield ctx.run(leaf))

with Vow(sys.argv[1]) as vow:
    vow.register(flow)
    try:
        vow.run("cut/1", flow)
    except Exception as exc:
        print("failed", exc, flush=True)
"""


def test_a_run_whose_server_vanished_mid_commit_fails_within_a_minute(link: dict[str, str],
                                                                      server: PostgresServer) -> None:
    """The server's machine goes silent from where a run is: the round's commit is sent and never
    answered. Without probes of its own, the client waited as long as TCP resends (15 minutes and
    more), silent; the store's sessions now give up as the server's do (:data:`VANISHED_AFTER`)."""
    url = server.create_database("vanish")
    over_the_link = url.replace("@127.0.0.1:", f"@{link['server_ip']}:")
    runner = subprocess.Popen(["ip", "netns", "exec", link["ns"], sys.executable, "-c", RUNNER, over_the_link],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None and runner.stdin is not None
        line = runner.stdout.readline()
        assert line == "leaf\n", runner.stderr.read() if runner.stderr else line
        # The server's end of the link loses its address: what the runner sends it is dropped unanswered
        _ip("addr", "flush", "dev", link["host"])
        runner.stdin.write("go\n")
        runner.stdin.flush()
        try:
            out, err = runner.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("the run still waits 90 s after its server vanished")
        assert out.startswith("failed PostgreSQL store "), out + err
    finally:
        runner.kill()
        runner.communicate()
