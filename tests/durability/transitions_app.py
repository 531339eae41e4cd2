"""A process for the commit-before-act tests: runs (or resumes) one workflow and can be killed.

    python -m tests.durability.transitions_app STORE SINK WORKFLOW RUN_ID [VERSION]

Leaves append one line per effect to SINK (one O_APPEND write each), so the test counts effects
across processes. The workflows wait on an outside promise ``{run id}.gate`` where the test kills
them. ``VERSION`` picks the code the process runs (``1``, ``2``: charge changed, ``patched``: the
change guarded by ``ctx.patched``).
"""

from __future__ import annotations

import os
import sys

import httpx

from vow import Context, LeafContext, Vow

SINK = ""
VERSION = "1"


def note(ctx: LeafContext, text: str) -> str:
    fd = os.open(SINK, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{ctx.root_id} {text}\n".encode())
    finally:
        os.close(fd)
    return text


def fail_with_503(ctx: LeafContext) -> None:
    request = httpx.Request("POST", "https://provider.example/v1/send")
    response = httpx.Response(503, headers={"Retry-After": "7"}, request=request)
    response.raise_for_status()


def charge(ctx: LeafContext, amount: int) -> int:
    note(ctx, f"charge {amount}")
    return amount


def http_status(ctx: Context):
    """Reads a stored HTTP error's status, live and after a restart."""
    try:
        yield ctx.run(fail_with_503).options(non_retryable=[httpx.HTTPStatusError])
    except httpx.HTTPStatusError as error:
        seen = f"{type(error).__name__} {error.response.status_code} {error.response.headers.get('retry-after')}"
    yield ctx.run(note, f"live {seen}")
    yield (yield ctx.promise(f"{ctx.id}.gate"))
    return seen


def order(ctx: Context):
    """Charges twice around a gate; version 2 charges another amount first."""
    if VERSION == "patched":
        first = 150 if (yield ctx.patched("new-price")) else 100
    else:
        first = 150 if VERSION == "2" else 100
    a = yield ctx.run(charge, first)
    yield (yield ctx.promise(f"{ctx.id}.gate"))
    b = yield ctx.run(charge, 50)
    return a + b


WORKFLOWS = {"http_status": http_status, "order": order}


def main(argv: list[str]) -> None:
    global SINK, VERSION
    store, SINK, workflow, run_id = argv[:4]
    VERSION = argv[4] if len(argv) > 4 else "1"
    with Vow(store=f"sqlite:{store}", lease_ttl=2.0) as vow:
        vow.register(WORKFLOWS[workflow], name=workflow)
        print(repr(vow.run(run_id, workflow)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
