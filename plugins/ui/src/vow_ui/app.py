"""The console as an ASGI app (Starlette): pages, live updates, images and actions.

Pages are rendered on the server with Jinja2 (autoescaped: a run whose argument is
``<script>`` shows that text). Each page has a live region that a server-sent event stream
replaces when what it shows changes in the store, whoever changed it: the stream reads the
store every ``poll`` seconds (slower when reads are slow) and sends the region again only when
its promises' states or attempts changed. Actions are POSTs guarded by :class:`~vow_ui.guard.Guard`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vow.errors import VowError
from vow.pipeline.inputs import parse_value
from vow.records import Kind, State
from vow_ui import views
from vow_ui.guard import Guard, same_site_path

_log = logging.getLogger("vow.ui")

PAGE_SIZE = 50
MAX_NOTES = 200
RESUME_HINT = ("start the console with --app MODULE to resume it here, or a worker that has it "
               "(vow worker --app MODULE) will pick the run up")


class FilterError(ValueError):
    """A bad query parameter: shown on the page, status 400."""


def runs_filters(query: dict[str, str]) -> tuple[str | None, str | None, float | None, float | None,
                                                 tuple[float, str] | None]:
    """The runs list's filters in ``query``: ``(state, name, since, until, before)``; :class:`FilterError`
    naming the parameter when one is bad."""
    state = query.get("state") or None
    if state is not None and state not in {s.value for s in State}:
        raise FilterError(f"state: expected one of {', '.join(s.value for s in State)}, got {state!r}")
    name = (query.get("name") or "").strip() or None
    since = _moment(query.get("since"), "since")
    until = _moment(query.get("until"), "until")
    before = None
    if query.get("before"):
        try:
            before = views.parse_cursor(query["before"])
            if not is_moment(before[0]):
                raise ValueError(query["before"])
        except ValueError:
            raise FilterError("before: not a page cursor (follow the Older link)") from None
    return state, name, since, until, before


class Console:
    """The console's state: the client it acts through, its guard, templates and notes."""

    def __init__(self, vow: Any, *, token: str | None = None, poll: float = 0.5) -> None:
        self.vow = vow
        self.store = vow.store
        self.guard = Guard(token)
        self.poll = poll
        self.notes: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.env = jinja2.Environment(loader=jinja2.PackageLoader("vow_ui", "templates"), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(when=views.when, seconds=views.seconds, url_id=lambda rid: quote(rid, safe=""),
                                run_url=run_url, csrf=self.guard.csrf, store_url=self.store.url)
        self.stopping = asyncio.Event()

    # ------------------------------------------------------------------ rendering
    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("note", None)
        return HTMLResponse(self.env.get_template(template).render(**context), status_code=status)

    def note(self, request: Request) -> str | None:
        key = request.query_params.get("note")
        return self.notes.get(key) if key else None

    def add_note(self, text: str) -> str:
        key = secrets.token_urlsafe(8)
        self.notes[key] = text
        while len(self.notes) > MAX_NOTES:
            self.notes.popitem(last=False)
        return key

    # ------------------------------------------------------------------ the runs list
    def runs_context(self, query: dict[str, str]) -> dict[str, Any]:
        """What the runs list shows for ``query`` (its filters and cursor); :class:`FilterError` if bad."""
        state, name, since, until, before = runs_filters(query)
        runs = self.store.runs(state=State(state) if state else None, name=name, since=since, until=until,
                               before=before, limit=PAGE_SIZE)
        rows = views.run_rows(runs, self.store.branch_counts([r.id for r in runs]))
        filters = {k: v for k, v in query.items() if k in ("state", "name", "since", "until") and v}
        older = urlencode({**filters, "before": rows[-1].cursor}) if len(rows) == PAGE_SIZE else None
        return {"rows": rows, "filters": filters, "state": state or "", "name": name or "",
                "since": query.get("since", ""), "until": query.get("until", ""), "paged": before is not None,
                "older": older, "newest": urlencode(filters), "states": [s.value for s in State],
                "fingerprint": tuple((r.id, r.state, r.ok, r.failed, r.pending) for r in rows)}

    async def runs_page(self, request: Request) -> Response:
        query = dict(request.query_params)
        try:
            context = await run_in_threadpool(self.runs_context, query)
        except FilterError as exc:
            return self.render("error.html", 400, title="Bad filter", message=str(exc))
        live = "/live/runs" + (f"?{request.url.query}" if request.url.query else "")
        return self.render("runs.html", **context, live=live, note=self.note(request))

    async def runs_live(self, request: Request) -> Response:
        query = dict(request.query_params)
        try:
            runs_filters(query)  # before the stream starts, which cannot answer 400 any more
        except FilterError as exc:
            return self.render("error.html", 400, title="Bad filter", message=str(exc))

        def read() -> tuple[Any, str]:
            context = self.runs_context(query)
            return context["fingerprint"], self.env.get_template("_runs_table.html").render(**context)

        return self.stream(request, read)

    # ------------------------------------------------------------------ one run
    def run_context(self, run_id: str) -> dict[str, Any] | None:
        record = self.store.get(run_id)
        if record is None:
            return None
        tree = self.store.tree(record.root)
        line = views.timeline(tree, record.root)
        if line is None:
            return None
        lease = self.store.lease(line.root.id) if not line.root.settled else None
        parked = lease.parked if lease is not None else None
        busy = lease is not None and not parked and not self.store.lease_free(line.root.id)
        here = busy and lease is not None and lease.owner == self.vow.owner
        return {"t": line, "registered": line.root.func in self.vow.registered(), "busy": busy, "here": here,
                "parked": parked, "resume_hint": RESUME_HINT,
                "fingerprint": (views.fingerprint(tree), busy, here, parked)}

    async def run_page(self, request: Request) -> Response:
        run_id = _run_id(request)
        context = await run_in_threadpool(self.run_context, run_id)
        if context is None:
            return self.render("error.html", 404, title="No such run",
                               message=f"No promise with id {run_id!r} in {self.store.url}.")
        if context["t"].root.id != run_id:  # a promise inside a run: show the run
            return RedirectResponse(run_url(context["t"].root.id), status_code=303)
        return self.render("run.html", **context, live=run_url(run_id, "/live/run"), note=self.note(request))

    async def run_live(self, request: Request) -> Response:
        run_id = _run_id(request)

        def read() -> tuple[Any, str]:
            context = self.run_context(run_id)
            if context is None:
                return None, "<p class='empty'>This run is gone from the store.</p>"
            return context["fingerprint"], self.env.get_template("_run_body.html").render(**context)

        return self.stream(request, read)

    async def image(self, request: Request) -> Response:
        """The PNG an image leaf of a run wrote (nothing else: see :func:`views.image_path`)."""
        pid = request.query_params.get("id", "")
        record = await run_in_threadpool(self.store.get, pid)
        path = views.image_path(record) if record is not None else None
        if path is None or not path.is_file():
            return Response("no such image\n", status_code=404, media_type="text/plain")
        with path.open("rb") as f:
            if f.read(8) != views.PNG_SIGNATURE:
                return Response("not a PNG\n", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type="image/png", headers={"cache-control": "no-cache"})

    # ------------------------------------------------------------------ live updates
    def stream(self, request: Request, read: Callable[[], tuple[Any, str]]) -> StreamingResponse:
        """Server-sent events: the region's HTML whenever its fingerprint changes (only then, so
        a button is not replaced under the user's pointer; running durations tick in the page)."""
        async def events() -> AsyncIterator[str]:
            last: Any = object()
            yield "retry: 1000\n\n"
            while not self.stopping.is_set() and not await request.is_disconnected():
                began = time.monotonic()
                try:
                    print_, html = await run_in_threadpool(read)
                except VowError as exc:  # a busy or failing store: say so, keep trying
                    _log.warning("console: reading the store failed: %s", exc)
                    print_, html = last, None
                took = time.monotonic() - began
                if html is not None and print_ != last:
                    last = print_
                    # A bare CR ends an event's line too: send it as the LF an HTML parser reads it as.
                    lines = html.replace("\r\n", "\n").replace("\r", "\n").split("\n")
                    yield "event: update\n" + "".join(f"data: {line}\n" for line in lines) + "\n"
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=max(self.poll, 4 * took))

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    # ------------------------------------------------------------------ actions
    async def action(self, request: Request) -> Response:
        name = request.path_params["action"]
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        if not self.guard.csrf_ok(request, form.get("csrf")):
            return self.render("error.html", 403, title="Refused",
                               message="This action did not come from the console's own page (CSRF check failed). "
                                       "Reload the page and try again.")
        pid = form.get("id", "")
        actions = {"resolve": self._resolve, "reject": self._reject, "cancel": self._cancel, "resume": self._resume}
        act = actions.get(name)
        if act is None:
            return self.render("error.html", 404, title="No such action", message=f"Unknown action {name!r}.")
        try:
            ok, text = await run_in_threadpool(act, pid, form)
        except VowError as exc:  # not found, settled otherwise, not an outside promise...
            ok, text = False, str(exc)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"ok": ok, "note": text}, status_code=200 if ok else 409)
        back = same_site_path(form.get("back", "/"))
        sep = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{sep}note={self.add_note(text)}", status_code=303)

    def _resolve(self, pid: str, form: dict[str, str]) -> tuple[bool, str]:
        record = self.vow.resolve(pid, parse_value(form.get("value", "")))
        return True, f"{record.id} resolved; its run wakes up"

    def _reject(self, pid: str, form: dict[str, str]) -> tuple[bool, str]:
        reason = form.get("value", "").strip() or "rejected in the console"
        record = self.vow.reject(pid, reason)
        return True, f"{record.id} rejected: {reason}"

    def _cancel(self, pid: str, form: dict[str, str]) -> tuple[bool, str]:
        record = self.vow.cancel(pid)
        return True, f"{record.id} is {record.state.value}"

    def _resume(self, pid: str, form: dict[str, str]) -> tuple[bool, str]:
        record = self.store.get(pid)
        if record is None or record.parent is not None or record.kind is not Kind.WORKFLOW:
            return False, f"{pid!r} is not a run"
        if record.settled:
            return False, f"{pid} already finished ({record.state.value}); nothing to resume"
        lease = self.store.lease(pid)
        if lease is not None and lease.parked:
            return False, (f"{pid} is parked: {lease.parked}. The console does not override that; "
                           f"after fixing the cause: vow resume --force {pid}")
        if lease is not None and lease.owner == self.vow.owner and not self.store.lease_free(pid):
            return True, f"{pid} is already running in this console"
        if not self.store.lease_free(pid):
            return False, f"{pid} is running in another process; nothing to do"
        if record.func not in self.vow.registered():
            return False, f"workflow {record.func!r} is not registered in this console: {RESUME_HINT}"
        self.vow.resume(pid)
        return True, f"{pid} resumed in this console: finished branches are not run again"


