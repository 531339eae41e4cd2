"""The bot transport (chat.postMessage) against respx: exact requests and every error class."""

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
from vow.testing import cut_off_body, endless_body

POST = "https://slack.com/api/chat.postMessage"
HISTORY = "https://slack.com/api/conversations.history"
REPLIES = "https://slack.com/api/conversations.replies"
KEY = "notify/42.slack"
TOKEN = "xoxb-test-token"


@pytest.fixture
def bot(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    return make_bot()


def make_bot(options=None, faults=None):
    plugins = Plugins(entry_points=False)
    plugins.add(vow_slack.plugin, "slack")
    return build_channel("slack", {"transport": "bot", **(options or {})}, faults, plugins=plugins)


def ctx(attempt: int = 1) -> LeafContext:
    return LeafContext(id=KEY, attempt=attempt)


def posted(channel: str = "C0123ABCD", ts: str = "1700000000.000100", **extra) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "channel": channel, "ts": ts, **extra})


def test_posts_exact_request_with_key_in_metadata(bot):
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(POST).mock(return_value=posted())
        receipt = bot.send(Message(to="C0123ABCD", body="shipped", subject="Order 42"), ctx())
    request = route.calls.last.request
    assert request.url == POST
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(request.content) == {
        "channel": "C0123ABCD",
        "text": "*Order 42*\nshipped",
        "metadata": {"event_type": "vow_delivery", "event_payload": {"idempotency_key": KEY}},
    }
    assert receipt.to_dict() == {
        "channel": "slack", "transport": "bot", "message_id": "C0123ABCD:1700000000.000100",
        "to": "C0123ABCD", "idempotency_key": KEY, "attempt": 1, "duplicate": False,
        "detail": {"channel": "C0123ABCD", "ts": "1700000000.000100"},
    }


def test_channel_name_blocks_and_thread_are_passed_and_channel_id_comes_from_slack(bot):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*shipped*"}}]
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(POST).mock(return_value=posted(channel="C999", ts="1700000001.000200"))
        receipt = bot.send(Message(to="#orders", body="shipped",
                                   data={"blocks": blocks, "thread_ts": "1700000000.000100"}), ctx())
    body = json.loads(route.calls.last.request.content)
    assert body["channel"] == "#orders"
    assert body["blocks"] == blocks and body["thread_ts"] == "1700000000.000100"
    assert receipt.message_id == "C999:1700000001.000200"
    assert receipt.to == "#orders"


def test_api_url_option_points_at_another_slack(monkeypatch):
    monkeypatch.setenv("GOV_SLACK_TOKEN", TOKEN)
    bot = make_bot({"api_url": "https://slack-gov.com/api/", "bot_token_env": "GOV_SLACK_TOKEN"})
    with respx.mock(assert_all_called=True) as mock:
        mock.post("https://slack-gov.com/api/chat.postMessage").mock(return_value=posted())
        assert bot.send(Message(to="C0123ABCD", body="hi"), ctx()).message_id == "C0123ABCD:1700000000.000100"


@pytest.mark.parametrize("code", ["ratelimited", "rate_limited", "internal_error", "service_unavailable",
                                  "fatal_error", "request_timeout", "team_added_to_org"])
def test_ok_false_transient_codes_are_retried(bot, code):
    with respx.mock() as mock:
        mock.post(POST).mock(return_value=httpx.Response(200, json={"ok": False, "error": code}))
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.code == code
    assert code in str(info.value)


@pytest.mark.parametrize("code", ["channel_not_found", "not_in_channel", "is_archived", "msg_too_long",
                                  "no_text", "invalid_auth", "token_revoked", "account_inactive",
                                  "missing_scope", "invalid_blocks", "some_future_error"])
