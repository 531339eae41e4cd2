"""The core's worker process (``tests.durability.worker_app``) on PostgreSQL, with what a worker
on another machine looks like from here: ``python pg_worker_app.py ARGS...`` (the same ARGS), with
the checkout's root on ``PYTHONPATH`` (``tests.durability.support.importable``).

* ``DURABILITY_REMOTE_OWNER=1`` (read by ``worker_app.py`` too): the server cannot tell when this
  worker dies (as for a machine that vanished without closing its connections), so only lease
  expiry frees its leases: its owner is never shown alive (``hold_owner`` declines).
* ``PG_WORKER_CLOCK_SKEW=SECONDS``: this process's ``time.time()`` runs that far ahead, as on a
  machine whose clock is wrong.

``tests.durability.worker_app`` runs as ``__main__`` under its module name, as the core's tests run
it (``python -m``), so its functions are stored under the same names.
"""

from __future__ import annotations

import os
import runpy
import time

from vow_postgres import PostgresStore

if os.environ.get("DURABILITY_REMOTE_OWNER"):
    PostgresStore.hold_owner = lambda self, owner: False  # type: ignore[method-assign]
skew = float(os.environ.get("PG_WORKER_CLOCK_SKEW", "0"))
if skew:
    real_time = time.time
    time.time = lambda: real_time() + skew  # type: ignore[assignment]
runpy.run_module("tests.durability.worker_app", run_name="__main__", alter_sys=True)
