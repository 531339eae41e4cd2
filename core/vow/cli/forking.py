"""``vow fork RUN --from PROMISE_ID`` and ``vow retry RUN``: new runs that reuse a stored run's results.

Both copy records in the store (:mod:`vow.forking`), then run the new run here with the live
view, as ``vow resume`` does — or, with ``--detach``, leave it pending for ``vow worker``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from vow.cli.common import (
    UserError,
    existing_store_option,
    installed_plugins,
    json_option,
    load_apps,
    pipeline_name,
    print_json,
    utf8_text,
    writable,
)

# The client, the engine and the live view are imported inside the commands: `vow --help` imports this
# module to list its commands and must stay fast (tests/cli/test_run.py checks what it loads).


def _start_options(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def add(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option("--id", "new_id", metavar="NEW", callback=utf8_text,
                         help=f"The new run's id [default: RUN/{kind}-N, the next free N].")(f)
        f = click.option("--detach", is_flag=True,
                         help="Store the new run for `vow worker` and exit, printing its id.")(f)
        f = click.option("--app", "apps", multiple=True, metavar="MODULE[:ATTR]",
                         help="Import the Python workflow to run here (pipelines are always available).")(f)
        return f

    return add


def _make_and_run(store: str | None, run_id: str, apps: tuple[str, ...], detach: bool, as_json: bool,
                  make: Callable[[Any], Any]) -> None:
    from vow.cli.run import follow, progress_for
    from vow.client import Vow

    plugins = installed_plugins()
    with Vow(store, plugins=plugins) as vow:
        writable(vow.store)
        load_apps(vow, apps)
        original = vow.get(run_id)
        if original is not None and not detach and original.func not in vow.registered():
            raise UserError(f"run {run_id} is workflow {original.func!r}, which is not registered here; import it "
                            "with --app MODULE[:ATTR], or add --detach to leave the new run to `vow worker`")
        copy = make(vow.store)
    if detach:
        if as_json:
            print_json(copy.to_dict())
        else:
            click.echo(copy.run_id)
        return
    if not as_json:
        again = ", ".join(copy.rerun) or "none of its branches (only the workflow's own code)"
        click.echo(f"{copy.run_id}: reuses {len(copy.copied)} stored results of {copy.source}; runs again: {again}")
    with Vow(store, plugins=plugins) as probe:
        record = probe.get(copy.run_id)
    assert record is not None  # just stored
    progress = progress_for(record)
    with Vow(store, plugins=plugins, observers=[progress]) as vow:
        load_apps(vow, apps)
        # The header would take a fork that copied nothing (--from RUN) for one stored by --detach.
        code = follow(vow, record.id, lambda: vow.resume(record.id), progress, as_json=as_json,
                      title=pipeline_name(record) or record.func, existing=vow.get(record.id), made_here=True)
    sys.exit(code)


@click.command()
@click.argument("run_id", metavar="RUN", callback=utf8_text)
@click.option("--from", "from_id", required=True, metavar="PROMISE_ID", callback=utf8_text,
              help="The first promise to run again: results stored before it are reused (vow show RUN lists them).")
@_start_options("fork")
@existing_store_option
@json_option
def fork(run_id: str, from_id: str, new_id: str | None, detach: bool, apps: tuple[str, ...], store: str | None,
         as_json: bool) -> None:
    """Start a new run of RUN that reuses its results up to PROMISE_ID and runs the rest with the current code.

    How you carry on after fixing a bug: the steps before PROMISE_ID are not run again; PROMISE_ID
    and everything after it are. The original run is left as it was.
    """
    from vow.forking import fork as fork_run

    _make_and_run(store, run_id, apps, detach, as_json, lambda s: fork_run(s, run_id, from_id, new_id=new_id))


@click.command()
@click.argument("run_id", metavar="RUN", callback=utf8_text)
@_start_options("retry")
@existing_store_option
@json_option
def retry(run_id: str, new_id: str | None, detach: bool, apps: tuple[str, ...], store: str | None,
          as_json: bool) -> None:
    """Start a new run of the failed run RUN in which only its failed branches run again.

    Every branch that succeeded keeps its stored result (nothing is sent twice); the failed ones,
    and what the workflow did after the first failure, run again. The original run is left as it was.
    """
    from vow.forking import retry as retry_run

    _make_and_run(store, run_id, apps, detach, as_json, lambda s: retry_run(s, run_id, new_id=new_id))
