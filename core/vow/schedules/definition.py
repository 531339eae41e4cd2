"""What a schedule is: when it ticks, what each tick starts, and how missed ticks catch up.

A :class:`Definition` is stored as JSON text in a :class:`~vow.schedules.record.ScheduleRecord`.
Each tick starts one run whose id is ``{schedule name}/{tick in UTC}``
(``nightly/2025-06-01T02:00:00Z``): the same tick always has the same run id, so workers that
fire it at the same time create-or-get one run, and a tick fired again joins the run it started.

The target is either a registered workflow with its arguments (``Vow.schedule``), or a pipeline
file (``vow schedule add FILE``): its text and input are stored, and each tick plans the file
anew with that tick (``{{ schedule.tick }}`` in templates), so every run gets its own id, output
directory and messages.

Catch-up (``catch_up``), for ticks that came due while no worker looked:

* ``latest`` (default): start only the most recent of them; the older ones are skipped;
* ``all``: start every one of them, oldest first (at most :data:`MAX_PER_LOOK` per look);
* ``none``: start the most recent only if it is at most ``grace`` seconds late (default 60 s).

In normal operation a worker looks several times a second and each tick is on time, so the
three agree; they differ after a worker was down, the store was unreachable, or the schedule
was paused (a paused schedule's ticks are skipped: resuming starts with the next tick).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

import attrs

from vow.errors import ConfigError
from vow.retention import parse_duration
from vow.schedules.timing import Timing, stored_timing, tick_text

__all__ = ["CATCH_UP", "DEFAULT_GRACE", "MAX_PER_LOOK", "Definition", "PipelineTarget", "WorkflowTarget",
           "check_name", "due", "parse_grace", "run_id"]

CATCH_UP = ("latest", "all", "none")
DEFAULT_GRACE = 60.0
MAX_PER_LOOK = 100
"""With ``catch_up: all``, how many missed ticks one look starts (the next look starts the next ones)."""

# \A and \Z, not ^ and $: "$" also matches before a final line break, so "x\n" passed as a name.
NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
NAME_RULE = "1-64 letters, digits, '-' and '_', starting with a letter or digit"

CatchUp = Literal["latest", "all", "none"]


def check_name(name: object) -> str:
    """``name`` if it is a usable schedule name (it starts every run id the schedule makes)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{name!r} is not a usable schedule name ({NAME_RULE})")
    return name


def parse_grace(value: object) -> float:
    """Seconds in ``"30s"``, ``"5m"`` (or a number), more than 0."""
    seconds = parse_duration(value, what="grace")
    if not math.isfinite(seconds):
        raise ConfigError(f"must be a finite number of seconds, got {value!r}")
    if seconds <= 0:
        raise ConfigError(f"must be more than 0 seconds, got {value!r}")
    return seconds


def run_id(name: str, tick: float) -> str:
    """The id of the run that tick ``tick`` of schedule ``name`` starts."""
    return f"{name}/{tick_text(tick)}"


@attrs.frozen
class WorkflowTarget:
    """A registered workflow and its arguments (encoded as :func:`vow.encoding.encode_args` does)."""

    workflow: str
    args: str = "[]"


@attrs.frozen
class PipelineTarget:
    """A pipeline file: its name (for messages), its text, the input it runs with, and the
    directory its relative paths are under."""

    file: str
    text: str
    input: dict[str, Any] = attrs.Factory(dict)
    base_dir: str = "."


@attrs.frozen
class Definition:
    """When a schedule ticks, what each tick starts, and how missed ticks catch up."""

    timing: Timing
    target: WorkflowTarget | PipelineTarget
    catch_up: CatchUp = "latest"
    grace: float = DEFAULT_GRACE

    def __attrs_post_init__(self) -> None:
        if self.catch_up not in CATCH_UP:
            raise ConfigError(f"catch_up: {self.catch_up!r} is not a policy (allowed: {', '.join(CATCH_UP)})")
        if self.grace <= 0:
            raise ConfigError(f"grace: must be more than 0 seconds, got {self.grace!r}")

    @property
    def kind(self) -> str:
        """``pipeline`` or ``workflow``."""
        return "pipeline" if isinstance(self.target, PipelineTarget) else "workflow"

    @property
    def what(self) -> str:
        """What a tick starts, for listings: the pipeline file or the workflow's name."""
        return self.target.file if isinstance(self.target, PipelineTarget) else self.target.workflow

    def to_json(self) -> str:
        """The stored text."""
        timing = {"cron": self.timing.cron, "every": self.timing.every, "timezone": self.timing.timezone}
        if isinstance(self.target, PipelineTarget):
            target: dict[str, Any] = {"pipeline": attrs.asdict(self.target)}
        else:
            target = {"workflow": self.target.workflow, "args": self.target.args}
        return json.dumps({"timing": timing, "catch_up": self.catch_up, "grace": self.grace, **target},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Definition:
        """Read stored text back; a :class:`ConfigError` when it is not a definition this vow knows."""
        try:
            data = json.loads(text)
            timing = stored_timing(data["timing"])
            target: WorkflowTarget | PipelineTarget
            if "pipeline" in data:
                target = PipelineTarget(**data["pipeline"])
            else:
                target = WorkflowTarget(data["workflow"], data.get("args", "[]"))
            return cls(timing, target, data.get("catch_up", "latest"), float(data.get("grace", DEFAULT_GRACE)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"a stored schedule definition this vow cannot read ({type(exc).__name__}: {exc}); "
                              "was it written by a newer vow?") from None


def due(definition: Definition, cursor: float | None, now: float) -> tuple[list[float], float]:
    """The ticks to start at ``now`` for a schedule whose cursor is ``cursor``, oldest first, and the
    cursor to store afterwards (the last tick handled, started or skipped).

    A schedule that has no cursor yet starts from its latest tick at or before ``now``, without
    starting it: a schedule's first run is its first tick after it was added.
    """
    timing = definition.timing
    latest = timing.latest(now)
    if cursor is None:
        return [], latest
    if latest <= cursor:
        return [], cursor
    if definition.catch_up == "all":
        ticks = timing.between(cursor, now, MAX_PER_LOOK)
        return ticks, ticks[-1]
    if definition.catch_up == "none" and now - latest > definition.grace:
        return [], latest
    return [latest], latest
