"""End to end through the engine: the sms branch fails, is retried or not as its error says, and texts once."""

from __future__ import annotations

import time
import urllib.parse

import httpx
import pytest
import respx

from vow import Constant, Context, PermanentError, Vow
from vow.channels import deliver
from vow.simulation import Ledger

KEY = "notify/42.sms"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
MESSAGE = {"to": "+14155550123", "body": "Order 42 is confirmed."}
RETRY = Constant(delay=0.01, max_attempts=3, rate_limit_delay=0.01)  # a rate limit too: at least its Retry-After


@pytest.fixture
def no_twilio_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))


@pytest.fixture
def twilio_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "test-auth-token")


def notify_over(options: dict, faults: dict | None = None):
    def notify(ctx: Context, event: dict):
        handle = yield ctx.begin_run(deliver, "sms", MESSAGE, options, faults).options(id=f"{ctx.id}.sms", retry=RETRY)
        return (yield handle)
    return notify


def test_simulated_first_attempt_fails_is_retried_and_texts_once(tmp_path, no_twilio_secrets) -> None:
    ledger_path = tmp_path / "ledger.sqlite"
    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    notify = notify_over({"latency": 0.01, "ledger": str(ledger_path)},  # auto: simulated without secrets
                         {"fail_attempts": [1], "message": "sms gateway unavailable"})
    with Vow(store=store) as vow:
        vow.register(notify)
        receipt = vow.run("notify/42", notify, {"order_id": 42})
    assert (receipt["channel"], receipt["transport"], receipt["idempotency_key"]) == ("sms", "simulated", KEY)
    assert receipt["attempt"] == 2 and receipt["duplicate"] is False

    # A restarted client on the same store gets the stored receipt: nothing is sent again.
    with Vow(store=store) as vow:
        vow.register(notify)
        assert vow.run("notify/42", notify, {"order_id": 42}) == receipt

    assert [(d.key, d.duplicates) for d in Ledger(ledger_path).deliveries("sms")] == [(KEY, 0)]


def test_twilio_20429_is_retried_after_retry_after_and_the_key_rides_the_callback(tmp_path, twilio_secrets) -> None:
    notify = notify_over({"transport": "twilio", "from_number": "+15005550006",
                          "status_callback": "https://hooks.example.com/sms/status"})
    throttled = httpx.Response(429, headers={"Retry-After": "1"},
                               json={"code": 20429, "message": "Too Many Requests", "status": 429})
    accepted = httpx.Response(201, json={"sid": "SM" + "7" * 32, "status": "queued", "num_segments": "1"})
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(URL).mock(side_effect=[throttled, accepted])
        started = time.monotonic()
        with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
            vow.register(notify)
            receipt = vow.run("notify/42", notify, {"order_id": 42})
        elapsed = time.monotonic() - started
    assert route.call_count == 2
    assert elapsed >= 0.9  # Twilio's Retry-After (1 s), not the policy's 0.01 s
    assert (receipt["message_id"], receipt["attempt"], receipt["transport"]) == ("SM" + "7" * 32, 2, "twilio")
    for call in route.calls:
        callback = dict(urllib.parse.parse_qsl(call.request.content.decode()))["StatusCallback"]
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query) == {"vow_key": [KEY]}


def test_twilio_21610_fails_the_branch_at_once(tmp_path, twilio_secrets) -> None:
    notify = notify_over({"transport": "twilio", "from_number": "+15005550006"})
    unsubscribed = httpx.Response(400, json={"code": 21610, "message": "Attempt to send to unsubscribed recipient",
                                             "status": 400})
    with respx.mock() as mock:
        route = mock.post(URL).mock(return_value=unsubscribed)
        with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
            vow.register(notify)
            with pytest.raises(PermanentError, match="21610: Attempt to send to unsubscribed recipient"):
                vow.run("notify/42", notify, {"order_id": 42})
    assert route.call_count == 1  # permanent: the retry policy's other two attempts are not used


# -- a rate limit is waited out (on the engine's warped clock: no test sleeps) ---------------------

def notify_with_the_default_policy(ctx: Context, event: dict):
    return (yield ctx.run(deliver, "sms", MESSAGE, {"transport": "twilio", "from_number": "+15005550006"})
            .options(id=f"{ctx.id}.sms"))


QUEUE_FULL = {"code": 21611, "message": "This 'From' number has exceeded the maximum number of queued messages",
              "more_info": "https://www.twilio.com/docs/errors/21611", "status": 400}
TOO_MANY = {"code": 20429, "message": "Too Many Requests", "status": 429}


@pytest.mark.parametrize(("status", "body"), [(400, QUEUE_FULL), (429, TOO_MANY), (429, None)],
                         ids=["21611", "20429", "bare-429"])
def test_twilio_refusing_for_its_rate_for_a_minute_texts_once(tmp_path, twilio_secrets, monkeypatch,
                                                              status: int, body: dict | None) -> None:
    """21611 (the sender's queue is full; it drains at the sender's rate) and a 429 without
    Retry-After were retried like a 500 by the default policy: 8 attempts within 12.7 s, then the
    text was lost. Twilio refuses here for 60 s of the engine's clock, then accepts."""
    from tests.support import warped_engine_clock

    answers: list[int] = []
    first: list[float] = []

    def twilio(request: httpx.Request) -> httpx.Response:
        first.append(first[0] if first else clock.now())
        if clock.now() - first[0] < 60.0:
            answers.append(status)
            return httpx.Response(status, json=body) if body else httpx.Response(status, text="Too Many Requests")
        answers.append(201)
        return httpx.Response(201, json={"sid": "SM" + "7" * 32, "status": "queued", "num_segments": "1"})

    with warped_engine_clock(monkeypatch) as clock, respx.mock(assert_all_called=True) as mock:
        route = mock.post(URL).mock(side_effect=twilio)
        with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
            vow.register(notify_with_the_default_policy)
            receipt = vow.run("notify/42", notify_with_the_default_policy, {"order_id": 42})
    assert answers.count(201) == 1 and answers[-1] == 201 and route.call_count == len(answers) >= 2
    assert receipt["message_id"] == "SM" + "7" * 32 and receipt["attempt"] == len(answers)
    forms = {call.request.content for call in route.calls}
    assert len(forms) == 1  # the same message every time
    assert dict(urllib.parse.parse_qsl(forms.pop().decode())) == {
        "To": MESSAGE["to"], "Body": MESSAGE["body"], "From": "+15005550006"}
    assert clock.waited >= 60.0
