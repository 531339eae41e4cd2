"""The FCM HTTP v1 transport against respx: the token exchange, the exact send, every error class."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from vow.channels import Message, build_channel
from vow.errors import ConfigError, PermanentError, RateLimitError, TransientError
from vow.faults import Faults, with_faults
from vow.leaf import LeafContext
from vow.simulation import stable_uuid
from vow.testing import cut_off_body, endless_body
from vow_push.fcm import FcmTransport

TOKEN_URL = "https://oauth2.googleapis.com/token"
SEND_URL = "https://fcm.googleapis.com/v1/projects/demo-project/messages:send"
DEVICE = "fGx7Qw3nRk2:APA91bH" + "x" * 140
NAME = "projects/demo-project/messages/0:1500415314455276%31bd1c9631bd1c96"
MESSAGE = Message(to=DEVICE, body="Your order #42 is confirmed", subject="Order confirmed",
                  data={"order_id": 42, "kind": "order.confirmed"})


def ctx(attempt: int = 1) -> LeafContext:
    return LeafContext(id="notify/42.push", attempt=attempt)


@pytest.fixture
def fcm(push_plugins, push_service_account: Path, monkeypatch: pytest.MonkeyPatch) -> FcmTransport:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(push_service_account))
    channel = build_channel("push", {"transport": "fcm"}, plugins=push_plugins)
    assert isinstance(channel, FcmTransport)
    return channel


def grant(router: respx.Router, token: str = "ya29.first", expires_in: int = 3599) -> respx.Route:
    return router.post(TOKEN_URL).respond(200, json={"access_token": token, "expires_in": expires_in,
                                                     "token_type": "Bearer"})


def test_sends_the_exact_fcm_request(fcm: FcmTransport) -> None:
    with respx.mock(assert_all_called=True) as router:
        grant(router)
        send = router.post(SEND_URL).respond(200, json={"name": NAME})
        receipt = fcm.send(MESSAGE, ctx())
    request = send.calls.last.request
    assert request.method == "POST"
    assert str(request.url) == SEND_URL
    assert request.headers["authorization"] == "Bearer ya29.first"
    collapse_id = stable_uuid("notify/42.push")
    assert json.loads(request.content) == {"message": {
        "token": DEVICE,
        "notification": {"title": "Order confirmed", "body": "Your order #42 is confirmed"},
        "data": {"order_id": "42", "kind": "order.confirmed", "vow_idempotency_key": "notify/42.push"},
        "android": {"notification": {"tag": collapse_id}},
        "apns": {"headers": {"apns-collapse-id": collapse_id}},
    }}
    assert (receipt.channel, receipt.transport, receipt.message_id) == ("push", "fcm", NAME)
    assert (receipt.to, receipt.idempotency_key, receipt.attempt, receipt.duplicate) == (
        DEVICE, "notify/42.push", 1, False)


def test_a_body_only_message_has_no_title(fcm: FcmTransport) -> None:
    with respx.mock as router:
        grant(router)
        send = router.post(SEND_URL).respond(200, json={"name": NAME})
        fcm.send(Message(to=DEVICE, body="hi"), ctx())
    assert json.loads(send.calls.last.request.content)["message"]["notification"] == {"body": "hi"}


def test_the_token_exchange_posts_an_rs256_jwt_signed_by_the_service_account(
        fcm: FcmTransport, push_rsa_key, push_jwt) -> None:
    with respx.mock as router:
        token_route = grant(router)
        router.post(SEND_URL).respond(200, json={"name": NAME})
        before = int(time.time())
        fcm.send(MESSAGE, ctx())
    request = token_route.calls.last.request
    assert str(request.url) == TOKEN_URL
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header, claims, signing_input, signature = push_jwt(form["assertion"])
    push_rsa_key.public_key().verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "kid-123"}
    assert claims["iss"] == "vow-push@demo-project.iam.gserviceaccount.com"
    assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
    assert claims["aud"] == TOKEN_URL
    assert before <= claims["iat"] <= time.time() and claims["exp"] == claims["iat"] + 3600


def test_the_access_token_is_cached_across_sends_and_channel_builds(
        fcm: FcmTransport, push_plugins) -> None:
    with respx.mock as router:
        token_route = grant(router)
        send = router.post(SEND_URL).respond(200, json={"name": NAME})
        fcm.send(MESSAGE, ctx())
        build_channel("push", {"transport": "fcm"}, plugins=push_plugins).send(MESSAGE, ctx())
    assert token_route.call_count == 1
    assert send.call_count == 2


def test_an_access_token_about_to_expire_is_renewed(fcm: FcmTransport) -> None:
    with respx.mock as router:
        token_route = router.post(TOKEN_URL).mock(side_effect=[
            httpx.Response(200, json={"access_token": "ya29.short", "expires_in": 30}),
            httpx.Response(200, json={"access_token": "ya29.second", "expires_in": 3599}),
        ])
        send = router.post(SEND_URL).respond(200, json={"name": NAME})
        fcm.send(MESSAGE, ctx())
        fcm.send(MESSAGE, ctx())
    assert token_route.call_count == 2
    assert [c.request.headers["authorization"] for c in send.calls] == ["Bearer ya29.short", "Bearer ya29.second"]


def test_a_ready_access_token_from_the_environment_skips_the_exchange(
        push_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FCM_ACCESS_TOKEN", "ya29.given")
    channel = build_channel("push", {"fcm": {"project_id": "demo-project"}}, plugins=push_plugins)
    assert isinstance(channel, FcmTransport)  # "auto" found FCM credentials
    with respx.mock(assert_all_mocked=True) as router:
        send = router.post(SEND_URL).respond(200, json={"name": NAME})
        channel.send(MESSAGE, ctx())
    assert send.calls.last.request.headers["authorization"] == "Bearer ya29.given"


def test_a_ready_access_token_needs_a_project_id(push_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FCM_ACCESS_TOKEN", "ya29.given")
    with pytest.raises(ConfigError, match=r"options\.fcm\.project_id: required .*\$FCM_ACCESS_TOKEN"):
        build_channel("push", {"transport": "fcm"}, plugins=push_plugins)


def fcm_error_body(status_code: int, status: str, error_code: str | None = None) -> dict:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
    return {"error": {"code": status_code, "message": f"{status} from the test", "status": status,
                      **({"details": details} if error_code else {})}}


@pytest.mark.parametrize(("status", "body", "headers", "error", "code", "retry_after"), [
    (503, fcm_error_body(503, "UNAVAILABLE", "UNAVAILABLE"), {"Retry-After": "7"}, TransientError, "UNAVAILABLE", 7.0),
    (500, fcm_error_body(500, "INTERNAL", "INTERNAL"), {}, TransientError, "INTERNAL", None),
    # FCM's quota refills within the minute: a rate limit, waited out longer than a 5xx.
    (429, fcm_error_body(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), {"Retry-After": "30"}, RateLimitError,
     "QUOTA_EXCEEDED", 30.0),
    (429, fcm_error_body(429, "RESOURCE_EXHAUSTED"), {}, RateLimitError, "RESOURCE_EXHAUSTED", None),
    (400, fcm_error_body(400, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), {}, RateLimitError, "QUOTA_EXCEEDED", None),
    (400, fcm_error_body(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"), {}, PermanentError, "INVALID_ARGUMENT", None),
    (404, fcm_error_body(404, "NOT_FOUND", "UNREGISTERED"), {}, PermanentError, "UNREGISTERED", None),
    (403, fcm_error_body(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"), {}, PermanentError,
     "SENDER_ID_MISMATCH", None),
    (401, fcm_error_body(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"), {}, PermanentError,
     "THIRD_PARTY_AUTH_ERROR", None),
    (403, fcm_error_body(403, "PERMISSION_DENIED"), {}, PermanentError, "PERMISSION_DENIED", None),
    (502, None, {}, TransientError, "502", None),
])
def test_fcm_errors_are_classified(fcm: FcmTransport, status, body, headers, error, code, retry_after) -> None:
    with respx.mock as router:
        grant(router)
        response = (httpx.Response(status, json=body, headers=headers) if body is not None
                    else httpx.Response(status, text="<html>Error 502 (Server Error)!!1</html>", headers=headers))
        router.post(SEND_URL).mock(return_value=response)
        with pytest.raises(error) as caught:
            fcm.send(MESSAGE, ctx())
    assert type(caught.value) is error and caught.value.code == code
    assert getattr(caught.value, "retry_after", None) == retry_after
    assert f"HTTP {status}" in str(caught.value)


def test_retry_after_as_an_http_date_is_parsed(fcm: FcmTransport) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    with respx.mock as router:
        grant(router)
        router.post(SEND_URL).respond(503, json=fcm_error_body(503, "UNAVAILABLE"), headers={"Retry-After": when})
        with pytest.raises(TransientError) as caught:
            fcm.send(MESSAGE, ctx())
    assert 100 < caught.value.retry_after <= 120


def test_a_200_carrying_an_error_is_not_a_success(fcm: FcmTransport) -> None:
    with respx.mock as router:
        grant(router)
        router.post(SEND_URL).respond(200, json=fcm_error_body(500, "INTERNAL", "INTERNAL"))
        with pytest.raises(TransientError, match="INTERNAL"):
            fcm.send(MESSAGE, ctx())


def test_a_200_without_a_message_name_is_not_a_success(fcm: FcmTransport) -> None:
    with respx.mock as router:
        grant(router)
        router.post(SEND_URL).respond(200, json={})
        with pytest.raises(PermanentError) as caught:
            fcm.send(MESSAGE, ctx())
    assert caught.value.code == "NO_MESSAGE_NAME"


@pytest.mark.parametrize("name", [True, 5, ["projects/demo-project/messages/1"], {"id": "1"}, ""])
def test_a_200_whose_message_name_is_not_text_is_not_a_success(fcm: FcmTransport, name) -> None:
    with respx.mock as router:
        grant(router)
        router.post(SEND_URL).respond(200, json={"name": name})
        with pytest.raises(PermanentError) as caught:
            fcm.send(MESSAGE, ctx())
    assert caught.value.code == "NO_MESSAGE_NAME"
    assert "FCM answered 200 without a message name" in str(caught.value)


@pytest.mark.parametrize(("status", "error", "body"), [
    (503, TransientError, {"error": {"status": ["UNAVAILABLE"], "message": "busy"}}),
    (400, PermanentError, {"error": {"status": {"s": 1}, "message": "bad"}}),
    (503, TransientError, {"error": {"status": "UNAVAILABLE", "details": 5}}),
    (400, PermanentError, {"error": {"details": [{"errorCode": ["UNREGISTERED"]}], "message": "bad"}}),
    (503, TransientError, {"error": {"details": [{"errorCode": {"c": 1}}], "status": 7}}),
    (400, PermanentError, {"error": ["INVALID_ARGUMENT"]}),
])
def test_fcm_error_fields_that_are_not_text_fall_back_to_the_status(fcm: FcmTransport, status, error, body) -> None:
    with respx.mock as router:
        grant(router)
        router.post(SEND_URL).respond(status, json=body)
        with pytest.raises(error) as caught:
            fcm.send(MESSAGE, ctx())
    assert caught.value.code in (str(status), "UNAVAILABLE")
    assert f"FCM answered HTTP {status}" in str(caught.value)


@pytest.mark.parametrize(("body", "shown"), [
    ({"access_token": 12345, "expires_in": 3599}, "'access_token' is a number: expected text"),
    ({"access_token": ["ya29.first"], "expires_in": 3599}, "'access_token' is a list: expected text"),
    ({"access_token": True}, "'access_token' is a boolean"),
    ({"access_token": ""}, "'access_token' is empty text"),
    ({"access_token": "ya29.first", "expires_in": "soon"}, "'expires_in' = \"soon\""),
    ({"access_token": "ya29.first", "expires_in": None}, "'expires_in' = null"),
    ({"access_token": "ya29.first", "expires_in": [3599]}, "'expires_in' = [3599]"),
    ({"access_token": "ya29.first", "expires_in": True}, "'expires_in' = true"),
    ({"access_token": "ya29.first", "expires_in": -5}, "'expires_in' = -5"),
])
def test_a_token_answer_with_fields_of_the_wrong_type_is_refused_clearly(fcm: FcmTransport, body, shown) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).respond(200, json=body)
        send = router.post(SEND_URL).respond(200, json={"name": NAME})
        with pytest.raises(PermanentError) as caught:
            fcm.send(MESSAGE, ctx())
    assert send.call_count == 0
    assert caught.value.code == "invalid_token_response"
    assert "Google token endpoint https://oauth2.googleapis.com/token" in str(caught.value)
    assert shown in str(caught.value)
    assert "ya29.first" not in str(caught.value) or "expires_in" in shown  # a token is never echoed


def test_a_token_error_code_that_is_not_text_is_the_status(fcm: FcmTransport) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).respond(503, json={"error": ["backend_error"]})
        with pytest.raises(TransientError) as caught:
            fcm.send(MESSAGE, ctx())
    assert caught.value.code == "503"


def test_a_refused_service_account_token_is_renewed_for_the_next_attempt(fcm: FcmTransport) -> None:
    with respx.mock as router:
        token_route = router.post(TOKEN_URL).mock(side_effect=[
            httpx.Response(200, json={"access_token": "ya29.revoked", "expires_in": 3599}),
            httpx.Response(200, json={"access_token": "ya29.fresh", "expires_in": 3599}),
        ])
        send = router.post(SEND_URL).mock(side_effect=[
            httpx.Response(401, json=fcm_error_body(401, "UNAUTHENTICATED")),
            httpx.Response(200, json={"name": NAME}),
        ])
        with pytest.raises(TransientError) as caught:
            fcm.send(MESSAGE, ctx(1))
        receipt = fcm.send(MESSAGE, ctx(2))
    assert caught.value.code == "UNAUTHENTICATED"
    assert token_route.call_count == 2
    assert send.calls.last.request.headers["authorization"] == "Bearer ya29.fresh"
    assert (receipt.message_id, receipt.attempt) == (NAME, 2)


def test_a_refused_user_supplied_token_fails_for_good(push_plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FCM_ACCESS_TOKEN", "ya29.expired")
    channel = build_channel("push", {"transport": "fcm", "fcm": {"project_id": "demo-project"}},
                            plugins=push_plugins)
    with respx.mock as router:
        router.post(SEND_URL).respond(401, json=fcm_error_body(401, "UNAUTHENTICATED"))
        with pytest.raises(PermanentError) as caught:
            channel.send(MESSAGE, ctx())
    assert caught.value.code == "UNAUTHENTICATED"


@pytest.mark.parametrize(("response", "error", "code"), [
    (httpx.Response(400, json={"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
     PermanentError, "invalid_grant"),
    (httpx.Response(503, json={"error": "backend_error"}, headers={"Retry-After": "3"}), TransientError,
     "backend_error"),
    (httpx.Response(200, json={"token_type": "Bearer"}), PermanentError, "200"),
])
def test_token_endpoint_failures_are_classified(fcm: FcmTransport, response, error, code) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=response)
        send = router.post(SEND_URL).respond(200, json={"name": NAME})
        with pytest.raises(error) as caught:
            fcm.send(MESSAGE, ctx())
    assert caught.value.code == code
    assert "vow-push@demo-project.iam.gserviceaccount.com" in str(caught.value)
    assert send.call_count == 0


def test_a_connection_failure_is_transient(fcm: FcmTransport) -> None:
    with respx.mock as router:
        grant(router)
        router.post(SEND_URL).mock(side_effect=httpx.ConnectError("connection refused"))
        with pytest.raises(TransientError, match="FCM"):
            fcm.send(MESSAGE, ctx())


def test_an_injected_status_maps_like_a_real_fcm_answer(fcm: FcmTransport) -> None:
    flaky = with_faults(fcm, Faults(fail_attempts=[1], status=429, retry_after=2))
    with pytest.raises(RateLimitError) as caught:
        flaky.send(MESSAGE, ctx(1))
    assert (caught.value.code, caught.value.retry_after) == ("429", 2.0)
    gone = with_faults(fcm, Faults(fail_attempts=[1], status=404, message="UNREGISTERED"))
    with pytest.raises(PermanentError) as caught:
        gone.send(MESSAGE, ctx(1))
    assert caught.value.code == "UNREGISTERED"


@pytest.mark.parametrize(("message", "complaint"), [
    (Message(to="a" * 64, body="hi"), "looks like an APNs device token, but the transport is FCM"),
    (Message(to="short-token", body="hi"), "is not a device token: an FCM registration token is"),
    (Message(to=DEVICE + " ", body="hi"), "is not a device token"),
    (Message(to=DEVICE, body="  "), "body: must be non-empty"),
    (Message(to=DEVICE, body="hi", subject=""), "subject: the notification title must be non-empty"),
    (Message(to=DEVICE, body="hi", data={"from": "me"}), "key 'from' is reserved by FCM"),
    (Message(to=DEVICE, body="hi", data={"google.c.a": "x"}), "key 'google.c.a' is reserved by FCM"),
    (Message(to=DEVICE, body="hi", data={"blob": "x" * 4100}), "over the 4096-byte limit"),
])
def test_validation_says_what_is_allowed(fcm: FcmTransport, message: Message, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint.replace("(", r"\(")):
        fcm.validate(message)


def test_a_payload_pushed_over_the_limit_by_the_key_is_refused_before_sending(fcm: FcmTransport) -> None:
    message = Message(to=DEVICE, body="x" * 4000)
    fcm.validate(message)
    with respx.mock(assert_all_called=False) as router:
        send = router.post(SEND_URL).respond(200, json={"name": NAME})
        with pytest.raises(PermanentError, match="4096-byte limit"):
            fcm.send(message, LeafContext(id="k" * 200))
    assert send.call_count == 0


def test_an_answer_of_100_mb_is_not_read_whole(fcm: FcmTransport) -> None:
    read: list[int] = []
    with respx.mock as router:
        grant(router)
        router.post(SEND_URL).mock(return_value=httpx.Response(503, content=endless_body(read)))
        with pytest.raises(TransientError) as caught:
            fcm.send(MESSAGE, ctx())
    assert caught.value.code == "503"
    assert len(read) <= 2, f"read {len(read)} MiB of the answer"


def test_a_200_cut_off_before_its_message_name_is_not_retried(fcm: FcmTransport) -> None:
    """FCM accepted the message: as for a 200 without a name, a retry would notify the device twice."""
    with respx.mock as router:
        grant(router)
        router.post(SEND_URL).mock(return_value=httpx.Response(200, content=cut_off_body(b'{"name": "projects/')))
        with pytest.raises(PermanentError) as caught:
            fcm.send(MESSAGE, ctx())
    assert caught.value.code == "NO_MESSAGE_NAME"


def test_a_token_answer_of_100_mb_is_not_read_whole(fcm: FcmTransport) -> None:
    """The token endpoint (the service account's token_uri, which may point anywhere) is read as FCM
    is: at most 1 MiB (vow.http.request)."""
    read: list[int] = []
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=httpx.Response(503, content=endless_body(read)))
        send = router.post(SEND_URL).respond(200, json={"name": NAME})
        with pytest.raises(TransientError, match="HTTP 503"):
            fcm.send(MESSAGE, ctx())
    assert send.call_count == 0
    assert len(read) <= 2, f"read {len(read)} MiB of the answer"
