"""The simulated transport: no keys, realistic latency, deliveries deduped in the shared Ledger."""

from __future__ import annotations

import functools
import time

from vow.channels import Message, Receipt
from vow.leaf import LeafContext
from vow.simulation import Ledger, latency, stable_uuid
from vow_email.mime import message_id_for

JITTER = 0.5  # latency varies by +/- half its mean, repeatably per key and attempt


class SimulatedTransport:
    """Behaves like Resend: a UUID email id derived from the key, one delivery per key."""

    name = "simulated"

    def __init__(self, *, from_addr: str, message_id_domain: str, latency: float, ledger: str | None) -> None:
        self.from_addr = from_addr
        self.message_id_domain = message_id_domain
        self.latency = latency
        self._ledger_path = ledger

    @functools.cached_property
    def ledger(self) -> Ledger:
        """The ledger, opened on first send (building the channel creates no files)."""
        return Ledger(self._ledger_path)

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Wait a realistic time, then record the delivery unless the key was delivered before."""
        key = ctx.idempotency_key
        time.sleep(latency(self.latency, JITTER, key, ctx.attempt))
        first = Receipt(channel="email", transport=self.name, message_id=stable_uuid(key), to=message.to,
                        idempotency_key=key, attempt=ctx.attempt, detail={"from": self.from_addr})
        payload = {"from": self.from_addr, "to": message.to, "subject": message.subject, "text": message.body,
                   "html": message.data.get("html"), "message_id": message_id_for(key, self.message_id_domain)}
        stored, duplicate = self.ledger.deliver(key, "email", payload, first.to_dict)
        return Receipt(**{**stored, "duplicate": duplicate})
