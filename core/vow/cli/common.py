"""What the ``vow`` commands share: exit codes, the ``--store`` option, errors, ``--app``."""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

import click

from vow.errors import (
    AlreadySettledError,
    ArgumentMismatchError,
    ConfigError,
    EncodeError,
    NonDeterminismError,
    PluginLoadError,
    PromiseNotFoundError,
    StoreError,
)

if TYPE_CHECKING:
    from vow.plugins import Plugins
    from vow.records import PromiseRecord

OK, FAILED, USAGE = 0, 1, 2
"""Exit codes: success; a workflow failed; bad usage, configuration or input."""

INTERRUPTED = 128 + 2
"""Exit code after Ctrl-C (128 + SIGINT, as the shell reports for a command that SIGINT ended)."""

READER_GONE = 128 + 13
"""Exit code when stdout's reader went away (128 + SIGPIPE, as the shell reports for ``git log | head -1``)."""

USER_ERRORS = (ConfigError, PluginLoadError, PromiseNotFoundError, AlreadySettledError, ArgumentMismatchError,
               NonDeterminismError, StoreError, EncodeError)
"""Errors a user causes and fixes (a store that cannot be used included, and a value that cannot be
stored): one message, exit code 2."""


def one_line(exc: BaseException) -> str:
    """An error's message on one line (a store error may quote a multi-line reason)."""
    return "; ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__


