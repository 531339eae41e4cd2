"""The Twilio transport against respx: the exact request, and how each answer is classified."""

from __future__ import annotations

import base64
import urllib.parse

import httpx
import pytest
import respx

from vow.channels import Message
from vow.errors import ConfigError, PermanentError, RateLimitError, TransientError
from vow.faults import with_faults
from vow.leaf import LeafContext
from vow.testing import cut_off_body, endless_body
from vow_sms import SmsOptions, build_sms_channel
from vow_sms.simulated import SimulatedTransport
from vow_sms.twilio import TwilioTransport

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token"
SERVICE_SID = "MG" + "fedcba9876543210" * 2
MESSAGE_SID = "SM" + "5" * 32
FROM = "+15005550006"
URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
CTX = LeafContext(id="notify/42.sms", attempt=1)
MESSAGE = Message(to="+14155550123", body="Order 42 is confirmed.")


@pytest.fixture
def twilio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)


def twilio_channel(**options):
    return build_sms_channel(SmsOptions(**{"transport": "twilio", "from_number": FROM, **options}))


def created(**fields) -> httpx.Response:
    """A 201 like Twilio's answer to a create."""
    return httpx.Response(201, json={
        "sid": MESSAGE_SID, "status": "queued", "num_segments": "1", "from": FROM, "to": MESSAGE.to,
        "messaging_service_sid": None, "error_code": None, "error_message": None, **fields})


def twilio_failure(status: int, code: int, message: str, **headers: str) -> httpx.Response:
    """An error answer in Twilio's JSON shape."""
    return httpx.Response(status, headers=headers, json={
        "code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status})


def form_of(request: httpx.Request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.content.decode(), keep_blank_values=True))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_sends_the_exact_create_message_request(twilio_env: None) -> None:
    channel = twilio_channel(status_callback="https://hooks.example.com/sms/status?tenant=7")
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(URL).mock(return_value=created())
        receipt = channel.send(MESSAGE, CTX)
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["authorization"] == basic(ACCOUNT_SID, AUTH_TOKEN)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    form = form_of(request)
    callback = urllib.parse.urlsplit(form.pop("StatusCallback"))
    assert form == {"To": "+14155550123", "From": FROM, "Body": "Order 42 is confirmed."}
    assert (callback.scheme, callback.netloc, callback.path) == ("https", "hooks.example.com", "/sms/status")
    assert urllib.parse.parse_qs(callback.query) == {"tenant": ["7"], "vow_key": ["notify/42.sms"]}
    assert receipt.message_id == MESSAGE_SID
    assert (receipt.channel, receipt.transport, receipt.to) == ("sms", "twilio", "+14155550123")
    assert (receipt.idempotency_key, receipt.attempt, receipt.duplicate) == ("notify/42.sms", 1, False)
    assert receipt.detail == {"status": "queued", "segments": 1, "from": FROM, "messaging_service_sid": None}


def test_messaging_service_without_from_and_without_callback(twilio_env: None) -> None:
    channel = build_sms_channel(SmsOptions(transport="twilio", messaging_service_sid=SERVICE_SID))
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(URL).mock(return_value=created(messaging_service_sid=SERVICE_SID, **{"from": None}))
        receipt = channel.send(MESSAGE, CTX)
    assert form_of(route.calls.last.request) == {
        "To": "+14155550123", "MessagingServiceSid": SERVICE_SID, "Body": "Order 42 is confirmed."}
    assert receipt.detail["messaging_service_sid"] == SERVICE_SID


def test_api_key_auth_keeps_the_account_sid_in_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("MY_TWILIO_KEY", "SK" + "1" * 32)
    monkeypatch.setenv("TWILIO_API_KEY_SECRET", "key-secret")
    channel = twilio_channel(api_key_sid_env="MY_TWILIO_KEY")
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(URL).mock(return_value=created())
        channel.send(MESSAGE, CTX)
    assert route.calls.last.request.headers["authorization"] == basic("SK" + "1" * 32, "key-secret")


@pytest.mark.parametrize("status, code", [
    (400, 21211),  # invalid To
    (400, 21610),  # recipient replied STOP
    (400, 21408),  # region not enabled in Geo Permissions
    (400, 21614),  # not a mobile number
    (401, 20003),  # authentication
    (404, 20404),  # not in the table: classified by its HTTP status
])
def test_permanent_twilio_errors_carry_the_code_and_message(twilio_env: None, status: int, code: int) -> None:
    with respx.mock() as mock:
        route = mock.post(URL).mock(return_value=twilio_failure(status, code, f"Twilio says {code}"))
        with pytest.raises(PermanentError) as err:
            twilio_channel().send(MESSAGE, CTX)
    assert route.call_count == 1
    assert err.value.code == str(code)
    assert f"twilio error {code}: Twilio says {code}" in str(err.value)
    assert f"https://www.twilio.com/docs/errors/{code}" in str(err.value)


def test_21211_reason_names_the_bad_number(twilio_env: None) -> None:
    answer = twilio_failure(400, 21211, "The 'To' number +1415555 is not a valid phone number.")
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=answer)
        with pytest.raises(PermanentError, match=r"21211: The 'To' number \+1415555 is not a valid phone number"):
            twilio_channel().send(MESSAGE, CTX)


