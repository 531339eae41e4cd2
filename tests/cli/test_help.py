"""What `vow COMMAND --help` prints is plain text that says what each command does."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from vow.cli import cli


def every_command() -> list[tuple[str, ...]]:
    """The path of every command and group under ``vow``, plugins' commands included."""
    cli.add_plugin_commands()  # plugins add theirs (vow ui) only when a name is not vow's own
    found: list[tuple[str, ...]] = []

    def walk(group: click.Group, path: tuple[str, ...]) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            found.append((*path, name))
            if isinstance(command, click.Group):
                walk(command, (*path, name))

    walk(cli, ())
    return found


@pytest.mark.parametrize("path", every_command(), ids=" ".join)
def test_help_is_plain_text(path: tuple[str, ...]) -> None:
    """reST markup means nothing in a terminal: `vow ls --help` said 'shows as ``parked``'."""
    shown = CliRunner().invoke(cli, [*path, "--help"])
    assert shown.exit_code == 0, shown.output
    assert "``" not in shown.output and ":class:" not in shown.output and ":func:" not in shown.output, shown.output


@pytest.mark.parametrize("command", ["fork", "retry"])
def test_fork_and_retry_each_name_their_own_default_id(command: str) -> None:
    shown = CliRunner().invoke(cli, [command, "--help"])
    other = {"fork": "retry", "retry": "fork"}[command]
    assert f"RUN/{command}-N" in shown.output and f"RUN/{other}-N" not in shown.output, shown.output


def test_resume_shows_its_run_id_as_optional() -> None:
    """`vow resume --all` takes no ID, but the usage line said `vow resume [OPTIONS] ID`."""
    shown = CliRunner().invoke(cli, ["resume", "--help"], prog_name="vow")
    assert "Usage: vow resume [OPTIONS] [ID]\n" in shown.output, shown.output