def test_ok_false_permanent_codes_fail_at_once(bot, code):
    with respx.mock() as mock:
        mock.post(POST).mock(return_value=httpx.Response(200, json={"ok": False, "error": code}))
        with pytest.raises(PermanentError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.code == code
    assert "chat.postMessage" in str(info.value)


def test_429_retry_after_is_honoured(bot):
    with respx.mock() as mock:
        mock.post(POST).mock(return_value=httpx.Response(
            429, headers={"Retry-After": "30"}, json={"ok": False, "error": "ratelimited"}))
        with pytest.raises(RateLimitError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.retry_after == 30
    assert info.value.code == "ratelimited"


def test_429_without_body_still_rate_limited(bot):
    with respx.mock() as mock:
        mock.post(POST).mock(return_value=httpx.Response(429, headers={"Retry-After": "7"}, text=""))
        with pytest.raises(RateLimitError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.retry_after == 7


@pytest.mark.parametrize("answer", [
    httpx.Response(429, json={"ok": False, "error": "ratelimited"}),  # no Retry-After: the policy's rate-limit wait
    httpx.Response(200, json={"ok": False, "error": "ratelimited"}),  # the Web API's code at HTTP 200
], ids=["429", "200"])
def test_ratelimited_without_retry_after_is_a_rate_limit(bot, answer):
    with respx.mock() as mock:
        route = mock.post(POST).mock(return_value=answer)
        with pytest.raises(RateLimitError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert (info.value.code, info.value.retry_after, route.call_count) == ("ratelimited", None, 1)


def test_5xx_page_is_transient_and_200_without_json_is_not_success(bot):
    with respx.mock() as mock:
        route = mock.post(POST)
        route.mock(return_value=httpx.Response(503, text="<html>upstream unavailable</html>"))
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
        assert info.value.code == "503"
        route.mock(return_value=httpx.Response(200, text="<html>captive portal</html>"))
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
        assert info.value.code == "invalid_response"


def test_connection_failure_is_transient(bot):
    with respx.mock() as mock:
        mock.post(POST).mock(side_effect=httpx.ConnectTimeout("timed out"))
        with pytest.raises(TransientError):
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())


def test_first_attempt_does_not_read_history(bot):
    with respx.mock(assert_all_called=False) as mock:
        history = mock.get(HISTORY)
        mock.post(POST).mock(return_value=posted())
        bot.send(Message(to="C0123ABCD", body="hi"), ctx(1))
    assert not history.called


def test_a_first_attempt_resumed_after_a_crash_finds_its_post_and_does_not_post_again(bot):
    """The process that began attempt 1 died after Slack took the post: the resumed attempt 1 reads back."""
    with respx.mock(assert_all_called=False) as mock:
        mock.get(HISTORY).mock(return_value=history_with(KEY))
        post = mock.post(POST)
        receipt = bot.send(Message(to="C0123ABCD", body="hi"), LeafContext(id=KEY, attempt=1, resumed=True))
    assert not post.called and receipt.duplicate is True


def history_with(*payload_keys: str) -> httpx.Response:
    messages = [{"type": "message", "ts": f"1700000000.00000{i}", "text": "x",
                 "metadata": {"event_type": "vow_delivery", "event_payload": {"idempotency_key": k}}}
                for i, k in enumerate(payload_keys)]
    messages.append({"type": "message", "ts": "1699999999.000001", "text": "no metadata"})
    return httpx.Response(200, json={"ok": True, "messages": messages, "has_more": False})


def test_retry_finds_earlier_post_by_key_and_does_not_post_again(bot):
    with respx.mock(assert_all_called=False) as mock:
        history = mock.get(HISTORY).mock(return_value=history_with("other/1.slack", KEY))
        post = mock.post(POST)
        receipt = bot.send(Message(to="C0123ABCD", body="hi"), ctx(2))
    assert not post.called
    params = history.calls.last.request.url.params
    assert params["channel"] == "C0123ABCD" and params["include_all_metadata"] == "true"
    assert params["limit"] == "100"
    assert history.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert receipt.duplicate is True
    assert receipt.message_id == "C0123ABCD:1700000000.000001"
    assert receipt.attempt == 2


def test_retry_finds_its_post_in_a_history_of_100_long_messages(bot):
    """100 messages of 40,000 characters (Slack's limit) are 4 MB of answer: all of it must be searched."""
    long = [{"type": "message", "ts": f"1700000000.{i:06d}", "text": "x" * 40_000} for i in range(99)]
    answer = history_with(KEY)
    body = json.loads(answer.content)
    body["messages"] = long + body["messages"]
    with respx.mock(assert_all_called=False) as mock:
        mock.get(HISTORY).mock(return_value=httpx.Response(200, json=body))
        post = mock.post(POST)
        receipt = bot.send(Message(to="C0123ABCD", body="hi"), ctx(2))
    assert not post.called and receipt.duplicate is True


def test_retry_posts_when_history_has_no_such_key(bot):
    with respx.mock(assert_all_called=True) as mock:
        mock.get(HISTORY).mock(return_value=history_with("other/1.slack"))
        post = mock.post(POST).mock(return_value=posted())
        receipt = bot.send(Message(to="C0123ABCD", body="hi"), ctx(3))
    assert post.call_count == 1
    assert receipt.duplicate is False and receipt.attempt == 3


def test_retry_in_thread_reads_the_thread(bot):
    with respx.mock(assert_all_called=True) as mock:
        replies = mock.get(REPLIES).mock(return_value=history_with(KEY))
        receipt = bot.send(Message(to="C0123ABCD", body="hi", data={"thread_ts": "1700000000.000100"}), ctx(2))
    assert replies.calls.last.request.url.params["ts"] == "1700000000.000100"
    assert receipt.duplicate is True


def test_history_refused_for_good_posts_anyway(bot):
    with respx.mock(assert_all_called=True) as mock:
        mock.get(HISTORY).mock(return_value=httpx.Response(200, json={"ok": False, "error": "missing_scope"}))
        post = mock.post(POST).mock(return_value=posted())
        bot.send(Message(to="C0123ABCD", body="hi"), ctx(2))
    assert post.call_count == 1


def test_history_rate_limited_retries_instead_of_posting_blind(bot):
    with respx.mock(assert_all_called=False) as mock:
        mock.get(HISTORY).mock(return_value=httpx.Response(
            429, headers={"Retry-After": "3"}, json={"ok": False, "error": "ratelimited"}))
        post = mock.post(POST)
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx(2))
    assert not post.called
    assert info.value.retry_after == 3


def test_retry_to_channel_name_cannot_check_and_posts(bot):
    with respx.mock(assert_all_called=False) as mock:
        history = mock.get(HISTORY)
        mock.post(POST).mock(return_value=posted())
        bot.send(Message(to="#orders", body="hi"), ctx(2))
    assert not history.called


def test_check_before_retry_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    bot = make_bot({"check_before_retry": False})
    with respx.mock(assert_all_called=False) as mock:
        history = mock.get(HISTORY)
        mock.post(POST).mock(return_value=posted())
        bot.send(Message(to="C0123ABCD", body="hi"), ctx(2))
    assert not history.called


def test_injected_status_maps_like_a_real_answer(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
    bot = make_bot(faults={"fail_attempts": [1], "status": 429, "retry_after": 2})
    with respx.mock(assert_all_called=False) as mock:
        post = mock.post(POST).mock(return_value=posted())
        mock.get(HISTORY).mock(return_value=history_with())
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx(1))
        assert info.value.retry_after == 2 and not post.called
        assert bot.send(Message(to="C0123ABCD", body="hi"), ctx(2)).duplicate is False
    assert post.call_count == 1
    with pytest.raises(PermanentError):
        raise bot.error_for_status(404, {}, "channel_not_found")


@pytest.mark.parametrize("ok", ["false", "true", 1, None, [True], {"value": True}])
def test_ok_that_is_not_the_boolean_true_is_never_success(bot, ok):
    with respx.mock(assert_all_called=True) as mock:
        mock.post(POST).mock(return_value=httpx.Response(
            200, json={"ok": ok, "channel": "C0123ABCD", "ts": "1700000000.000100"}))
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.code == "invalid_response"
    shown = json.dumps(ok)
    assert f"slack chat.postMessage answered HTTP 200, but 'ok' = {shown}: only true or false" in str(info.value)


def test_answer_without_ok_is_never_success(bot):
    with respx.mock(assert_all_called=True) as mock:
        mock.post(POST).mock(return_value=httpx.Response(200, json={"channel": "C0123ABCD", "ts": "1.2"}))
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.code == "invalid_response"
    assert "slack chat.postMessage answered HTTP 200, but 'ok' is missing" in str(info.value)


@pytest.mark.parametrize("body", [["ok"], "ok", 1, None])
def test_json_that_is_not_an_object_is_never_success(bot, body):
    with respx.mock(assert_all_called=True) as mock:
        mock.post(POST).mock(return_value=httpx.Response(200, json=body))
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.code == "invalid_response"
    assert "slack chat.postMessage answered HTTP 200, but not a JSON object" in str(info.value)


@pytest.mark.parametrize("error", [["channel_not_found"], {"code": "x"}, 5, None, ""])
def test_ok_false_with_an_error_code_that_is_not_text_is_permanent_by_its_status(bot, error):
    with respx.mock(assert_all_called=True) as mock:
        mock.post(POST).mock(return_value=httpx.Response(200, json={"ok": False, "error": error}))
        with pytest.raises(PermanentError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.code == "200"
    assert "slack chat.postMessage failed: 200 (HTTP 200)" in str(info.value)
    if error is not None and error != "":
        assert "not a Slack error code" in str(info.value)


def test_ok_false_with_an_error_code_that_is_not_text_and_a_5xx_is_transient(bot):
    with respx.mock(assert_all_called=True) as mock:
        mock.post(POST).mock(return_value=httpx.Response(503, json={"ok": False, "error": ["busy"]}))
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.code == "503"


@pytest.mark.parametrize("fields, problem", [
    ({"channel": "C0123ABCD", "ts": None}, "'ts' = null: expected text"),
    ({"channel": "C0123ABCD"}, "'ts' is missing"),
    ({"channel": "C0123ABCD", "ts": 1700000000.0001}, "'ts' = 1700000000.0001"),
    ({"channel": ["C0123ABCD"], "ts": "1700000000.000100"}, "'channel' = [\"C0123ABCD\"]"),
    ({"channel": None, "ts": "1700000000.000100"}, "'channel' = null"),
])
def test_ok_true_without_a_text_ts_or_channel_is_not_a_receipt(bot, fields, problem):
    with respx.mock(assert_all_called=True) as mock:
        mock.post(POST).mock(return_value=httpx.Response(200, json={"ok": True, **fields}))
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.code == "invalid_response"
    assert f"slack chat.postMessage answered ok, but {problem}" in str(info.value)


def test_ok_true_without_channel_keeps_the_channel_sent(bot):
    with respx.mock(assert_all_called=True) as mock:
        mock.post(POST).mock(return_value=httpx.Response(200, json={"ok": True, "ts": "1700000000.000100"}))
        receipt = bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert receipt.message_id == "C0123ABCD:1700000000.000100"


@pytest.mark.parametrize("messages", ["C0123ABCD", {"ts": "1"}, 5])
def test_history_whose_messages_is_not_a_list_retries_instead_of_posting_blind(bot, messages):
    with respx.mock(assert_all_called=False) as mock:
        mock.get(HISTORY).mock(return_value=httpx.Response(200, json={"ok": True, "messages": messages}))
        post = mock.post(POST)
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx(2))
    assert not post.called
    assert info.value.code == "invalid_response"
    assert "slack conversations.history answered ok, but 'messages' = " in str(info.value)
    assert "expected a list of messages" in str(info.value)


def test_history_messages_of_other_shapes_are_not_ours_and_the_post_goes_ahead(bot):
    odd = ["text", None, {"metadata": "vow_delivery"}, {"metadata": ["x"]},
           {"metadata": {"event_type": "vow_delivery", "event_payload": KEY}},
           {"metadata": {"event_type": "vow_delivery", "event_payload": [KEY]}}]
    with respx.mock(assert_all_called=True) as mock:
        mock.get(HISTORY).mock(return_value=httpx.Response(200, json={"ok": True, "messages": odd}))
        post = mock.post(POST).mock(return_value=posted())
        receipt = bot.send(Message(to="C0123ABCD", body="hi"), ctx(2))
    assert post.call_count == 1 and receipt.duplicate is False


def test_earlier_post_without_a_text_ts_is_not_a_receipt(bot):
    earlier = {"ts": None, "metadata": {"event_type": "vow_delivery", "event_payload": {"idempotency_key": KEY}}}
    with respx.mock(assert_all_called=False) as mock:
        mock.get(HISTORY).mock(return_value=httpx.Response(200, json={"ok": True, "messages": [earlier]}))
        post = mock.post(POST)
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx(2))
    assert not post.called
    assert info.value.code == "invalid_response"
    assert f"conversations.history answered a message carrying key '{KEY}', but 'ts' = null" in str(info.value)


@pytest.mark.parametrize("status, code", [(200, "invalid_response"), (500, "500")])
def test_an_answer_of_100_mb_is_not_read_whole(bot, status, code):
    read: list[int] = []
    with respx.mock() as router:
        router.post(POST).mock(return_value=httpx.Response(status, content=endless_body(read)))
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.code == code
    assert len(read) <= 2, f"read {len(read)} MiB of the answer"


def test_an_ok_cut_off_before_its_ts_is_checked_for_on_the_retry(bot):
    """The post reached Slack: the retry must find it by its key, not post a second one blind."""
    with respx.mock() as router:
        router.post(POST).mock(return_value=httpx.Response(200, content=cut_off_body(b'{"ok": true, "chan')))
        with pytest.raises(TransientError) as info:
            bot.send(Message(to="C0123ABCD", body="hi"), ctx())
    assert info.value.code == "invalid_response" and "HTTP 200" in str(info.value)