def test_20429_is_a_rate_limit_and_honours_retry_after(twilio_env: None) -> None:
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=twilio_failure(429, 20429, "Too Many Requests", **{"Retry-After": "3"}))
        with pytest.raises(RateLimitError) as err:
            twilio_channel().send(MESSAGE, CTX)
    assert (err.value.code, err.value.retry_after) == ("20429", 3.0)


def test_21611_a_full_sender_queue_is_a_rate_limit(twilio_env: None) -> None:
    """The sender's queue holds over 10 hours of messages: it drains at the sender's rate, so a later try works
    (and is waited for longer than a plain failure: a RateLimitError)."""
    answer = twilio_failure(400, 21611, "This 'From' number has exceeded the maximum number of queued messages")
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=answer)
        with pytest.raises(RateLimitError, match="21611: This 'From' number") as err:
            twilio_channel().send(MESSAGE, CTX)
    assert err.value.code == "21611"


def test_20429_is_a_rate_limit_whatever_the_http_status(twilio_env: None) -> None:
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=twilio_failure(400, 20429, "Too Many Requests"))
        with pytest.raises(RateLimitError) as err:
            twilio_channel().send(MESSAGE, CTX)
    assert (err.value.code, err.value.retry_after) == ("20429", None)


def test_5xx_json_is_transient(twilio_env: None) -> None:
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=twilio_failure(500, 20500, "An internal server error has occurred"))
        with pytest.raises(TransientError, match="20500") as err:
            twilio_channel().send(MESSAGE, CTX)
    assert err.value.code == "20500" and not isinstance(err.value, RateLimitError)  # the quick default back-off


def test_5xx_html_from_a_proxy_is_transient_with_an_http_date_retry_after(twilio_env: None) -> None:
    answer = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"},
                            text="<html>Service Unavailable</html>")
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=answer)
        with pytest.raises(TransientError, match="HTTP 503: <html>Service Unavailable") as err:
            twilio_channel().send(MESSAGE, CTX)
    assert err.value.code == "503"
    assert err.value.retry_after > 3600


@pytest.mark.parametrize("answer", [
    httpx.Response(201, json={"status": "queued"}),
    httpx.Response(200, text="<html>Welcome to the hotel wifi</html>"),
])
def test_a_2xx_without_a_sid_is_an_error_and_not_retried(twilio_env: None, answer: httpx.Response) -> None:
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=answer)
        with pytest.raises(PermanentError, match="without a message sid") as err:
            twilio_channel().send(MESSAGE, CTX)
    assert err.value.code == "no_sid"


def test_a_2xx_that_reports_a_failed_message_is_an_error(twilio_env: None) -> None:
    answer = created(status="failed", error_code=30007, error_message=None)
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=answer)
        with pytest.raises(PermanentError, match=f"30007: message {MESSAGE_SID} is failed") as err:
            twilio_channel().send(MESSAGE, CTX)
    assert err.value.code == "30007"


@pytest.mark.parametrize("code", ["1e999", "true", "[21211]", "{\"c\": 21211}", "\"2²\"", "\"%s\"" % ("9" * 5000)])
@pytest.mark.parametrize(("status", "error"), [(400, PermanentError), (503, TransientError)])
def test_an_error_code_that_is_not_an_integer_falls_back_to_the_status(
        twilio_env: None, code: str, status: int, error: type) -> None:
    body = f'{{"code": {code}, "message": "odd answer", "status": {status}}}'  # raw JSON: 1e999 is a number
    with respx.mock(assert_all_called=True) as router:
        router.post(URL).mock(return_value=httpx.Response(status, content=body.encode(),
                                                          headers={"content-type": "application/json"}))
        with pytest.raises(error) as info:
            twilio_channel().send(MESSAGE, CTX)
    assert info.value.code == str(status)
    assert str(info.value) == f"twilio answered HTTP {status}: odd answer"


@pytest.mark.parametrize("segments", ["1e999", "true", "\"2²\"", "[1]", "null", "\"abc\""])
def test_a_segment_count_that_is_not_an_integer_is_left_out_of_the_receipt(twilio_env: None, segments: str) -> None:
    body = f'{{"sid": "{MESSAGE_SID}", "status": "queued", "num_segments": {segments}, "error_code": null}}'
    with respx.mock(assert_all_called=True) as router:
        router.post(URL).mock(return_value=httpx.Response(201, content=body.encode(),
                                                          headers={"content-type": "application/json"}))
        receipt = twilio_channel().send(MESSAGE, CTX)
    assert receipt.message_id == MESSAGE_SID
    assert receipt.detail["segments"] is None


