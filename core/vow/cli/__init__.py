"""The ``vow`` command line.

Exit codes: 0 success, 1 a workflow failed, 2 a usage, configuration or input error (one
message on stderr saying where and what is allowed). Plugins add commands through the
``vow_register_commands`` hook.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from vow.cli.common import USAGE, USER_ERRORS, UserError
from vow.cli.inspect import ls, show
from vow.cli.plugins import plugins_command
from vow.cli.promises import cancel, reject, resolve
from vow.cli.run import resume, run, validate
from vow.cli.store import store_group
from vow.cli.worker import worker


class _Group(click.Group):
    """Turns the errors a user can fix into one message and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise UserError(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vow", prog_name="vow")
def cli() -> None:
    """vow: durable fan-out / fan-in. Run YAML pipelines and inspect and steer their runs."""


for _command in (run, validate, ls, show, resume, resolve, reject, cancel, worker, store_group, plugins_command):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``vow`` console script and ``python -m vow``."""
    from vow.plugins import default_plugins

    try:
        default_plugins().add_commands(cli)
    except USER_ERRORS as exc:
        click.echo(f"error: {exc} (skip a broken plugin with VOW_DISABLE_PLUGINS=name)", err=True)
        sys.exit(USAGE)
    cli.main(args=argv, prog_name="vow")


__all__ = ["cli", "main"]
