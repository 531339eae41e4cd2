"""``vow.pipeline``: the workflow every pipeline file runs as.

Its one argument is a planned run (:class:`~vow.pipeline.model.PlannedRun`, stored as JSON), so
any worker runs it without the file. It waits for the gate if there is one, fans out one durable
leaf per branch (``{run id}.{branch id}``, with the branch's retry policy and timeout), fans in,
writes the gallery and ``result.json`` as durable steps (a replay does not write them again), and
fails with :class:`PipelineFailed` when any branch failed for good.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from vow.encoding import json_safe
from vow.errors import VowError
from vow.files import write_output
from vow.history import failed_attempts
from vow.leaf import LeafContext
from vow.records import State
from vow.reserved import INTERNAL_STEPS, PIPELINE_WORKFLOW

if TYPE_CHECKING:
    from vow.context import Context, Handle
    from vow.pipeline.model import Branch
    from vow.plugins import Plugins

NAME = PIPELINE_WORKFLOW
"""The name the pipeline workflow is registered under on every :class:`vow.Vow`."""

RESERVED = INTERNAL_STEPS
"""Step ids under a run that branches cannot use."""

RESULT_FILE = "result.json"

STOPPED_BY_FAN_IN = "canceled: another branch failed first (fan_in: all)"


class PipelineFailed(VowError):
    """One or more branches failed for good; the message names each with its error."""


def pipeline(ctx: Context, spec: Mapping[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    """Run one planned pipeline (see the module docstring); returns the run's summary."""
    # Imported when a pipeline runs, not with this module: every Vow() registers this workflow,
    # and a client that runs none loads no channel or image code (tests/test_packaging.py).
    from vow.channels import deliver
    from vow.images.pipeline import begin_image, gallery_image, gallery_step
    from vow.pipeline.model import ImageBranch, PlannedRun
    from vow.retry import from_config
    from vow.steps import wall_clock

    run = PlannedRun.from_json(spec)
    plugins = _plugins(ctx)
    started_at = yield ctx.run(wall_clock).options(id=f"{ctx.id}.started")
    approval = None
    if run.gate:
        promise = yield ctx.promise(id=f"{ctx.id}.{run.gate.promise}", timeout=run.gate.timeout)
        approval = yield promise

    handles: list[Handle] = []
    for branch in run.branches:
        if run.concurrency:
            yield from _wait_for_room(ctx, handles, run.concurrency)
        # Leaves get plain JSON, as they always did: the same stored arguments, replay after replay.
        if isinstance(branch, ImageBranch):
            call = begin_image(ctx, branch.id, branch.provider, attrs.asdict(branch.request), run.output,
                               branch.options or None, branch.faults)
        else:
            call = ctx.begin_run(deliver, branch.channel, attrs.asdict(branch.message), branch.options or None,
                                 branch.faults).options(id=f"{ctx.id}.{branch.id}")
        retry = from_config(branch.retry, plugins=plugins) if branch.retry else None
        handles.append((yield call.options(retry=retry, timeout=branch.timeout)))

    if run.fan_in == "all":
        try:
            yield ctx.all(handles)  # fails at the first branch that fails for good
        except Exception:  # noqa: BLE001 - each branch's state says what happened
            pass
    else:
        yield ctx.all_settled(handles)

    outcomes = [_outcome(branch, handle) for branch, handle in zip(run.branches, handles)]
    result: dict[str, Any] = {"run_id": ctx.id, "name": run.name, "ok": all(o["ok"] for o in outcomes),
                              "started_at": started_at, "branches": outcomes}
    if run.gate:
        result["approval"] = approval
    images = [(b, o) for b, o in zip(run.branches, outcomes) if isinstance(b, ImageBranch)]
    if run.output and images:
        step, _ = gallery_step(ctx, run.output, started_at, images[0][0].provider, [
            (attrs.asdict(b.request), gallery_image(b.request.style, o.get("result"), o.get("error"),
                                                    o.get("attempt", 1))) for b, o in images])
        result.update((yield step))  # gallery (index.html), manifest (gallery.json), wall_ms
    if run.output:
        result["result_file"] = yield ctx.run(write_result, run.output, result).options(id=f"{ctx.id}.result")
    failed = [o for o in outcomes if not o["ok"]]
    if failed:
        raise PipelineFailed(f"{len(failed)} of {len(outcomes)} branches failed: "
                             + "; ".join(f"{o['id']}: {o['error']}" for o in failed))
    return result


def write_result(ctx: LeafContext, out_dir: str, result: dict[str, Any]) -> str:
    """Leaf: write ``out_dir/result.json`` (atomically, strict JSON: :func:`vow.encoding.json_safe`); returns its path.

    A branch that failed for good after retries lists there the error of every attempt
    (``errors``), read from the store: the workflow itself sees only the last one.
    """
    path = Path(out_dir) / RESULT_FILE
    # Strict JSON, as the gallery's manifest: a stored value may hold NaN or infinity, which other tools refuse.
    text = json.dumps(json_safe(_with_every_error(ctx, result)), indent=2, sort_keys=True, allow_nan=False)
    # As the gallery's: an error the disk gives names the file, and a full disk is retried, not a read-only folder.
    write_output(path, text + "\n", "the run's result")
    return str(path)


def _with_every_error(ctx: LeafContext, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with ``errors`` (every attempt's, oldest first) on each branch that failed after retries."""
    if ctx.store is None:  # a context built by hand: the last errors are all there is
        return result
    branches = []
    for entry in result["branches"]:
        if not entry["ok"] and entry.get("attempt", 1) > 1:
            promise_id = f"{result['run_id']}.{entry['id']}"
            record = ctx.store.get(promise_id)
            earlier = failed_attempts(record, ctx.store.children(promise_id)) if record is not None else []
            entry = {**entry, "errors": [{"attempt": a.attempt, "error": a.error} for a in earlier]
                     + [{"attempt": entry["attempt"], "error": entry["error"]}]}
        branches.append(entry)
    return {**result, "branches": branches}


def _plugins(ctx: Context) -> Plugins:
    """The registry of the client running this workflow, for a branch's retry policy."""
    plugins: Plugins | None = ctx.plugins
    if plugins is None:
        raise VowError(f"{ctx.id}: the pipeline workflow looks up retry policies, but its Context has no plugins: "
                       "the engine gives it the client's; built by hand, pass Context(..., plugins=Plugins())")
    return plugins


def _wait_for_room(ctx: Context, handles: list[Handle], limit: int) -> Generator[Any, Any, None]:
    """Wait until fewer than ``limit`` branches run (``defaults.concurrency``)."""
    while True:
        running = [h for h in handles if not h.done()]
        if len(running) < limit:
            return
        try:
            yield ctx.first(running)
        except Exception:  # noqa: BLE001 - a failed branch also makes room
            pass


def _outcome(branch: Branch, handle: Handle) -> dict[str, Any]:
    """A branch's entry in the run's summary (and ``result.json``)."""
    entry: dict[str, Any] = {"id": branch.id, "kind": branch.kind,
                             "channel" if branch.kind == "channel" else "provider": branch.plugin,
                             "state": handle.state.value, "ok": handle.state is State.RESOLVED}
    if entry["ok"]:
        entry["result"] = handle.value
    elif handle.state is State.PENDING:  # fan_in: all stopped at another branch's failure
        entry.update(state=State.CANCELED.value, error=STOPPED_BY_FAN_IN)
    else:
        error = handle.error
        entry["error"] = f"{type(error).__name__}: {error}" if error is not None else handle.state.value
        entry["attempt"] = handle.attempt  # attempts made before it failed for good
    return entry
