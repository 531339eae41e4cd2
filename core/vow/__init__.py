"""vow: durable fan-out / fan-in with generator workflows.

::

    from vow import Context, Vow
    from vow.channels import deliver

    vow = Vow()

    @vow.register
    def notify_all(ctx: Context, event: dict):
        handles = []
        for channel in ("email", "sms", "slack", "push"):
            text = f"Order {event['order_id']} is confirmed."
            message = {"to": event[channel], "subject": "Order confirmed", "body": text}
            handles.append((yield ctx.begin_run(deliver, channel, message).options(id=f"{ctx.id}.{channel}")))
        receipts = []
        for handle in handles:  # fan in: one yield per handle (a yield cannot sit in a comprehension)
            receipts.append((yield handle))
        return receipts

    event = {"order_id": "A-1001", "email": "ada@example.com", "sms": "+14155550100", "slack": "#orders",
             "push": "a" * 64}
    print(vow.run(f"order/{event['order_id']}", notify_all, event))

The names below are imported when first used, so ``import vow`` (and the ``vow`` command's
``--help``) stays fast: the engine, asyncio and the stores load with the first client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"  # the distribution vow-durable reads its version from here

# Public name -> the module that defines it.
_EXPORTS = {
    "RunHandle": "vow.client", "Vow": "vow.client",
    "Call": "vow.context", "Context": "vow.context", "Handle": "vow.context", "Options": "vow.context",
    "Outcome": "vow.context",
    "AlreadySettledError": "vow.errors", "ArgumentMismatchError": "vow.errors", "CanceledError": "vow.errors",
    "ConfigError": "vow.errors", "DuplicateIdError": "vow.errors", "EncodeError": "vow.errors",
    "NonDeterminismError": "vow.errors",
    "PermanentError": "vow.errors", "PromiseNotFoundError": "vow.errors", "PromiseTimeoutError": "vow.errors",
    "RateLimitError": "vow.errors", "RejectedError": "vow.errors", "RunParkedError": "vow.errors",
    "Throttled": "vow.errors", "TransientError": "vow.errors", "VowError": "vow.errors",
    "hookimpl": "vow.hookspecs",
    "LeafContext": "vow.leaf",
    "stored_as": "vow.naming",
    "Kind": "vow.records", "PromiseRecord": "vow.records", "State": "vow.records",
    "Constant": "vow.retry", "Exponential": "vow.retry", "Linear": "vow.retry", "Never": "vow.retry",
}

__all__ = [
    "AlreadySettledError", "ArgumentMismatchError", "Call", "CanceledError", "ConfigError", "Constant",
    "Context", "DuplicateIdError", "EncodeError", "Exponential", "Handle", "Kind", "LeafContext", "Linear", "Never",
    "NonDeterminismError", "Options", "Outcome", "PermanentError", "PromiseNotFoundError", "PromiseRecord",
    "PromiseTimeoutError", "RateLimitError", "RejectedError", "RunHandle", "RunParkedError", "State", "Throttled",
    "TransientError", "Vow", "VowError", "hookimpl", "stored_as",
]
assert sorted(__all__) == sorted(_EXPORTS)  # a literal list, so type checkers see what is public

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on first use
    from vow.client import RunHandle, Vow
    from vow.context import Call, Context, Handle, Options, Outcome
    from vow.errors import (
        AlreadySettledError,
        ArgumentMismatchError,
        CanceledError,
        ConfigError,
        DuplicateIdError,
        EncodeError,
        NonDeterminismError,
        PermanentError,
        PromiseNotFoundError,
        PromiseTimeoutError,
        RateLimitError,
        RejectedError,
        RunParkedError,
        Throttled,
        TransientError,
        VowError,
    )
    from vow.hookspecs import hookimpl
    from vow.leaf import LeafContext
    from vow.naming import stored_as
    from vow.records import Kind, PromiseRecord, State
    from vow.retry import Constant, Exponential, Linear, Never


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # next time, a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
