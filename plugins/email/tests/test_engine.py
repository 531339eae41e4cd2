"""End to end through the engine: the email branch fails, is retried (or not) as its error says, and mails once."""

from __future__ import annotations

import json

import pytest
import respx

from vow import Constant, Context, PermanentError, Vow
from vow.channels import deliver
from vow.simulation import Ledger, stable_uuid

KEY = "notify/42.email"
MESSAGE = {"to": "ada@example.com", "subject": "Order 42 confirmed", "body": "Thanks for your order."}
RETRY = Constant(delay=0.01, max_attempts=3, rate_limit_delay=0.01)  # a rate limit too: at least its Retry-After
MESSAGE_ID = f"<{stable_uuid(KEY)}@shop.example>"


def notify_over(options: dict, faults: dict | None = None):
    def notify(ctx: Context, event: dict):
        handle = yield ctx.begin_run(deliver, "email", MESSAGE, options, faults).options(
            id=f"{ctx.id}.email", retry=RETRY)
        return (yield handle)
    return notify


def smtp_options(server) -> dict:
    return {"transport": "smtp", "from_addr": "Shop <orders@shop.example>", "timeout": 5,
            "smtp": {"host": server.host, "port": server.port, "security": "none"}}


def run(tmp_path, notify):
    with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
        vow.register(notify)
        return vow.run("notify/42", notify, {"order_id": 42})


def test_injected_failure_on_attempt_1_delivers_exactly_one_smtp_message(tmp_path, email_plain_smtp):
    notify = notify_over(smtp_options(email_plain_smtp), {"fail_attempts": [1], "message": "mail relay unavailable"})

    receipt = run(tmp_path, notify)
    again = run(tmp_path, notify)  # a restarted client on the same store: the stored receipt, nothing re-sent

    assert (receipt["transport"], receipt["attempt"], receipt["idempotency_key"]) == ("smtp", 2, KEY)
    assert receipt["message_id"] == MESSAGE_ID and again == receipt
    [(envelope, mail)] = email_plain_smtp.recorder.messages
    assert envelope.rcpt_tos == ["ada@example.com"]
    assert mail["Message-ID"] == MESSAGE_ID and mail["X-Idempotency-Key"] == KEY


def test_server_451_is_retried_and_delivered_once(tmp_path, email_plain_smtp):
    email_plain_smtp.recorder.data_replies = ["451 4.3.0 Temporary local problem"]
    receipt = run(tmp_path, notify_over(smtp_options(email_plain_smtp)))
    assert receipt["attempt"] == 2
    assert [mail["Message-ID"] for _, mail in email_plain_smtp.recorder.messages] == [MESSAGE_ID]


def test_server_550_fails_the_branch_at_once(tmp_path, email_plain_smtp):
    email_plain_smtp.recorder.rcpt_reply = "550 5.1.1 Mailbox unavailable"
    with pytest.raises(PermanentError, match="550: 5.1.1 Mailbox unavailable"):
        run(tmp_path, notify_over(smtp_options(email_plain_smtp)))
    assert email_plain_smtp.recorder.messages == []


def test_simulated_first_attempt_fails_is_retried_and_mails_once(tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    notify = notify_over({"latency": 0.01, "ledger": str(ledger)}, {"fail_attempts": [1]})
    receipt = run(tmp_path, notify)
    assert (receipt["transport"], receipt["attempt"], receipt["duplicate"]) == ("simulated", 2, False)
    assert run(tmp_path, notify) == receipt
    assert [(d.key, d.duplicates) for d in Ledger(ledger).deliveries("email")] == [(KEY, 0)]


def test_resend_rate_limit_is_retried_with_the_same_idempotency_key(tmp_path, monkeypatch):
    monkeypatch.setenv("RESEND_API_KEY", "re_test_123")
    notify = notify_over({"from_addr": "orders@shop.example"})
    throttled = {"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests"}
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://api.resend.com/emails").mock(side_effect=[
            respx.MockResponse(429, headers={"Retry-After": "0.05"}, json=throttled),
            respx.MockResponse(200, json={"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}),
        ])
        receipt = run(tmp_path, notify)
    assert (receipt["transport"], receipt["attempt"]) == ("resend", 2)
    assert [call.request.headers["Idempotency-Key"] for call in route.calls] == [KEY, KEY]
    assert json.loads(route.calls[0].request.content) == json.loads(route.calls[1].request.content)
