"""CONTRIBUTING holds: its map of the tree names what is there, and its plugin guide runs as written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def mapped_paths() -> list[str]:
    text = (ROOT / "CONTRIBUTING.md").read_text()
    table = text.split("## Where things are", 1)[1].split("\n\n", 2)[1]
    return [path for row in table.splitlines()[2:] for path in re.findall(r"`([^`]+)`", row.split(" | ")[0])]


def test_every_path_the_map_names_exists() -> None:
    paths = mapped_paths()
    assert len(paths) > 20
    missing = [p for p in paths if "<" not in p and not (ROOT / p).exists()]
    assert not missing, f"CONTRIBUTING.md names paths that are not in the tree: {missing}"


def test_every_module_of_the_core_is_on_the_map() -> None:
    paths = mapped_paths()
    core = ROOT / "core" / "vow"
    unmapped = []
    for entry in sorted(core.iterdir()):
        if entry.name.startswith(("_", ".")) or entry.suffix not in (".py", "") or entry.name == "py.typed":
            continue
        if not any(p.rstrip("/") == f"core/vow/{entry.name}" for p in paths):
            unmapped.append(entry.name)
    assert not unmapped, f"CONTRIBUTING.md's 'Where things are' does not say what these hold: {unmapped}"


def plugin_guide_blocks() -> dict[str, list[str]]:
    """The fenced blocks of CONTRIBUTING's "A channel plugin, start to finish", by language."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("### A channel plugin, start to finish", 1)[1].split("\n### ", 1)[0]
    blocks: dict[str, list[str]] = {}
    for language, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S):
        blocks.setdefault(language, []).append(body)
    return blocks


def test_the_plugin_guide_pins_the_cores_minor_version() -> None:
    import tomllib

    import vow

    project = tomllib.loads(plugin_guide_blocks()["toml"][0])["project"]
    major, minor = map(int, vow.__version__.split(".")[:2])
    assert f"vow-durable>={major}.{minor},<{major}.{minor + 1}" in project["dependencies"]
    assert project["entry-points"]["vow"] == {"fax": "vow_fax.plugin"}


def test_the_plugin_guide_channel_runs_from_yaml_and_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide's plugin, pipeline and Python, as written (`.ci/check-packages` installs it with pip)."""
    import vow.client
    from vow import Vow
    from vow.pipeline import SpecError, make_plan, parse
    from vow.plugins import Plugins

    blocks = plugin_guide_blocks()
    module = types.ModuleType("vow_fax.plugin")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # attrs reads the options' annotations there
    exec(compile(blocks["python"][0], "CONTRIBUTING.md (vow_fax/plugin.py)", "exec"), module.__dict__)
    plugins = Plugins()  # the installed ones, vow's builtins among them
    plugins.add(module, "fax")
    monkeypatch.setattr(vow.client, "default_plugins", lambda: plugins)  # what the entry point would give Vow()
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.chdir(tmp_path)

    plan = make_plan(parse(blocks["yaml"][0], "fax.yaml"), plugins=plugins)
    with Vow("memory:") as client:
        summary = client.run(plan.run_id, "vow.pipeline", plan.spec)
    assert summary["ok"] and [(b["id"], b["result"]["attempt"]) for b in summary["branches"]] == [("fax", 2)]

    with pytest.raises(SpecError) as caught:
        make_plan(parse(blocks["yaml"][0], "fax.yaml"), plugins=plugins, input={"fax": "123"})
    assert str(caught.value) == "fax.yaml:7: fan_out[0].to: '123' is not a fax number (+ and 8-15 digits)"
    with pytest.raises(SpecError) as caught:
        make_plan(parse(blocks["yaml"][0].replace("station: ACME", "station: 7"), "fax.yaml"), plugins=plugins)
    assert str(caught.value) == "fax.yaml:9: fan_out[0].options.station: expected text, got the number 7"

    scope: dict[str, Any] = {}
    exec(compile(blocks["python"][1], "CONTRIBUTING.md (fax.py)", "exec"), scope)
    scope["vow"].close()  # the snippet leaves its client open, as a script may


def test_the_command_table_in_docs_pipeline_has_every_command_and_option() -> None:
    """docs/pipeline.md's table of the `vow` command: one row per command, naming each of its options.

    `vow prune` and `vow store copy` had no row, and `ls --name`, `show --full`, `worker --retention`
    and several `--json` were in no row; a new option now fails here until it is documented.
    """
    import click

    from vow.cli import _COMMANDS, cli

    text = (ROOT / "docs" / "pipeline.md").read_text()
    rows = [r for r in text.split("## The `vow` command", 1)[1].split("\n### ", 1)[0].splitlines()
            if r.startswith("| `vow ")]

    def commands(group: click.Group, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], click.Command]]:
        ctx = click.Context(group)
        found = []
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            here = (*path, name)
            found += commands(command, here) if isinstance(command, click.Group) else [(here, command)]
        return found

    problems = []
    own = [(path, command) for path, command in commands(cli, ()) if path[0] in _COMMANDS]  # not vow-ui's `vow ui`
    assert len(own) > 15
    for path, command in own:
        *group, name = path
        prefix = "vow " + " ".join(group) + " " if group else "vow "
        # A row may hold several subcommands: `vow schedule pause NAME` / `resume NAME` / `rm NAME`.
        row = next((r for r in rows if r.startswith(f"| `{prefix}{name}") or (group and r.startswith(f"| `{prefix}")
                                                                               and f"/ `{name} " in r)), None)
        if row is None:
            problems.append(f"no row for `{prefix}{name}`")
            continue
        options = [o for p in command.params if isinstance(p, click.Option) for o in p.opts
                   if o.startswith("--") and o not in ("--help", "--store")]  # --store: said once under the table
        problems += [f"`{prefix}{name}` row does not name {o}" for o in options if o not in row.split(" | ")[0]]
    assert not problems, problems


