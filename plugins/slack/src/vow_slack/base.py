"""What every Slack transport shares: validation, receipts and the status mapping."""

from __future__ import annotations

from collections.abc import Mapping

from vow.channels import Message, Receipt
from vow.leaf import LeafContext
from vow_slack import message as slack_message
from vow_slack.errors import slack_error

CHANNEL = "slack"


class SlackChannel:
    """Base of the Slack transports: validation and the status mapping used by fault injection."""

    transport = ""
    needs_to = True
    """Whether ``message.to`` must name a channel (a webhook is bound to one already)."""

    def validate(self, message: Message) -> None:
        """Raise :class:`~vow.errors.ConfigError` for a malformed channel or text, before any send."""
        slack_message.validate(message, to_required=self.needs_to)

    def send(self, message: Message, ctx: LeafContext) -> Receipt:  # pragma: no cover - abstract
        """Post ``message`` once; raise ``TransientError`` or ``PermanentError`` on failure."""
        raise NotImplementedError

    def error_for_status(self, status: int, headers: Mapping[str, str], detail: str) -> Exception:
        """Classify an HTTP status the way a real Slack answer with that status is classified."""
        return slack_error(str(status), status, headers, via=f"{self.transport} transport", detail=detail)

    def receipt(self, message: Message, ctx: LeafContext, message_id: str, **detail: object) -> Receipt:
        """A receipt for ``message`` accepted by Slack as ``message_id``."""
        return Receipt(CHANNEL, self.transport, message_id, message.to, ctx.idempotency_key, ctx.attempt,
                       detail=dict(detail))
