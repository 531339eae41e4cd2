"""The pipeline file as attrs classes, structured by vow's one strict converter (:mod:`vow.config`).

Values stay as written (templates are strings); :mod:`vow.pipeline.plan` renders and checks
them into a :class:`~vow.pipeline.model.PlannedRun` (the gate is the same class in both). Types
are strict: ``timeout: "soon"`` is an error, not a string quietly turned into something else, and
each error carries its key path, so :class:`~vow.pipeline.source.Source` can point at its line.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import attrs

from vow.config import describe, keys_of
from vow.config import structure as structure_options
from vow.errors import ConfigError, format_path
from vow.pipeline.source import Path, Source

T = TypeVar("T")

FORMAT_VERSION = 1


@attrs.frozen
class GateSpec:
    """``gate:``: wait for the outside promise ``{run id}.{promise}`` before fanning out."""

    promise: str = "approval"
    timeout: Any = None  # seconds, or a duration such as 30s, 1h


@attrs.frozen
class Defaults:
    """What every branch gets unless it says otherwise."""

    retry: Any = None  # a policy name, or a mapping: {policy: exponential, max_attempts: 4, ...}
    timeout: Any = None  # per branch, retries included: seconds, or a duration such as 30s, 5m
    concurrency: int | None = None  # at most this many branches run at once
    rate_limit: Any = None  # {per_second: N, burst: 1}: a shared token bucket per channel / provider


@attrs.frozen
class _Entry:
    """The keys every ``fan_out`` entry has, whatever it sends or makes."""

    options: Any = None
    id: str | None = None
    for_each: Any = None
    retry: Any = None
    timeout: Any = None  # seconds, or a duration such as 30s, 5m
    faults: Any = None


def _own_keys_first(cls: type, fields: list[attrs.Attribute[Any]]) -> list[attrs.Attribute[Any]]:
    """An entry's own keys, then those every entry has: the order "allowed: ..." messages list them in."""
    common = {f.name for f in attrs.fields(_Entry)}
    return [f for f in fields if f.name not in common] + [f for f in fields if f.name in common]


@attrs.frozen(kw_only=True, field_transformer=_own_keys_first)
class ChannelEntry(_Entry):
    """A ``fan_out`` entry with ``channel:``: one message per item over a notification channel."""

    channel: str
    to: str = ""
    subject: str | None = None
    body: str = ""
    data: Any = attrs.Factory(dict)


@attrs.frozen(kw_only=True, field_transformer=_own_keys_first)
class ImageEntry(_Entry):
    """A ``fan_out`` entry with ``image:``: one image per item with an image provider."""

    image: str
    prompt: str
    style: str | None = None  # default: the for_each item
    seed: Any = 0
    size: Any = 512


@attrs.frozen
class ScheduleSpec:
    """When runs of the pipeline start by themselves, once it is stored with ``vow schedule add FILE``."""

    cron: str | None = None  # five fields (minute hour day-of-month month day-of-week), in ``timezone``
    every: Any = None  # an interval: "30s", "5m", "1h30m", or whole seconds
    timezone: str = "UTC"  # an IANA name: Europe/Paris, America/New_York
    catch_up: Literal["latest", "all", "none"] = "latest"  # ticks missed while no worker ran
    grace: Any = None  # with catch_up: none, how late a tick may still start (default 60s)
    name: str | None = None  # the schedule's name (default: the pipeline's name, as a slug)


@attrs.frozen
class PipelineSpec:
    """A whole pipeline file."""

    version: int
    name: str
    fan_out: Any
    description: str | None = None
    id: str | None = None
    store: str | None = None
    defaults: Defaults = attrs.Factory(Defaults)
    timeout: Any = None  # the whole run's deadline: seconds, or a duration such as 30s, 5m, 1h30m
    input: Any = attrs.Factory(dict)
    gate: GateSpec | None = None
    fan_in: Literal["all_settled", "all"] = "all_settled"
    output: str | None = None
    schedule: ScheduleSpec | None = None


def structure(source: Source, cls: type[T], data: Any, path: Path) -> T:
    """Build ``cls`` from ``data`` found at ``path`` of ``source``; the first error (by line) is raised."""
    if not isinstance(data, dict):
        raise source.error(path, f"expected a mapping of keys ({keys_of(cls)}), got {describe(data)}")
    try:
        return structure_options(cls, data, where=format_path(path))
    except ConfigError as exc:
        raise source.relocate(exc, path) from None
