"""The incoming-webhook transport against respx: exact request, plain-text error codes."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

import vow_slack.plugin
from vow.channels import Message, build_channel
from vow.errors import PermanentError, RateLimitError, TransientError
from vow.leaf import LeafContext
from vow.plugins import Plugins
from vow.testing import endless_body

URL = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
KEY = "notify/42.slack"


@pytest.fixture
def hook(monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", URL)
    plugins = Plugins(entry_points=False)
    plugins.add(vow_slack.plugin, "slack")
    return build_channel("slack", {"transport": "webhook"}, plugins=plugins)


def send(hook, message=None):
    return hook.send(message or Message(to="", body="hi"), LeafContext(id=KEY))


def test_posts_text_and_blocks_to_the_webhook(hook):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Order 42* shipped"}}]
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(URL).mock(return_value=httpx.Response(200, text="ok"))
        receipt = send(hook, Message(to="", body="shipped", subject="Order 42", data={"blocks": blocks}))
    request = route.calls.last.request
    assert request.url == URL and request.method == "POST"
    assert "authorization" not in request.headers
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"text": "*Order 42*\nshipped", "blocks": blocks}
    assert receipt.to_dict() == {
        "channel": "slack", "transport": "webhook", "message_id": KEY, "to": "",
        "idempotency_key": KEY, "attempt": 1, "duplicate": False, "detail": {"response": "ok"},
    }


def test_to_only_labels_the_receipt(hook):
    with respx.mock() as mock:
        route = mock.post(URL).mock(return_value=httpx.Response(200, text="ok"))
        receipt = send(hook, Message(to="#orders", body="hi"))
    assert "channel" not in json.loads(route.calls.last.request.content)
    assert receipt.to == "#orders"


@pytest.mark.parametrize("status,code", [
    (400, "invalid_payload"), (400, "no_text"), (403, "action_prohibited"), (404, "channel_not_found"),
    (404, "no_service"), (410, "channel_is_archived"),
])
def test_client_errors_are_permanent_with_slack_code(hook, status, code):
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=httpx.Response(status, text=code))
        with pytest.raises(PermanentError) as info:
            send(hook)
    assert info.value.code == code
    assert f"HTTP {status}" in str(info.value)


def test_429_is_a_rate_limit_with_retry_after(hook):
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=httpx.Response(429, headers={"Retry-After": "12"}, text="rate_limited"))
        with pytest.raises(RateLimitError) as info:
            send(hook)
    assert info.value.retry_after == 12 and info.value.code == "rate_limited"


def test_a_5xx_is_no_rate_limit(hook):
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=httpx.Response(500, text="rollup_error"))
        with pytest.raises(TransientError) as info:
            send(hook)
    assert not isinstance(info.value, RateLimitError)  # the policy's quick back-off


@pytest.mark.parametrize("status,body,code", [(500, "rollup_error", "rollup_error"),
                                              (502, "<html>Bad Gateway</html>", "502"),
                                              (503, "", "503")])
def test_server_errors_are_transient(hook, status, body, code):
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=httpx.Response(status, text=body))
        with pytest.raises(TransientError) as info:
            send(hook)
    assert info.value.code == code


def test_200_that_is_not_ok_is_never_success(hook):
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=httpx.Response(200, text="invalid_token"))
        with pytest.raises(PermanentError) as info:
            send(hook)
    assert info.value.code == "invalid_token"


def test_connection_error_is_transient_and_keeps_the_url_secret(hook):
    with respx.mock() as mock:
        mock.post(URL).mock(side_effect=httpx.ConnectError(f"cannot reach {URL}"))
        with pytest.raises(TransientError) as info:
            send(hook)
    assert "XXXXSECRET" not in str(info.value)
    assert "$SLACK_WEBHOOK_URL" in str(info.value)


def test_an_answer_of_100_mb_is_not_read_whole(hook):
    read: list[int] = []
    with respx.mock() as router:
        router.post(URL).mock(return_value=httpx.Response(503, content=endless_body(read)))
        with pytest.raises(TransientError) as info:
            send(hook)
    assert info.value.code == "503"
    assert len(read) <= 2, f"read {len(read)} MiB of the answer"
