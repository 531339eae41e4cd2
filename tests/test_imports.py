"""vow's modules depend on one another in one direction: no import cycle, not even a deferred one.

A cycle hidden in a function-local import still ties two modules into one (neither can be read,
tested or moved without the other), so every import counts here, wherever it stands; only imports
under ``if TYPE_CHECKING:`` (types alone) are left out.
"""

from __future__ import annotations

from pathlib import Path

from tests.support import imported_modules

CORE = Path(__file__).resolve().parents[1] / "core"


SOURCES = [CORE, *sorted((CORE.parent / "plugins").glob("*/src"))]  # vow and every vow_* plugin package


def module_graph() -> dict[str, set[str]]:
    files = {}
    for source in SOURCES:
        for path in source.rglob("*.py"):
            parts = path.relative_to(source).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def module_of(name: str) -> str:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        imported = map(module_of, imported_modules(path, from_modules=False))
        graph[name] = {m for m in imported if m.startswith("vow") and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_deferred_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_vow_has_no_import_cycle() -> None:
    graph = module_graph()
    assert {"vow.images.pipeline", "vow.images.gallery", "vow.pipeline.workflow", "vow_otel.observer"} <= set(graph)
    assert cycles(graph) == []


def test_the_process_wide_plugin_registry_is_chosen_in_one_place() -> None:
    """Everything else gets its registry passed: a client's ``plugins``, the command line's."""
    sources = [*CORE.rglob("*.py"), *(CORE.parent / "plugins").glob("*/src/**/*.py")]
    calling = sorted(str(p.relative_to(CORE.parent)) for p in sources if "default_plugins()" in p.read_text())
    assert calling == [
        "core/vow/cli/common.py",  # the `vow` command's registry (installed_plugins)
        "core/vow/client.py",  # a Vow() given no plugins
        "core/vow/plugins.py",  # where it is defined
    ]
