"""The ``simulated`` transport: Slack without credentials, deduplicated by the shared Ledger.

It validates like the real transports, waits a realistic latency, and answers a Slack-style
``ts`` (``1700000000.123456``: the first delivery's time, microseconds derived from the key).
A second send with the same idempotency key — from any process sharing the ledger file —
returns the first receipt with ``duplicate=True`` and posts nothing.
"""

from __future__ import annotations

import time
from typing import Any

from vow.channels import Message, Receipt
from vow.leaf import LeafContext
from vow.simulation import Ledger, latency, stable_hex
from vow_slack.base import CHANNEL, SlackChannel
from vow_slack.message import metadata, payload

JITTER = 0.3
WEBHOOK_CHANNEL = "webhook"
"""The channel echoed for a message without ``to`` (what a webhook's bound channel stands for)."""


class SimulatedTransport(SlackChannel):
    """Records each message in ``ledger`` instead of posting it."""

    transport = "simulated"
    needs_to = False  # stands in for the webhook transport too

    def __init__(self, ledger: Ledger, *, mean_latency: float = 0.25) -> None:
        self.ledger = ledger
        self._mean_latency = mean_latency

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Record ``message`` once per idempotency key; the receipt's id is ``"{channel}:{ts}"``."""
        key = ctx.idempotency_key
        time.sleep(latency(self._mean_latency, JITTER, key, ctx.attempt))
        channel = message.to or WEBHOOK_CHANNEL
        body = {"channel": channel, **payload(message), "metadata": metadata(key)}

        def first_receipt() -> dict[str, Any]:
            ts = f"{int(time.time())}.{int(stable_hex(key, 8), 16) % 1_000_000:06d}"
            return self.receipt(message, ctx, f"{channel}:{ts}", channel=channel, ts=ts).to_dict()

        stored, duplicate = self.ledger.deliver(key, CHANNEL, body, first_receipt)
        return Receipt(**{**stored, "duplicate": duplicate})