def run_url(run_id: str, base: str = "/run") -> str:
    """The address of run ``run_id``'s page (``base="/live/run"``: of its live updates): ``/run/ID``, or
    ``/run?id=ID`` for an id the path cannot carry: a browser resolves a segment "." or ".." away (as it
    does ``%2e``), and a path parameter stops at a line break."""
    if run_id in (".", "..") or "\n" in run_id:
        return f"{base}?id={quote(run_id, safe='')}"
    return f"{base}/{quote(run_id, safe='')}"


def _run_id(request: Request) -> str:
    """The run a ``/run/ID`` or ``/run?id=ID`` address names (see :func:`run_url`)."""
    return str(request.path_params.get("run_id") or request.query_params.get("id", ""))


LATEST_MOMENT = 253402300799.0
"""The last second of year 9999 (UTC), the latest ``since``/``until``/cursor time the console takes."""


def _moment(text: str | None, what: str) -> float | None:
    """A ``since``/``until`` value: local ``YYYY-MM-DD[THH:MM[:SS]]`` or epoch seconds, from 1970 to 9999."""
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = datetime.datetime.fromisoformat(text.replace(" ", "T")).timestamp()
        except (ValueError, OverflowError, OSError):
            raise FilterError(f"{what}: expected a date and time (2026-11-21T14:00), got {text!r}") from None
    if not is_moment(seconds):
        raise FilterError(f"{what}: expected a time from 1970 to 9999 (a date and time such as 2026-11-21T14:00, "
                          f"or epoch seconds), got {text!r}")
    return seconds


