"""The Resend transport: the exact request it sends, and how every answer is classified (respx)."""

from __future__ import annotations

import email.utils
import hashlib
import json
import time

import httpx
import pytest
import respx

from vow.channels import Message
from vow.config import structure
from vow.errors import ConfigError, PermanentError, RateLimitError, TransientError
from vow.faults import Faults, with_faults
from vow.leaf import LeafContext
from vow.testing import endless_body
from vow_email import EmailOptions, build_email_channel

URL = "https://api.resend.com/emails"
API_KEY = "re_test_123"
EMAIL_ID = "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"
ORDER = Message(to="ada@example.com", subject="Order 42 confirmed", body="Thanks for your order.")


@pytest.fixture
def channel(monkeypatch):
    monkeypatch.setenv("RESEND_API_KEY", API_KEY)
    return build_email_channel(structure(EmailOptions, {"from_addr": "Shop <orders@shop.example>"}))


def send(channel, message=ORDER, key="notify/42.email", attempt=1):
    channel.validate(message)
    return channel.send(message, LeafContext(id="notify/42.email", attempt=attempt, idempotency_key=key))


def error_body(status: int, name: str, message: str) -> dict:
    return {"statusCode": status, "name": name, "message": message}


@respx.mock
def test_exact_request_and_receipt(channel):
    assert channel.transport_name == "resend"  # auto: the key is in the environment
    route = respx.post(URL).respond(200, json={"id": EMAIL_ID})

    receipt = send(channel)

    request = route.calls.last.request
    assert request.method == "POST" and str(request.url) == URL
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == "notify/42.email"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "from": "Shop <orders@shop.example>",
        "to": ["ada@example.com"],
        "subject": "Order 42 confirmed",
        "text": "Thanks for your order.",
        "headers": {"X-Idempotency-Key": "notify/42.email"},
    }
    assert receipt.to_dict() == {
        "channel": "email", "transport": "resend", "message_id": EMAIL_ID, "to": "ada@example.com",
        "idempotency_key": "notify/42.email", "attempt": 1, "duplicate": False,
        "detail": {"from": "Shop <orders@shop.example>"},
    }


@respx.mock
def test_html_alternative_and_retry_use_the_same_key(channel):
    route = respx.post(URL).respond(200, json={"id": EMAIL_ID})
    message = Message(to="ada@example.com", subject="Hi", body="text", data={"html": "<p>html</p>"})

    send(channel, message, attempt=1)
    send(channel, message, attempt=2)

    first, second = (json.loads(call.request.content) for call in route.calls)
    assert first["html"] == "<p>html</p>" and first == second
    assert {call.request.headers["Idempotency-Key"] for call in route.calls} == {"notify/42.email"}


@respx.mock
def test_internationalised_domains_are_sent_in_ascii_as_over_smtp(monkeypatch):
    """Resend documents plain addresses, and the SES it sends through takes a domain only in its ASCII
    (IDNA) form: the same address, which every provider takes, as the SMTP transport sends it."""
    monkeypatch.setenv("RESEND_API_KEY", API_KEY)
    channel = build_email_channel(structure(EmailOptions, {"from_addr": "Bücher Shop <orders@Bücher.example>"}))
    route = respx.post(URL).respond(200, json={"id": EMAIL_ID})

    receipt = send(channel, Message(to="Jürgen Bücher <ada@Bücher.example>", subject="Hi", body="plain"))

    body = json.loads(route.calls.last.request.content)
    assert body["from"] == "Bücher Shop <orders@xn--bcher-kva.example>"
    assert body["to"] == ["Jürgen Bücher <ada@xn--bcher-kva.example>"]
    assert receipt.to == "Jürgen Bücher <ada@Bücher.example>"  # the receipt names the address as given


