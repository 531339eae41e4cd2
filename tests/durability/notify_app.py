"""The four-channel workflow, run in a real subprocess by the crash matrix.

Usage: ``python -m tests.durability.notify_app STORE ID PLAN_JSON`` (from the checkout's root). It
runs workflow ``notify`` (email, SMS, Slack and push through :func:`vow.channels.deliver`, simulated
transports, deliveries in the Ledger under ``$VOW_SIM_DIR``) and prints the result as JSON on its
last line.

``PLAN_JSON`` shapes the run (it is a workflow argument, so a resumed run gets the same plan)::

    {"channels": {"push": {"latency": 0.0, "faults": {"fail_attempts": [1]}}},
     "stages": [{"send": ["email", "sms"]}, {"sleep": 2.0}, {"send": ["slack", "push"]}, {"confirm": true}]}

Crash points are made exact, not timed, by holding a thread forever at a chosen spot; only the
process that is going to be killed sets these (a resumed process runs freely):

* ``DURABILITY_HOLD_BEFORE=email,sms``: those channels' sends stop just before the Ledger
  records them (the leaf runs, nothing is delivered);
* ``DURABILITY_HOLD_AFTER=push``: the send stops just after the Ledger recorded it (delivered at
  the sink, but the leaf never returns, so its promise stays pending);
* ``DURABILITY_HOLD_CONFIRM=1``: the ``confirm`` leaf after the fan-in never returns.

Each hold appends ``held <before|after|confirm> <promise id>`` to ``$DURABILITY_LOG`` (one
O_APPEND write per line). An observer appends ``start <id> <attempt> <pid> <time>`` for every
leaf attempt the engine starts and ``retry <id> <attempt> <time> <delay> <error>`` for every retry it
schedules, so the test can wait for exact moments and count executions across processes.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from vow import Context, LeafContext, Vow
from vow.channels import deliver
from vow.events import Event, EventKind
from vow.simulation import Ledger

RECIPIENTS = {"email": "ada@example.com", "sms": "+14155550100", "slack": "#orders", "push": "a" * 64}


def _log(line: str) -> None:
    path = os.environ.get("DURABILITY_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def _hold_forever(what: str, key: str) -> None:
    _log(f"held {what} {key}")
    threading.Event().wait()


class LeafLog:
    """Observer: one log line per leaf attempt started and per retry scheduled."""

    def on_event(self, event: Event) -> None:
        if event.promise_kind != "step":
            return
        if event.kind is EventKind.STARTED:
            _log(f"start {event.id} {event.attempt} {os.getpid()} {event.time!r}")
        elif event.kind is EventKind.RETRY_SCHEDULED:
            _log(f"retry {event.id} {event.attempt} {event.time!r} {event.delay!r} {event.error}")


def confirm(ctx: LeafContext, message_ids: list[str]) -> str:
    """The step after the fan-in: acknowledge the receipts (a leaf that is not a delivery)."""
    if os.environ.get("DURABILITY_HOLD_CONFIRM"):
        _hold_forever("confirm", ctx.id)
    return f"confirmed {len(message_ids)} deliveries"


def notify(ctx: Context, event: dict, plan: dict):
    """Deliver one order event over the channels the plan's stages name, then maybe confirm."""
    receipts: dict[str, dict] = {}
    confirmed = None
    text = f"Order {event['order_id']} is confirmed: {event['total']} on its way."
    for stage in plan["stages"]:
        if "send" in stage:
            handles = []
            for channel in stage["send"]:
                spec = plan.get("channels", {}).get(channel, {})
                options = {"transport": "simulated", "latency": spec.get("latency", 0.0)}
                message = {"to": RECIPIENTS[channel], "subject": f"Order {event['order_id']}", "body": text}
                call = ctx.begin_run(deliver, channel, message, options, spec.get("faults"))
                handles.append((channel, (yield call.options(id=f"{ctx.id}.{channel}"))))
            for channel, handle in handles:  # fan in
                receipts[channel] = yield handle
        elif "sleep" in stage:
            yield ctx.sleep(stage["sleep"])
        elif "confirm" in stage:
            ids = sorted(r["message_id"] for r in receipts.values())
            confirmed = yield ctx.run(confirm, ids).options(id=f"{ctx.id}.confirm")
    return {"receipts": receipts, "confirmed": confirmed}


def _install_holds() -> None:
    before = set(filter(None, os.environ.get("DURABILITY_HOLD_BEFORE", "").split(",")))
    after = set(filter(None, os.environ.get("DURABILITY_HOLD_AFTER", "").split(",")))
    if not (before or after):
        return
    original = Ledger.deliver

    def deliver_with_holds(self, key, channel, payload, make_receipt):  # type: ignore[no-untyped-def]
        if channel in before:
            _hold_forever("before", key)
        result = original(self, key, channel, payload, make_receipt)
        if channel in after:
            _hold_forever("after", key)
        return result

    Ledger.deliver = deliver_with_holds  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    store, wid, plan = argv[0], argv[1], json.loads(argv[2])
    _install_holds()
    vow = Vow(store=store, observers=[LeafLog()])
    vow.register(notify)
    print("started", os.getpid(), flush=True)
    event = {"order_id": wid.rsplit("/", 1)[-1], "total": "$42.00"}
    result = vow.run(wid, notify, event, plan)
    print(json.dumps(result, sort_keys=True), flush=True)
    vow.close()


if __name__ == "__main__":
    main(sys.argv[1:])
