"""``vow run``, ``vow validate`` and ``vow resume``: start, check and continue runs, with the live view."""

from __future__ import annotations

import _thread
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from vow.cli.common import (
    FAILED,
    INTERRUPTED,
    OK,
    USER_ERRORS,
    UserError,
    existing_store_option,
    installed_plugins,
    json_option,
    load_apps,
    output_may_close,
    pipeline_name,
    print_json,
    store_option,
    utf8_text,
    writable,
)
from vow.records import PromiseRecord, State

# The engine, the pipeline code (YAML, Jinja) and the live view are imported in the functions that
# use them, so that `vow --help`, which imports this module to list its commands, stays fast
# (tests/cli/test_run.py checks which modules it loads).
if TYPE_CHECKING:
    from vow.pipeline.model import PlannedRun
    from vow.pipeline.plan import Plan
    from vow.plugins import Plugins
    from vow.progress import Progress, Row

REMOTE_POLL = 0.5  # seconds between store reads while following a run


def _input_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--id", "run_id", metavar="ID", help="Run id (default: the file's id template).")(f)
    f = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Set one input key; dotted keys reach into mappings (customer.email=a@b.c).")(f)
    f = click.option("--input", "inputs", multiple=True, metavar="JSON|@FILE",
                     help="Input as a JSON object, or @file.json; merged over the file's input.")(f)
    return f


def _plan(file: str, inputs: tuple[str, ...], sets: tuple[str, ...], run_id: str | None, plugins: Plugins) -> Plan:
    from vow.pipeline.inputs import command_line_input
    from vow.pipeline.plan import load

    return load(file, plugins=plugins, input=command_line_input(inputs, sets), run_id=run_id)


def _progress(run_id: str, spec: PlannedRun | None) -> Progress:
    """The live view of run ``run_id``: a row per branch of a pipeline (``spec``), else per step."""
    from vow.progress import Progress

    if spec is None:
        return Progress(run_id)
    rows = [(f"{run_id}.{b.id}", b.id, b.plugin) for b in spec.branches]
    return Progress(run_id, rows, gate=spec.gate_id(run_id))


@click.command()
@click.argument("file")
@_input_options
@store_option
@json_option
@click.option("--detach", is_flag=True, help="Store the run for `vow worker` and exit at once, printing its id.")
def run(file: str, inputs: tuple[str, ...], sets: tuple[str, ...], run_id: str | None, store: str | None,
        as_json: bool, detach: bool) -> None:
    """Run the pipeline FILE and show each branch live.

    The same run id again returns the stored result, joins the run in progress, or resumes it
    after a crash; nothing that finished runs twice. Exit code 0 when the run succeeded, 1 when
    it failed, 2 for a usage, file or input error (then nothing is stored).
    """
    from vow.client import Vow
    from vow.pipeline.workflow import NAME

    with _interrupted_while_planning(file):
        plugins = installed_plugins()
        plan = _plan(file, inputs, sets, run_id, plugins)
    progress = _progress(plan.run_id, plan.spec)
    with Vow(store or plan.store, plugins=plugins, observers=[] if detach else [progress]) as vow:
        writable(vow.store)
        existing = vow.get(plan.run_id)
        plan = _as_stored(existing, plan)
        _check_same_run(existing, plan)
        if detach:
            record = vow.submit(plan.run_id, NAME, plan.spec, timeout=plan.timeout)
            if as_json:
                print_json({"run_id": plan.run_id, "state": record.state.value, "store": vow.store.url,
                            "new": existing is None})
            else:
                click.echo(plan.run_id)
            return
        code = follow(vow, plan.run_id, lambda: vow.begin_run(plan.run_id, NAME, plan.spec, timeout=plan.timeout),
                      progress, as_json=as_json, title=plan.name, existing=existing)
    sys.exit(code)


@contextlib.contextmanager
def _interrupted_while_planning(file: str) -> Iterator[None]:
    """Ctrl-C while the plugins load and the file is planned (an ``--input @<(slow-command)`` being read)
    ends ``vow run`` as a stop while it follows the run does: exit 130 and one line, here that nothing
    was stored (the store is opened only after planning)."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted while planning {file}: nothing was stored", err=True)
        sys.exit(INTERRUPTED)


@click.command()
@click.argument("file")
@_input_options
@json_option
def validate(file: str, inputs: tuple[str, ...], sets: tuple[str, ...], run_id: str | None, as_json: bool) -> None:
    """Check the pipeline FILE as `vow run` would, without running or storing anything.

    Templates are rendered with the input, every plugin's options are validated, every channel
    and provider is built (so missing secrets show) and every message is checked.
    """
    plan = _plan(file, inputs, sets, run_id, installed_plugins())
    if as_json:
        print_json({"file": plan.file, "name": plan.name, "run_id": plan.run_id, "store": plan.store,
                    "timeout": plan.timeout, "spec": plan.spec.to_json()})
        return
    branches = ", ".join(f"{b.id} ({b.plugin})" for b in plan.branches)
    click.echo(f"ok: {plan.file}: run {plan.run_id} fans out to {len(plan.branches)} "
               f"branch{'es' if len(plan.branches) != 1 else ''}: {branches}")
    if plan.gate_id:
        click.echo(f"    it first waits for {plan.gate_id} (vow resolve {plan.gate_id} VALUE)")
    if plan.timeout is not None:
        from vow.retention import describe_seconds

        click.echo(f"    the whole run times out after {describe_seconds(plan.timeout)}")


@click.command()
@click.argument("run_id", metavar="[ID]", required=False, callback=utf8_text)
@click.option("--all", "resume_all", is_flag=True, help="Resume every pending run whose worker is gone.")
@click.option("--force", is_flag=True,
              help="Resume run ID even if it was parked (its process kept dying while running it).")
@click.option("--app", "apps", multiple=True, metavar="MODULE[:ATTR]",
              help="Import Python workflows to resume (pipelines are always available).")
@existing_store_option
@json_option
def resume(run_id: str | None, resume_all: bool, force: bool, apps: tuple[str, ...], store: str | None,
           as_json: bool) -> None:
    """Resume run ID (or --all pending runs) after a crash: finished branches are not run again.
    A parked run (its process kept dying) is resumed only with --force, once the cause is fixed."""
    from vow.client import Vow

    if bool(run_id) == resume_all:
        raise click.UsageError("give a run ID or --all (not both)")
    if force and resume_all:
        raise click.UsageError("--force takes one run ID, not --all: unpark the runs one by one")
    plugins = installed_plugins()
    if resume_all:
        with Vow(store, plugins=plugins) as vow:
            writable(vow.store)
            load_apps(vow, apps)
            sys.exit(_resume_all(vow, as_json))
    assert run_id is not None  # checked above: a run ID or --all
    with Vow(store, plugins=plugins) as probe:
        writable(probe.store)
        record = _root_record(probe, run_id)
    progress = progress_for(record)
    with Vow(store, plugins=plugins, observers=[progress]) as vow:
        load_apps(vow, apps)
        if record.func not in vow.registered():
            raise UserError(f"run {run_id} is workflow {record.func!r}, which is not registered here; "
                            "import it with --app MODULE[:ATTR]")
        title = pipeline_name(record) or record.func
        code = follow(vow, record.id, lambda: vow.resume(record.id, force=force), progress, as_json=as_json,
                      title=title, existing=vow.get(record.id))
    sys.exit(code)


def _root_record(vow: Any, run_id: str) -> PromiseRecord:
    record: PromiseRecord | None = vow.get(run_id)
    if record is None:
        raise UserError(f"no run with id {run_id!r} in {vow.store.url} (vow ls lists the runs)")
    if record.parent is not None:
        raise UserError(f"{run_id!r} is a step of run {record.root!r}; resume the run: vow resume {record.root}")
    return record


def progress_for(record: PromiseRecord) -> Progress:
    """The live view of the stored run ``record``: a row per branch of a pipeline's plan, else per step."""
    return _progress(record.id, _stored_plan(record))


def _stored_plan(record: PromiseRecord) -> PlannedRun | None:
    """The planned run a stored pipeline run holds (``None`` for another workflow)."""
    from vow import encoding
    from vow.pipeline.model import PlannedRun
    from vow.pipeline.workflow import NAME

    if record.func != NAME:
        return None
    args, _ = encoding.decode_args(record.args)
    return PlannedRun.from_json(args[0] if args else None, where=f"the plan stored with run {record.id}")


def _resume_all(vow: Any, as_json: bool) -> int:
    registered = vow.registered()
    claimable = vow.store.claimable(limit=1000)
    skipped = [r for r in claimable if r.func not in registered]  # said once, below (not logged as well)
    handles = [vow.resume(r.id) for r in claimable if r.func in registered]
    results = []
    for handle in handles:
        try:
            handle.result()
            error = None
        except Exception as exc:  # noqa: BLE001 - reported per run
            error = f"{type(exc).__name__}: {exc}"
        record = vow.get(handle.id)
        results.append({"run_id": handle.id, "state": record.state.value if record else "unknown", "error": error})
    if as_json:
        print_json({"resumed": results, "skipped": [{"run_id": r.id, "workflow": r.func} for r in skipped]})
    else:
        for r in results:
            click.echo(f"  {r['run_id']}  {r['state']}" + (f"  {r['error']}" if r["error"] else ""))
        for r in skipped:
            click.echo(f"  {r.id}  skipped: workflow {r.func!r} is not registered here (add --app MODULE)")
        if not results and not skipped:
            click.echo("nothing to resume: no pending run without a live worker")
    return FAILED if any(r["state"] != State.RESOLVED.value for r in results) else OK


def _as_stored(existing: PromiseRecord | None, plan: Plan) -> Plan:
    """``plan`` as run ``existing`` was stored, when it differs only in the default output folder an older
    vow named (see :meth:`vow.pipeline.plan.Plan.as_stored`)."""
    if existing is None or plan.legacy_output is None:
        return plan
    try:
        stored = _stored_plan(existing)
    except USER_ERRORS:
        return plan  # not a plan this vow reads: _check_same_run says what is wrong
    return plan if stored is None else plan.as_stored(stored)


def _check_same_run(existing: PromiseRecord | None, plan: Plan) -> None:
    """An existing id must hold this very run (the engine's rule); say why not in the pipeline's words."""
    from vow import encoding
    from vow.engine import same_run_error
    from vow.errors import NonDeterminismError
    from vow.pipeline.workflow import NAME

    if existing is None:
        return
    args_text = encoding.encode_args((plan.spec,), {}, what=plan.run_id)
    error = same_run_error(plan.run_id, existing.func, existing.args, NAME, args_text)
    if isinstance(error, NonDeterminismError):
        raise UserError(f"run id {plan.run_id!r} is taken by workflow {existing.func!r}, not a pipeline; "
                        "give this run another id with --id")
    if error is not None:
        raise UserError(f"run id {plan.run_id!r} was started with other input or another version of "
                        f"{plan.file}; run it with the same input to join it, or give this run a new id (--id)")


# ---------------------------------------------------------------------------------- following a run
def follow(vow: Any, run_id: str, start: Callable[[], Any], progress: Progress, *, as_json: bool, title: str,
           existing: PromiseRecord | None, made_here: bool = False) -> int:
    """Start (or join) ``run_id`` with ``start()``, show it live until it settles, print the summary.

    Returns the exit code: 0 when the run resolved, 1 otherwise, 130 or 143 when Ctrl-C or SIGTERM
    stopped following it (the run stays pending). When stdout is closed or its reader goes away
    (``| head -1``), the run goes on to its end all the same, without the view. ``made_here``: this
    command has just stored ``existing`` (`vow fork`, `vow retry`, which say what it reuses), so the
    header does not guess from the store how it came to be pending.
    """
    with _said_by_the_view(run_id), _stop_on_signals(run_id, progress.changed) as stop, output_may_close():
        return _follow(vow, run_id, start, progress, as_json=as_json, title=title, existing=existing, stop=stop,
                       made_here=made_here)


class _Stop:
    """The signal that stopped ``vow run`` (``None`` while none came)."""

    def __init__(self) -> None:
        self.signum: int | None = None


def _stopped(run_id: str, signum: int) -> str:
    """What ``vow run`` says on stderr when a signal stopped it."""
    said = "terminated" if signum == signal.SIGTERM else "interrupted"
    return (f"\n{said}: {run_id} stays pending; run the same command again, or `vow resume {run_id}`, to continue "
            "where it stopped\n")


@contextlib.contextmanager
def _stop_on_signals(run_id: str, wake: threading.Event) -> Iterator[_Stop]:
    """Ctrl-C and SIGTERM (a container stop, ``kill``) stop following the run: the first is noted, ``wake``
    is set and the view loop ends; the client then closes and gives its leases back, so another
    worker need not wait for them to expire. A second signal while it stops ends the process at once
    with the first one's exit code (as after a crash: the stored state is whole, the run pending).

    The handlers raise nothing: an exception raised between two bytecodes of the threading module
    (the view waits on an event) broke its locks ("release unlocked lock") or was made "Aborted!" and
    exit 1 by click. They set ``wake`` from a bare thread, as :mod:`vow.stopping` explains.
    """
    stop = _Stop()

    def first(signum: int, frame: Any) -> None:
        if stop.signum is None:
            stop.signum = signum
            _thread.start_new_thread(wake.set, ())
        else:  # the message may not be out yet: written here in one call, and perhaps twice
            with contextlib.suppress(OSError):
                os.write(2, _stopped(run_id, stop.signum).encode())
            os._exit(128 + stop.signum)

    try:
        previous = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread (vow run called from a test's thread): nothing to do
        yield stop
        return
    try:
        yield stop
    finally:
        # After a stop the process is ending: the handlers stay, so that a second signal still ends it at once.
        if stop.signum is None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@contextlib.contextmanager
def _said_by_the_view(run_id: str) -> Iterator[None]:
    """The live view and the summary say every retry, and why this process stopped running the run
    (it was canceled, or another worker took it over): no second line about either from the logs."""
    retry_log = logging.getLogger("vow.retry")
    level = retry_log.level
    retry_log.setLevel(logging.ERROR)
    engine_log = logging.getLogger("vow.engine")
    lost_lease = _LostLease(run_id)
    engine_log.addFilter(lost_lease)
    try:
        yield
    finally:
        retry_log.setLevel(level)
        engine_log.removeFilter(lost_lease)


class _LostLease(logging.Filter):
    """Drops the engine's warning that another worker took ``run_id`` over: `vow run` says so itself,
    in the words of its summary."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(record, "vow_stop", None) == "lease_lost"
                    and getattr(record, "vow_root", None) == self.run_id)


def _follow(vow: Any, run_id: str, start: Callable[[], Any], progress: Progress, *, as_json: bool, title: str,
            existing: PromiseRecord | None, stop: _Stop, made_here: bool = False) -> int:
    from vow.progress import PlainView, RichView
    tty = sys.stdout.isatty() and not as_json
    console = _console() if tty else None
    if existing is not None:
        progress.load(vow.store.tree(run_id))
        if existing.settled:
            progress.take_changes(final=True)  # the summary lists the stored rows, in file order
    if not as_json:
        _header(console, title, run_id, vow.store.url, progress.rows(), None if made_here else existing, vow)
    handle = start()
    view: Any = RichView(progress, console) if tty else PlainView(progress, sys.stdout) if not as_json else None
    _watch(vow, run_id, handle, progress, view, stop)
    if stop.signum is not None:
        click.echo(_stopped(run_id, stop.signum), err=True, nl=False)
        return 128 + stop.signum
    try:
        value, error = handle.result(), None
    except Exception as exc:  # noqa: BLE001 - the run's failure is reported, not raised
        value, error = None, exc
    root = vow.get(run_id)
    rows = progress.rows()
    if as_json:
        print_json(_document(title, run_id, vow.store.url, root, rows, value, error, existing))
    else:
        _summary(console, run_id, root, rows, value, error, existing)
    return OK if root is not None and root.state is State.RESOLVED and error is None else FAILED


def _watch(vow: Any, run_id: str, handle: Any, progress: Progress, view: Any, stop: _Stop) -> None:
    said_stop = False

    def refresh() -> None:
        ids = progress.waiting_for_detail()
        if ids:
            progress.load(vow.store.get_many(ids).values())

    def after_a_stop() -> None:
        """This process stopped running the run: say so if another worker goes on with it (a run
        settled from outside, a cancel, is said by the summary)."""
        nonlocal said_stop
        if progress.stopped and not said_stop:
            said_stop = True
            root = vow.get(run_id)
            if root is None or not root.settled:
                progress.announce(f"another worker has taken {run_id} over (this process lost its lease); "
                                  "following it from the store")

    if view is None:
        while not handle.done() and stop.signum is None:
            progress.changed.wait(0.1)
            progress.changed.clear()
        return
    with view:
        polled = time.monotonic()
        while not handle.done() and stop.signum is None:
            progress.changed.wait(0.01 if progress.root_state else 0.1)
            progress.changed.clear()
            after_a_stop()
            if time.monotonic() - polled > REMOTE_POLL or progress.stopped:  # a run another process runs, too
                progress.load(vow.store.tree(run_id))
                polled = time.monotonic()
            refresh()
            view.update()
        progress.load(vow.store.tree(run_id))


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _echo(console: Any, text: str, style: str = "") -> None:
    if console is not None:
        console.print(text, style=style or None, markup=False, highlight=False)
    else:
        click.echo(text)


def _header(console: Any, title: str, run_id: str, store: str, rows: list[Row], existing: PromiseRecord | None,
            vow: Any) -> None:
    rows = [r for r in rows if r.kind != "promise"]  # the branches; a gate is not one
    names = ", ".join(r.name for r in rows)
    count = f"{len(rows)} branch{'es' if len(rows) != 1 else ''}"
    _echo(console, f"{title}: run {run_id} on {store}" + (f" ({count}: {names})" if names else ""), "bold")
    if existing is None:
        return
    if existing.settled:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(existing.settled_at or existing.created_at))
        _echo(console, f"  this run already finished ({existing.state.value} at {when}): showing its stored "
                       "result; nothing runs again", "yellow")
        return
    done = sum(1 for r in rows if r.settled)
    if not vow.store.lease_free(run_id):
        _echo(console, f"  joining: {run_id} is already running ({done} of {len(rows)} settled)", "yellow")
    elif not vow.store.children(run_id):
        _echo(console, f"  starting {run_id}, which was stored for a worker (--detach) and not started yet", "yellow")
    else:
        _echo(console, f"  resuming {run_id} where it stopped: {done} of {len(rows)} already settled and not "
                       "run again", "yellow")


def _summary(console: Any, run_id: str, root: PromiseRecord | None, rows: list[Row], value: Any,
             error: BaseException | None, existing: PromiseRecord | None) -> None:
    from vow.progress import format_line, printable, seconds
    from vow.retention import describe_seconds
    if existing is not None and existing.settled:  # nothing changed: print the stored rows now
        width = max(len(r.name) for r in rows) if rows else 0
        for row in rows:
            _echo(console, format_line("settled", row, width))
    wall = (root.settled_at or time.time()) - root.created_at if root else None
    took = seconds(wall)
    branches = [r for r in rows if r.kind != "promise"]
    work = sum(r.elapsed() or 0.0 for r in branches)
    ok = sum(1 for r in branches if r.state == State.RESOLVED.value)
    retried = [f"{r.name} after {r.attempt} attempts" for r in branches if r.attempt > 1 and r.state == "resolved"]
    note = f" ({', '.join(retried)})" if retried else ""
    if root is not None and root.state is State.RESOLVED and error is None:
        _echo(console, f"done: {run_id} succeeded in {took}; {ok} of {len(branches)} branches ok{note}", "bold green")
        if wall and work > 1.2 * wall:  # the point of fanning out: wall time is the slowest branch, not the sum
            _echo(console, f"  in parallel: {seconds(work)} of branch time in {took}")
        if isinstance(value, dict):
            for key, label in (("gallery", "gallery"), ("result_file", "result")):
                if value.get(key):
                    _echo(console, f"  {label}: {value[key]}")
    elif root is not None and root.state is State.CANCELED:
        _echo(console, f"canceled: {run_id} was canceled after {took}; {ok} of {len(branches)} branches had "
                       "finished ok", "bold magenta")
    elif root is not None and root.state is State.TIMEDOUT and root.timeout is not None:
        # The run's own deadline passed (a branch's timeout fails the branch, not the run): say so in
        # those words, with the limit, rather than as a PromiseTimeoutError about the workflow.
        limit = describe_seconds(round(root.timeout - root.created_at, 3))
        _echo(console, f"timed out: {run_id} timed out after {took} (the run's timeout is {limit}); {ok} of "
                       f"{len(branches)} branches had finished ok", "bold red")
        for label, state in (("timed out", State.TIMEDOUT.value), ("never started", "waiting")):
            names = [r.name for r in rows if r.state == state]
            if names:
                _echo(console, f"  {label}: {', '.join(names)}")
    else:
        state = root.state.value if root else "unknown"
        _echo(console, f"failed: {run_id} {state} after {took}: {printable(_error_text(error))}", "bold red")
        for row in branches:  # a branch that failed for good after retries: every attempt's error
            errors = row.errors() if row.state != State.RESOLVED.value else []
            if len(errors) > 1:
                _echo(console, f"  {row.name} failed on {len(errors)} attempts:")
                for attempt, text in errors:
                    _echo(console, f"    attempt {attempt}: {printable(text)}")
    _echo(console, f"  promise tree: vow show {run_id}", "dim")


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return "see vow show"
    return f"{type(error).__name__}: {error}"


def _document(title: str, run_id: str, store: str, root: PromiseRecord | None, rows: list[Row], value: Any,
              error: BaseException | None, existing: PromiseRecord | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "workflow": title,
        "store": store,
        "state": root.state.value if root else None,
        "ok": error is None and root is not None and root.state is State.RESOLVED,
        "already_finished": bool(existing is not None and existing.settled),
        "elapsed": round((root.settled_at or time.time()) - root.created_at, 4) if root else None,
        "timeout": round(root.timeout - root.created_at, 3) if root and root.timeout is not None else None,
        "branches": [{"id": r.name, "promise_id": r.id, "kind": r.kind, "state": r.state, "attempt": r.attempt,
                      "elapsed": None if r.elapsed() is None else round(r.elapsed() or 0.0, 4),
                      "detail": r.detail, "error": r.error,
                      "errors": [{"attempt": n, "error": text} for n, text in r.errors()]} for r in rows],
        "result": value,
        "error": _error_text(error) if error is not None else None,
    }
