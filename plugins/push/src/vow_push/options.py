"""The options of the ``push`` channel (validated by vow: strict types, unknown keys are errors)."""

from __future__ import annotations

from typing import Literal

import attrs

from vow.config import finite

APNS_PRIORITIES = (1, 5, 10)


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
    priority: int = attrs.field(default=10, validator=attrs.validators.in_(APNS_PRIORITIES))
    """10: deliver now; 5: when the device saves power; 1: lowest."""


@attrs.frozen
class PushOptions:
    """Options of the ``push`` channel.

    ``transport``: ``auto`` (FCM when its credentials are in the environment, else APNs when
    its key is, else ``simulated``), ``fcm``, ``apns`` or ``simulated``.
    """

    transport: Literal["auto", "fcm", "apns", "simulated"] = "auto"
    timeout: float = attrs.field(default=10.0, validator=[finite(), attrs.validators.gt(0)])
    latency: float = attrs.field(default=0.12, validator=[finite(), attrs.validators.ge(0)])
    """Mean latency of the simulated transport, in seconds."""
    ledger: str | None = None
    """The simulated transport's ledger file; default ``$VOW_SIM_DIR/ledger.sqlite``."""
    fcm: FcmOptions = attrs.field(factory=FcmOptions)
    apns: ApnsOptions = attrs.field(factory=ApnsOptions)
