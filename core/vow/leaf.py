"""What a leaf function receives as its first argument."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import attrs

_log = logging.getLogger("vow.leaf")


@attrs.frozen(slots=True)
class LeafContext:
    """The context of one attempt of a leaf call.

    ``idempotency_key`` is stable across retries, replays and process restarts: pass it to the
    provider so a repeated attempt is recognised as the same request. ``attempt`` counts from 1
    and keeps counting across restarts.
    """

    id: str
    attempt: int = 1
    idempotency_key: str = ""
    root_id: str = ""
    parent_id: str | None = None
    func: str = ""
    deadline: float | None = None
    tags: Mapping[str, str] = attrs.field(factory=dict)
    plugins: Any = attrs.field(default=None, eq=False, repr=False)
    """The :class:`vow.plugins.Plugins` of the client running this leaf (its channels, providers, policies)."""

    @property
    def logger(self) -> logging.LoggerAdapter:
        """A logger that prefixes each line with the promise id and attempt."""
        return logging.LoggerAdapter(_log, {"promise_id": self.id, "attempt": self.attempt})

    def __attrs_post_init__(self) -> None:
        if not self.idempotency_key:
            object.__setattr__(self, "idempotency_key", self.id)
        if not self.root_id:
            object.__setattr__(self, "root_id", self.id.split(".", 1)[0])
