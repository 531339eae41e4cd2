"""Fixtures every test under tests/ may use (vow's own pytest plugin, vow.testing, adds more)."""

from __future__ import annotations

import pytest

from vow.plugins import Plugins


@pytest.fixture(scope="session")
def installed_plugins() -> Plugins:
    """A registry of every installed plugin, loaded once for the session (not the process-wide one)."""
    return Plugins()
