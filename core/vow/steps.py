"""Durable steps any workflow can use, stored under the names runs already hold.

A step is a leaf: a workflow calls it with ``ctx.run`` and a replay reads its stored answer
instead of calling it again. A promise records its leaf by name (``module.qualname``) and a
replay checks that name, so a step keeps the name it was first stored under even when its code
moves: changing it would leave every run that holds the old name unable to resume.
"""

from __future__ import annotations

import time

from vow.leaf import LeafContext
from vow.naming import stored_as

__all__ = ["wall_clock"]


# First written in vow.images.pipeline; runs since vow 0.1 hold that name.
@stored_as("vow.images.pipeline.wall_clock")
def wall_clock(ctx: LeafContext) -> float:
    """Leaf: the current time, in seconds since the epoch.

    A durable step, so a resumed run reads the time of its first start (the pipeline and
    image workflows time themselves with it as ``{run id}.started``).
    """
    return time.time()

