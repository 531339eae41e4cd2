"""The simulated transport: no keys, realistic latency, and the shared dedupe ledger as provider."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from vow.channels import Message, Receipt
from vow.leaf import LeafContext
from vow.simulation import Ledger, latency, stable_hex
from vow_push.fcm import fcm_error, parse_error_detail
from vow_push.validation import check_any_token, check_text

JITTER = 0.25  # +-25 % around the mean latency
SIMULATED_PROJECT = "vow-simulated"


class SimulatedTransport:
    """Delivers into a :class:`~vow.simulation.Ledger`: a repeated key is a duplicate, not a second push."""

    name = "simulated"

    def __init__(self, ledger: Ledger, *, mean_latency: float = 0.12, project_id: str | None = None) -> None:
        self.ledger = ledger
        self.mean_latency = mean_latency
        self.project_id = project_id or SIMULATED_PROJECT

    def validate(self, message: Message) -> None:
        """Either kind of device token (APNs or FCM) and a non-empty body."""
        check_any_token(message.to)
        check_text(message)

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Wait like a provider would, then record the push once per idempotency key."""
        key = ctx.idempotency_key
        time.sleep(latency(self.mean_latency, JITTER, key, ctx.attempt))
        message_id = f"projects/{self.project_id}/messages/0:{stable_hex(key, 16, salt='push')}"

        def make_receipt() -> dict[str, Any]:
            return Receipt("push", self.name, message_id, message.to, key, ctx.attempt).to_dict()

        payload = {"to": message.to, "title": message.subject, "body": message.body, "data": message.data}
        receipt, duplicate = self.ledger.deliver(key, "push", payload, make_receipt)
        return Receipt(**{**receipt, "duplicate": duplicate})

    def error_for_status(self, status: int, headers: Mapping[str, str], detail: str) -> Exception:
        """Answers like FCM, whose message names the simulated receipts imitate."""
        return fcm_error(status, headers, parse_error_detail(detail), detail)
