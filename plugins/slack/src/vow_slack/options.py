"""The options of the ``slack`` channel, as written in YAML or passed from Python."""

from __future__ import annotations

import attrs

from vow.errors import ConfigError

TRANSPORTS = ("auto", "bot", "webhook", "simulated")


@attrs.frozen
class SlackOptions:
    """How the ``slack`` channel sends.

    ``transport="auto"`` picks ``bot`` when the bot-token variable is set, else ``webhook`` when
    the webhook-URL variable is set, else ``simulated``. Secrets are given as the NAME of an
    environment variable, never as the value.
    """

    transport: str = "auto"
    bot_token_env: str = "SLACK_BOT_TOKEN"
    webhook_url_env: str = "SLACK_WEBHOOK_URL"
    api_url: str = "https://slack.com/api"
    check_before_retry: bool = True
    timeout: float = 10.0
    latency: float = 0.25
    ledger: str | None = None

    def check(self) -> None:
        """Raise :class:`ConfigError` for values the types allow but Slack or vow cannot use."""
        where = "channel 'slack' options"
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"{where}.transport: {self.transport!r} is not a Slack transport "
                              f"(allowed: {', '.join(TRANSPORTS)})")
        if self.timeout <= 0:
            raise ConfigError(f"{where}.timeout: must be a number of seconds > 0, got {self.timeout}")
        if self.latency < 0:
            raise ConfigError(f"{where}.latency: must be a number of seconds >= 0, got {self.latency}")
        if not self.api_url.startswith(("https://", "http://")):
            raise ConfigError(f"{where}.api_url: must be an http(s) URL such as https://slack.com/api, "
                              f"got {self.api_url!r}")
