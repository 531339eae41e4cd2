"""The plugin manager: entry points, allow/block lists, loud failures, registries, hook docs."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import textwrap
from pathlib import Path

import attrs
import pytest

from tests.support import python
from vow import hookspecs
from vow.errors import ConfigError, PluginLoadError, UnknownPluginError
from vow.hookspecs import hookimpl
from vow.plugins import HOOK_NAMES, Plugins

ROOT = Path(__file__).resolve().parents[1]


def fake_distribution(site: Path, dist: str, plugin: str, module_source: str) -> None:
    """Install a tiny distribution into ``site``: a module plus a dist-info with a ``vow`` entry point."""
    module = f"{plugin}_mod"
    (site / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[vow]\n{plugin} = {module}\n")


def run_python(code: str, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return python("-c", code, env={"VOW_PLUGINS": None, "VOW_DISABLE_PLUGINS": None, "PYTHONPATH": str(site), **env})


LIST_PLUGINS = ("from vow.plugins import Plugins; import json; "
                "print(json.dumps({p.name: p.registered for p in Plugins().info()}))")

GOOD_PLUGIN = """
    import attrs
    from vow import hookimpl

    @attrs.frozen
    class EchoOptions:
        prefix: str = ">"

    class Echo:
        def __init__(self, options):
            self.options = options

    @hookimpl
    def vow_register_channels(register):
        register("echo", Echo, EchoOptions)
