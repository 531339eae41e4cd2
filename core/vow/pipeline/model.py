"""A planned pipeline run as typed data: what the planner builds and the workflow, the CLI and the
live view read.

:class:`PlannedRun` is the pipeline workflow's one argument. It is stored as JSON — the same JSON
vow has always stored for a pipeline run (:meth:`PlannedRun.to_json`; an attrs instance passed to
``vow.run`` encodes to it too) — so a worker in another process runs it without the file, and a
run stored by an older vow decodes into these classes (:meth:`PlannedRun.from_json`) and resumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs

from vow.channels import Message
from vow.config import converter, describe, structure
from vow.errors import ConfigError
from vow.images import ImageRequest

__all__ = ["Branch", "ChannelBranch", "Gate", "ImageBranch", "PlannedRun"]


@attrs.frozen
class Gate:
    """Wait for the outside promise ``{run id}.{promise}`` (``vow resolve``) before fanning out."""

    promise: str = "approval"
    timeout: float | None = None


@attrs.frozen(kw_only=True)
class _Branch:
    """What every branch has: its id, its plugin's options, faults to inject, retry policy, timeout."""

    id: str  # the branch's promise is {run id}.{id}
    options: dict[str, Any] = attrs.Factory(dict)
    faults: dict[str, Any] | None = None
    retry: dict[str, Any] | None = None  # {"policy": name, **options}; None: the default policy
    timeout: float | None = None
    _plugin_key: ClassVar[str]  # the field that names the branch's plugin

    @property
    def plugin(self) -> str:
        """The name of the branch's channel or image provider, as the views show it beside the branch."""
        return str(getattr(self, self._plugin_key))


@attrs.frozen(kw_only=True)
class ChannelBranch(_Branch):
    """Send ``message`` over notification channel ``channel``."""

    channel: str
    message: Message
    kind: Literal["channel"] = "channel"
    _plugin_key = "channel"


@attrs.frozen(kw_only=True)
class ImageBranch(_Branch):
    """Generate the image ``request`` with image provider ``provider``."""

    provider: str
    request: ImageRequest
    kind: Literal["image"] = "image"
    _plugin_key = "provider"


Branch = ChannelBranch | ImageBranch

_KINDS: dict[str, type[ChannelBranch] | type[ImageBranch]] = {"channel": ChannelBranch, "image": ImageBranch}


def _structure_branch(value: Any, _type: Any) -> Branch:
    kind = value.get("kind") if isinstance(value, Mapping) else None
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"expected a branch with kind {' or '.join(map(repr, _KINDS))}, got "
                         + (f"kind {describe(kind)}" if isinstance(value, Mapping) else describe(value)))
    branch: Branch = converter.structure(value, cls)
    return branch


converter.register_structure_hook(Branch, _structure_branch)


@attrs.frozen(kw_only=True)
class PlannedRun:
    """Everything one run of a pipeline file needs, checked and rendered (see :mod:`vow.pipeline.plan`)."""

    name: str
    branches: list[Branch]
    input: dict[str, Any] = attrs.Factory(dict)
    gate: Gate | None = None
    fan_in: Literal["all_settled", "all"] = "all_settled"
    concurrency: int | None = None  # at most this many branches at once
    output: str | None = None  # the folder for images, the gallery and result.json

    def gate_id(self, run_id: str) -> str | None:
        """The id of the outside promise run ``run_id`` waits for first, if it has a gate."""
        return f"{run_id}.{self.gate.promise}" if self.gate else None

    def to_json(self) -> dict[str, Any]:
        """The plain JSON stored as the pipeline workflow's argument."""
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Any, *, where: str = "the stored pipeline plan") -> PlannedRun:
        """A planned run from its stored JSON; a :class:`~vow.errors.ConfigError` naming the bad key
        when ``data`` is not one (a damaged store, or a plan from a newer vow)."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"expected a mapping (a pipeline's plan), got {describe(data)}", where=where)
        return structure(cls, data, where=where)