@pytest.mark.parametrize("status, error", [(500, TransientError), (201, PermanentError)])
def test_an_answer_of_100_mb_is_not_read_whole(twilio_env: None, status: int, error: type) -> None:
    read: list[int] = []
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=httpx.Response(status, content=endless_body(read)))
        with pytest.raises(error, match=f"HTTP {status}"):
            twilio_channel().send(MESSAGE, CTX)
    assert len(read) <= 2, f"read {len(read)} MiB of the answer"


def test_a_redirect_is_permanent_and_says_where_it_points(twilio_env: None) -> None:
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=httpx.Response(301, headers={"location": "https://proxy.example/login"}))
        with pytest.raises(PermanentError, match="twilio answered HTTP 301, redirecting to https://proxy.example/login"):
            twilio_channel().send(MESSAGE, CTX)


def test_a_201_cut_off_before_its_sid_is_not_retried(twilio_env: None) -> None:
    """Twilio created the message (201): a retry would text the customer a second time."""
    with respx.mock() as mock:
        mock.post(URL).mock(return_value=httpx.Response(201, content=cut_off_body(b'{"sid": "SM55')))
        with pytest.raises(PermanentError, match="HTTP 201 without a message sid") as err:
            twilio_channel().send(MESSAGE, CTX)
    assert err.value.code == "no_sid"


@pytest.mark.parametrize("exc, sent", [
    (httpx.ConnectTimeout("no route"), False),
    (httpx.ConnectError("refused"), False),
    (httpx.ReadTimeout("timed out"), True),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
])
def test_a_lost_answer_says_the_request_may_have_reached_twilio(twilio_env: None, exc: Exception, sent: bool) -> None:
    """Twilio takes no idempotency key: a retry after a lost answer may text twice, and the error says so."""
    with respx.mock() as mock:
        mock.post(URL).mock(side_effect=exc)
        with pytest.raises(TransientError) as err:
            twilio_channel().send(MESSAGE, CTX)
    assert err.value.code == type(exc).__name__
    assert ("may have reached twilio" in str(err.value)) is sent


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_connection_errors_and_timeouts_are_transient(twilio_env: None, exc: Exception) -> None:
    with respx.mock() as mock:
        mock.post(URL).mock(side_effect=exc)
        with pytest.raises(TransientError, match="twilio"):
            twilio_channel().send(MESSAGE, CTX)


def test_injected_statuses_map_like_twilio_answers(twilio_env: None) -> None:
    channel = twilio_channel()
    throttled = channel.error_for_status(429, {"retry-after": "2"}, "injected")
    assert isinstance(throttled, TransientError) and throttled.retry_after == 2.0
    assert isinstance(channel.error_for_status(503, {}, "injected"), TransientError)
    rejected = channel.error_for_status(400, {}, "injected")
    assert isinstance(rejected, PermanentError) and rejected.code == "400"


def test_fault_injection_fails_attempt_one_before_any_request(twilio_env: None) -> None:
    channel = with_faults(twilio_channel(), {"fail_attempts": [1], "status": 429, "retry_after": 0.5})
    with respx.mock() as mock:
        route = mock.post(URL).mock(return_value=created())
        with pytest.raises(TransientError) as err:
            channel.send(MESSAGE, CTX)
        assert err.value.retry_after == 0.5
        assert route.call_count == 0
        receipt = channel.send(MESSAGE, LeafContext(id="notify/42.sms", attempt=2))
    assert route.call_count == 1
    assert (receipt.message_id, receipt.attempt) == (MESSAGE_SID, 2)


def test_missing_auth_token_is_a_config_error_before_any_send(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="missing secret: set the environment variable TWILIO_AUTH_TOKEN"):
        twilio_channel()


def test_secret_names_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_TWILIO_SID", raising=False)
    with pytest.raises(ConfigError, match="ACME_TWILIO_SID"):
        twilio_channel(account_sid_env="ACME_TWILIO_SID")


def test_an_account_sid_that_is_not_one_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "SK" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    with pytest.raises(ConfigError, match=r"TWILIO_ACCOUNT_SID does not hold an Account SID \('AC' then 32 hex"):
        twilio_channel()


def test_twilio_needs_a_sender(twilio_env: None) -> None:
    with pytest.raises(ConfigError, match="set from_number .* or messaging_service_sid"):
        build_sms_channel(SmsOptions(transport="twilio"))


def test_auto_picks_twilio_when_credentials_are_set(twilio_env: None) -> None:
    assert isinstance(twilio_channel(transport="auto").transport, TwilioTransport)


def test_auto_falls_back_to_simulated_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT_SID)
    channel = build_sms_channel(SmsOptions(ledger=str(tmp_path / "ledger.sqlite")))
    assert isinstance(channel.transport, SimulatedTransport)
