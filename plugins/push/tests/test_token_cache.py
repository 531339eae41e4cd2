"""The access-token cache: one exchange per account, and no account waits for another's exchange."""

from __future__ import annotations

import threading

import httpx
import respx
from cryptography.hazmat.primitives.asymmetric import rsa

from vow_push.auth import ServiceAccount, ServiceAccountToken

SLOW_URI = "https://slow.example.test/token"
QUICK_URI = "https://oauth2.googleapis.com/token"


def account(key: rsa.RSAPrivateKey, email: str, token_uri: str) -> ServiceAccountToken:
    return ServiceAccountToken(ServiceAccount(email, key, "kid-1", token_uri, "demo-project"))


def in_thread(target) -> tuple[threading.Thread, threading.Event, list]:
    done, out = threading.Event(), []

    def run() -> None:
        try:
            out.append(target())
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done, out


def test_a_slow_exchange_for_one_account_does_not_block_another(push_rsa_key) -> None:
    slow = account(push_rsa_key, "slow@demo.iam.gserviceaccount.com", SLOW_URI)
    quick = account(push_rsa_key, "quick@demo.iam.gserviceaccount.com", QUICK_URI)
    in_exchange, release = threading.Event(), threading.Event()

    def slow_endpoint(request: httpx.Request) -> httpx.Response:
        in_exchange.set()
        release.wait(60)
        return httpx.Response(200, json={"access_token": "ya29.slow", "expires_in": 3599})

    with respx.mock(assert_all_called=True) as router, httpx.Client() as client:
        router.post(SLOW_URI).mock(side_effect=slow_endpoint)
        router.post(QUICK_URI).respond(200, json={"access_token": "ya29.quick", "expires_in": 3599})
        slow_thread, _, slow_out = in_thread(lambda: slow.get(client))
        try:
            assert in_exchange.wait(60), "the slow account's exchange never started"
            quick_thread, quick_done, quick_out = in_thread(lambda: quick.get(client))
            # With one process-wide lock this waits until the slow exchange is released: it fails.
            assert quick_done.wait(30), "the quick account waited for another account's token exchange"
            assert quick_out == ["ya29.quick"]
        finally:
            release.set()
            slow_thread.join(60)
        assert slow_out == ["ya29.slow"]


def test_many_sends_for_one_account_share_one_exchange(push_rsa_key) -> None:
    token = account(push_rsa_key, "busy@demo.iam.gserviceaccount.com", SLOW_URI)
    in_exchange, release = threading.Event(), threading.Event()

    def endpoint(request: httpx.Request) -> httpx.Response:
        in_exchange.set()
        release.wait(60)
        return httpx.Response(200, json={"access_token": "ya29.shared", "expires_in": 3599})

    with respx.mock as router, httpx.Client() as client:
        route = router.post(SLOW_URI).mock(side_effect=endpoint)
        first, _, first_out = in_thread(lambda: token.get(client))
        assert in_exchange.wait(60)
        others = [in_thread(lambda: token.get(client)) for _ in range(8)]  # they queue behind the first
        release.set()
        for thread, _, _ in [(first, None, None), *others]:
            thread.join(60)
    assert first_out + [out[0] for _, _, out in others] == ["ya29.shared"] * 9
    assert route.call_count == 1
