"""One order.confirmed event reaches a customer by email, SMS, Slack and push (seed 003), in Python.

    python examples/notify.py            # push fails on its first attempt and is retried alone
    python examples/notify.py A-1002     # another order id: another run

Run it twice with the same order id: the second run returns the stored receipts and sends nothing.
Every channel uses its simulated transport unless credentials are in the environment.
"""

from __future__ import annotations

import sys
import time

from vow import Context, Vow
from vow.channels import deliver

vow = Vow()  # promises in ./.vow/vow.sqlite


@vow.register
def notify_all(ctx: Context, event: dict):
    text = f"Order {event['order_id']} is confirmed: {event['total']} on its way."
    recipients = {"email": event["email"], "sms": event["phone"], "slack": "#orders", "push": event["device"]}
    handles = []
    for channel, to in recipients.items():
        message = {"to": to, "subject": f"Order {event['order_id']} confirmed", "body": text}
        faults = {"fail_attempts": [1], "message": "push service unavailable"} if channel == "push" else None
        handle = yield ctx.begin_run(deliver, channel, message, None, faults).options(id=f"{ctx.id}.{channel}")
        handles.append(handle)
    receipts = []
    for handle in handles:  # fan in: wall time is the slowest channel, not the sum
        receipts.append((yield handle))
    return receipts


if __name__ == "__main__":
    order_id = sys.argv[1] if len(sys.argv) > 1 else "A-1001"
    event = {"order_id": order_id, "total": "$42.00", "email": "ada@example.com", "phone": "+14155550100",
             "device": "a" * 64}
    started = time.perf_counter()
    for receipt in vow.run(f"notify-py/{order_id}", notify_all, event):
        print(f"{receipt['channel']:>5}  attempt {receipt['attempt']}  {receipt['transport']:<9}  "
              f"{receipt['message_id']}")
    print(f"notify-py/{order_id} done in {time.perf_counter() - started:.2f}s")
    vow.close()
