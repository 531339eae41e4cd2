"""What a client lends its engine: its workflows, the names its functions are stored under, its observers.

These are the user's objects, and they may refer back to the client: a workflow made in a function
(a closure over the client), an app object that holds the client and registers its own bound
methods as workflows, leaves or observers. The engine's threads and the client's finalizer live
apart from the client, so whatever they hold strongly can never be collected: were it the
catalog, such a client would live (and keep its threads, store connection and descriptors) for
the life of the process. So the client owns the catalog, and its engine holds it strongly only
while it runs something (a start, a run, a wait for another worker's run) and weakly otherwise
(``Engine._hold``). A run started with ``begin_run`` keeps its client alive anyway; a run a worker
claimed does not, and a client collected meanwhile stops it at close, with the catalog still at hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vow.events import EventKind

__all__ = ["Catalog", "audiences"]


class Catalog:
    """The workflows and observers of one client, as its engine uses them.

    ``lookup`` finds a registered workflow by name; ``name_of`` gives the name a function is
    stored under; ``observers`` are called with the engine's events."""

    __slots__ = ("lookup", "name_of", "audiences", "scopes", "__weakref__")

    def __init__(self, lookup: Callable[[str], Any], name_of: Callable[[Any], str], observers: Sequence[Any]) -> None:
        self.lookup = lookup
        self.name_of = name_of
        self.audiences = audiences(observers)  # kind -> the observers that take it; other kinds are never built
        self.scopes = tuple(o.leaf_scope for o in observers if callable(getattr(o, "leaf_scope", None)))


def audiences(observers: Sequence[Any]) -> dict[EventKind, tuple[Any, ...]]:
    """For each kind of event, the observers that take it (an observer's ``event_kinds``, or every
    kind when it has none); a kind no observer takes is left out."""
    kinds = [(o, getattr(o, "event_kinds", None)) for o in observers]
    taking = {kind: tuple(o for o, takes in kinds if takes is None or kind in takes) for kind in EventKind}
    return {kind: who for kind, who in taking.items() if who}
