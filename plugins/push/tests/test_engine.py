"""End to end through the engine: the push branch fails on attempt 1, is retried, and pushes once."""

from __future__ import annotations

import httpx
import pytest
import respx

from vow import Constant, Context, PermanentError, Vow
from vow.channels import deliver
from vow.simulation import Ledger, stable_uuid

KEY = "notify/42.push"
DEVICE = "5f0c" * 16
MESSAGE = {"to": DEVICE, "subject": "Order confirmed", "body": "Your order #42 is confirmed"}
APNS_URL = f"https://api.push.apple.com/3/device/{DEVICE}"
APNS = {"team_id": "TEAM123456", "key_id": "KEY1234567", "topic": "com.example.shop"}
RETRY = Constant(delay=0.01, max_attempts=3)


def notify_over(options: dict, faults: dict | None = None):
    def notify(ctx: Context, event: dict):
        handle = yield ctx.begin_run(deliver, "push", MESSAGE, options, faults).options(id=f"{ctx.id}.push",
                                                                                       retry=RETRY)
        return (yield handle)
    return notify


def test_simulated_push_fails_on_attempt_1_is_retried_and_delivered_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    ledger = tmp_path / "ledger.sqlite"
    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    notify = notify_over({"latency": 0.01, "ledger": str(ledger)},  # auto: simulated without credentials
                         {"fail_attempts": [1], "message": "Push service unavailable — will retry"})
    with Vow(store=store) as vow:
        vow.register(notify)
        receipt = vow.run("notify/42", notify, {"order_id": 42})
    assert (receipt["channel"], receipt["transport"], receipt["idempotency_key"]) == ("push", "simulated", KEY)
    assert receipt["attempt"] == 2 and receipt["duplicate"] is False

    # A restarted client on the same store joins the finished run: nothing is pushed again.
    with Vow(store=store) as vow:
        vow.register(notify)
        assert vow.run("notify/42", notify, {"order_id": 42}) == receipt

    assert [(d.key, d.duplicates) for d in Ledger(ledger).deliveries("push")] == [(KEY, 0)]


def test_apns_503_is_retried_with_the_same_apns_id(tmp_path, push_p8, monkeypatch) -> None:
    monkeypatch.setenv("APNS_AUTH_KEY", push_p8)
    notify = notify_over({"apns": APNS})
    with respx.mock(assert_all_called=True) as router:
        route = router.post(APNS_URL).mock(side_effect=[
            httpx.Response(503, json={"reason": "ServiceUnavailable"}),
            httpx.Response(200, headers={"apns-id": stable_uuid(KEY)}),
        ])
        with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
            vow.register(notify)
            receipt = vow.run("notify/42", notify, {"order_id": 42})
    assert route.call_count == 2
    assert {call.request.headers["apns-id"] for call in route.calls} == {stable_uuid(KEY)}
    assert (receipt["transport"], receipt["message_id"], receipt["attempt"]) == ("apns", stable_uuid(KEY), 2)


def test_an_unregistered_device_fails_the_branch_at_once(tmp_path, push_p8, monkeypatch) -> None:
    monkeypatch.setenv("APNS_AUTH_KEY", push_p8)
    notify = notify_over({"apns": APNS})
    with respx.mock as router:
        route = router.post(APNS_URL).respond(410, json={"reason": "Unregistered", "timestamp": 1700000000000})
        with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
            vow.register(notify)
            with pytest.raises(PermanentError, match="APNs answered HTTP 410: Unregistered"):
                vow.run("notify/42", notify, {"order_id": 42})
    assert route.call_count == 1  # permanent: the policy's other attempts are not used
