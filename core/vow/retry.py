"""Retry policies: how long to wait before a failed call runs again, and when to stop.

Leaves default to :class:`Exponential`; workflows default to :class:`Never` (a workflow is
re-run from the top only when asked, and then with the same child ids). The four builtin
policies are registered through the ``retry`` entry point, like any plugin's.

A rate limit (:class:`~vow.errors.RateLimitError`: a 429, Twilio's 20429 or 21611) is no plain
failure: the provider catches up in seconds to minutes, not in the tenths of a second a back-off
starts from. :class:`Exponential`, :class:`Linear` and :class:`Constant` wait one out on a schedule
of its own (:class:`RateLimitPatience`); :class:`Never` does not retry it either.

A leaf of your own need not raise :class:`~vow.errors.RateLimitError` for this: an exception that
carries an HTTP answer with status 429 (``httpx.HTTPStatusError`` and ``requests.HTTPError`` from
``raise_for_status()``: anything with ``error.response.status_code == 429``) is a rate limit too, and
the answer's ``Retry-After`` header (seconds or an HTTP date) is honoured as a ``retry_after`` is (see
:func:`is_rate_limit` and :func:`retry_after_of`). Any other status such an exception carries is a plain
failure, retried as before: a 500, a 503, a 408, and a 400 or 404 too (catch it and raise
:class:`~vow.errors.PermanentError` to fail such a call at once: ``non_retryable=[httpx.HTTPStatusError]``
would stop the 429s being waited out as well).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import attrs

from vow.config import finite
from vow.errors import ConfigError, EncodeError, PermanentError, RateLimitError, TransientError
from vow.events import Event, EventKind
from vow.hookspecs import Register, hookimpl
from vow.http import is_transient_status, parse_retry_after

if TYPE_CHECKING:
    from vow.plugins import Plugins


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides the delay before the next attempt. A policy may also have ``rate_limit_delay_for(attempt)``,
    asked instead after a rate limit (:func:`is_rate_limit`; see :class:`RateLimitPatience` and
    :func:`next_delay`: each kind of failure then counts its own attempts)."""

    def delay_for(self, attempt: int) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (1-based), or ``None`` to give up."""


_log = logging.getLogger("vow.retry")

MAX_RETRY_AFTER = 86400.0
"""The longest ``Retry-After`` (seconds) a call waits out: a day. A provider's hint beyond it (``1e20``, a
date centuries away) is no wait a run can use: the call fails with a :class:`~vow.errors.PermanentError`
saying so, instead of its branch waiting for ever."""

_SECONDS = [finite(), attrs.validators.ge(0.0)]  # .inf and .nan are numbers too: a delay is finite
_ATTEMPTS = attrs.validators.ge(1)

Jitter = Literal["full", "none"] | float
"""How a delay is spread: ``"full"``, ``"none"``, or a fraction (the delay less up to that share of it)."""
ExponentialJitter = Literal["full", "decorrelated", "none"] | float
""":data:`Jitter`, or ``"decorrelated"`` (exponential growth only)."""


def _jitter(*names: str) -> Callable[[object, attrs.Attribute[Any], object], None]:
    """A validator: one of ``names``, or a fraction from 0 to 1 (for callers in Python; YAML is
    checked against the field's type first)."""
    def check(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, str) and value in names:
            return
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            return
        raise ValueError(f"'{attribute.name}' must be {', '.join(repr(n) for n in names)} or a fraction from 0 "
                         f"to 1, got {value!r}")
    return check


def _jittered(delay: float, jitter: str | float) -> float:
    """``delay`` spread by ``jitter`` (see the policies' docstrings)."""
    if jitter == "full":
        return random.uniform(0.0, delay)
    if jitter == "none" or not jitter:
        return delay
    return delay * (1 - float(jitter) * random.random())


def _rate_limit_delay_field() -> Any:
    return attrs.field(default=5.0, validator=_SECONDS)


def _rate_limit_max_delay_field() -> Any:
    return attrs.field(default=300.0, validator=_SECONDS)


def _rate_limit_attempts_field() -> Any:
    return attrs.field(default=16, validator=_ATTEMPTS)


class RateLimitPatience:
    """How a builtin policy waits out a rate limit (:class:`~vow.errors.RateLimitError`).

    The wait after failed attempt ``n`` is ``rate_limit_delay * 2 ** (n - 1)``, at most
    ``rate_limit_max_delay``, less up to half of it at random (AWS's "equal jitter": branches refused
    together come back apart, none sooner than half its wait), ``n`` counting only the attempts refused
    for the rate. A call refused for its rate is tried up to ``rate_limit_attempts`` times, the first
    included (``max_attempts`` times if that is more). With the defaults a rate limit is waited out for
    at most 3,015 s (50 minutes) over 16 attempts, and at least half that; a plain failure keeps the
    policy's own delays and ``max_attempts``, counted over the plain failures alone: neither kind uses
    up the other's attempts.

    A ``retry_after`` from the provider is the shortest wait (up to :data:`MAX_RETRY_AFTER`, as for
    any transient error), not the whole of it: waited exactly, a provider that answers "Retry-After: 1"
    while it stays full was given up after 16 s, and branches told the same wait came back together.
    A call still refused after its last attempt fails with a :class:`~vow.errors.PermanentError` (code
    ``rate_limited_too_long``) that says so and names these options, caused by the provider's last refusal.
    """

    # Each policy declares the three options itself, after its own (so they come last in its
    # signature and in the keys a bad option is told are allowed), with _rate_limit_delay_field() and the like.
    __slots__ = ()
    rate_limit_delay: float
    rate_limit_max_delay: float
    rate_limit_attempts: int

    def rate_limit_attempts_for(self) -> int:
        """Attempts a call refused for its rate gets: never fewer than any other failure's."""
        return max(self.rate_limit_attempts, getattr(self, "max_attempts", 1))

    def rate_limit_delay_for(self, attempt: int) -> float | None:
        """Seconds to wait after the ``attempt``-th attempt refused for the provider's rate (other failures
        not counted), or ``None`` to give up."""
        if attempt >= self.rate_limit_attempts_for():
            return None
        return _jittered(_grown(self.rate_limit_delay, 2.0, attempt, self.rate_limit_max_delay), 0.5)


@attrs.frozen
class Exponential(RateLimitPatience):
    """``delay * factor ** (attempt - 1)``, capped at ``max_delay``; ``max_attempts`` tries in all.

    ``jitter`` spreads the delays so that branches that failed together (the same 429) do not
    retry together — the two schemes of AWS's "Exponential Backoff and Jitter":

    * ``"full"`` (the default): a random delay between 0 and the exponential one;
    * ``"decorrelated"``: each delay random between ``delay`` and three times the one before, at
      most ``max_delay`` (``factor`` plays no part); drawn afresh from the attempt number, so the
      policy keeps no state;
    * ``"none"``: the exponential delay as it is; a number from 0 to 1: that delay less up to that
      fraction of it (the behaviour before full jitter was the default).

    A rate limit is waited out longer: see :class:`RateLimitPatience` (``rate_limit_delay``,
    ``rate_limit_max_delay``, ``rate_limit_attempts``).
    """

    delay: float = attrs.field(default=0.1, validator=_SECONDS)
    factor: float = attrs.field(default=2.0, validator=[finite("a finite number"), attrs.validators.ge(0.0)])
    max_delay: float = attrs.field(default=60.0, validator=_SECONDS)
    max_attempts: int = attrs.field(default=8, validator=_ATTEMPTS)
    jitter: ExponentialJitter = attrs.field(default="full", validator=_jitter("full", "decorrelated", "none"))
    rate_limit_delay: float = _rate_limit_delay_field()
    rate_limit_max_delay: float = _rate_limit_max_delay_field()
    rate_limit_attempts: int = _rate_limit_attempts_field()

    def delay_for(self, attempt: int) -> float | None:
        if attempt >= self.max_attempts:
            return None
        if self.jitter == "decorrelated":
            return _decorrelated(self.delay, self.max_delay, attempt)
        return _jittered(_grown(self.delay, self.factor, attempt, self.max_delay), self.jitter)


def _grown(delay: float, factor: float, attempt: int, cap: float) -> float:
    """``min(cap, delay * factor ** (attempt - 1))``, saturating at ``cap``: past about attempt 1,025
    (factor 2) the power is beyond a float and raised ``OverflowError``, which left the call pending
    for good instead of waiting ``max_delay``."""
    if delay <= 0:
        return 0.0
    try:
        return min(cap, delay * factor ** (attempt - 1))  # a product beyond a float is inf: min gives cap
    except OverflowError:  # factor ** (attempt - 1) alone is beyond a float: so is the delay, past any cap
        return cap


def _decorrelated(base: float, cap: float, attempt: int) -> float:
    """The delay after failed attempt ``attempt`` under decorrelated jitter: ``sleep = min(cap,
    uniform(base, 3 * sleep))`` from ``sleep = base``. Each step's draw is independent, so running
    the chain from the start gives each attempt the same distribution a remembered chain would."""
    sleep = base
    for _ in range(attempt):
        sleep = min(cap, random.uniform(base, 3 * sleep))
        if sleep >= cap:
            break  # it stays at the cap from here
    return sleep


@attrs.frozen
class Linear(RateLimitPatience):
    """``delay * attempt``, capped at ``max_delay``; ``jitter`` as for :class:`Exponential` (default none).
    A rate limit is waited out as :class:`RateLimitPatience` says."""

    delay: float = attrs.field(default=0.5, validator=_SECONDS)
    max_delay: float = attrs.field(default=60.0, validator=_SECONDS)
    max_attempts: int = attrs.field(default=5, validator=_ATTEMPTS)
    jitter: Jitter = attrs.field(default=0.0, validator=_jitter("full", "none"))
    rate_limit_delay: float = _rate_limit_delay_field()
    rate_limit_max_delay: float = _rate_limit_max_delay_field()
    rate_limit_attempts: int = _rate_limit_attempts_field()

    def delay_for(self, attempt: int) -> float | None:
        if attempt >= self.max_attempts:
            return None
        return _jittered(min(self.max_delay, self.delay * attempt), self.jitter)


@attrs.frozen
class Constant(RateLimitPatience):
    """The same ``delay`` between every attempt; ``jitter`` as for :class:`Exponential` (default none).
    A rate limit is waited out as :class:`RateLimitPatience` says."""

    delay: float = attrs.field(default=1.0, validator=_SECONDS)
    max_attempts: int = attrs.field(default=3, validator=_ATTEMPTS)
    jitter: Jitter = attrs.field(default=0.0, validator=_jitter("full", "none"))
    rate_limit_delay: float = _rate_limit_delay_field()
    rate_limit_max_delay: float = _rate_limit_max_delay_field()
    rate_limit_attempts: int = _rate_limit_attempts_field()

    def delay_for(self, attempt: int) -> float | None:
        if attempt >= self.max_attempts:
            return None
        return _jittered(self.delay, self.jitter)


@attrs.frozen
class Never:
    """One attempt only, whatever the failure (a rate limit too)."""

    def delay_for(self, attempt: int) -> float | None:
        return None


def policy_problem(value: object) -> str | None:
    """Why ``value`` cannot be a retry policy (``None``, the default, can), or ``None`` when it can."""
    if value is None or callable(getattr(value, "delay_for", None)):
        return None
    return (f"expected a retry policy (vow.Exponential(...), vow.Linear(...), vow.Constant(...), vow.Never(), "
            f"or a plugin's: vow.retry.policy(name, plugins=vow.plugins)), got {value!r}")


def next_delay(policy: RetryPolicy, attempt: int, error: BaseException,
               non_retryable: tuple[type[BaseException], ...] = (), *, rate_limited: int = 0) -> float | None:
    """Seconds before attempt ``attempt + 1`` after ``error``, or ``None`` when the call fails for good.
    ``rate_limited`` is how many of the attempts before ``attempt`` were refused for the provider's rate.

    :class:`~vow.errors.PermanentError`, bad configuration or input (:class:`~vow.errors.ConfigError`,
    :class:`~vow.errors.EncodeError`), the ``non_retryable`` types and a ``BaseException`` that is no ``Exception``
    (``SystemExit``, ``KeyboardInterrupt``, ``asyncio.CancelledError``) never retry; a
    :class:`~vow.errors.TransientError` with ``retry_after`` waits at least that long (see
    :func:`retry_after_of`); one longer than :data:`MAX_RETRY_AFTER` raises a
    :class:`~vow.errors.PermanentError` (code ``retry_after_too_long``, caused by ``error``): the call
    fails with it. A rate limit (:func:`is_rate_limit`: a :class:`~vow.errors.RateLimitError`, or an
    HTTP 429 raised by ``raise_for_status()``) under a policy with a
    ``rate_limit_delay_for`` (the builtins: :class:`RateLimitPatience`) waits by it (at least its
    ``retry_after`` too), asked with the number of attempts refused for the rate, this one included;
    under such a policy any other failure asks ``delay_for`` with the number of the others, so that
    neither kind uses up the other's attempts. When ``rate_limit_delay_for`` gives up, a
    :class:`~vow.errors.PermanentError` (code ``rate_limited_too_long``, caused by ``error``) says so. A
    policy whose ``delay_for`` gives anything but ``None`` or a finite number of seconds (0 or more) is a
    ``ValueError``.
    """
    if isinstance(error, (PermanentError, ConfigError, EncodeError)) or (
            non_retryable and isinstance(error, non_retryable)):
        return None
    if not isinstance(error, Exception):  # SystemExit, KeyboardInterrupt, CancelledError: control flow, not flaky
        return None
    patient = getattr(policy, "rate_limit_delay_for", None)
    if not callable(patient):  # a policy that knows no rate limits counts every attempt alike, as before them
        method, counted, delay = "delay_for", attempt, policy.delay_for(attempt)
    elif is_rate_limit(error):
        method, counted = "rate_limit_delay_for", rate_limited + 1
        delay = patient(counted)
        if delay is None:
            raise _outlasted(policy, counted, error)
    else:  # a 503 after nine 429s is the first plain failure, not the tenth: it keeps its own max_attempts
        counted = max(1, attempt - rate_limited)
        method, delay = "delay_for", policy.delay_for(counted)
    if delay is None:
        return None
    # inf too: a wait for ever leaves the call pending for good; None is how a policy gives up.
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay) or delay < 0:
        raise ValueError(f"{type(policy).__name__}.{method}({counted}) returned {delay!r}; expected a finite number "
                         "of seconds (0 or more) or None")
    retry_after = retry_after_of(error)
    if retry_after is None:
        return delay
    if retry_after > MAX_RETRY_AFTER:
        too_long = PermanentError(
            f"{type(error).__name__}: {error}; the provider asked to wait {_wait_text(retry_after)} before the "
            f"next attempt, longer than the longest Retry-After vow waits out ({MAX_RETRY_AFTER:.0f}s, a day), "
            "so the call fails here instead of waiting", code="retry_after_too_long")
        too_long.__cause__ = error
        raise too_long
    # The provider's wait is the shortest, never the whole: a rate limit waited exactly "Retry-After: 1" gave
    # up after 16 s, and branches told the same wait came back together, to be refused together again.
    return max(delay, retry_after)


