"""Messages that cannot be an SMS are refused before any send, saying what is allowed."""

from __future__ import annotations

import pytest

from vow.channels import Message
from vow.errors import ConfigError
from vow_sms import validate_message


@pytest.mark.parametrize("to", ["+14155550123", "+447911123456", "+4930123456", "+12345678", "+123456789012345"])
def test_e164_numbers_pass(to: str) -> None:
    validate_message(Message(to=to, body="hi"))


@pytest.mark.parametrize("to", [
    "4155550123",          # no +
    "+1 415 555 0123",     # spaces
    "+1-415-555-0123",     # dashes
    "+04155550123",        # country codes never start with 0
    "+1234567",            # 7 digits
    "+1234567890123456",   # 16 digits
    "whatsapp:+14155550123",
    "",
])
def test_malformed_numbers_are_refused_with_the_rule(to: str) -> None:
    with pytest.raises(ConfigError, match=r"sms message.to: .* is not a phone number in E\.164: '\+' then 8-15 digits"):
        validate_message(Message(to=to, body="hi"))


def test_a_number_yaml_read_as_an_integer_says_to_quote_it() -> None:
    with pytest.raises(ConfigError, match="sms message.to: got int 14155550123; write the phone number as a quoted"):
        validate_message(Message(to=14155550123, body="hi"))  # type: ignore[arg-type]


@pytest.mark.parametrize("body", ["", "   \n"])
def test_an_empty_body_is_refused(body: str) -> None:
    with pytest.raises(ConfigError, match="sms message.body: an SMS needs text"):
        validate_message(Message(to="+14155550123", body=body))


def test_the_body_limit_is_twilios_1600_characters() -> None:
    validate_message(Message(to="+14155550123", body="x" * 1600))
    with pytest.raises(ConfigError, match="sms message.body: 1601 characters; Twilio accepts at most 1600"):
        validate_message(Message(to="+14155550123", body="x" * 1601))
