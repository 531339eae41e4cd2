"""vow: durable fan-out / fan-in with generator workflows.

::

    from vow import Vow, Context

    vow = Vow()

    @vow.register
    def notify_all(ctx: Context, event: dict):
        handles = []
        for channel in ("email", "sms", "slack", "push"):
            handles.append((yield ctx.begin_run(send, channel, event).options(id=f"{ctx.id}.{channel}")))
        return [(yield h) for h in handles]

    vow.run(f"notify/{event['order_id']}", notify_all, event)
"""

from vow.client import RunHandle, Vow
from vow.context import Call, Context, Handle, Options, Outcome
from vow.errors import (
    AlreadySettledError,
    ArgumentMismatchError,
    CanceledError,
    ConfigError,
    EncodeError,
    NonDeterminismError,
    PermanentError,
    PromiseNotFoundError,
    PromiseTimeoutError,
    TransientError,
    VowError,
)
from vow.hookspecs import hookimpl
from vow.leaf import LeafContext
from vow.records import Kind, PromiseRecord, State
from vow.retry import Constant, Exponential, Linear, Never

__version__ = "0.2.0"  # the distribution vow-durable reads its version from here

__all__ = [
    "AlreadySettledError", "ArgumentMismatchError", "Call", "CanceledError", "ConfigError", "Constant",
    "Context", "EncodeError", "Exponential", "Handle", "Kind", "LeafContext", "Linear", "Never",
    "NonDeterminismError", "Options", "Outcome", "PermanentError", "PromiseNotFoundError", "PromiseRecord",
    "PromiseTimeoutError", "RunHandle", "State", "TransientError", "Vow", "VowError", "hookimpl",
]
