"""The console without a browser: the timeline read from stored records, the image guard, the
access rules (Starlette's test client, which runs the real app in this process)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # newer Starlette would rather drive its test client with another httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from vow import Vow, encoding
from vow.records import Batch, Kind, PromiseRecord, State
from vow_ui import create_app
from vow_ui.guard import host_of, is_loopback, same_site_path
from vow_ui.views import BACKOFF_FUNC, IMAGE_LEAF, image_path, timeline


def record(id: str, kind: Kind = Kind.STEP, *, parent: str | None = None, created: float, func: str = "f",
           **fields: Any) -> PromiseRecord:
    return PromiseRecord(id, fields.pop("state", State.PENDING), kind, "r", func, fields.pop("args", "[]"),
                         parent=parent, idempotency_key=id, created_at=created, **fields)


def test_attempts_and_backoffs_are_read_from_the_backoff_timers() -> None:
    tree = [
        record("r", Kind.WORKFLOW, created=0.0, state=State.RESOLVED, value="1", settled_at=10.0),
        record("r.send", parent="r", created=1.0, state=State.RESOLVED, value='"ok"', settled_at=9.0, attempt=3),
        record("r.send.backoff.2", Kind.SLEEP, parent="r.send", created=2.0, func=BACKOFF_FUNC, state=State.RESOLVED,
               value="null", settled_at=3.0, timeout=3.0,
               args='{"message":"503 from the provider","type":"vow.errors.TransientError"}'),
        record("r.send.backoff.3", Kind.SLEEP, parent="r.send", created=5.0, func=BACKOFF_FUNC, state=State.RESOLVED,
               value="null", settled_at=7.0, timeout=7.0, args=""),
    ]
    line = timeline(tree, "r", now=100.0)
    assert line is not None
    send = next(b for b in line.bars if b.record.id == "r.send")
    assert [(s.kind, s.number, s.start, s.end, s.outcome) for s in send.segments] == [
        ("attempt", 1, 1.0, 2.0, "failed"), ("backoff", 2, 2.0, 3.0, "done"),
        ("attempt", 2, 3.0, 5.0, "failed"), ("backoff", 3, 5.0, 7.0, "done"),
        ("attempt", 3, 7.0, 9.0, "ok")]
    assert send.attempts == 3
    assert [s.error for s in send.retries] == ["TransientError: 503 from the provider", ""]
    assert [b.record.id for b in line.bars] == ["r", "r.send"]  # timers are segments, not bars
    assert send.segments[0].left == 10.0 and send.segments[-1].left == 70.0  # percent of the run's 10 s


def test_a_branch_waiting_out_its_backoff_shows_no_next_attempt_yet() -> None:
    tree = [
        record("r", Kind.WORKFLOW, created=0.0),
        record("r.send", parent="r", created=1.0, attempt=2),
        record("r.send.backoff.2", Kind.SLEEP, parent="r.send", created=2.0, func=BACKOFF_FUNC, timeout=50.0, args=""),
    ]
    line = timeline(tree, "r", now=4.0)
    send = next(b for b in line.bars if b.record.id == "r.send")
    assert [(s.kind, s.outcome) for s in send.segments] == [("attempt", "failed"), ("backoff", "waiting")]


def test_only_the_png_an_image_leaf_wrote_into_its_folder_is_served(tmp_path: Path) -> None:
    def leaf(value: dict[str, Any], folder: str) -> PromiseRecord:
        return record("r.cat", created=1.0, func=IMAGE_LEAF, state=State.RESOLVED, value=json.dumps(value),
                      args=json.dumps(["image_sim", {"style": "cat"}, folder]))

    assert image_path(leaf({"path": "cat.png"}, str(tmp_path))) == tmp_path / "cat.png"
    assert image_path(leaf({"path": "../secret.png"}, str(tmp_path))) is None
    assert image_path(leaf({"path": "/etc/passwd"}, str(tmp_path))) is None
    assert image_path(leaf({"path": "notes.txt"}, str(tmp_path))) is None
    other = record("r.x", created=1.0, func="evil.leaf", state=State.RESOLVED, value='{"path": "cat.png"}',
                   args=json.dumps(["p", {}, str(tmp_path)]))
    assert image_path(other) is None


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                                ("::1", True), ("[::1]", True), ("0.0.0.0", False),
                                                ("192.168.1.5", False), ("example.com", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_host_headers_and_redirect_targets() -> None:
    assert host_of("127.0.0.1:8765") == "127.0.0.1"
    assert host_of("[::1]:8765") == "::1"
    assert host_of("localhost") == "localhost"
    assert same_site_path("/run/x?y=1") == "/run/x?y=1"
    for bad in ("//evil.example/", "http://evil.example/", "javascript:alert(1)", "run",
                # a browser reads a backslash as a slash and drops tabs and line breaks: each of these
                # goes to //evil.example, another site (they were taken as paths of this one)
                "/\\evil.example/", "/\t/evil.example/", "/\n/evil.example/", "\\/evil.example/"):
        assert same_site_path(bad) == "/", bad


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with Vow(f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
        vow.store.apply(Batch(creates=[
            PromiseRecord("a", State.PENDING, Kind.WORKFLOW, "a", "app.flow",
                          encoding.encode_args(("x",), {}, what="t"), idempotency_key="a", created_at=1.0),
            PromiseRecord("a.gate", State.PENDING, Kind.PROMISE, "a", "", "", parent="a", idempotency_key="a.gate",
                          created_at=2.0)]))
        with TestClient(create_app(vow), base_url="http://127.0.0.1:8765") as test_client:
            yield test_client


def test_pages_carry_a_strict_content_security_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_foreign_host_name_is_refused_without_a_token(client: TestClient) -> None:
    # A page on evil.example whose name now points at 127.0.0.1 (DNS rebinding) sends Host: evil.example.
    response = client.get("/", headers={"host": "evil.example:8765"})
    assert response.status_code == 400
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_bad_filters_are_one_clear_message(client: TestClient) -> None:
    response = client.get("/?state=stuck")
    assert response.status_code == 400 and "state: expected one of pending" in response.text
    response = client.get("/?since=yesterday")
    assert response.status_code == 400 and "since: expected a date and time" in response.text
    assert client.get("/?before=nonsense").status_code == 400
    assert client.get("/run/nope").status_code == 404


@pytest.mark.parametrize("query, problem", [
    # float() took nan, inf and -5: nan matched no run and every comparison with it is false, inf
    # hid every run, and a cursor of nan made the keyset page never end.
    ("since=nan", "since: expected a time from 1970 to 9999 (a date and time such as 2026-11-21T14:00, or epoch "
                  "seconds), got &#39;nan&#39;"),
    ("until=inf", "until: expected a time from 1970 to 9999"),
    ("since=-infinity", "since: expected a time from 1970 to 9999"),
    ("since=-5", "since: expected a time from 1970 to 9999"),
    ("until=1e300", "until: expected a time from 1970 to 9999"),
    ("since=1900-01-01", "since: expected a time from 1970 to 9999"),
    ("before=nan:run/1", "before: not a page cursor (follow the Older link)"),
    ("before=inf:run/1", "before: not a page cursor (follow the Older link)"),
])
def test_a_number_that_is_no_time_is_refused_with_400(client: TestClient, query: str, problem: str) -> None:
    response = client.get(f"/?{query}")
    assert response.status_code == 400, response.status_code
    assert problem in response.text, response.text[:2000]
    # the page's live stream too: it answered 200 and then failed at each poll, sending nothing
    with client.stream("GET", f"/live/runs?{query}") as live:
        assert live.status_code == 400
        assert problem in live.read().decode()


def test_resume_explains_when_the_workflow_is_not_registered_here(client: TestClient) -> None:
    page = client.get("/run/a")
    assert "not registered in this console" in page.text and "--app MODULE" in page.text
    csrf = client.app.state.console.guard.csrf
    response = client.post("/action/resume", data={"id": "a", "csrf": csrf}, headers={"accept": "application/json"})
    assert response.status_code == 409
    assert "worker" in response.json()["note"]


def test_an_action_without_javascript_redirects_back_with_a_note(client: TestClient) -> None:
    csrf = client.app.state.console.guard.csrf
    response = client.post("/action/resolve", data={"id": "a.gate", "value": '{"by": "ada"}', "csrf": csrf,
                                                     "back": "/run/a"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/run/a?note=")
    assert "a.gate resolved" in client.get(response.headers["location"]).text
    store = client.app.state.console.store
    assert store.get("a.gate").state is State.RESOLVED and json.loads(store.get("a.gate").value) == {"by": "ada"}
    again = client.post("/action/resolve", data={"id": "a.gate", "value": "other", "csrf": csrf},
                        headers={"accept": "application/json"})
    assert again.status_code == 409 and "already" in again.json()["note"]


def _fails_once(ctx: Any) -> str:
    from vow import TransientError

    if ctx.attempt == 1:
        raise TransientError("provider timed out")
    return "ok"


def _one_flaky_branch(ctx: Any):
    from vow.retry import Constant

    return (yield ctx.run(_fails_once).options(id=f"{ctx.id}.send", retry=Constant(delay=0.01, max_attempts=2)))


def test_a_retried_attempts_error_reaches_the_timeline(tmp_path: Path) -> None:
    with Vow(f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
        assert vow.run("flaky/1", _one_flaky_branch) == "ok"
        line = timeline(vow.store.tree("flaky/1"), "flaky/1")
    send = next(b for b in line.bars if b.record.id == "flaky/1.send")
    assert send.attempts == 2
    assert [s.error for s in send.retries] == ["TransientError: provider timed out"]


def test_a_very_large_run_page_counts_what_it_does_not_draw_and_stays_small(tmp_path: Path) -> None:
    """10,000 review branches, each a child workflow with a finished leaf and a pending outside promise.

    The page said "9835 more promises are not drawn" for the 29,501 it left out (the children of an
    undrawn promise were not counted), and drew a Resolve form for each of the 10,000 pending
    promises: a 6.9 MB page, sent again by the live stream on every change."""
    n = 10_000
    records = [PromiseRecord("big", State.PENDING, Kind.WORKFLOW, "big", "approvals", "[]", idempotency_key="big",
                             created_at=1.0)]
    for i in range(n):
        branch = f"big.{i}"
        records += [
            PromiseRecord(branch, State.PENDING, Kind.WORKFLOW, "big", "review", "[]", parent="big",
                          idempotency_key=branch, created_at=2.0),
            PromiseRecord(f"{branch}.1", State.RESOLVED, Kind.STEP, "big", "m.check", "[]", parent=branch,
                          idempotency_key=f"{branch}.1", created_at=2.0, value="1", settled_at=3.0),
            PromiseRecord(f"{branch}.ok", State.PENDING, Kind.PROMISE, "big", "", "", parent=branch,
                          idempotency_key=f"{branch}.ok", created_at=3.0)]
    with Vow(f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
        vow.store.apply(Batch(creates=records))
        with TestClient(create_app(vow), base_url="http://127.0.0.1:8765") as test_client:
            page = test_client.get("/run/big")
    assert page.status_code == 200
    drawn = page.text.count('<tr class="bar ')
    assert drawn == 500
    assert f"{len(records) - drawn} more promises are not drawn" in page.text, \
        re.findall(r"\d+ more promises", page.text)
    forms = page.text.count('action="/action/resolve"')
    assert forms == 100, forms
    assert f"{n - forms} more are waiting" in page.text
    assert len(page.content) < 1_000_000, len(page.content)
