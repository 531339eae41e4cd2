"""Fixtures every test under tests/ may use (vow's own pytest plugin, vow.testing, adds more)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vow.plugins import Plugins

DURABILITY = Path(__file__).resolve().parent / "durability"


@pytest.fixture(scope="session")
def installed_plugins() -> Plugins:
    """A registry of every installed plugin, loaded once for the session (not the process-wide one)."""
    return Plugins()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """TEMPORARY, until tests/durability starts its processes with tests.support, which closes every
    pipe it opens: there, a subprocess's pipes left to the garbage collector are not yet an error."""
    for item in items:
        if item.path.is_relative_to(DURABILITY):
            item.add_marker(pytest.mark.filterwarnings("ignore:unclosed file:ResourceWarning"))
            item.add_marker(pytest.mark.filterwarnings(
                "ignore:Exception ignored in. <_io.FileIO:pytest.PytestUnraisableExceptionWarning"))
