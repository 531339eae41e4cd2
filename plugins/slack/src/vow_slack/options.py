"""The options of the ``slack`` channel, as written in YAML or passed from Python."""

from __future__ import annotations

from typing import Literal

import attrs

from vow.config import finite
from vow.http import http_url


@attrs.frozen
class SlackOptions:
    """How the ``slack`` channel sends.

    ``transport="auto"`` picks ``bot`` when the bot-token variable is set, else ``webhook`` when
    the webhook-URL variable is set, else ``simulated``. Secrets are given as the NAME of an
    environment variable, never as the value.
    """

    transport: Literal["auto", "bot", "webhook", "simulated"] = "auto"
    bot_token_env: str = "SLACK_BOT_TOKEN"
    webhook_url_env: str = "SLACK_WEBHOOK_URL"
    api_url: str = attrs.field(default="https://slack.com/api", validator=http_url("https://slack.com/api"))
    check_before_retry: bool = True
    timeout: float = attrs.field(default=10.0, validator=[finite(), attrs.validators.gt(0)])
    latency: float = attrs.field(default=0.25, validator=[finite(), attrs.validators.ge(0)])
    ledger: str | None = None
