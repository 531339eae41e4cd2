"""``vow.pipeline``: the workflow every pipeline file runs as.

Its one argument is a plan's ``spec`` (plain JSON, see :mod:`vow.pipeline.plan`), so any
worker runs it without the file. It waits for the gate if there is one, fans out one durable
leaf per branch (``{run id}.{branch id}``, with the branch's retry policy and timeout), fans
in, writes the gallery and ``result.json`` as durable steps (a replay does not write them
again), and fails with :class:`PipelineFailed` when any branch failed for good.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vow.errors import VowError
from vow.leaf import LeafContext
from vow.records import State

if TYPE_CHECKING:
    from vow.plugins import Plugins

NAME = "vow.pipeline"
"""The name the pipeline workflow is registered under on every :class:`vow.Vow`."""

RESERVED = ("started", "gallery", "result")
"""Step ids under a run that branches cannot use."""

RESULT_FILE = "result.json"


class PipelineFailed(VowError):
    """One or more branches failed for good; the message names each with its error."""


def pipeline(ctx: Any, spec: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    """Run one planned pipeline (see the module docstring); returns the run's summary."""
    # Imported here: every Vow() registers this workflow and should not pay for channels and images.
    from vow.images.pipeline import wall_clock, write_gallery_step

    started_at = yield ctx.run(wall_clock).options(id=f"{ctx.id}.started")
    gate = spec.get("gate")
    approval = None
    if gate:
        promise = yield ctx.promise(id=f"{ctx.id}.{gate['promise']}", timeout=gate.get("timeout"))
        approval = yield promise

    branches = spec["branches"]
    limit = spec.get("concurrency")
    handles: list[Any] = []
    for branch in branches:
        if limit:
            yield from _wait_for_room(ctx, handles, limit)
        handles.append((yield _start(ctx, branch, spec.get("output"))))

    if spec.get("fan_in") == "all":
        try:
            yield ctx.all(handles)  # fails at the first branch that fails for good
        except Exception:  # noqa: BLE001 - each branch's state says what happened
            pass
    else:
        yield ctx.all_settled(handles)

    outcomes = [_outcome(branch, handle) for branch, handle in zip(branches, handles)]
    result: dict[str, Any] = {"run_id": ctx.id, "name": spec["name"], "ok": all(o["ok"] for o in outcomes),
                              "started_at": started_at, "branches": outcomes}
    if gate:
        result["approval"] = approval
    output = spec.get("output")
    images = [(b, o) for b, o in zip(branches, outcomes) if b["kind"] == "image"]
    if output and images:
        paths = yield ctx.run(write_gallery_step, output, _gallery_run(ctx.id, started_at, images)).options(
            id=f"{ctx.id}.gallery")
        result.update(paths)  # gallery (index.html), manifest (gallery.json), wall_ms
    if output:
        result["result_file"] = yield ctx.run(write_result, output, result).options(id=f"{ctx.id}.result")
    failed = [o for o in outcomes if not o["ok"]]
    if failed:
        raise PipelineFailed(f"{len(failed)} of {len(outcomes)} branches failed: "
                             + "; ".join(f"{o['id']}: {o['error']}" for o in failed))
    return result


def write_result(ctx: LeafContext, out_dir: str, result: dict[str, Any]) -> str:
    """Leaf: write ``out_dir/result.json`` (atomically); returns its path."""
    from vow.images.pipeline import write_atomic

    path = Path(out_dir) / RESULT_FILE
    write_atomic(path, json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    return str(path)


def _start(ctx: Any, branch: dict[str, Any], output: str | None) -> Any:
    from vow.channels import deliver
    from vow.images.pipeline import generate_image

    if branch["kind"] == "image":
        call = ctx.begin_run(generate_image, branch["provider"], branch["request"], output,
                             branch["options"] or None, branch["faults"])
    else:
        call = ctx.begin_run(deliver, branch["channel"], branch["message"], branch["options"] or None,
                             branch["faults"])
    from vow.retry import from_config

    retry = from_config(branch["retry"], plugins=_plugins(ctx)) if branch.get("retry") else None
    return call.options(id=f"{ctx.id}.{branch['id']}", retry=retry, timeout=branch.get("timeout"))


def _plugins(ctx: Any) -> Plugins:
    """The registry of the client running this workflow, for a branch's retry policy."""
    plugins = getattr(ctx, "plugins", None)
    if plugins is None:  # a workflow Context without the client's registry: this environment's plugins
        from vow.plugins import default_plugins

        plugins = default_plugins()
    return plugins


def _wait_for_room(ctx: Any, handles: list[Any], limit: int) -> Generator[Any, Any, None]:
    """Wait until fewer than ``limit`` branches run (``defaults.concurrency``)."""
    while True:
        running = [h for h in handles if not h.done()]
        if len(running) < limit:
            return
        try:
            yield ctx.first(running)
        except Exception:  # noqa: BLE001 - a failed branch also makes room
            pass


def _outcome(branch: dict[str, Any], handle: Any) -> dict[str, Any]:
    kind = branch["kind"]
    entry: dict[str, Any] = {"id": branch["id"], "kind": kind}
    entry["channel" if kind == "channel" else "provider"] = branch["channel" if kind == "channel" else "provider"]
    entry.update(state=handle.state.value, ok=handle.state is State.RESOLVED)
    if entry["ok"]:
        entry["result"] = handle.value
    elif handle.state is State.PENDING:  # fan_in: all stopped at another branch's failure
        entry.update(state=State.CANCELED.value, error="canceled: another branch failed first (fan_in: all)")
    else:
        error = handle.error
        entry["error"] = f"{type(error).__name__}: {error}" if error is not None else handle.state.value
        entry["attempt"] = handle.attempt  # attempts made before it failed for good
    return entry


def _gallery_run(run_id: str, started_at: float, images: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    first = images[0][0]["request"]
    return {
        "run_id": run_id, "prompt": first["prompt"], "provider": images[0][0]["provider"], "seed": first["seed"],
        "width": first["width"], "height": first["height"], "started_at": started_at,
        "images": [{**outcome["result"], "ok": True} if outcome["ok"] else
                   {"style": branch["request"]["style"], "ok": False, "error": outcome["error"],
                    "attempt": outcome.get("attempt", 1)}
                   for branch, outcome in images],
    }