def is_moment(seconds: float) -> bool:
    """Whether ``seconds`` is a time a run can have started at: epoch seconds from 1970 to 9999.
    ``float()`` takes nan (every comparison with it is false: no run matches, a cursor never ends),
    inf and negative numbers; the one check for every time in the console's query."""
    return 0.0 <= seconds <= LATEST_MOMENT


def create_app(vow: Any, *, token: str | None = None, poll: float = 0.5) -> Starlette:
    """The console for the store of ``vow`` (a :class:`vow.Vow`, which also runs resumed runs)."""
    console = Console(vow, token=token, poll=poll)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        console.stopping.set()  # ends the event streams, so shutdown does not wait for the browsers

    static = StaticFiles(packages=[("vow_ui", "static")])
    app = Starlette(routes=[
        Route("/", console.runs_page),
        Route("/live/runs", console.runs_live),
        Route("/run", console.run_page),
        Route("/run/{run_id:path}", console.run_page),
        Route("/live/run", console.run_live),
        Route("/live/run/{run_id:path}", console.run_live),
        Route("/image", console.image),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/action/{action}", console.action, methods=["POST"]),
        Mount("/static", static, name="static"),
    ], lifespan=lifespan)
    app.state.console = console
    app.add_middleware(_Wrap, wrap=console.guard.middleware)
    return app


class _Wrap:
    """Adapts a ``wrap(app) -> app`` function to Starlette's middleware stack."""

    def __init__(self, app: Any, wrap: Callable[[Any], Any]) -> None:
        self.app = wrap(app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
