"""vow closes what it opens: a client that ran async leaves leaves no event loop or socket behind.

Found by ``filterwarnings = error``: such leaks surface as ResourceWarnings when garbage is
collected, in whatever test happens to run then.
"""

from __future__ import annotations

from tests.support import python

ASYNC_RUN = """
import gc
import threading
from vow import Vow

async def leaf(ctx):
    return 1

def wf(ctx):
    return (yield ctx.run(leaf))

with Vow("memory:") as vow:
    assert vow.run("a/1", wf) == 1
for thread in threading.enumerate():  # the loop's thread ends once the loop stops
    if thread.name == "vow-async-leaves":
        thread.join(60)
del vow
gc.collect()
"""


def test_closing_a_client_closes_the_event_loop_of_its_async_leaves() -> None:
    done = python("-X", "dev", "-W", "error::ResourceWarning", "-c", ASYNC_RUN)
    assert done.returncode == 0, done.stderr
    assert "unclosed" not in done.stderr, done.stderr
