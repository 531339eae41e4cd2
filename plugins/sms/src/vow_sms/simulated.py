"""The simulated transport: a Twilio look-alike that needs no keys and never sends a text twice.

Deliveries land in the shared :class:`vow.simulation.Ledger` (a SQLite file several processes
can share); a second send with the same idempotency key returns the first receipt marked
``duplicate`` and delivers nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from vow.channels import Message, Receipt
from vow.leaf import LeafContext
from vow.simulation import Ledger, latency, stable_hex
from vow_sms.options import SmsOptions
from vow_sms.segments import count_segments

LATENCY_JITTER = 0.3


def simulated_sid(key: str) -> str:
    """A Twilio-style message sid (``SM`` + 32 hex digits) derived from the idempotency key."""
    return "SM" + stable_hex(key, 32, salt="sms")


class SimulatedTransport:
    """Sends into the ledger after a realistic, repeatable delay."""

    name = "simulated"

    def __init__(self, ledger: Ledger, *, latency: float = 0.15, sender: Mapping[str, str] | None = None) -> None:
        self.ledger = ledger
        self.latency = latency
        self.sender = dict(sender or {})

    @classmethod
    def from_options(cls, options: SmsOptions) -> SimulatedTransport:
        """The transport ``options`` describe (``ledger`` path, ``latency``, sender for the record)."""
        return cls(Ledger(options.ledger), latency=options.latency, sender=options.sender())

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Deliver once per idempotency key; a repeat returns the first receipt with ``duplicate=True``."""
        key = ctx.idempotency_key
        time.sleep(latency(self.latency, LATENCY_JITTER, key, ctx.attempt))
        encoding, segments = count_segments(message.body)
        sender = {"from": self.sender.get("From"), "messaging_service_sid": self.sender.get("MessagingServiceSid")}

        def receipt() -> dict[str, Any]:
            return Receipt(
                channel="sms", transport=self.name, message_id=simulated_sid(key), to=message.to,
                idempotency_key=key, attempt=ctx.attempt,
                detail={"status": "queued", "segments": segments, "encoding": encoding, **sender},
            ).to_dict()

        payload = {"to": message.to, "body": message.body, **sender}
        stored, duplicate = self.ledger.deliver(key, "sms", payload, receipt)
        return Receipt(**{**stored, "duplicate": duplicate})
