"""``worker_app.py`` with this machine's clock pushed ahead: ``python skewed_worker.py SECONDS ARGS...``.

``time.time()`` in this process returns the real time plus SECONDS, as on a machine whose clock
is wrong; everything else is the core's ``tests/durability/worker_app.py`` with ARGS, run as
``__main__`` as the core's tests run it (so its functions keep the names stored in promises).
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path

WORKER_APP = Path(__file__).resolve().parents[4] / "tests" / "durability" / "worker_app.py"

_real_time = time.time
_skew = float(sys.argv[1])
time.time = lambda: _real_time() + _skew  # type: ignore[assignment]
sys.argv = [str(WORKER_APP), *sys.argv[2:]]
runpy.run_path(str(WORKER_APP), run_name="__main__")
