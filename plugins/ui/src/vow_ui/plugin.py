"""The ``vow ui`` command: serve the console with uvicorn (registered through ``vow_register_commands``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import click

from vow.cli.common import UserError, existing_store_option, load_apps
from vow.hookspecs import hookimpl

DEFAULT_PORT = 8765


@click.command("ui")
@existing_store_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address needs --token.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--token", envvar="VOW_UI_TOKEN", metavar="TOKEN",
              help="Require this token from every browser [default: $VOW_UI_TOKEN]; required off loopback.")
@click.option("--app", "apps", multiple=True, metavar="MODULE[:ATTR]",
              help="Import Python workflows, so Resume can run them here (pipelines always can).")
@click.option("--poll", default=0.5, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between looks at the store for live updates.")
def ui(store: str | None, host: str, port: int, token: str | None, apps: tuple[str, ...], poll: float) -> None:
    """Serve a web console for the store: runs, timelines, images; resolve, cancel, resume.

    It listens on 127.0.0.1 (this machine only) unless --host says otherwise; then a token is
    required (--token or VOW_UI_TOKEN) and the address printed carries it. Stop with Ctrl-C.
    """
    # Imported when the console starts: every `vow` command that loads plugins loads this module,
    # and should not pay for uvicorn, Starlette and the engine.
    import uvicorn

    from vow.client import Vow
    from vow_ui.app import create_app
    from vow_ui.guard import is_loopback

    if not is_loopback(host) and not token:
        raise UserError(f"--host {host} serves the console beyond this machine: give a token with --token or "
                        "VOW_UI_TOKEN (anyone who has it can resolve, cancel and resume runs)")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                        "(another program has the port? choose one with --port)") from None
    with Vow(store) as vow:
        load_apps(vow, apps)
        app = create_app(vow, token=token, poll=poll)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        address = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
        click.echo(f"vow console for {vow.store.url} on {address}  (pid {os.getpid()}; stop with Ctrl-C)", err=True)
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5, lifespan="on")
        _server(config, app.state.console.stopping).run(sockets=[sock])


def _server(config: Any, stopping: asyncio.Event) -> Any:
    """uvicorn's server, which also ends the live-update streams at Ctrl-C or SIGTERM: they never
    finish by themselves, and uvicorn waits for open responses before it stops. (Defined here, not
    at import: every ``vow`` command imports this module, and should not pay for uvicorn.)"""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            with contextlib.suppress(RuntimeError):  # no loop running yet: nothing to end
                asyncio.get_running_loop().call_soon_threadsafe(stopping.set)
            super().handle_exit(sig, frame)

    return Server(config)


@hookimpl
def vow_register_commands(cli: click.Group) -> None:
    """Add ``vow ui``."""
    cli.add_command(ui)
