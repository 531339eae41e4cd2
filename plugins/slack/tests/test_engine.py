"""End to end through the engine: a Slack branch fails once, is retried, and posts exactly once."""

from __future__ import annotations

import httpx
import pytest
import respx

from vow import Constant, Context, Vow
from vow.channels import deliver
from vow.simulation import Ledger

KEY = "notify/42.slack"


@pytest.fixture
def no_slack_secrets(monkeypatch, tmp_path):
    for name in ("SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))


def test_failed_first_attempt_is_retried_and_delivered_once(tmp_path, no_slack_secrets):
    ledger_path = tmp_path / "ledger.sqlite"
    store = f"sqlite:{tmp_path / 'vow.sqlite'}"

    def notify(ctx: Context, event: dict):
        message = {"to": "#orders", "subject": f"Order {event['order_id']}", "body": "confirmed"}
        options = {"latency": 0.01, "ledger": str(ledger_path)}  # auto: simulated without secrets
        faults = {"fail_attempts": [1], "message": "slack unavailable"}
        handle = yield ctx.begin_run(deliver, "slack", message, options, faults).options(
            id=f"{ctx.id}.slack", retry=Constant(delay=0.01, max_attempts=3))
        return (yield handle)

    with Vow(store=store) as vow:
        vow.register(notify)
        receipt = vow.run("notify/42", notify, {"order_id": 42})
    assert receipt["channel"] == "slack" and receipt["transport"] == "simulated"
    assert receipt["attempt"] == 2 and receipt["duplicate"] is False
    assert receipt["idempotency_key"] == KEY
    assert receipt["message_id"].startswith("#orders:")

    # A new client on the same store (a restart) gets the stored receipt: nothing is sent again.
    with Vow(store=store) as vow:
        vow.register(notify)
        assert vow.run("notify/42", notify, {"order_id": 42}) == receipt

    deliveries = Ledger(ledger_path).deliveries("slack")
    assert [(d.key, d.duplicates) for d in deliveries] == [(KEY, 0)]
    assert deliveries[0].payload["text"] == "*Order 42*\nconfirmed"


def test_lost_answer_is_recognised_by_metadata_and_not_posted_twice(tmp_path, no_slack_secrets, monkeypatch):
    """Attempt 1 reaches Slack but its answer is lost; attempt 2 finds the key and does not post."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-e2e")
    posted = {"type": "message", "ts": "1700000000.000100", "text": "*Order 42*\nconfirmed",
              "metadata": {"event_type": "vow_delivery", "event_payload": {"idempotency_key": KEY}}}

    def notify(ctx: Context, event: dict):
        message = {"to": "C0123ABCD", "subject": f"Order {event['order_id']}", "body": "confirmed"}
        handle = yield ctx.begin_run(deliver, "slack", message, {"transport": "bot"}).options(
            id=f"{ctx.id}.slack", retry=Constant(delay=0.01, max_attempts=3))
        return (yield handle)

    with respx.mock(assert_all_called=True) as mock:
        post = mock.post("https://slack.com/api/chat.postMessage").mock(
            side_effect=httpx.ReadTimeout("answer lost after Slack accepted the post"))
        history = mock.get("https://slack.com/api/conversations.history").mock(
            return_value=httpx.Response(200, json={"ok": True, "messages": [posted]}))
        with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
            vow.register(notify)
            receipt = vow.run("notify/42", notify, {"order_id": 42})
    assert post.call_count == 1 and history.call_count == 1
    assert receipt["duplicate"] is True and receipt["attempt"] == 2
    assert receipt["message_id"] == "C0123ABCD:1700000000.000100"
