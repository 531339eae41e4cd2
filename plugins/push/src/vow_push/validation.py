"""Checks run before anything is sent: device tokens, title and body, payload size."""

from __future__ import annotations

import re

from vow.channels import Message
from vow.errors import ConfigError

KEY_FIELD = "vow_idempotency_key"  # the payload field that hands the idempotency key to the app
PAYLOAD_LIMIT = 4096  # bytes: APNs alert payloads and FCM notification + data alike
APNS_TOKEN = re.compile(r"(?:[0-9a-fA-F]{2}){32,100}")  # 32 bytes today; Apple says the size may grow
FCM_TOKEN = re.compile(r"[A-Za-z0-9_:.\-]{64,4096}")

APNS_RULE = "an APNs device token is the device's token as hex: 64 hex characters (32 bytes), no spaces or <>"
FCM_RULE = ("an FCM registration token is the string the Firebase SDK gives the app: 64 to 4096 characters "
            "of letters, digits, '_', '-', ':' and '.'")


def check_text(message: Message) -> None:
    """The body must say something; a title (``subject``) is optional but not blank."""
    if not isinstance(message.body, str) or not message.body.strip():
        raise ConfigError("push message body: must be non-empty text (it is the notification's text)")
    if message.subject is not None and (not isinstance(message.subject, str) or not message.subject.strip()):
        raise ConfigError("push message subject: the notification title must be non-empty text, or left out")


def check_apns_token(to: str) -> None:
    """``to`` must be an APNs device token."""
    if not (isinstance(to, str) and APNS_TOKEN.fullmatch(to)):
        raise ConfigError(f"push message to: {_show(to)} is not a device token: {APNS_RULE}")


def check_fcm_token(to: str) -> None:
    """``to`` must be an FCM registration token (and not an APNs one sent to FCM by mistake)."""
    if isinstance(to, str) and APNS_TOKEN.fullmatch(to):
        raise ConfigError(f"push message to: {_show(to)} looks like an APNs device token, but the transport "
                          f"is FCM: {FCM_RULE}")
    if not (isinstance(to, str) and FCM_TOKEN.fullmatch(to)):
        raise ConfigError(f"push message to: {_show(to)} is not a device token: {FCM_RULE}")


def check_any_token(to: str) -> None:
    """``to`` must be an APNs device token or an FCM registration token."""
    if not (isinstance(to, str) and (APNS_TOKEN.fullmatch(to) or FCM_TOKEN.fullmatch(to))):
        raise ConfigError(f"push message to: {_show(to)} is not a device token: {APNS_RULE}; or {FCM_RULE}")


def size_problem(size: int, what: str) -> str | None:
    """Why a payload of ``size`` bytes is refused, or ``None`` when it fits."""
    if size <= PAYLOAD_LIMIT:
        return None
    return (f"push message: the {what} is {size} bytes, over the {PAYLOAD_LIMIT}-byte limit "
            "(shorten the body, title or data)")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "...'"
