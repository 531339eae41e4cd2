"""``vow plugins``: every loaded plugin, its distribution and version, and what it registered."""

from __future__ import annotations

import click

from vow.cli.common import installed_plugins, json_option, print_json


@click.command("plugins")
@json_option
def plugins_command(as_json: bool) -> None:
    """List the installed plugins and what each registered (stores, channels, providers, ...)."""
    plugins = installed_plugins()
    commands = plugins.command_names()
    infos = [(i, {**i.registered, **({"command": commands[i.name]} if commands.get(i.name) else {})})
             for i in plugins.info()]
    if as_json:
        print_json([{"name": i.name, "distribution": i.distribution, "version": i.version,
                     "registered": registered} for i, registered in infos])
        return
    table = [("PLUGIN", "DISTRIBUTION", "VERSION", "REGISTERED")]
    for i, kinds in infos:
        registered = "; ".join(f"{kind} {', '.join(names)}" for kind, names in sorted(kinds.items()))
        table.append((i.name, i.distribution, i.version or "-", registered or "-"))
    widths = [max(len(row[c]) for row in table) for c in range(3)]
    for row in table:
        click.echo("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[3]]).rstrip())
