"""Every exception vow raises, in one place.

Two families matter to plugin authors:

* :class:`TransientError` — the call may succeed if tried again (timeouts, connection errors,
  429, 5xx). The branch's retry policy retries it, honouring ``retry_after`` when set; its subclass
  :class:`RateLimitError` (a 429, a full queue) is waited out longer.
* :class:`PermanentError` — trying again cannot help (validation errors, unknown recipient,
  revoked token). The branch fails at once, whatever its retry policy says.

Anything else a leaf raises is retried by the policy unless its type is listed as
non-retryable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vow.records import PromiseRecord

from collections.abc import Sequence


class VowError(Exception):
    """Base class of the errors vow itself raises."""


class TransientError(VowError):
    """A failure worth retrying; ``retry_after`` (seconds) is the provider's own hint."""

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


class RateLimitError(TransientError):
    """The provider refused the call for its rate or a full queue (HTTP 429, Twilio 20429 and 21611):
    trying again helps, but only after the provider has caught up, which takes longer than a plain
    failure's back-off. The builtin retry policies wait a rate limit out on its own schedule
    (``rate_limit_delay``, ``rate_limit_max_delay``, ``rate_limit_attempts``), never shorter than a
    ``retry_after`` from the provider. A quota used up for the day or the month is no rate
    limit: raise :class:`PermanentError` for it."""


class PermanentError(VowError):
    """A failure no retry can fix; fails the branch at once with the provider's reason."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


KeyPath = tuple[str | int, ...]
"""A key path into configuration data: mapping keys and list indices, ``("fan_out", 2, "channel")``."""


def format_path(path: KeyPath) -> str:
    """``("fan_out", 2, "channel")`` -> ``fan_out[2].channel``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Throttled(VowError):
    """A leaf cannot go yet (a shared rate limit has no token for it): hold it back ``wait`` seconds.

    The engine holds the branch back with a durable timer (no thread waits, and a crash does not cut
    the wait short) and then starts it again as the same attempt: waiting for a token is not a failure.
    A wait of infinity means never: the call fails with a :class:`PermanentError` instead.
    """

    def __init__(self, message: str = "rate limited", *, wait: float) -> None:
        super().__init__(message)
        self.wait = max(0.0, float(wait))


class ConfigError(VowError):
    """Bad configuration or input a user can fix: says where (file:line, key path) and what is allowed.

    ``issues`` lists each problem as ``(key path, problem)``; the path is relative to the data
    that was checked, which ``where`` names (``"channel 'email' options"``). ``path`` and
    ``problem`` are the first issue's. An error raised with a message alone has one issue at
    the empty path.
    """

    def __init__(self, problem: str, *, path: KeyPath = (), where: str = "",
                 issues: Sequence[tuple[KeyPath, str]] = ()) -> None:
        self.issues: tuple[tuple[KeyPath, str], ...] = tuple(issues) or ((tuple(path), problem),)
        self.path, self.problem = self.issues[0]
        self.where = where
        super().__init__(self._text())

    @classmethod
    def of(cls, issues: Sequence[tuple[KeyPath, str]], *, where: str = "") -> ConfigError:
        """One error for several problems (each on its own line)."""
        return cls(issues[0][1], where=where, issues=issues)

    def _text(self) -> str:
        lines = []
        for path, problem in self.issues:
            key = format_path(path)
            if self.where:
                key = f"{self.where}{'' if key.startswith('[') or not key else '.'}{key}"
            lines.append(f"{key}: {problem}" if key else problem)
        return "\n".join(lines)


class UnknownPluginError(ConfigError):
    """A name that no installed plugin registered; the message lists what is installed."""


class PluginLoadError(VowError):
    """A plugin failed to import or register; names the plugin and its distribution."""


class EncodeError(VowError):
    """A value cannot be stored: arguments and results must be JSON-encodable."""


class NonDeterminismError(VowError):
    """A replayed workflow called a different function at an id whose promise already exists."""


class DuplicateIdError(VowError, ValueError):
    """A workflow gave one id (``.options(id=...)``) to calls of two different functions."""


class ArgumentMismatchError(VowError):
    """A workflow id was started again with different arguments than the stored run."""


class AlreadySettledError(VowError):
    """A promise was settled again with an outcome different from the stored one."""


class PromiseNotFoundError(VowError, LookupError):
    """No promise with that id exists in the store."""


class LeaseLostError(VowError):
    """Another worker took over a root workflow this worker was running (fencing token moved on),
    or the root was settled from outside. ``roots`` names them."""

    def __init__(self, message: str, *, roots: list[str] | None = None) -> None:
        super().__init__(message)
        self.roots = list(roots or [])


class ConflictError(VowError):
    """A commit met promises settled otherwise first (from outside, or by the store's deadline rule).

    Nothing of the batch was written. ``roots`` names the root workflows concerned and
    ``records`` holds the stored records that won, by id.
    """

    def __init__(self, message: str, *, roots: list[str], records: dict[str, PromiseRecord]) -> None:
        super().__init__(message)
        self.roots = roots
        self.records = records


class RunParkedError(VowError):
    """A root workflow was parked after its process died too many times while resuming it;
    ``vow resume --force ID`` (or ``Vow.resume(id, force=True)``) lets it run again."""


class StoreError(VowError):
    """The store cannot be used: corrupted file, newer format version, unreachable backend."""


class CanceledError(VowError):
    """The awaited promise was canceled."""


class PromiseTimeoutError(VowError, TimeoutError):
    """The awaited promise timed out before it settled."""


class RejectedError(VowError):
    """A stored rejection whose original exception type cannot be rebuilt in this process."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
