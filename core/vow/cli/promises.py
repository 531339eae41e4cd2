"""``vow resolve``, ``vow reject`` and ``vow cancel``: settle promises from outside a run."""

from __future__ import annotations

import click

from vow.cli.common import UserError, existing_store_option, installed_plugins, utf8_text, writable
from vow.errors import VowError

# The client and the engine under it, and the pipeline's input parser (YAML), are imported inside
# the commands: `vow --help` imports this module to list its commands and must stay fast
# (tests/cli/test_run.py checks what it loads).


def _settle(store: str | None, action: str, promise_id: str, *args: object) -> None:
    from vow.client import Vow

    with Vow(store, plugins=installed_plugins()) as vow:
        writable(vow.store)
        try:
            record = getattr(vow, action)(promise_id, *args)
        except VowError as exc:  # not found, settled otherwise, not an outside promise: the user's to fix
            raise UserError(str(exc)) from None
    click.echo(f"{record.id}: {record.state.value}")


@click.command()
@click.argument("promise_id", metavar="ID", callback=utf8_text)
@click.argument("value", metavar="VALUE")
@existing_store_option
def resolve(promise_id: str, value: str, store: str | None) -> None:
    """Resolve the outside promise ID with VALUE (JSON, or else plain text); its run wakes up.

    For a pipeline's gate: vow resolve RUN_ID.approval '{"by": "ada"}'
    """
    from vow.pipeline.inputs import parse_value

    _settle(store, "resolve", promise_id, parse_value(value, "VALUE"))


@click.command()
@click.argument("promise_id", metavar="ID", callback=utf8_text)
@click.argument("reason", metavar="REASON")
@existing_store_option
def reject(promise_id: str, reason: str, store: str | None) -> None:
    """Reject the outside promise ID with REASON; its run gets the error."""
    _settle(store, "reject", promise_id, reason)


@click.command()
@click.argument("promise_id", metavar="ID", callback=utf8_text)
@existing_store_option
def cancel(promise_id: str, store: str | None) -> None:
    """Cancel promise ID; for a run, every pending promise in it too."""
    _settle(store, "cancel", promise_id)
