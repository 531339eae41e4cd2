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
from tests.support import imported_modules, python
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

    code = ("import sys\nfrom vow import Vow\n"
            "def leaf(ctx):\n    return 1\n"
            "def wf(ctx):\n    return (yield ctx.run(leaf))\n"
            "with Vow(store='memory:') as vow:\n    assert vow.run('w/1', wf) == 1\n"
            "print(' '.join(m for m in ('httpx', 'PIL', 'vow.images', 'vow.simulation', 'vow_image_openai') "
            "if m in sys.modules))")
    done = python("-c", code, env={"VOW_PLUGINS": ""})
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


# -- what each distribution says about itself, and what it imports ------------------------------

@pytest.mark.parametrize("directory", [ROOT, *PLUGIN_DIRS], ids=lambda p: p.name)
def test_every_distribution_has_a_license_classifiers_and_links(directory: Path) -> None:
    import trove_classifiers

    meta = project(directory)
    assert meta["license"] == "Apache-2.0"  # an SPDX expression (PEP 639), so no License :: classifier
    classifiers = meta["classifiers"]
    assert classifiers == sorted(set(classifiers)), f"{directory}/pyproject.toml: classifiers sorted, once each"
    unknown = [c for c in classifiers if c not in trove_classifiers.classifiers]
    assert not unknown, f"{directory}/pyproject.toml: not trove classifiers: {unknown}"
    assert not [c for c in classifiers if c.startswith("License ::")]
    for needed in ("Typing :: Typed", "Programming Language :: Python :: 3 :: Only"):
        assert needed in classifiers, f"{directory}/pyproject.toml: add the classifier {needed!r}"
    supported = {c.rsplit(" ", 1)[-1] for c in classifiers
                 if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    assert min(supported, key=Version) == meta["requires-python"].removeprefix(">="), (
        f"{directory}/pyproject.toml: the oldest Python classifier is requires-python's")
    urls = meta["urls"]
    core_urls = project(ROOT)["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues"}
    for key in ("Homepage", "Source", "Issues"):
        assert urls[key] == core_urls[key], f"{directory}/pyproject.toml: [project.urls] {key} differs from the core's"
    if directory != ROOT:
        assert urls["Documentation"] == f"{core_urls['Source']}/tree/main/plugins/{directory.name}#readme"


# Imports a distribution may make without declaring the dependency, each with the reason.
UNDECLARED_OK = {
    ("vow-durable", "httpx"): "vow.http and vow.failures handle httpx errors for the plugins that use httpx, "
                              "and import it only then",
    ("vow-durable", "pytest"): "vow.testing and vow.stores.contract are pytest plugins: pytest imports them",
}




def _distribution_of(module: str, owners: dict[str, list[str]]) -> str | None:
    """The installed distribution that provides ``module`` (a namespace package by its files)."""
    from packaging.utils import canonicalize_name

    parts = module.split(".")
    candidates = sorted({canonicalize_name(d) for d in owners.get(parts[0], [])})
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    for depth in range(len(parts), 1, -1):
        path = "/".join(parts[:depth])
        hits = {d for d in candidates
                if any(str(f) in (f"{path}.py", f"{path}/__init__.py") or str(f).startswith(f"{path}/")
                       for f in importlib.metadata.distribution(d).files or [])}
        if len(hits) == 1:
            return hits.pop()
    return None  # a name that is no installed module (an attribute: `from x import name`)


@pytest.mark.parametrize("directory", [ROOT, *PLUGIN_DIRS], ids=lambda p: p.name)
def test_every_distribution_declares_what_it_imports(directory: Path) -> None:
    """A plugin that imports attrs but leans on the core to bring it breaks when the core drops it;
    its tests' tools belong in its ``test`` extra."""
    import sys

    from packaging.utils import canonicalize_name

    meta = project(directory)
    name = canonicalize_name(meta["name"])
    runtime = {canonicalize_name(Requirement(r).name) for r in meta["dependencies"]}
    test = {canonicalize_name(Requirement(r).name) for r in meta.get("optional-dependencies", {}).get("test", [])}
    owners = importlib.metadata.packages_distributions()
    # The core's own tests are end-to-end across every plugin (requirements-dev.txt installs them all).
    trees = [(ROOT / "core", runtime)] if directory == ROOT else [(directory / "src", runtime),
                                                                   (directory / "tests", runtime | test)]
    missing = []
    for tree, allowed in trees:
        for path in sorted(tree.rglob("*.py")):
            for module in sorted(imported_modules(path)):
                if module.split(".")[0] in sys.stdlib_module_names:
                    continue
                dist = _distribution_of(module, owners)
                if dist is None or dist == name or dist in allowed or (meta["name"], dist) in UNDECLARED_OK:
                    continue
                missing.append(f"{path.relative_to(ROOT)} imports {module} (distribution {dist})")
    assert not missing, f"{directory}/pyproject.toml does not declare:\n" + "\n".join(missing)