@respx.mock
def test_key_longer_than_resend_allows_is_sent_as_a_stable_digest(channel):
    route = respx.post(URL).respond(200, json={"id": EMAIL_ID})
    long_key = "notify/" + "x" * 300
    send(channel, key=long_key)
    send(channel, key=long_key)
    sent = [call.request.headers["Idempotency-Key"] for call in route.calls]
    assert sent[0] == sent[1] and len(sent[0]) <= 256 and sent[0].startswith("vow-sha256-")


@pytest.mark.parametrize("key", ["notify/jörg.email", "notify/\N{SNOWMAN}", "notify/42.email ", "notify/a\tb"])
@respx.mock
def test_key_that_cannot_be_a_header_value_is_sent_as_a_stable_digest(channel, key):
    """An HTTP header value is visible ASCII (httpx refuses others), and surrounding spaces are dropped by
    parsers: such a key (a promise id may be any text) goes as its digest, the same on every retry."""
    route = respx.post(URL).respond(200, json={"id": EMAIL_ID})
    send(channel, key=key)
    send(channel, key=key, attempt=2)
    send(channel, key="notify/jorg.email")
    first, retry, other = (call.request.headers["Idempotency-Key"] for call in route.calls)
    assert first == retry == "vow-sha256-" + hashlib.sha256(key.encode()).hexdigest()
    assert other == "notify/jorg.email"
    assert json.loads(route.calls[0].request.content)["headers"] == {"X-Idempotency-Key": key}


@respx.mock
def test_base_url_option(monkeypatch):
    monkeypatch.setenv("RESEND_API_KEY", API_KEY)
    channel = build_email_channel(structure(EmailOptions, {
        "transport": "resend", "from_addr": "orders@shop.example", "resend": {"base_url": "http://127.0.0.1:9/v1/"}}))
    route = respx.post("http://127.0.0.1:9/v1/emails").respond(200, json={"id": EMAIL_ID})
    send(channel)
    assert route.called


@pytest.mark.parametrize("status, name, error", [
    (422, "validation_error", PermanentError),
    (403, "validation_error", PermanentError),
    (400, "invalid_idempotency_key", PermanentError),
    (401, "missing_api_key", PermanentError),
    (403, "invalid_api_key", PermanentError),
    (409, "invalid_idempotent_request", PermanentError),
    (409, "concurrent_idempotent_requests", TransientError),
    (429, "rate_limit_exceeded", RateLimitError),  # waited out longer than a 5xx without Retry-After
    (429, "some_new_limit", RateLimitError),  # a name this plugin does not know: the 429 decides
    (429, "daily_quota_exceeded", PermanentError),
    (429, "monthly_quota_exceeded", PermanentError),
    (500, "application_error", TransientError),
    (500, "internal_server_error", TransientError),
    (503, "service_unavailable", TransientError),
    (404, "not_found", PermanentError),
])
@respx.mock
def test_resend_errors_are_classified(channel, status, name, error):
    respx.post(URL).respond(status, json=error_body(status, name, f"what went wrong ({name})"))
    with pytest.raises(error) as info:
        send(channel)
    assert type(info.value) is error
    assert info.value.code == name
    assert f"HTTP {status}" in str(info.value) and f"what went wrong ({name})" in str(info.value)


@pytest.mark.parametrize("status, error", [(502, TransientError), (408, TransientError), (418, PermanentError)])
@respx.mock
def test_statuses_without_a_resend_body_fall_back_to_http_rules(channel, status, error):
    respx.post(URL).respond(status, text="<html>proxy error</html>")
    with pytest.raises(error) as info:
        send(channel)
    assert type(info.value) is error and info.value.code == str(status)
    assert "proxy error" in str(info.value)


@respx.mock
def test_retry_after_seconds_is_honoured(channel):
    respx.post(URL).respond(429, headers={"Retry-After": "2"},
                            json=error_body(429, "rate_limit_exceeded", "Too many requests"))
    with pytest.raises(TransientError) as info:
        send(channel)
    assert info.value.retry_after == 2.0


