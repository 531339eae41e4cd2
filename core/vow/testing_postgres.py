"""A real PostgreSQL server for tests, started and stopped by the test session itself.

:class:`PostgresServer` runs ``initdb`` into a temporary directory and ``pg_ctl start`` on a
free port on 127.0.0.1, and gives each test a fresh database. It needs the PostgreSQL server
binaries (``initdb``, ``pg_ctl``, ``postgres``, ``psql``), and nothing else: no Python driver.
PostgreSQL refuses to run as root, so under root (containers, CI) the server runs as an
unprivileged user (``nobody`` unless ``VOW_PG_USER`` names another).

The pytest fixtures (registered by :mod:`vow.testing`):

* ``postgres_server`` (session): the running :class:`PostgresServer`;
* ``postgres_url`` (test): the URL of a fresh, empty database on it, dropped afterwards.

Where the binaries are: ``$VOW_PG_BIN``, else the directory of ``pg_ctl`` on ``PATH``, else the
usual install directories (Debian's ``/usr/lib/postgresql/<version>/bin``, Homebrew, PGDG).
``VOW_TEST_POSTGRES_URL`` names an existing server to use instead (a role that may create
databases). Without binaries or such a URL the tests that need PostgreSQL are skipped, with a
reason that says how to get them, unless ``VOW_REQUIRE_POSTGRES=1`` or ``CI`` is set (``.ci/run``
sets both): then they fail, so that CI never passes without running them.

The test server trades durability for speed (``fsync=off``, ``synchronous_commit=off``): the
tests kill client processes, never the server, and a committed transaction is visible to every
session whether or not it reached the disk.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pytest

REQUIRE_ENV = "VOW_REQUIRE_POSTGRES"
"""Set to ``1`` (``.ci/run`` does) to make a missing PostgreSQL a test failure instead of a skip."""
URL_ENV = "VOW_TEST_POSTGRES_URL"
"""An existing server to test against instead of starting one (a role that may create databases)."""
BIN_ENV = "VOW_PG_BIN"
"""The directory holding ``initdb``, ``pg_ctl`` and ``psql``."""
USER_ENV = "VOW_PG_USER"
"""The unprivileged user the server runs as when the tests run as root (default ``nobody``)."""

HOW_TO_GET_ONE = (
    "install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql; macOS: brew install "
    "postgresql@16) and put their directory on PATH or in $VOW_PG_BIN, or set $VOW_TEST_POSTGRES_URL to a "
    "server where the tests may create databases"
)
_SEARCHED = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql@*/bin",
             "/usr/local/opt/postgresql@*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/bin")
_TOOLS = ("initdb", "pg_ctl", "postgres", "psql")
ROLE = "vow"
"""The superuser role of a server started here (trust authentication on 127.0.0.1 only)."""


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started or reached for the tests; the message says why and how to fix it."""


