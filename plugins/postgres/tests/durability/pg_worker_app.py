"""The core's worker process (``tests/durability/worker_app.py``) on PostgreSQL, with what a worker
on another machine looks like from here: ``python pg_worker_app.py ARGS...`` (the same ARGS).

* ``DURABILITY_REMOTE_OWNER=1`` (read by ``worker_app.py`` too): the server cannot tell when this
  worker dies (as for a machine that vanished without closing its connections), so only lease
  expiry frees its leases: its owner is never shown alive (``hold_owner`` declines).
* ``PG_WORKER_CLOCK_SKEW=SECONDS``: this process's ``time.time()`` runs that far ahead, as on a
  machine whose clock is wrong.

``worker_app.py`` runs as ``__main__``, as the core's tests run it, so its functions keep the
names stored in the promises.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

from vow_postgres import PostgresStore

WORKER_APP = Path(__file__).resolve().parents[4] / "tests" / "durability" / "worker_app.py"

if os.environ.get("DURABILITY_REMOTE_OWNER"):
    PostgresStore.hold_owner = lambda self, owner: False  # type: ignore[method-assign]
skew = float(os.environ.get("PG_WORKER_CLOCK_SKEW", "0"))
if skew:
    real_time = time.time
    time.time = lambda: real_time() + skew  # type: ignore[assignment]
sys.argv = [str(WORKER_APP), *sys.argv[1:]]
runpy.run_path(str(WORKER_APP), run_name="__main__")
