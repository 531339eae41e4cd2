"""What a leaf function receives as its first argument."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from vow.errors import VowError
from vow.frozen import quick_constructor

if TYPE_CHECKING:
    from vow.plugins import Plugins
    from vow.stores.base import Store

_log = logging.getLogger("vow.leaf")


@attrs.frozen(slots=True)
class LeafContext:
    """The context of one attempt of a leaf call.

    ``idempotency_key`` is stable across retries, replays and process restarts: pass it to the
    provider so a repeated attempt is recognised as the same request. ``attempt`` counts from 1
    and keeps counting across restarts. ``resumed`` says this call was pending in a process that
    stopped before it settled, so the attempt that process began may have reached the provider:
    a leaf that checks its provider before sending again (where the provider cannot deduplicate)
    does so when ``attempt > 1 or resumed``. ``plugins`` is the running client's plugin registry
    (``None`` in a context built by hand, as in a test of a channel's ``send``).
    """

    id: str
    attempt: int = 1
    idempotency_key: str = ""
    root_id: str = ""
    parent_id: str | None = None
    func: str = ""
    deadline: float | None = None
    tags: Mapping[str, str] = attrs.field(factory=dict)
    plugins: Plugins | None = attrs.field(default=None, repr=False, eq=False)
    """The registries of the :class:`vow.Vow` client running this leaf: its channels, image
    providers, retry policies. Leaves look plugins up here, never in a process-wide registry,
    so a channel added to one client's ``Plugins`` is the one its workflows use."""
    store: Store | None = attrs.field(default=None, repr=False, eq=False)
    """The store of the client running this leaf (``None`` in a context built by hand): where
    shared state such as the token buckets of rate limits (:mod:`vow.ratelimit`) is kept."""
    resumed: bool = False
    """Whether this call was found pending when its run was resumed (after its process stopped, or
    a retry of the workflow that made it): an attempt of it may have begun before this one."""

    def registry(self) -> Plugins:
        """:attr:`plugins`, or a :class:`~vow.errors.VowError` saying how to give it."""
        if self.plugins is None:
            raise VowError(f"{self.id}: this leaf looks up plugins, but its LeafContext has none: the engine "
                           "gives it the client's; built by hand, pass LeafContext(..., plugins=Plugins())")
        return self.plugins

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that prefixes each line with the promise id and attempt."""
        return logging.LoggerAdapter(_log, {"promise_id": self.id, "attempt": self.attempt})

    def __attrs_post_init__(self) -> None:
        if not self.idempotency_key:
            object.__setattr__(self, "idempotency_key", self.id)
        if not self.root_id:
            object.__setattr__(self, "root_id", self.id.split(".", 1)[0])


make_leaf_context = quick_constructor(LeafContext)
"""``make_leaf_context(id, attempt, idempotency_key, root_id, parent_id, func, deadline, tags, plugins,
store, resumed)``: a :class:`LeafContext` of every field as given (no defaults filled in), built fast: the
engine makes one per attempt (see :mod:`vow.frozen`)."""
