"""The console in a real headless Chromium, served by a real ``vow ui`` subprocess.

Runs are made in this process through the public API on the sandbox's SQLite file, except the
gated run of the Resolve test, which runs in its own ``vow run`` process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vow import Context, PermanentError, TransientError, Vow
from vow.records import State
from vow.retry import Constant
from vow.testing import wait_until

XSS = "<script>alert(1)</script>"
GATED = Path(__file__).with_name("gated.yaml")


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(*args, **kwargs)


def send(ctx: Any, to: str) -> str:
    """A leaf that fails on its first attempt (a provider hiccup) and succeeds on the second."""
    if ctx.attempt == 1:
        raise TransientError("provider timed out")
    return f"sent to {to}"


def deliver(ctx: Any, to: str) -> str:
    return f"sent to {to}"


def notify(ctx: Context, who: str):
    flaky = yield ctx.begin_run(send, who).options(id=f"{ctx.id}.flaky", retry=Constant(delay=0.05, max_attempts=3))
    steady = yield ctx.begin_run(deliver, who).options(id=f"{ctx.id}.steady")
    return [(yield flaky), (yield steady)]


def approval(ctx: Context, note: str):
    gate = yield ctx.promise(id=f"{ctx.id}.approval")
    value = yield gate
    return {"approved": value, "note": note}


def make_runs(store: str) -> None:
    """A finished run with a retried branch, a pending run (stored for a worker), and a run that
    waits on an outside promise (its process gone: the promise stays pending in the store)."""
    with Vow(store) as vow:
        vow.register(notify)
        vow.register(approval)
        assert vow.run("done/1", notify, "ada@example.com") == ["sent to ada@example.com"] * 2
        vow.submit("waiting/1", notify, "bob@example.com")
        vow.begin_run("approve/1", approval, "needs a yes")
        wait_until(lambda: vow.get("approve/1.approval"), message="the run stores its outside promise")


def test_the_list_shows_a_finished_and_a_pending_run(sandbox: Any, browser: Any) -> None:
    make_runs(sandbox.store)
    console = sandbox.console()
    page = browser
    page.goto(console.url + "/")
    done = page.locator('tr.run[data-id="done/1"]')
    waiting = page.locator('tr.run[data-id="waiting/1"]')
    expect(done.locator(".badge")).to_have_text("resolved")
    expect(done.locator("td.counts")).to_have_text("2 / 0 / 0")  # branches ok / failed / pending
    expect(waiting.locator(".badge")).to_have_text("pending")
    expect(waiting).to_contain_text("notify")
    # the list follows the store: a run canceled by another process changes state in place
    page.evaluate("window.__same_page = 'yes'")
    canceled = sandbox.vow("cancel", "waiting/1")
    assert canceled.returncode == 0, canceled.stderr
    expect(waiting.locator(".badge")).to_have_text("canceled")
    assert page.evaluate("window.__same_page") == "yes"
    # the state filter
    page.select_option("select[name=state]", "canceled")
    page.click("form.filters button[type=submit]")
    expect(page.locator('tr.run[data-id="waiting/1"]')).to_be_visible()
    expect(page.locator('tr.run[data-id="done/1"]')).to_have_count(0)
    assert "state=canceled" in page.url


def test_the_timeline_shows_the_retried_branch_with_two_attempts(sandbox: Any, browser: Any) -> None:
    make_runs(sandbox.store)
    console = sandbox.console()
    page = browser
    page.goto(f"{console.url}/run/{quote('done/1', safe='')}")
    bar = page.locator('tr.bar[data-id="done/1.flaky"]')
    expect(bar).to_have_attribute("data-attempts", "2")
    expect(bar.locator("td.attempts")).to_have_text("2")
    attempts = bar.locator("rect.seg.attempt")
    expect(attempts).to_have_count(2)
    expect(bar.locator('rect.seg.attempt.failed[data-attempt="1"]')).to_have_count(1)
    expect(bar.locator('rect.seg.attempt.ok[data-attempt="2"]')).to_have_count(1)
    expect(bar.locator('rect.seg.backoff[data-attempt="2"]')).to_have_count(1)  # the back-off between them
    expect(bar.locator("td.key")).to_have_text("done/1.flaky")  # the leaf's idempotency key
    expect(page.locator('tr.detail[data-for="done/1.flaky"]')).to_contain_text("attempt 1 failed")
    steady = page.locator('tr.bar[data-id="done/1.steady"]')
    expect(steady).to_have_attribute("data-attempts", "1")
    # the bars sit on the run's time axis: the retried branch ends after the steady one started
    x_fail = float(bar.locator('rect.seg.attempt.failed').get_attribute("x").rstrip("%"))
    x_ok = float(bar.locator('rect.seg.attempt.ok').get_attribute("x").rstrip("%"))
    assert 0 <= x_fail < x_ok <= 100


def test_resolve_wakes_a_gated_run_in_another_process_and_the_page_shows_it_finish(sandbox: Any, browser: Any) -> None:
    runner = sandbox.popen("run", str(GATED), "--set", "order=G-7")
    try:
        from vow.stores.sqlite import SQLiteStore

        store = SQLiteStore(sandbox.store_file)
        try:
            gate = wait_until(lambda: store.get("gated/G-7.approval"), 60, "the gated run stores its gate",
                              proc=runner)
            assert gate.state is State.PENDING
        finally:
            store.close()
        console = sandbox.console()
        page = browser
        page.goto(f"{console.url}/run/{quote('gated/G-7', safe='')}")
        expect(page.locator("#run-state")).to_have_text("pending")
        expect(page.locator("p.hint")).to_contain_text("another process")
        page.evaluate("window.__same_page = 'yes'")  # gone if the page reloads
        form = page.locator('form.promise[data-key="gated/G-7.approval"]')
        form.locator("input[name=value]").fill('{"by": "ada"}')
        form.locator("button.resolve").click()
        expect(page.locator("#note")).to_contain_text("gated/G-7.approval resolved")
        expect(page.locator("#run-state")).to_have_text("resolved", timeout=60_000)
        expect(page.locator('tr.bar[data-id="gated/G-7.slack"] .badge')).to_have_text("resolved")
        assert page.evaluate("window.__same_page") == "yes"  # updated live, never reloaded
        out, err = runner.communicate(timeout=60)
        assert runner.returncode == 0, out + err
        assert "succeeded" in out
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(30)


def test_a_script_in_a_runs_argument_renders_as_text(sandbox: Any, browser: Any) -> None:
    with Vow(sandbox.store) as vow:
        vow.register(notify)
        vow.submit(f"xss/{XSS}", notify, XSS)
    console = sandbox.console()
    page = browser
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{console.url}/?name={quote(XSS)}")  # a reflected filter value, too
    expect(page.locator("input[name=name]")).to_have_value(XSS)
    page.goto(console.url + "/")
    row = page.locator("tr.run").filter(has_text="xss/")
    expect(row.locator("a")).to_have_text(f"xss/{XSS}")
    row.locator("a").click()
    expect(page.locator("h1.run-id")).to_have_text(f"xss/{XSS}")
    page.locator("details.args summary").click()
    expect(page.locator("details.args pre")).to_contain_text(XSS)
    assert page.locator("main script").count() == 0  # nothing became an element
    assert dialogs == []


def test_runs_whose_ids_a_path_cannot_carry_open_from_the_list(sandbox: Any, browser: Any) -> None:
    """A browser resolves a path segment "." or ".." away (as it does %2e), and the path route took no
    line break: the runs ".." and "." opened the runs list and a "No such run", and "line\nbreak" a 404."""
    odd = ["..", ".", "line\nbreak", "a/../b", "100%/ü"]
    with Vow(sandbox.store) as vow:
        vow.register(notify)
        for run_id in odd:
            vow.submit(run_id, notify, "ada@example.com")
    console = sandbox.console()
    page = browser
    for n, run_id in enumerate(odd):
        page.goto(console.url + "/")
        row = page.locator("tr.run").nth(len(odd) - 1 - n)  # newest first
        assert row.get_attribute("data-id") == run_id
        row.locator("a").click()
        expect(page.locator("h1.run-id")).to_have_count(1)
        assert page.locator("h1.run-id").text_content() == run_id
        expect(page.locator("body")).to_have_attribute("data-updates", "1")  # its live region is fed too
        assert page.locator("#live .badge").first.text_content() == "pending"


def refuse(ctx: Any) -> str:
    raise PermanentError("mailbox full\rtry another address")  # a provider's reply with a bare carriage return


def refused(ctx: Context):
    return (yield ctx.run(refuse))


def test_an_error_with_a_carriage_return_survives_the_live_update(sandbox: Any, browser: Any) -> None:
    """A bare CR ends a line of a server-sent event: sent as it is, the rest of that line of the page was lost."""
    with Vow(sandbox.store) as vow:
        vow.register(refused)
        try:
            vow.run("cr/1", refused)
        except PermanentError:
            pass
    console = sandbox.console()
    page = browser
    page.goto(f"{console.url}/run/cr%2F1")
    expect(page.locator("body")).to_have_attribute("data-updates", "1")  # the live region was replaced once
    expect(page.locator("#live p.error")).to_contain_text("try another address")
    expect(page.locator("#live details.args")).to_have_count(1)  # the markup after the error is all there


def test_off_loopback_the_console_needs_its_token(sandbox: Any, browser: Any) -> None:
    make_runs(sandbox.store)
    refused = sandbox.vow("ui", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2
    assert "--token or VOW_UI_TOKEN" in refused.stderr
    token = "correct-horse-battery-staple"
    console = sandbox.console("--token", token, host="127.0.0.2")  # another address than 127.0.0.1
    page = browser
    response = page.goto(console.url + "/")
    assert response.status == 401
    expect(page.locator("body")).to_contain_text("needs its token")
    assert page.goto(console.url + "/?token=wrong").status == 401
    response = page.goto(console.url + f"/?token={token}")
    assert response.status == 200
    assert "token" not in page.url  # moved into an HttpOnly cookie, out of the address bar
    expect(page.locator('tr.run[data-id="done/1"]')).to_be_visible()
    page.goto(f"{console.url}/run/{quote('done/1', safe='')}")  # the cookie carries it from now on
    expect(page.locator("h1.run-id")).to_have_text("done/1")
    assert page.evaluate("document.cookie") == ""  # not readable by scripts


def test_actions_without_the_csrf_token_or_from_another_origin_are_refused(sandbox: Any, browser: Any) -> None:
    make_runs(sandbox.store)
    console = sandbox.console()
    page = browser
    page.goto(f"{console.url}/run/{quote('approve/1', safe='')}")
    csrf = page.locator('form.promise input[name=csrf]').get_attribute("value")
    assert csrf

    def post(body: str, **headers: str) -> int:
        return page.evaluate(
            "([body, headers]) => fetch('/action/resolve', {method: 'POST', body, headers: "
            "Object.assign({'Content-Type': 'application/x-www-form-urlencoded'}, headers)}).then(r => r.status)",
            [body, headers])

    assert post("id=approve%2F1.approval&value=yes") == 403  # no token
    assert post("id=approve%2F1.approval&value=yes&csrf=guess") == 403  # a wrong one
    # the right token, sent from another site (a request the browser marks cross-site)
    other = page.context.request.post(f"{console.url}/action/resolve",
                                      form={"id": "approve/1.approval", "value": "yes", "csrf": csrf},
                                      headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert other.status == 403
    assert page.context.request.get(f"{console.url}/action/resolve").status == 405  # actions are POSTs only
    with Vow(sandbox.store) as vow:
        assert vow.get("approve/1.approval").state is State.PENDING  # none of them did anything
    # The console's own form does it.
    form = page.locator('form.promise[data-key="approve/1.approval"]')
    form.locator("input[name=value]").fill("yes")
    form.locator("button.resolve").click()
    expect(page.locator("#note")).to_contain_text("resolved")
    with Vow(sandbox.store) as vow:
        assert vow.get("approve/1.approval").state is State.RESOLVED


def test_screenshot_of_an_image_run_for_the_readme(sandbox: Any, browser: Any) -> None:
    """The image run's page shows its images inline; the README's screenshot is taken here."""
    examples = Path(__file__).resolve().parents[3] / "examples"
    ran = sandbox.vow("run", str(examples / "image-variations.yaml"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    ran = sandbox.vow("run", str(examples / "order-confirmed.yaml"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    make_runs(sandbox.store)
    console = sandbox.console()
    page = browser
    page.goto(console.url + "/")
    run_id = page.locator("tr.run").filter(has_text="image-variations").get_attribute("data-id")
    page.goto(f"{console.url}/run/{quote(run_id, safe='')}")
    images = page.locator(".gallery img")
    expect(images).to_have_count(3)
    for i in range(3):  # each one loaded as a real picture
        expect(images.nth(i)).to_have_js_property("complete", True)
        assert images.nth(i).evaluate("img => img.naturalWidth") == 512
    expect(page.locator('tr.bar[data-id$=".abstract"]')).to_have_attribute("data-attempts", "2")
    expect(page.locator(".summary")).to_contain_text("image-variations")
    shot = os.environ.get("VOW_UI_SCREENSHOT")  # VOW_UI_SCREENSHOT=docs/console.png refreshes the README's
    if shot:
        page.screenshot(path=shot, full_page=True)


def test_resume_runs_a_stored_pipeline_run_in_the_console_and_cancel_stops_a_run(sandbox: Any, browser: Any) -> None:
    stored = sandbox.vow("run", str(GATED), "--set", "order=R-1", "--detach")
    assert stored.returncode == 0, stored.stderr
    make_runs(sandbox.store)
    console = sandbox.console()
    page = browser
    page.goto(f"{console.url}/run/{quote('gated/R-1', safe='')}")
    expect(page.locator("p.hint")).to_contain_text("Resume runs it in this console")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#note")).to_contain_text("resumed in this console")
    # the run now waits at its gate, in the console's process; resolving it lets it finish there
    form = page.locator('form.promise[data-key="gated/R-1.approval"]')
    form.locator("input[name=value]").fill("ok")
    form.locator("button.resolve").click()
    expect(page.locator("#run-state")).to_have_text("resolved", timeout=60_000)
    # a Python workflow the console does not have: Resume says who will run it
    page.goto(f"{console.url}/run/{quote('waiting/1', safe='')}")
    expect(page.locator("p.hint")).to_contain_text("not registered in this console")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#note")).to_contain_text("vow worker --app MODULE")
    # Cancel, after the confirmation
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-state")).to_have_text("canceled")
    with Vow(sandbox.store) as vow:
        assert vow.get("waiting/1").state is State.CANCELED