def _outlasted(policy: RetryPolicy, attempt: int, error: BaseException) -> PermanentError:
    """The error a call fails with when its policy stops waiting out a rate limit after ``attempt`` refusals."""
    name = type(policy).__name__
    refused = (f"{type(error).__name__}: {error}; still refused for the provider's rate limit after {attempt} attempts "
               "refused for it")
    if isinstance(policy, RateLimitPatience):  # a plugin's own rate_limit_delay_for may have other options, or none
        # above the attempts made, not "raise it": the larger of rate_limit_attempts and max_attempts counts
        why = (f"{refused}, as many as {name} gives a rate limit, so the call fails here: give the policy a "
               f"rate_limit_attempts above {attempt} (or a longer rate_limit_delay or rate_limit_max_delay) to wait "
               "longer")
    else:
        why = f"{refused}: {name}.rate_limit_delay_for({attempt}) gave up, so the call fails here"
    outlasted = PermanentError(why, code="rate_limited_too_long")
    outlasted.__cause__ = error
    return outlasted


def is_rate_limit(error: BaseException) -> bool:
    """Whether ``error`` is a refusal for the provider's rate: a :class:`~vow.errors.RateLimitError`, or
    an exception carrying an HTTP answer with status 429 (``error.response.status_code``, as
    ``httpx.HTTPStatusError`` and ``requests.HTTPError`` have; read back from the store too)."""
    return isinstance(error, RateLimitError) or _http_status(error) == 429


