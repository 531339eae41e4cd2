"""Failure injection: one mechanism any channel or image provider can be wrapped in.

From YAML::

    faults: {fail_attempts: [1], error: transient, message: "push service unavailable"}
    faults: {rate: 0.3, seed: 7, latency: 0.05}
    faults: {fail_attempts: [1, 2], status: 429, retry_after: 0.2}

From Python: ``with_faults(channel, Faults(fail_attempts=[1]))``.

Decisions depend only on the seed, the idempotency key and the attempt number, so a run that
crashes and resumes makes the same decisions again.
"""

from __future__ import annotations

import hashlib
import importlib
import time
from typing import Any

import attrs

from vow.errors import ConfigError, PermanentError, TransientError
from vow.http import error_for_status
from vow.leaf import LeafContext

ERROR_KINDS = ("transient", "permanent", "timeout")


def _check_rate(_inst: object, _attr: attrs.Attribute, value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"rate must be between 0 and 1, got {value}")


def _check_attempts(_inst: object, _attr: attrs.Attribute, value: list[int]) -> None:
    if any(a < 1 for a in value):
        raise ValueError(f"fail_attempts counts from 1, got {value}")


def _check_status(_inst: object, _attr: attrs.Attribute, value: int | None) -> None:
    if value is not None and not 100 <= value <= 599:
        raise ValueError(f"status must be an HTTP status (100-599), got {value}")


@attrs.frozen
class Faults:
    """What to inject into a call.

    ``fail_attempts`` fails exactly those attempts; ``rate`` fails that fraction of attempts
    (decided by ``seed``); ``error`` is ``transient``, ``permanent``, ``timeout`` or an exception
    type name (``RuntimeError``, ``mypkg.errors.Boom``); ``status`` answers that HTTP status
    instead, which the channel maps like a real response; ``latency`` adds seconds to every attempt.
    """

    fail_attempts: list[int] = attrs.field(factory=list, validator=_check_attempts)
    rate: float = attrs.field(default=0.0, validator=_check_rate)
    seed: int = 0
    error: str = "transient"
    message: str = "injected failure"
    status: int | None = attrs.field(default=None, validator=_check_status)
    retry_after: float | None = None
    latency: float = 0.0

    def __attrs_post_init__(self) -> None:
        if self.error not in ERROR_KINDS:
            _exception_type(self.error)  # fail early on a bad name

    def should_fail(self, ctx: LeafContext) -> bool:
        """Whether this attempt fails (a pure function of seed, key and attempt)."""
        if ctx.attempt in self.fail_attempts:
            return True
        if self.rate <= 0:
            return False
        digest = hashlib.blake2b(f"{self.seed}|{ctx.idempotency_key}|{ctx.attempt}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.rate

    def inject(self, ctx: LeafContext) -> int | None:
        """Apply latency, then fail if chosen: raise the error, or return the HTTP status to answer."""
        if self.latency > 0:
            time.sleep(self.latency)
        if not self.should_fail(ctx):
            return None
        if self.status is not None:
            return self.status
        raise self.make_error(ctx)

    def make_error(self, ctx: LeafContext) -> BaseException:
        """The exception this fault raises on ``ctx``'s attempt."""
        message = f"{self.message} (attempt {ctx.attempt})"
        if self.error == "transient":
            return TransientError(message, retry_after=self.retry_after, code="injected")
        if self.error == "permanent":
            return PermanentError(message, code="injected")
        if self.error == "timeout":
            return TransientError(f"timed out: {message}", retry_after=self.retry_after, code="timeout")
        return _exception_type(self.error)(message)


def _exception_type(name: str) -> type[BaseException]:
    module_name, _, attr = name.rpartition(".")
    try:
        obj: Any = importlib.import_module(module_name or "builtins")
        obj = getattr(obj, attr)
    except (ImportError, AttributeError, ValueError):
        obj = None
    if not (isinstance(obj, type) and issubclass(obj, Exception)):
        raise ConfigError(
            f"faults.error: {name!r} is not an exception type (allowed: {', '.join(ERROR_KINDS)}, "
            "or an importable exception class such as RuntimeError)"
        )
    return obj


class Faulty:
    """Wraps a channel or image provider: the fault is injected before the real call.

    An injected ``status`` is turned into an error by the target's own
    ``error_for_status(status, headers, detail)`` when it has one, else by
    :func:`vow.http.error_for_status`, so it is classified exactly like a real response.
    """

    _CALLS = ("send", "generate")

    def __init__(self, target: Any, faults: Faults) -> None:
        self._target = target
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name not in self._CALLS:
            return attr

        def call(payload: Any, ctx: LeafContext, *args: Any, **kwargs: Any) -> Any:
            status = self._faults.inject(ctx)
            if status is not None:
                headers = {"retry-after": str(self._faults.retry_after)} if self._faults.retry_after else {}
                mapper = getattr(self._target, "error_for_status", None)
                raise (mapper(status, headers, self._faults.message) if mapper
                       else error_for_status(status, headers, self._faults.message, provider="injected"))
            return attr(payload, ctx, *args, **kwargs)

        return call


def with_faults(target: Any, faults: Faults | dict[str, Any] | None) -> Any:
    """``target`` wrapped so ``faults`` are injected; ``target`` itself when there are none."""
    if not faults:
        return target
    if not isinstance(faults, Faults):
        from vow.config import structure

        faults = structure(Faults, faults, where="faults")
    return Faulty(target, faults)