"""


def test_builtins_are_loaded_through_entry_points() -> None:
    loaded = {p.name: p for p in Plugins().info()}
    assert {"memory", "sqlite", "retry"} <= set(loaded)
    assert loaded["sqlite"].distribution == "vow-durable"
    assert loaded["sqlite"].registered == {"store": ["sqlite"]}
    assert loaded["retry"].registered["retry_policy"] == ["exponential", "linear", "constant", "never"]


def test_third_party_plugin_is_discovered_and_can_be_allowed_or_blocked(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "vow-echo", "echo", GOOD_PLUGIN)
    found = json.loads(run_python(LIST_PLUGINS, tmp_path).stdout)
    assert found["echo"] == {"channel": ["echo"]}

    blocked = json.loads(run_python(LIST_PLUGINS, tmp_path, VOW_DISABLE_PLUGINS="echo").stdout)
    assert "echo" not in blocked and "sqlite" in blocked

    allowed = json.loads(run_python(LIST_PLUGINS, tmp_path, VOW_PLUGINS="echo").stdout)
    assert "echo" in allowed and "sqlite" in allowed  # builtins always load


def test_vow_plugins_naming_a_plugin_that_is_not_installed_is_an_error(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "vow-echo", "echo", GOOD_PLUGIN)
    result = run_python(LIST_PLUGINS, tmp_path, VOW_PLUGINS="echo,nonexist")
    assert result.returncode != 0
    assert ("ConfigError: VOW_PLUGINS names 'nonexist', which is not installed (installed plugins: echo, ") \
        in result.stderr
    cli = run_python("from vow.cli import main; main(['plugins'])", tmp_path, VOW_PLUGINS="nonexist")
    assert cli.returncode == 2 and cli.stderr.startswith("error: VOW_PLUGINS names 'nonexist'"), cli.stderr
    assert len(cli.stderr.splitlines()) == 1


@pytest.mark.parametrize(("source", "problem"), [
    ("@hookimpl\ndef vow_register_channel(register):\n    pass\n",  # misspelled: registers nothing
     "unknown hook 'vow_register_channel' in plugin"),
    ("@hookimpl\ndef vow_register_channels(regster):\n    pass\n",
     "Argument(s) {'regster'} are declared in the hookimpl but can not be found in the hookspec"),
    ("def vow_register_channels(register):\n    register('x', object)\n",
     "vow_register_channels is not marked @vow.hookimpl, so vow would never call it"),
])
def test_a_plugin_with_a_bad_hook_fails_loudly_in_one_line(tmp_path: Path, source: str, problem: str) -> None:
    fake_distribution(tmp_path, "vow-typo", "typo", "from vow import hookimpl\n\n" + source)
    result = run_python(LIST_PLUGINS, tmp_path)
    assert result.returncode != 0
    assert "PluginLoadError: plugin 'typo' from distribution 'vow-typo': " in result.stderr
    assert problem in result.stderr
    cli = run_python("from vow.cli import main; main(['plugins'])", tmp_path)
    assert cli.returncode == 2, cli.stderr
    assert len(cli.stderr.splitlines()) == 1 and problem in cli.stderr, cli.stderr


def test_a_plugin_that_fails_to_import_fails_loudly_naming_plugin_and_distribution(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "vow-broken", "broken", "import not_a_real_module_anywhere\n")
    result = run_python(LIST_PLUGINS, tmp_path)
    assert result.returncode != 0
    assert ("PluginLoadError: plugin 'broken' from distribution 'vow-broken' failed to load (broken_mod): "
            "ModuleNotFoundError: No module named 'not_a_real_module_anywhere'") in result.stderr


def test_a_plugin_whose_hook_raises_fails_loudly(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "vow-raiser", "raiser", """
        from vow import hookimpl

        @hookimpl
        def vow_register_channels(register):
            raise RuntimeError("no config")
    """)
    result = run_python(LIST_PLUGINS, tmp_path)
    assert result.returncode != 0
    assert ("plugin 'raiser' from distribution 'vow-raiser' failed in vow_register_channels: "
            "RuntimeError: no config") in result.stderr


class _Local:
    @attrs.frozen
    class Options:
        level: int = 1

    @staticmethod
    @hookimpl
    def vow_register_channels(register):
        register("local", lambda options: ("built", options.level), _Local.Options)


def test_registry_validates_options_and_lists_installed_names_for_unknown_ones() -> None:
    plugins = Plugins(entry_points=False)
    plugins.add(_Local, "local-plugin", distribution="vow-local", version="0.0.1")
    assert plugins.channels.build("local", {"level": 3}) == ("built", 3)
    with pytest.raises(ConfigError, match=r"channel 'local' options.level: expected a whole number, got text 'high'"):
        plugins.channels.build("local", {"level": "high"})
    with pytest.raises(ConfigError, match=r"options.colour: unknown key \(allowed: level\)"):
        plugins.channels.build("local", {"colour": "red"})
    with pytest.raises(UnknownPluginError, match=r"channel 'emial' is not installed \(installed: local\)"):
        plugins.channels.get("emial")


def test_the_same_name_from_two_plugins_is_an_error() -> None:
    class Twin:
        @staticmethod
        @hookimpl
        def vow_register_channels(register):
            register("local", lambda options: None, None)

    plugins = Plugins(entry_points=False)
    plugins.add(_Local, "first")
    with pytest.raises(PluginLoadError, match=r"channel 'local' is registered twice: by plugin 'first'"):
        plugins.add(Twin, "second")


def test_every_hook_is_documented_in_its_spec_and_in_contributing() -> None:
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("vow_")]
    assert specs == list(HOOK_NAMES)
    for name in specs:
        spec = getattr(hookspecs, name)
        doc = inspect.getdoc(spec) or ""
        assert len(doc) > 80, f"{name} needs a docstring saying what it is for and when it is called"
        # As datasette does: the hook's exact signature, so a changed argument is a changed doc.
        signature = f"{name}({', '.join(inspect.signature(spec).parameters)})"
        assert signature in contributing, f"CONTRIBUTING.md must document {signature}"


@attrs.frozen
class _Smtp:
    host: str = "localhost"
    port: int = 25


@attrs.frozen
class _MailOptions:
    transport: str = "smtp"
    smtp: _Smtp | None = None
    relays: list[_Smtp] = attrs.field(factory=list)


@pytest.mark.parametrize(("data", "message"), [
    ({"smtp": {"hots": "x"}}, "options.smtp.hots: unknown key (allowed: host, port)"),
    ({"relays": [{}, {"prot": 1}]}, "options.relays[1].prot: unknown key (allowed: host, port)"),
    ({"transprot": "x"}, "options.transprot: unknown key (allowed: transport, smtp, relays)"),
    ({"smtp": {"port": "high"}}, "options.smtp.port: expected a whole number, got text 'high'"),
    ({"smtp": {"port": 2.5}}, "options.smtp.port: expected a whole number, got the number 2.5"),  # not 2
    ({"smtp": {"host": 42}}, "options.smtp.host: expected text, got the number 42"),  # not '42'
    ({"relays": {"host": "x"}}, "options.relays: expected a list"),
])
def test_option_errors_name_the_nested_key_and_what_is_allowed(data: dict, message: str) -> None:
    from vow.config import structure

    with pytest.raises(ConfigError) as caught:
        structure(_MailOptions, data, where="options")
    assert str(caught.value).startswith(message)


def test_booleans_are_strict() -> None:
    from vow.config import structure

    @attrs.frozen
    class Flags:
        sandbox: bool = False

    assert structure(Flags, {"sandbox": True}).sandbox is True
    with pytest.raises(ConfigError, match=r"options.sandbox: expected true or false, got text 'false'"):
        structure(Flags, {"sandbox": "false"}, where="options")


def test_an_observer_registered_by_a_plugin_sees_every_client_s_events() -> None:
    from vow import Vow

    seen: list[tuple[str, str]] = []

    @attrs.frozen
    class TraceOptions:
        prefix: str = "trace"

    class Tracer:
        def __init__(self, options: TraceOptions) -> None:
            self.prefix = options.prefix

        def on_event(self, event) -> None:
            seen.append((self.prefix, event.kind.value))

    class TracingPlugin:
        @staticmethod
        @hookimpl
        def vow_register_observers(register):
            register("tracer", Tracer, TraceOptions)

    plugins = Plugins()
    plugins.add(TracingPlugin, "tracing")

    def leaf(ctx) -> int:
        return 1

    def wf(ctx):
        return (yield ctx.run(leaf))

    with Vow(store="memory:", plugins=plugins) as vow:
        assert vow.run("trace/1", wf) == 1
    assert ("trace", "settled") in seen and ("trace", "created") in seen


def test_a_plugin_adds_a_command_to_the_cli(tmp_path: Path) -> None:
    fake_distribution(tmp_path, "vow-hello", "hello", """
        import click
        from vow import hookimpl

        @hookimpl
        def vow_register_commands(cli):
            @cli.command()
            def hello():
                "Say hello."
                click.echo("hello from a plugin")
    """)
    result = run_python("import sys; from vow.cli import main; sys.argv = ['vow', 'hello']; main()", tmp_path)
    assert "hello from a plugin" in result.stdout, result.stderr
    # `vow --help` says `vow plugins` lists the plugins' commands: by name, not as "(cli)".
    listed = run_python("import sys; from vow.cli import main; sys.argv = ['vow', 'plugins']; main()", tmp_path)
    assert re.search(r"^hello +vow-hello +1\.2\.3 +command hello$", listed.stdout, re.M), listed.stdout + listed.stderr
    as_json = run_python("import sys; from vow.cli import main; sys.argv = ['vow', 'plugins', '--json']; main()",
                         tmp_path)
    assert {p["name"]: p["registered"] for p in json.loads(as_json.stdout)}["hello"] == {"command": ["hello"]}
