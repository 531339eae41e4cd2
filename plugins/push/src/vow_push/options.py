"""The options of the ``push`` channel (validated by vow with cattrs; unknown keys are errors)."""

from __future__ import annotations

from typing import Literal

import attrs

APNS_PRIORITIES = (1, 5, 10)


def _apns_priority(_inst: object, _attr: attrs.Attribute, value: int) -> None:
    if value not in APNS_PRIORITIES:
        raise ValueError(f"priority must be 10 (now), 5 (power-saving) or 1 (lowest), got {value}")


def _positive(_inst: object, attr: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attr.name} must be a positive number of seconds, got {value}")


def _not_negative(_inst: object, attr: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attr.name} must be zero or more seconds, got {value}")


@attrs.frozen
class FcmOptions:
    """Firebase Cloud Messaging (HTTP v1).

    Credentials, in order: a ready OAuth2 access token in ``access_token_env``, else the
    service-account JSON key file whose path is in ``credentials_env``.
    """

    project_id: str | None = None
    """Firebase project id; defaults to the ``project_id`` of the service-account file."""
    credentials_env: str = "GOOGLE_APPLICATION_CREDENTIALS"
    access_token_env: str = "FCM_ACCESS_TOKEN"


@attrs.frozen
class ApnsOptions:
    """Apple Push Notification service with token (``.p8`` key) authentication."""

    team_id: str | None = None
    key_id: str | None = None
    topic: str | None = None
    """The app's bundle id (the ``apns-topic`` header)."""
    key_env: str = "APNS_AUTH_KEY"
    """Variable holding the ``.p8`` key itself (PEM text) or the path to the ``.p8`` file."""
    sandbox: bool = False
    """Send to ``api.sandbox.push.apple.com`` (development builds) instead of production."""
    priority: int = attrs.field(default=10, validator=_apns_priority)


@attrs.frozen
class PushOptions:
    """Options of the ``push`` channel.

    ``transport``: ``auto`` (FCM when its credentials are in the environment, else APNs when
    its key is, else ``simulated``), ``fcm``, ``apns`` or ``simulated``.
    """

    transport: Literal["auto", "fcm", "apns", "simulated"] = "auto"
    timeout: float = attrs.field(default=10.0, validator=_positive)
    latency: float = attrs.field(default=0.12, validator=_not_negative)
    """Mean latency of the simulated transport, in seconds."""
    ledger: str | None = None
    """The simulated transport's ledger file; default ``$VOW_SIM_DIR/ledger.sqlite``."""
    fcm: FcmOptions = attrs.field(factory=FcmOptions)
    apns: ApnsOptions = attrs.field(factory=ApnsOptions)
