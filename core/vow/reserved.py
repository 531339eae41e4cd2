"""The names vow gives its own bookkeeping promises, defined once for everything that reads them
(the engine writes them; the stores' listings, ``vow show``, the console and the history skip or
explain them)."""

from __future__ import annotations

import re

__all__ = ["BACKOFF_FUNC", "INTERNAL_STEPS", "NEVER_STARTED", "OWN_ID", "OWN_ID_FORMS", "PATCH_FUNC",
           "PIPELINE_WORKFLOW", "THROTTLE_FUNC"]

BACKOFF_FUNC = "retry backoff"
"""The ``func`` of the durable timers that hold back a retry (ids ``{promise id}.backoff.{attempt}``)."""

THROTTLE_FUNC = "rate limit wait"
"""The ``func`` of the durable timers that hold a leaf back for a shared rate limit
(ids ``{promise id}.throttle.{attempt}.{n}``)."""

PATCH_FUNC = "vow.patched"
"""The ``func`` of the markers ``ctx.patched(name)`` stores (ids ``{workflow id}.patched.{name}``)."""

OWN_ID = re.compile(r"\.(?:backoff\.\d+|throttle\.\d+\.\d+|patched\.[^.]*)\Z")
"""The forms of the ids above, which an id given with ``.options(id=...)`` or ``ctx.promise(id)`` cannot
take: the engine stores its timer or marker under that id without asking, so a call holding it had
its outcome overwritten (a back-off timer's end stored ``null`` as a leaf's result). Matched at the end
only, so a run whose own id holds such a part can still name its calls ``f"{ctx.id}.name"``; the very end
(not before a final line break, as ``$`` would: no timer's id ends in one)."""

OWN_ID_FORMS = ("a retry's back-off '{id}.backoff.{n}', a rate-limit wait '{id}.throttle.{n}.{m}', "
                "a ctx.patched marker '{run}.patched.{name}'")
"""The forms :data:`OWN_ID` matches, as the errors that refuse an id name them."""

PIPELINE_WORKFLOW = "vow.pipeline"
"""The registered name of the workflow YAML pipelines run as."""

NEVER_STARTED = "vow.never_started"
"""The tag of a run stored as failed without ever starting (a schedule's tick no worker could plan):
it has no arguments to run again, so fork and retry refuse it."""

INTERNAL_STEPS = ("started", "gallery", "result")
"""Steps vow's own workflows make under a run (``{run}.started`` and so on): not branches, and ids a
pipeline's branches cannot take."""