@respx.mock
def test_retry_after_http_date_is_honoured(channel):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    respx.post(URL).respond(409, headers={"Retry-After": when},
                            json=error_body(409, "concurrent_idempotent_requests", "in progress"))
    with pytest.raises(TransientError) as info:
        send(channel)
    assert 20 <= info.value.retry_after <= 31


@respx.mock
def test_success_status_without_an_id_is_not_a_success(channel):
    respx.post(URL).respond(200, json={"object": "email"})
    with pytest.raises(TransientError) as info:
        send(channel)
    assert info.value.code == "missing_id"


@respx.mock
def test_success_status_carrying_an_error_is_classified(channel):
    respx.post(URL).respond(200, json=error_body(422, "validation_error", "Invalid `to` field"))
    with pytest.raises(PermanentError, match="Invalid `to` field") as info:
        send(channel)
    assert info.value.code == "validation_error"


@pytest.mark.parametrize("name", [["rate_limit_exceeded"], {"name": "x"}, 429, True])
@pytest.mark.parametrize("status, error", [(429, RateLimitError), (422, PermanentError)])
@respx.mock
def test_an_error_name_that_is_not_text_falls_back_to_the_status(channel, name, status, error):
    respx.post(URL).respond(status, json={"statusCode": status, "name": name, "message": "slow down"})
    with pytest.raises(error, match=f"resend answered HTTP {status}: slow down") as info:
        send(channel)
    assert type(info.value) is error and info.value.code == str(status)


@pytest.mark.parametrize("body", [{"name": ["validation_error"], "message": "x"}, {"name": {"a": 1}},
                                  {"id": ["49a3999c"]}, {"id": 49}, {"id": None}, {"id": True},
                                  [{"id": EMAIL_ID}], "49a3999c"])
@respx.mock
def test_success_status_without_a_text_id_is_not_a_success(channel, body):
    respx.post(URL).respond(200, json=body)
    with pytest.raises(TransientError, match="resend answered HTTP 200 without an email id") as info:
        send(channel)
    assert info.value.code == "missing_id"


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
@respx.mock
def test_network_failures_are_transient(channel, exc):
    respx.post(URL).mock(side_effect=exc)
    with pytest.raises(TransientError):
        send(channel)


@respx.mock
def test_injected_status_maps_like_a_real_resend_answer(channel):
    route = respx.post(URL).respond(200, json={"id": EMAIL_ID})
    faulty = with_faults(channel, Faults(fail_attempts=[1], status=429, retry_after=1.5))
    with pytest.raises(TransientError) as info:
        send(faulty, attempt=1)
    assert info.value.retry_after == 1.5 and not route.called
    assert send(faulty, attempt=2).message_id == EMAIL_ID


def test_missing_api_key_is_a_config_error_before_any_send():
    with pytest.raises(ConfigError, match="RESEND_API_KEY"):
        build_email_channel(structure(EmailOptions, {"transport": "resend", "from_addr": "orders@shop.example"}))


def test_custom_api_key_variable(monkeypatch):
    monkeypatch.setenv("SHOP_RESEND_KEY", "re_custom")
    channel = build_email_channel(structure(EmailOptions, {
        "transport": "resend", "from_addr": "orders@shop.example", "resend": {"api_key_env": "SHOP_RESEND_KEY"}}))
    with respx.mock:
        route = respx.post(URL).respond(200, json={"id": EMAIL_ID})
        send(channel)
        assert route.calls.last.request.headers["Authorization"] == "Bearer re_custom"


def test_an_answer_of_100_mb_is_not_read_whole(channel):
    read: list[int] = []
    with respx.mock() as router:
        router.post(URL).mock(return_value=httpx.Response(200, content=endless_body(read)))
        with pytest.raises(TransientError) as info:  # no id: retried, and the same key makes Resend answer
            send(channel)
    assert info.value.code == "missing_id"
    assert len(read) <= 2, f"read {len(read)} MiB of the answer"
