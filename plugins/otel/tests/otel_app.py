"""A run for the resumed-trace test, in a real subprocess that the test kills and starts again.

Usage: ``python otel_app.py STORE DIR ID``. Tracing is set up by the ``OTEL_*`` environment
alone, through the installed ``otel`` plugin. Each ``gated`` leaf writes ``DIR/started-<leaf id, / as _>-<pid>``
and then waits until ``DIR/open`` exists, so the test decides when the run can finish. The
workflow's result is printed as JSON on the last line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from vow import Context, LeafContext, Vow

DIR = Path(sys.argv[2])


def quick(ctx: LeafContext, value: int) -> int:
    return value


def gated(ctx: LeafContext) -> str:
    (DIR / f"started-{ctx.id.replace('/', '_')}-{os.getpid()}").write_text(str(ctx.attempt))
    while not (DIR / "open").exists():
        time.sleep(0.01)
    return "through"


def branch(ctx: Context):
    first = yield ctx.run(quick, 2).options(id=f"{ctx.id}.quick")
    second = yield ctx.run(gated).options(id=f"{ctx.id}.gate")
    return [first, second]


def journey(ctx: Context):
    a = yield ctx.begin_run(quick, 1).options(id=f"{ctx.id}.quick")
    b = yield ctx.begin_run(gated).options(id=f"{ctx.id}.gate")
    c = yield ctx.begin_run(branch).options(id=f"{ctx.id}.branch")
    return (yield ctx.all([a, b, c]))


if __name__ == "__main__":
    store, run_id = sys.argv[1], sys.argv[3]
    with Vow(store=store) as vow:
        result = vow.run(run_id, journey)
    print(json.dumps(result))
