"""The APNs transport against respx: exact HTTP/2 request, provider token, apns-id, error classes."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from vow.channels import Message, build_channel
from vow.errors import ConfigError, PermanentError, RateLimitError, TransientError
from vow.faults import Faults, with_faults
from vow.leaf import LeafContext
from vow.simulation import stable_uuid
from vow.testing import endless_body
from vow_push import auth
from vow_push.apns import ApnsTransport

DEVICE = "5f0c" * 16
URL = f"https://api.push.apple.com/3/device/{DEVICE}"
SANDBOX_URL = f"https://api.sandbox.push.apple.com/3/device/{DEVICE}"
MESSAGE = Message(to=DEVICE, body="Your order #42 is confirmed", subject="Order confirmed",
                  data={"order_id": 42})
APNS_OPTIONS = {"team_id": "TEAM123456", "key_id": "KEY1234567", "topic": "com.example.shop"}
KEY = "notify/42.push"


def ctx(attempt: int = 1) -> LeafContext:
    return LeafContext(id=KEY, attempt=attempt)


@pytest.fixture
def apns(push_plugins, push_p8: str, monkeypatch: pytest.MonkeyPatch) -> ApnsTransport:
    monkeypatch.setenv("APNS_AUTH_KEY", push_p8)
    channel = build_channel("push", {"apns": APNS_OPTIONS}, plugins=push_plugins)
    assert isinstance(channel, ApnsTransport)  # "auto" found the APNs key
    return channel


def verify_es256(token: str, key: ec.EllipticCurvePrivateKey, push_jwt) -> tuple[dict, dict]:
    header, claims, signing_input, signature = push_jwt(token)
    assert len(signature) == 64  # raw r || s, as JWS requires, not DER
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    key.public_key().verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    return header, claims


def test_sends_the_exact_apns_request(apns: ApnsTransport, push_ec_key, push_jwt) -> None:
    apns_id = stable_uuid(KEY)
    with respx.mock(assert_all_called=True) as router:
        route = router.post(URL).respond(200, headers={"apns-id": apns_id})
        before = int(time.time())
        receipt = apns.send(MESSAGE, ctx())
    request = route.calls.last.request
    assert request.method == "POST" and str(request.url) == URL
    assert request.headers["apns-topic"] == "com.example.shop"
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert request.headers["apns-id"] == apns_id
    assert request.headers["apns-collapse-id"] == apns_id
    scheme, token = request.headers["authorization"].split(" ")
    assert scheme == "bearer"
    header, claims = verify_es256(token, push_ec_key, push_jwt)
    assert header == {"alg": "ES256", "kid": "KEY1234567"}
    assert claims["iss"] == "TEAM123456" and before <= claims["iat"] <= time.time()
    assert json.loads(request.content) == {
        "aps": {"alert": {"title": "Order confirmed", "body": "Your order #42 is confirmed"}},
        "order_id": 42, "vow_idempotency_key": KEY}
    assert (receipt.channel, receipt.transport, receipt.message_id, receipt.idempotency_key) == (
        "push", "apns", apns_id, KEY)
    assert receipt.detail == {"apns_id": apns_id, "host": "https://api.push.apple.com"}


def test_the_client_speaks_http2(apns: ApnsTransport) -> None:
    pool = apns._client._transport._pool
    assert pool._http2 is True


def test_a_retry_carries_the_same_apns_id_and_the_cached_provider_token(apns: ApnsTransport) -> None:
    with respx.mock as router:
        route = router.post(URL).mock(side_effect=[
            httpx.Response(503, json={"reason": "ServiceUnavailable"}),
            httpx.Response(200),
        ])
        with pytest.raises(TransientError):
            apns.send(MESSAGE, ctx(1))
        receipt = apns.send(MESSAGE, ctx(2))
    first, second = (call.request.headers for call in route.calls)
    assert first["apns-id"] == second["apns-id"] == stable_uuid(KEY)
    assert first["authorization"] == second["authorization"]
    assert (receipt.message_id, receipt.attempt) == (stable_uuid(KEY), 2)  # no apns-id answered: the sent one


def test_the_provider_token_is_renewed_after_50_minutes(apns: ApnsTransport, monkeypatch) -> None:
    with respx.mock as router:
        route = router.post(URL).respond(200)
        apns.send(MESSAGE, ctx())
        later = time.time() + 51 * 60
        monkeypatch.setattr(auth.time, "time", lambda: later)
        apns.send(MESSAGE, ctx())
    first, second = (call.request.headers["authorization"] for call in route.calls)
    assert first != second


def test_an_expired_provider_token_is_transient_and_renewed(apns: ApnsTransport) -> None:
    with respx.mock as router:
        route = router.post(URL).mock(side_effect=[
            httpx.Response(403, json={"reason": "ExpiredProviderToken"}),
            httpx.Response(200),
        ])
        with pytest.raises(TransientError) as caught:
            apns.send(MESSAGE, ctx(1))
        apns.send(MESSAGE, ctx(2))
    assert caught.value.code == "ExpiredProviderToken"
    first, second = (call.request.headers["authorization"] for call in route.calls)
    assert first != second  # ES256 signatures are randomised: a new token differs even in the same second


def test_sandbox_host_and_priority(push_plugins, push_p8, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APNS_AUTH_KEY", push_p8)
    channel = build_channel("push", {"transport": "apns", "apns": {**APNS_OPTIONS, "sandbox": True, "priority": 5}},
                            plugins=push_plugins)
    with respx.mock as router:
        route = router.post(SANDBOX_URL).respond(200, headers={"apns-id": "answered-id", "apns-unique-id": "u-1"})
        receipt = channel.send(Message(to=DEVICE, body="hi"), ctx())
    request = route.calls.last.request
    assert request.headers["apns-priority"] == "5"
    assert json.loads(request.content)["aps"] == {"alert": {"body": "hi"}}
    assert receipt.message_id == "answered-id"
    assert receipt.detail["apns_unique_id"] == "u-1"


def test_the_key_may_be_given_as_a_p8_file_path(push_plugins, push_p8, tmp_path, monkeypatch) -> None:
    path = tmp_path / "AuthKey_KEY1234567.p8"
    path.write_text(push_p8)
    monkeypatch.setenv("APNS_AUTH_KEY", str(path))
    assert isinstance(build_channel("push", {"apns": APNS_OPTIONS}, plugins=push_plugins), ApnsTransport)


@pytest.mark.parametrize(("status", "reason", "headers", "error", "retry_after"), [
    (429, "TooManyRequests", {"retry-after": "5"}, RateLimitError, 5.0),  # too many to one device token
    (429, "TooManyProviderTokenUpdates", {}, RateLimitError, None),  # the token renewed too often: wait it out
    (500, "InternalServerError", {}, TransientError, None),
    (503, "ServiceUnavailable", {}, TransientError, None),
    (503, "Shutdown", {}, TransientError, None),
    (400, "IdleTimeout", {}, TransientError, None),
    (400, "BadDeviceToken", {}, PermanentError, None),
    (400, "BadTopic", {}, PermanentError, None),
    (400, "DeviceTokenNotForTopic", {}, PermanentError, None),
    (403, "InvalidProviderToken", {}, PermanentError, None),
    (410, "Unregistered", {}, PermanentError, None),
    (410, "ExpiredToken", {}, PermanentError, None),
    (413, "PayloadTooLarge", {}, PermanentError, None),
])
def test_apns_errors_are_classified(apns: ApnsTransport, status, reason, headers, error, retry_after) -> None:
    with respx.mock as router:
        router.post(URL).respond(status, json={"reason": reason, "timestamp": 1700000000000}, headers=headers)
        with pytest.raises(error) as caught:
            apns.send(MESSAGE, ctx())
    assert type(caught.value) is error and caught.value.code == reason
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert f"APNs answered HTTP {status}: {reason}" == str(caught.value)


def test_an_error_without_a_reason_falls_back_to_the_status(apns: ApnsTransport) -> None:
    with respx.mock as router:
        router.post(URL).respond(502, text="bad gateway")
        with pytest.raises(TransientError) as caught:
            apns.send(MESSAGE, ctx())
    assert caught.value.code == "502"


@pytest.mark.parametrize(("status", "error"), [(503, TransientError), (400, PermanentError), (410, PermanentError)])
@pytest.mark.parametrize("reason", [["Unregistered"], {"r": "BadDeviceToken"}, 42, True])
def test_a_reason_that_is_not_text_falls_back_to_the_status(apns: ApnsTransport, status, error, reason) -> None:
    with respx.mock as router:
        router.post(URL).respond(status, json={"reason": reason})
        with pytest.raises(error) as caught:
            apns.send(MESSAGE, ctx())
    assert caught.value.code == str(status)
    assert str(caught.value).startswith(f"APNs answered HTTP {status}")


def test_a_connection_failure_is_transient(apns: ApnsTransport) -> None:
    with respx.mock as router:
        router.post(URL).mock(side_effect=httpx.ReadTimeout("timed out"))
        with pytest.raises(TransientError, match="APNs"):
            apns.send(MESSAGE, ctx())


def test_an_injected_status_maps_like_a_real_apns_answer(apns: ApnsTransport) -> None:
    gone = with_faults(apns, Faults(fail_attempts=[1], status=410, message="Unregistered"))
    with pytest.raises(PermanentError) as caught:
        gone.send(MESSAGE, ctx(1))
    assert caught.value.code == "Unregistered"
    busy = with_faults(apns, Faults(fail_attempts=[1], status=503, retry_after=1.5))
    with pytest.raises(TransientError) as caught:
        busy.send(MESSAGE, ctx(1))
    assert caught.value.retry_after == 1.5


@pytest.mark.parametrize(("message", "complaint"), [
    (Message(to="5f0c" * 15, body="hi"), "64 hex characters"),
    (Message(to="<" + "5f0c" * 16 + ">", body="hi"), "no spaces or <>"),
    (Message(to=" ".join(["5f0c5f0c"] * 8), body="hi"), "is not a device token"),
    (Message(to="fGx7Qw3nRk2:APA91bH" + "x" * 140, body="hi"), "64 hex characters"),
    (Message(to=DEVICE, body=""), "body: must be non-empty"),
    (Message(to=DEVICE, body="hi", data={"aps": {}}), "key 'aps' is reserved by APNs"),
    (Message(to=DEVICE, body="é" * 2100), "over the 4096-byte limit"),
])
def test_validation_says_what_is_allowed(apns: ApnsTransport, message: Message, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        apns.validate(message)


@pytest.mark.parametrize(("options", "complaint"), [
    ({"team_id": "T", "key_id": "K"}, r"apns\.topic: required for the apns transport"),
    ({"team_id": "T", "topic": "com.example.shop"}, r"apns\.key_id: required for the apns transport"),
])
def test_apns_options_are_checked(push_plugins, push_p8, monkeypatch, options, complaint) -> None:
    monkeypatch.setenv("APNS_AUTH_KEY", push_p8)
    with pytest.raises(ConfigError, match=complaint):
        build_channel("push", {"transport": "apns", "apns": options}, plugins=push_plugins)


def test_a_missing_key_is_a_config_error_naming_the_variable(push_plugins) -> None:
    with pytest.raises(ConfigError, match="missing secret: set the environment variable APNS_AUTH_KEY"):
        build_channel("push", {"transport": "apns", "apns": APNS_OPTIONS}, plugins=push_plugins)


def test_an_unusable_key_is_a_config_error(push_plugins, push_rsa_key, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("APNS_AUTH_KEY", str(tmp_path / "missing.p8"))
    with pytest.raises(ConfigError,
                       match=r"\$APNS_AUTH_KEY: holds neither a PEM key .* nor the path of a readable .p8 file"):
        build_channel("push", {"apns": APNS_OPTIONS}, plugins=push_plugins)
    from cryptography.hazmat.primitives import serialization

    rsa_pem = push_rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode()
    monkeypatch.setenv("APNS_AUTH_KEY", rsa_pem)
    with pytest.raises(ConfigError, match="must be the P-256"):
        build_channel("push", {"apns": APNS_OPTIONS}, plugins=push_plugins)


def test_key_material_without_its_pem_header_is_not_echoed(push_plugins, monkeypatch) -> None:
    monkeypatch.setenv("APNS_AUTH_KEY", "MIGTAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHkwdwIBAQQgSECRET")
    with pytest.raises(ConfigError) as caught:
        build_channel("push", {"apns": APNS_OPTIONS}, plugins=push_plugins)
    assert "SECRET" not in str(caught.value) and "$APNS_AUTH_KEY" in str(caught.value)


def test_the_provider_token_is_made_by_pyjwt_and_verifies_with_it(apns: ApnsTransport, push_ec_key) -> None:
    import importlib.metadata

    import jwt

    assert any(r.startswith("PyJWT") for r in importlib.metadata.requires("vow-push") or [])
    with respx.mock(assert_all_called=True) as router:
        route = router.post(URL).respond(200, headers={"apns-id": stable_uuid(KEY)})
        apns.send(MESSAGE, ctx())
    token = route.calls.last.request.headers["authorization"].split(" ")[1]
    claims = jwt.decode(token, push_ec_key.public_key(), algorithms=["ES256"])
    assert claims["iss"] == "TEAM123456" and jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "KEY1234567"}


def test_an_answer_of_100_mb_is_not_read_whole(apns: ApnsTransport) -> None:
    read: list[int] = []
    with respx.mock as router:
        router.post(URL).mock(return_value=httpx.Response(410, content=endless_body(read, b'{"reason": "Unre')))
        with pytest.raises(PermanentError) as caught:
            apns.send(MESSAGE, ctx())
    assert caught.value.code == "410"
    assert len(read) <= 2, f"read {len(read)} MiB of the answer"
