"""The ``vow`` command line.

Exit codes: 0 success, 1 a workflow failed, 2 a usage, configuration, input or store error (one
message on stderr saying where and what is allowed); 130 and 143 when Ctrl-C or SIGTERM stopped a
command that follows a run (the run stays pending; `vow worker` exits 0), 130 too when Ctrl-C stopped
any other command; 141, quietly, when the reader of a command's output went away (``vow ls | head -1``,
as ``git log | head -1``), and 2 when its output could not be written otherwise (a full disk). Plugins
add commands through the ``vow_register_commands`` hook.

Fast to start: a command's module is imported when that command runs (or when ``--help`` lists
it), and plugins load only when a command needs them — running a pipeline, or a name that is
not one of vow's own commands (a plugin's).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from vow import __version__
from vow.cli.common import INTERRUPTED, USER_ERRORS, UserError, installed_plugins, one_line, output_checked

# Command name -> (module, attribute): imported on first use.
_COMMANDS = {
    "run": ("vow.cli.run", "run"),
    "validate": ("vow.cli.run", "validate"),
    "ls": ("vow.cli.inspect", "ls"),
    "show": ("vow.cli.inspect", "show"),
    "resume": ("vow.cli.run", "resume"),
    "resolve": ("vow.cli.promises", "resolve"),
    "reject": ("vow.cli.promises", "reject"),
    "cancel": ("vow.cli.promises", "cancel"),
    "prune": ("vow.cli.retention", "prune"),
    "worker": ("vow.cli.worker", "worker"),
    "schedule": ("vow.cli.schedule", "schedule"),
    "fork": ("vow.cli.forking", "fork"),
    "retry": ("vow.cli.forking", "retry"),
    "store": ("vow.cli.store", "store_group"),
    "plugins": ("vow.cli.plugins", "plugins_command"),
}


class _Group(click.Group):
    """vow's commands, imported when used; plugins' commands, loaded when a name is not vow's own.

    Turns the errors a user can fix (bad input, a broken plugin, a store that cannot be used)
    into one message and exit code 2.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_commands_loaded = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*_COMMANDS, *sorted(set(self.commands) - set(_COMMANDS))]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in _COMMANDS:
            module, attr = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        if command is None and not self._plugin_commands_loaded:
            self.add_plugin_commands()
            command = self.commands.get(cmd_name)
        return command

    def add_plugin_commands(self) -> None:
        """Let every installed plugin add its commands (loads the plugins)."""
        self._plugin_commands_loaded = True
        try:
            installed_plugins().add_commands(self)
        except USER_ERRORS as exc:
            raise UserError(f"{one_line(exc)} (skip a broken plugin with VOW_DISABLE_PLUGINS=name)") from None

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with output_checked():  # `vow --help | head -1`: the help is written while the arguments are read
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with output_checked():
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            os.getcwd()  # relative paths (the default store, a pipeline's output) need it
        except OSError as exc:
            raise UserError(f"the working directory cannot be read ({exc.strerror}): was it deleted? cd to a "
                            "directory that exists") from None
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise UserError(one_line(exc)) from None
        except KeyboardInterrupt:
            # Click's default is "Aborted!" and exit 1, which is vow's "a workflow failed"; `vow run` says
            # more where it knows more (while planning, while following a run).
            click.echo("\ninterrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="Installed plugins may add commands: run `vow NAME --help` for one, `vow plugins` to list them.")
@click.version_option(version=__version__, prog_name="vow")
def cli() -> None:
    """vow: durable fan-out / fan-in. Run YAML pipelines and inspect and steer their runs."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``vow`` console script and ``python -m vow``."""
    cli.main(args=argv, prog_name="vow")


__all__ = ["cli", "main"]
