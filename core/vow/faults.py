"""Failure injection: one mechanism any channel or image provider can be wrapped in.

From YAML::

    faults: {fail_attempts: [1], error: transient, message: "push service unavailable"}
    faults: {rate: 0.3, seed: 7, latency: 0.05}
    faults: {fail_attempts: [1, 2], status: 429, retry_after: 0.2}
    faults: {hold_until_file: release}   # each attempt waits until the file "release" exists

From Python: ``with_faults(channel, Faults(fail_attempts=[1]))``.

Decisions depend only on the seed, the idempotency key and the attempt number, so a run that
crashes and resumes makes the same decisions again.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import time
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import attrs

from vow.config import describe, finite, structure
from vow.errors import ConfigError, PermanentError, TransientError
from vow.http import error_for_status
from vow.leaf import LeafContext

ERROR_KINDS = ("transient", "permanent", "timeout")
HOLD_POLL = 0.01  # seconds between looks for the file of hold_until_file

T = TypeVar("T")


@attrs.frozen
class Faults:
    """What to inject into a call.

    ``fail_attempts`` fails exactly those attempts; ``rate`` fails that fraction of attempts
    (decided by ``seed``); ``error`` is ``transient``, ``permanent``, ``timeout`` or an exception
    type name (``RuntimeError``, ``mypkg.errors.Boom``); ``status`` answers that HTTP status
    instead, which the channel maps like a real response; ``latency`` adds seconds to every attempt;
    ``hold_until_file`` holds every attempt until that file exists (see :meth:`hold`).
    """

    fail_attempts: list[int] | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.deep_iterable(attrs.validators.ge(1), attrs.validators.instance_of(list))))  # from 1
    rate: float | None = attrs.field(default=None, validator=attrs.validators.optional(
        [finite("a fraction from 0 to 1"), attrs.validators.ge(0.0), attrs.validators.le(1.0)]))
    seed: int = 0
    error: str = attrs.field(default="transient", validator=lambda _i, _a, value: _check_error(value))
    message: str = "injected failure"
    status: int | None = attrs.field(default=None, validator=attrs.validators.optional(
        [attrs.validators.ge(400), attrs.validators.le(599)]))  # an HTTP error status (200 is no failure)
    retry_after: float | None = attrs.field(default=None, validator=attrs.validators.optional(
        [finite(), attrs.validators.ge(0)]))
    latency: float = attrs.field(default=0.0, validator=[finite(), attrs.validators.ge(0)])
    hold_until_file: str | None = attrs.field(default=None, validator=lambda _i, _a, value: _check_path(value))

    def __attrs_post_init__(self) -> None:
        # What to fail with, but neither key that chooses attempts: it would silently do nothing.
        # (An empty fail_attempts is a choice: a template may fail only some items.)
        failing = [f for f, default in (("status", None), ("error", "transient"), ("message", "injected failure"),
                                        ("retry_after", None)) if getattr(self, f) != default]
        if failing and self.fail_attempts is None and self.rate is None:
            raise ValueError(f"{', '.join(failing)} given, but no attempt is chosen to fail: add fail_attempts "
                             "(such as [1]) or rate (a fraction of attempts, such as 0.3)")

    def should_fail(self, ctx: LeafContext) -> bool:
        """Whether this attempt fails (a pure function of seed, key and attempt)."""
        if self.fail_attempts and ctx.attempt in self.fail_attempts:
            return True
        if not self.rate:
            return False
        digest = hashlib.blake2b(f"{self.seed}|{ctx.idempotency_key}|{ctx.attempt}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.rate

    def inject(self, ctx: LeafContext) -> int | None:
        """Hold, apply latency, then fail if chosen: raise the error, or return the HTTP status to answer."""
        if self.hold_until_file is not None:
            self.hold(ctx)
        if self.latency > 0:
            time.sleep(self.latency)
        if not self.should_fail(ctx):
            return None
        if self.status is not None:
            return self.status
        raise self.make_error(ctx)

    def hold(self, ctx: LeafContext) -> None:
        """Wait until the file ``hold_until_file`` exists (a path relative to the working directory of
        the process making the attempt): an attempt in flight for exactly as long as a test or a demo
        wants, where a latency would only be "long enough" until a loaded machine outruns it.

        The attempt's deadline (a branch's ``timeout``) ends the wait with a timeout error, so a file
        that never comes cannot keep the attempt's thread for ever.
        """
        path = self.hold_until_file
        assert path is not None
        while not os.path.exists(path):
            if ctx.deadline is not None and time.time() >= ctx.deadline:
                raise TransientError(f"timed out: held until {path} exists (attempt {ctx.attempt})", code="timeout")
            time.sleep(HOLD_POLL)

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


def _check_error(name: str) -> None:
    if name not in ERROR_KINDS:
        _exception_type(name)  # fail early on a bad name


def _check_path(path: str | None) -> None:
    if path is not None and not path.strip():
        raise ValueError("'hold_until_file' must name a file (a path, relative to the working directory of "
                         f"the process running the branch), got {describe(path)}")


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


def with_faults(target: T, faults: Faults | Mapping[str, Any] | None) -> T:
    """``target`` wrapped so ``faults`` are injected; ``target`` itself when there are none."""
    if not faults:
        return target
    if not isinstance(faults, Faults):
        faults = structure(Faults, faults, where="faults")
    return cast(T, Faulty(target, faults))  # it stands in for the target: same calls, faults first