def documented_command_lines() -> list[tuple[str, str]]:
    """Every `vow ...` / `python -m vow ...` line of the docs' shell blocks and inline code, and of the
    examples' header comments, with its file."""
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "docs" / "pipeline.md",
            *sorted((ROOT / "plugins").glob("*/README.md"))]
    found = []
    for path in [*docs, *sorted((ROOT / "examples").glob("*.py")), *sorted((ROOT / "examples").glob("*.yaml"))]:
        text = path.read_text()
        if path.suffix == ".md":
            lines = [line for language, block in re.findall(r"^ *```(\w*)\n(.*?)^ *```", text, re.S | re.M)
                     if language in ("sh", "bash", "") for line in block.splitlines()]
            lines += re.findall(r"`((?:python -m )?vow [^`]+)`", text)
        else:
            lines = [line.strip().lstrip("#") for line in text.splitlines()]
        for line in lines:
            command = re.match(r"(?:.*&& )?(?:python -m vow|vow) +([a-z].*)", line.strip())
            if command is not None:
                found.append((path.relative_to(ROOT).as_posix(), command.group(1)))
    return found


def test_every_documented_vow_command_line_names_real_commands_and_options() -> None:
    """A reader copies `vow prune --older-than 30d --dry-run`: each command and --option must exist."""
    import shlex

    import click

    from vow.cli import cli

    cli.add_plugin_commands()  # vow ui is documented too
    lines = documented_command_lines()
    assert len(lines) > 100
    problems = []
    for where, line in lines:
        words = shlex.split(line, comments=True)
        command: click.Command = cli
        while isinstance(command, click.Group) and words and not words[0].startswith("-"):
            sub = command.get_command(click.Context(command), words[0])
            if sub is None:
                problems.append(f"{where}: `vow {line}`: no command {words[0]!r}")
                break
            command, words = sub, words[1:]
        else:
            known = {o for p in command.params if isinstance(p, click.Option) for o in p.opts} | {"--help"}
            problems += [f"{where}: `vow {line}`: {command.name} has no option {w.split('=')[0]}"
                         for w in words if w.startswith("--") and w.split("=")[0] not in known]
    assert not problems, "\n".join(problems)


def pipeline_doc_yaml() -> list[str]:
    text = (ROOT / "docs" / "pipeline.md").read_text() + (ROOT / "README.md").read_text()
    return [block for language, block in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M) if language == "yaml"]


@pytest.mark.parametrize("block", pipeline_doc_yaml(), ids=lambda block: block.splitlines()[0].strip())
def test_every_yaml_example_in_the_docs_plans(block: str, installed_plugins: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each YAML example of docs/pipeline.md (and the README), made a whole file where it is a fragment, is a
    valid pipeline."""
    from vow.pipeline import make_plan, parse

    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x")  # options: {transport: webhook}
    monkeypatch.chdir(tmp_path)
    head = "version: 1\nname: t\ninput: {order_id: A-1, prompt: a fox, phones: ['+14155550100']}\n"
    if block.startswith("version: 1"):
        whole = block
    elif block.startswith("  - "):  # a branch
        whole = head + "fan_out:\n" + block
    elif "fan_out:" in block:
        whole = head + block
    else:  # a top-level key
        whole = head + block + "fan_out:\n  - {channel: slack, to: '#a', body: hi}\n"
    assert make_plan(parse(whole, "example.yaml"), plugins=installed_plugins).branches


def test_the_image_example_writes_where_its_help_says(tmp_path: Path) -> None:
    """`examples/image_variations.py --help` names the default output folder; a run writes its gallery there.

    The help said `out/images/<run id>` while the script writes to `out/<run id>` (its default run ids
    start with `images/`, so only a reader who gave `--id` met the difference).
    """
    from tests.support import python

    script = ROOT / "examples" / "image_variations.py"
    env = {"VOW_SIM_DIR": str(tmp_path / "sim"), "COLUMNS": "200"}  # argparse wraps its help to the terminal
    helped = python(script, "--help", cwd=tmp_path, env=env)
    assert helped.returncode == 0, helped.stderr
    default = re.search(r"--out OUT +output directory \(default: (\S+)<run id>\)", helped.stdout)
    assert default is not None, helped.stdout
    ran = python(script, "a fox", "--styles", "cartoon", "--id", "docs/fox", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert f"gallery: {default.group(1)}docs/fox/index.html" in ran.stdout.splitlines()
    assert (tmp_path / f"{default.group(1)}docs/fox" / "index.html").is_file()