def retry_after_of(error: BaseException) -> float | None:
    """The seconds ``error`` asks to wait, or ``None`` when it has no wait that can be used (absent,
    not a number, NaN, below 0: the policy's delay counts alone): a :class:`~vow.errors.TransientError`'s
    ``retry_after``, or the ``Retry-After`` header (seconds or an HTTP date) of the HTTP answer an
    exception carries when its status is worth retrying (408, 425, 429, 5xx). Infinity is returned as it
    is: longer than :data:`MAX_RETRY_AFTER`."""
    if not isinstance(error, TransientError):
        status = _http_status(error)
        if status is None or not is_transient_status(status):
            return None
        header = _header(error, "retry-after")
        return parse_retry_after(header) if header is not None else None
    value = getattr(error, "retry_after", None)
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if seconds >= 0 else None  # NaN is not >= 0 either


def _http_status(error: BaseException) -> int | None:
    """The status of the HTTP answer ``error`` carries (``error.response.status_code``), or ``None``."""
    try:  # duck-typed: httpx and requests are a user's imports, not vow's; a property may raise anything
        status = getattr(getattr(error, "response", None), "status_code", None)
    except Exception:  # noqa: BLE001 - a user's odd exception is a plain failure, not a crash of the retry
        return None
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def _header(error: BaseException, name: str) -> str | None:
    """Header ``name`` of the HTTP answer ``error`` carries (both libraries' headers ignore case), or ``None``."""
    try:
        value = error.response.headers.get(name)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - as in _http_status
        return None
    return value if isinstance(value, str) else None


