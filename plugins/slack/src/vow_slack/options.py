"""The options of the ``slack`` channel, as written in YAML or passed from Python."""

from __future__ import annotations

from typing import Literal

import attrs
import httpx

from vow.config import finite


def _http_url(_instance: object, _attribute: object, value: str | None) -> None:
    """An absolute http(s) URL with a host and a TCP port, as httpx reads it: a bad one is refused here,
    not at every send (where httpx raises InvalidURL, or quietly wraps a port above 65535)."""
    if value is None:
        return
    expected = "expected an http(s) URL such as https://slack.com/api"
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{value!r} is not a URL ({exc}); {expected}") from None
    if url.scheme not in ("http", "https") or not url.host or not 0 < (url.port or 80) < 65536:
        raise ValueError(f"{expected}, got {value!r}")


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
    api_url: str = attrs.field(default="https://slack.com/api", validator=_http_url)
    check_before_retry: bool = True
    timeout: float = attrs.field(default=10.0, validator=[finite(), attrs.validators.gt(0)])
    latency: float = attrs.field(default=0.25, validator=[finite(), attrs.validators.ge(0)])
    ledger: str | None = None