def find_bin_dir() -> str | None:
    """The directory of the PostgreSQL server binaries, or ``None`` (see the module docstring)."""
    candidates = []
    if os.environ.get(BIN_ENV):
        candidates.append(os.environ[BIN_ENV])
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    for pattern in _SEARCHED:
        # The newest version first: "15" < "16" as text holds for the versions in use.
        candidates += sorted(glob.glob(pattern), key=_version_key, reverse=True)
    for folder in candidates:
        if all(os.access(os.path.join(folder, tool), os.X_OK) for tool in _TOOLS):
            return folder
    return None


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in path).split()
    return tuple(int(d) for d in digits)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A PostgreSQL server for tests: one this process started, or an existing one named by URL.

    ``url`` is the admin connection (database ``postgres``); :meth:`create_database` makes a
    fresh database and returns its URL.
    """

    def __init__(self, url: str, *, bin_dir: str | None = None, data_dir: str | None = None,
                 run_as: str | None = None) -> None:
        self.url = url
        self.bin_dir = bin_dir
        self.data_dir = data_dir
        self.run_as = run_as
        self._names = itertools.count(1)

    # -- starting and stopping

    @classmethod
    def start(cls, bin_dir: str, *, settings: dict[str, str] | None = None) -> PostgresServer:
        """``initdb`` into a fresh temporary directory and start the server on a free 127.0.0.1 port."""
        run_as = None
        if os.geteuid() == 0:
            run_as = os.environ.get(USER_ENV, "nobody")
            try:
                pwd.getpwnam(run_as)
            except KeyError:
                raise PostgresUnavailable(f"PostgreSQL cannot run as root and user {run_as!r} does not exist; "
                                          f"set ${USER_ENV} to an unprivileged user") from None
        folder = tempfile.mkdtemp(prefix="vow-postgres-")
        data = os.path.join(folder, "data")
        if run_as is not None:
            entry = pwd.getpwnam(run_as)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        server = cls("", bin_dir=bin_dir, data_dir=data, run_as=run_as)
        try:
            server._run("initdb", "-D", data, "-U", ROLE, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
            options = {"listen_addresses": "127.0.0.1", "unix_socket_directories": "''", "fsync": "off",
                       "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "300",
                       **(settings or {})}
            for _ in range(5):  # another process may take the free port before the server does
                port = free_port()
                flags = " ".join(f"-c {key}={value}" for key, value in {"port": str(port), **options}.items())
                log = os.path.join(folder, "server.log")
                started = server._run("pg_ctl", "-D", data, "-l", log, "-w", "-t", "120", "-o", flags, "start",
                                      check=False)
                if started.returncode == 0:
                    server.url = f"postgresql://{ROLE}@127.0.0.1:{port}/postgres"
                    return server
                text = _tail(log)
                if "could not bind" not in text and "already in use" not in text:
                    raise PostgresUnavailable(f"pg_ctl start failed (exit {started.returncode}):\n"
                                              f"{started.stdout}{started.stderr}\n{text}")
            raise PostgresUnavailable("pg_ctl start failed: no free port found in 5 tries")
        except BaseException:
            server.stop()
            raise

    def stop(self) -> None:
        """Stop a server this process started (immediately: tests need no clean shutdown) and delete its files."""
        if self.data_dir is None:
            return
        if os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
            self._run("pg_ctl", "-D", self.data_dir, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(os.path.dirname(self.data_dir), ignore_errors=True)
        self.data_dir = None

    def restart(self) -> None:
        """Restart a server this process started (``pg_ctl restart -m fast``): every session ends and
        the data stays, as when an administrator restarts a server. Returns once it accepts connections."""
        if self.data_dir is None:
            raise PostgresUnavailable("restart needs a server started by the tests")
        # The log file again: pg_ctl does not remember it, and without one the new server would keep
        # this call's output pipe open for ever.
        log = os.path.join(os.path.dirname(self.data_dir), "server.log")
        self._run("pg_ctl", "-D", self.data_dir, "-l", log, "-m", "fast", "-w", "-t", "120", "restart")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server binary (as the unprivileged user, when there is one)."""
        assert self.bin_dir is not None
        extra: dict[str, Any] = {}
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        cwd = os.path.dirname(self.data_dir) if self.data_dir else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        done = subprocess.run([os.path.join(self.bin_dir, tool), *args], capture_output=True, text=True,
                              cwd=cwd, env={**env, "LC_ALL": "C"}, timeout=180, **extra)
        if check and done.returncode != 0:
            raise PostgresUnavailable(f"{tool} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    def require_password(self, role: str, password: str) -> None:
        """Create login ``role`` with ``password`` and make the server ask for it (SCRAM) on 127.0.0.1.

        Only on a server started here (its ``pg_hba.conf`` is ours to change); the other roles keep
        trust authentication.
        """
        if self.data_dir is None:
            raise PostgresUnavailable("require_password needs a server started by the tests")
        literal = password.replace("'", "''")
        self.sql(f"CREATE ROLE \"{role}\" LOGIN SUPERUSER PASSWORD '{literal}'")
        hba = os.path.join(self.data_dir, "pg_hba.conf")
        with open(hba, encoding="utf-8") as f:
            rules = f.read()
        with open(hba, "w", encoding="utf-8") as f:
            f.write(f"host all {role} 127.0.0.1/32 scram-sha-256\n{rules}")
        self._run("pg_ctl", "-D", self.data_dir, "reload")
        # The server rereads the file when it gets to it: wait until it asks this role for a password.
        parts = urlsplit(self.url)
        url = urlunsplit((parts.scheme, f"{role}@{parts.netloc.rpartition('@')[2]}", parts.path, "", ""))
        deadline = time.monotonic() + 60
        while True:
            error = self._connect_error(url)
            if error and "password" in error:
                return
            if time.monotonic() > deadline:
                raise PostgresUnavailable(f"the server still lets {role} in without a password: {error}")
            time.sleep(0.01)

    def _connect_error(self, url: str) -> str:
        """Why a connection to ``url`` (no password given) fails; empty if it succeeds."""
        env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
        env["PGPASSFILE"] = os.devnull
        psql = os.path.join(self.bin_dir or "", "psql")
        done = subprocess.run([psql, "-X", "-w", "-At", "-d", url, "-c", "SELECT 1"], capture_output=True,
                              text=True, timeout=60, env=env)
        return "" if done.returncode == 0 else done.stderr.strip()

    # -- databases

    def create_database(self, prefix: str = "vow_test") -> str:
        """Create a fresh, empty database and return its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {_identifier(name)} TEMPLATE template0")
        return self.database_url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database ``url`` names, disconnecting whoever is still connected to it."""
        name = unquote(urlsplit(url).path.lstrip("/"))
        self.sql(f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")

    def database_url(self, name: str) -> str:
        """The URL of database ``name`` on this server (the admin URL with another path)."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + quote(name), parts.query, ""))

    def sql(self, statement: str) -> str:
        """Run one SQL statement as the admin role (outside a transaction) with ``psql``; its output as
        text (``|`` between columns). psql comes with the server binaries, so vow itself needs no
        PostgreSQL driver for this."""
        candidates = [os.path.join(self.bin_dir, "psql")] if self.bin_dir else []
        found = shutil.which("psql")
        candidates += [found] if found else []
        psql = next((c for c in candidates if os.access(c, os.X_OK)), None)
        if psql is None:
            raise PostgresUnavailable("psql is not available to create test databases (it comes with the "
                                      "server binaries: apt-get install postgresql)")
        done = subprocess.run([psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url, "-c", statement],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(f"psql failed: {done.stderr.strip()}")
        return done.stdout.rstrip("\n")


def _identifier(name: str) -> str:
    """``name`` as an SQL identifier: in double quotes, a double quote in it doubled."""
    return '"' + name.replace('"', '""') + '"'


def _tail(path: str, size: int = 4000) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()[-size:]
    except OSError:
        return ""


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_ENV) == "1" or os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required here (${REQUIRE_ENV}=1) but {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server for the tests: {reason}; {HOW_TO_GET_ONE}")


def open_test_server() -> PostgresServer:
    """The server of ``$VOW_TEST_POSTGRES_URL``, or one started here; :class:`PostgresUnavailable` if neither."""
    url = os.environ.get(URL_ENV)
    if url:
        return PostgresServer(url)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable("the server binaries (initdb, pg_ctl, postgres, psql) were not found")
    return PostgresServer.start(bin_dir)


def start_private_server() -> PostgresServer:
    """A server started here for one test's or module's own use, which it may restart: never the
    session's shared server, whose other users would lose their sessions. Skips (or fails, as
    ``postgres_server`` does) without the server binaries; stop it with :meth:`PostgresServer.stop`."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable("the server binaries (initdb, pg_ctl, postgres, psql) were not found")
    try:
        return PostgresServer.start(bin_dir)
    except PostgresUnavailable as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server for the whole session (see :mod:`vow.testing_postgres`)."""
    try:
        server = open_test_server()
    except PostgresUnavailable as exc:
        _unavailable(str(exc))
    started = time.monotonic()
    try:
        server.sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the same answer
        server.stop()
        _unavailable(f"the server does not answer ({type(exc).__name__}: {exc}) after "
                     f"{time.monotonic() - started:.1f} s")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the test server; dropped after the test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
