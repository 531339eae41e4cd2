"""The PostgreSQL durability tests run the core's durability suite (``tests/durability``) on a
PostgreSQL server, reusing its helpers, workflows and checks rather than copying them: this puts
that directory on ``sys.path`` before the test modules import from it."""

from __future__ import annotations

import sys
from pathlib import Path

CORE_DURABILITY = Path(__file__).resolve().parents[4] / "tests" / "durability"
"""The core's durability tests: ``durability_support``, ``notify_app``, ``worker_app`` and the checks."""

if str(CORE_DURABILITY) not in sys.path:
    sys.path.insert(0, str(CORE_DURABILITY))
