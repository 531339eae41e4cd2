"""The distributions this repository ships: names, versions, pins and the `all` extra agree.

`.ci/check-packages` builds and installs the wheels; these checks read the metadata that must
agree for that to work on a user's machine, and fail fast with the file to fix.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import vow
from vow.plugins import CORE_DISTRIBUTION

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))


def project(directory: Path) -> dict:
    with open(directory / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def requirement(requirements: list[str], name: str) -> Requirement:
    found = [Requirement(r) for r in requirements if Requirement(r).name == name]
    assert len(found) == 1, f"expected one requirement on {name} in {requirements}"
    return found[0]


def next_minor(version: str) -> str:
    v = Version(version)
    return f"{v.major}.{v.minor + 1}.0"


def test_the_core_is_vow_durable_with_its_version_in_one_place() -> None:
    core = project(ROOT)
    # "vow" on the package index is an unrelated project: installing it would break every plugin.
    assert core["name"] == CORE_DISTRIBUTION == "vow-durable"
    assert "version" not in core and "version" in core["dynamic"]
    assert importlib.metadata.version(CORE_DISTRIBUTION) == vow.__version__
    init = (ROOT / "core" / "vow" / "__init__.py").read_text()
    assert len(re.findall(r"^__version__ = ", init, re.M)) == 1


@pytest.mark.parametrize("directory", PLUGIN_DIRS, ids=lambda p: p.name)
def test_each_plugin_pins_a_compatible_range_of_the_core(directory: Path) -> None:
    plugin = project(directory)
    assert "version" in plugin, f"{directory}/pyproject.toml: the plugin's version is set there, once"
    assert not [r for r in plugin["dependencies"] if Requirement(r).name == "vow"], (
        f"{directory}/pyproject.toml depends on 'vow', another project on the index; depend on {CORE_DISTRIBUTION}")
    pin = requirement(plugin["dependencies"], CORE_DISTRIBUTION).specifier
    assert vow.__version__ in pin, f"{directory}: {pin} excludes this core ({vow.__version__})"
    assert next_minor(vow.__version__) not in pin, f"{directory}: {pin} has no upper bound before the next minor"


def test_the_all_extra_installs_every_shipped_plugin_at_the_version_here() -> None:
    extra = project(ROOT)["optional-dependencies"]["all"]
    assert sorted(Requirement(r).name for r in extra) == sorted(project(d)["name"] for d in PLUGIN_DIRS)
    for directory in PLUGIN_DIRS:
        plugin = project(directory)
        pin = requirement(extra, plugin["name"]).specifier
        assert plugin["version"] in pin, f"the all extra's {pin} for {plugin['name']} excludes {plugin['version']}"


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_the_requirements_files_install_every_plugin_from_this_checkout(name: str) -> None:
    lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
    editable = {line.removeprefix("-e ").strip() for line in lines if line.startswith("-e ")}
    assert any(e.startswith(".[") and "all" in e for e in editable), f"{name}: installs the core with its all extra"
    for directory in PLUGIN_DIRS:
        # Without an extra: pip before 23.3 fails to join "./plugins/x[test]" with the all extra's pin.
        assert f"./plugins/{directory.name}" in editable, f"{name}: add -e ./plugins/{directory.name}"


def test_the_core_alone_imports_no_provider_http_client_or_simulation() -> None:
    """The core is minimal: a client with vow's builtins only (VOW_PLUGINS empty) runs a workflow
    without httpx, Pillow, the image code or the simulation helpers that plugins and tests use."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom vow import Vow\n"
            "def leaf(ctx):\n    return 1\n"
            "def wf(ctx):\n    return (yield ctx.run(leaf))\n"
            "with Vow(store='memory:') as vow:\n    assert vow.run('w/1', wf) == 1\n"
            "print(' '.join(m for m in ('httpx', 'PIL', 'vow.images', 'vow.simulation', 'vow_image_openai') "
            "if m in sys.modules))")
    env = {**os.environ, "VOW_PLUGINS": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
    core = project(ROOT)
    assert not [r for r in core["dependencies"] if Requirement(r).name in ("httpx", "Pillow")]


@pytest.mark.parametrize("directory", [ROOT, *PLUGIN_DIRS], ids=lambda p: p.name)
def test_every_distribution_ships_py_typed(directory: Path) -> None:
    """PEP 561: without py.typed a user's type checker sees the package as Any."""
    with open(directory / "pyproject.toml", "rb") as f:
        config = tomllib.load(f)
    package_data = config["tool"]["setuptools"]["package-data"]
    [(package, files)] = package_data.items()
    assert "py.typed" in files
    source = ROOT / "core" if directory == ROOT else directory / "src"
    assert (source / package / "py.typed").is_file()