class UserError(click.ClickException):
    """One clear message on stderr and exit code 2."""

    exit_code = USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def utf8_text(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """The callback of every id or name argument (``vow show ID``, ``--name``, ...): an argument holding
    a byte that is not UTF-8 (which Python reads as a lone surrogate) is a usage error, not a store's
    UnicodeEncodeError. A path may hold such bytes and is left as it is."""
    try:
        if value is not None:
            value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise click.BadParameter(f"{value!r} is not UTF-8 text (character {exc.start + 1} is a byte that is not "
                                 "UTF-8)") from None
    return value


def store_option(f: Callable[..., Any], callback: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """``--store URL`` (default ``$VOW_STORE``, else vow's default SQLite file)."""
    return click.option(
        "--store", metavar="URL", envvar="VOW_STORE", default=None, callback=callback,
        help="Where promises are kept: sqlite:PATH, memory:, or any installed store "
             "[default: $VOW_STORE, else sqlite:.vow/vow.sqlite].")(f)


def existing_store_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--store URL`` of a command that reads runs: a SQLite file that does not exist is a usage error,
    not an empty store made where a mistyped path points (with its folders) and then "no runs"."""
    return store_option(f, callback=_existing_store)


def _existing_store(ctx: click.Context, param: click.Parameter, url: str | None) -> str | None:
    from vow.stores import DEFAULT_URL, parse_store_url

    name, options = parse_store_url(url if url is not None else DEFAULT_URL)
    # `sqlite:` without a path (VOW_STORE=sqlite:$UNSET) is the default file, which must be there too.
    path = options.get("path", parse_store_url(DEFAULT_URL)[1]["path"] if name == "sqlite" else None)
    # The SQLite store expands ~ (its path under $HOME): so must the check whether it is there.
    if name == "sqlite" and isinstance(path, str) and not os.path.exists(os.path.expanduser(path)):
        if url is None:
            raise UserError(f"no store at {path}: nothing has run here yet (vow run FILE makes it), or give "
                            "the store with --store URL or $VOW_STORE")
        raise UserError(f"no store at {path}: the file does not exist; check --store or $VOW_STORE "
                        "(vow run and vow worker make a new store)")
    return url


def writable(store: Any) -> Any:
    """``store``, for a command that writes to it (runs, settles, prunes, schedules). A store opened
    read-only by its URL (``?read_only=true``, PostgreSQL's ``default_transaction_read_only``) is refused
    now, in one line and exit code 2, as a file this user may not write is refused when opened: else the
    command failed at its first write, which `vow run` reported as the failure of a run it never stored
    (and `vow worker` logged forever)."""
    if getattr(store, "read_only", False):
        from vow.stores import redact_url

        command = click.get_current_context(silent=True)
        name = command.command_path if command is not None else "this command"
        # A store read-only by another setting than SQLite's read_only=true names it (PostgreSQL's).
        why = getattr(store, "read_only_reason", "read_only=true")
        fix = getattr(store, "read_only_fix", "drop read_only=true from the URL")
        raise StoreError(f"store {redact_url(store.url)}: opened read-only ({why}): {name} needs to write to it; "
                         f"{fix} (vow ls and vow show read it as it is)")
    return store


class OutputFailed(OSError):
    """A write to stdout failed: its reader went away (``EPIPE``), the disk is full, ..."""


class _Output(io.TextIOBase):
    """stdout, whose failed writes (the reader of a pipe went away, as after ``| head -1``; a full disk)
    are dropped from then on (``drop``), so the command's work goes on without its output, or else
    raise :class:`OutputFailed`."""

    def __init__(self, stream: TextIO | None, *, drop: bool) -> None:
        super().__init__()
        self._stream = stream
        self._drop = drop
        self._failed: OutputFailed | None = None

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding if self._stream is not None else "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._stream.errors if self._stream is not None else None

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def fileno(self) -> int:
        if self._stream is None:
            return super().fileno()  # io.UnsupportedOperation
        return self._stream.fileno()

    def write(self, text: str) -> int:
        self._try(lambda stream: stream.write(text))
        return len(text)

    def flush(self) -> None:
        self._try(lambda stream: stream.flush())

    def close(self) -> None:
        # Python closes this object, and so flushes it, when it is collected at exit; a failure was
        # said at the write that met it, and said again there it is "Exception ignored" on stderr
        # (Python 3.13, or -X dev).
        with contextlib.suppress(OutputFailed):
            super().close()

    def _try(self, do: Callable[[TextIO], object]) -> None:
        stream = self._stream
        if stream is None:
            # Said again at each write: the first failure may come in a probe that swallows it (click's
            # echo tries `write("")` to learn what the stream takes).
            if self._failed is not None:
                raise OutputFailed(self._failed.errno, self._failed.strerror)
            return
        try:
            do(stream)
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self._stream = None
            # What the stream still buffers would fail again when Python flushes it at exit ("Exception
            # ignored ... BrokenPipeError" on stderr): its file descriptor now leads nowhere.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            if not self._drop:
                if isinstance(exc, OSError):
                    self._failed = OutputFailed(exc.errno, exc.strerror)
                else:
                    self._failed = OutputFailed(errno.EBADF, "stdout is closed")
                raise OutputFailed(self._failed.errno, self._failed.strerror) from exc


@contextlib.contextmanager
def output_may_close() -> Iterator[None]:
    """Within the block, stdout may be closed or go away (``vow run FILE | head -1``, ``>&-``) without
    stopping the command: its output is dropped from then on, and its work goes on to its end."""
    real = sys.stdout
    sys.stdout = _Output(real, drop=True)
    try:
        yield
    finally:
        sys.stdout = real


@contextlib.contextmanager
def output_checked() -> Iterator[None]:
    """Within the block, a write to stdout that fails ends the command without a traceback.

    When its reader went away (``vow ls | head -1``) it ends quietly with exit code 141: what the shell
    reports for ``git log | head -1`` or ``cat`` (128 + SIGPIPE: they die of the signal), so
    ``set -o pipefail`` scripts treat vow as they treat those. (Python's advice is exit 1, and click's
    too, but 1 is vow's "a workflow failed".) Any other failure (a full disk) is one line on stderr and
    exit code 2. A command that must go on without its output uses :func:`output_may_close` inside.
    """
    real = sys.stdout
    sys.stdout = _Output(real, drop=False)
    try:
        yield
    except OutputFailed as exc:
        if exc.errno == errno.EPIPE:
            raise click.exceptions.Exit(READER_GONE) from None
        raise UserError(f"could not write vow's output: {exc.strerror}") from None
    finally:
        sys.stdout = real


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: one JSON document on stdout instead of text."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")(f)


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout: strict JSON (:func:`vow.encoding.json_safe`), which has
    no inf or nan, so a number that is not finite is written ``null`` (as JavaScript's ``JSON.stringify``
    does). For a time, ``null`` is "none": a next attempt of ``null`` is never due (a ``Retry-After`` of inf)."""
    from vow.encoding import json_safe  # here: `vow --help` lists the commands without the store's encoder

    click.echo(json.dumps(json_safe(data), indent=2, allow_nan=False))


def pipeline_name(record: PromiseRecord) -> str | None:
    """The pipeline name of a stored run of ``vow.pipeline`` (``None`` for other workflows)."""
    # Imported here: the commands that list runs load the store anyway; `vow --help` need not.
    from vow.stores.base import pipeline_workflow, run_name

    if record.func != pipeline_workflow():
        return None
    name = run_name(record)
    return None if name == record.func else name


def installed_plugins() -> Plugins:
    """The plugins a ``vow`` command works with: every installed one, loaded once per process.

    The command line is where the registry is chosen; everything it calls gets it passed.
    """
    # Imported here: pluggy and the plugin loader are for the commands that need plugins, not `vow --help`.
    from vow.plugins import default_plugins

    return default_plugins()


def load_apps(vow: Any, apps: tuple[str, ...]) -> None:
    """Make the Python workflows of each ``--app module[:attr]`` runnable on ``vow``.

    ``attr`` (default: every :class:`vow.Vow` in the module) is a ``Vow`` whose registered
    workflows are registered here too, or a function called with this process's ``Vow``.
    """
    from vow.client import Vow  # here: `vow --help` imports this module, and must not load the engine

    if apps and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `vow worker --app myflows` finds ./myflows.py, as `python -m` would
    for spec in apps:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the app's, said in one line
            raise UserError(f"--app {spec}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
        if attr:
            if not hasattr(module, attr):
                raise UserError(f"--app {spec}: module {module_name} has no attribute {attr!r}")
            targets = [getattr(module, attr)]
        else:
            targets = [v for v in vars(module).values() if isinstance(v, Vow)]
        found = 0
        for target in targets:
            if isinstance(target, Vow):
                for reg in target.registered().values():
                    if reg.name not in vow.registered():
                        vow.register(reg.fn, name=reg.name, retry=reg.retry, concurrency=reg.concurrency)
                        found += 1
            elif callable(target):
                before = len(vow.registered())
                target(vow)
                found += len(vow.registered()) - before
        if not found:
            raise UserError(f"--app {spec}: no workflows found (give a module with a vow.Vow on which workflows are "
                            "registered, or module:function where function(vow) registers them)")