def _wait_text(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "for ever"
    if seconds >= 10 * 365 * 86400:
        return f"{seconds / (365.25 * 86400):.3g} years"
    return f"{seconds:.0f}s"


BUILTIN = {"exponential": Exponential, "linear": Linear, "constant": Constant, "never": Never}

DEFAULT_LEAF_POLICY = Exponential()
DEFAULT_WORKFLOW_POLICY = Never()


def policy(name: str, *, plugins: Plugins, **options: object) -> object:
    """Build a retry policy by name: ``policy("linear", plugins=vow.plugins, delay=1, max_attempts=3)``.

    ``plugins`` is the registry to look the name up in: the client's (``vow.plugins``), whose
    workflows will use the policy.
    """
    return plugins.retry_policies.build(name, options, where=f"retry policy {name!r}")


def from_config(data: object, *, plugins: Plugins, where: str = "retry") -> object:
    """A policy from YAML-style data: ``{"policy": "exponential", "max_attempts": 4}`` or a name,
    looked up in ``plugins`` (the registry of the client that runs the workflow)."""
    if isinstance(data, str):
        data = {"policy": data}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a policy name or a mapping with 'policy', got {data!r}", where=where)
    options = dict(data)
    name = options.pop("policy", "exponential")
    return plugins.retry_policies.build(str(name), options, where=where)


class RetryLog:
    """Observer: every scheduled retry is a WARNING on the ``vow.retry`` logger.

    So a retry is never silent: with no logging set up, Python prints warnings to stderr
    (``notify/1.push failed on attempt 1 (TransientError: ...); retrying in 0.20s``). Silence it
    with ``logging.getLogger("vow.retry").setLevel(logging.ERROR)``; ``vow run`` does, because its
    live view shows each retry.
    """

    event_kinds = frozenset({EventKind.RETRY_SCHEDULED})

    def on_event(self, event: Event) -> None:
        if event.kind is EventKind.RETRY_SCHEDULED:
            _log.warning("%s failed on attempt %d (%s); retrying in %.2fs", event.id, event.attempt, event.error,
                         event.delay or 0.0)


@hookimpl
def vow_register_retry_policies(register: Register) -> None:
    for name, cls in BUILTIN.items():
        register(name, lambda opts: opts, cls, description=(cls.__doc__ or "").strip())


@hookimpl
def vow_register_observers(register: Register) -> None:
    register("retry_log", RetryLog, description="logs every scheduled retry as a warning (logger vow.retry)")
