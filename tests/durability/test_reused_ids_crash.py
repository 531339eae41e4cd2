"""An id used again across a SIGKILL: ``tests/durability/reused_id_app.py`` uses ``reuse/1.x`` four
times (twice in the workflow, once from a child workflow, once at the end), is killed while a chosen
leaf holds (synchronised on the file that leaf writes after it reached the sink), and is resumed by a
fresh process. Counted at the sink: ``x`` runs once, or once more in the resumed process if it was in
flight at the kill (README guarantee 4); its later uses take its outcome."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.durability.support import app
from tests.support import finish, kill
from vow.testing import wait_until


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'vow.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("hold", ["reuse/1.x 1", "reuse/1.2 10", "reuse/1.5 20"])
def test_an_id_used_again_after_a_kill_runs_its_leaf_at_most_once_more(tmp_path: Path, store: str, hold: str) -> None:
    sink = tmp_path / "sink"
    first = app("reused_id_app", store, str(sink), hold)
    try:
        wait_until(lambda: (tmp_path / "sink.held").exists(), timeout=120, proc=first,
                   message=f"the leaf {hold} is held")
    finally:
        kill(first)
    before = Counter(" ".join(line.split()[:2]) for line in sink.read_text().splitlines())
    out, _ = finish(app("reused_id_app", store, str(sink), "-"))
    assert out.strip() == "[1, 1, 1, 1]"
    lines = [line.split() for line in sink.read_text().splitlines()]
    sent = Counter(f"{w[0]} {w[1]}" for w in lines)
    in_flight = hold.startswith("reuse/1.x")
    assert sent == {"reuse/1.x 1": 2 if in_flight else 1, "reuse/1.2 10": 1 + (hold == "reuse/1.2 10"),
                    "reuse/1.5 20": 1 + (hold == "reuse/1.5 20")}, (before, lines)


def test_a_run_that_gave_a_settled_childs_id_to_another_child_resumes_after_a_kill(tmp_path: Path, store: str) -> None:
    """clash/1 gave {id}.kid (child_a's, settled) to child_b, caught DuplicateIdError, and was killed in
    its last leaf. Resumed, it meets child_b again, whose body starts before the commit that finds the id
    taken. Before, that body met child_a's branch {id}.kid.1 among the stored records, with other
    arguments, and the resumed run stopped with NonDeterminismError (left pending)."""
    sink = tmp_path / "sink"
    first = app("reused_id_app", store, str(sink), "clash/1.3 30", "clash")
    try:
        wait_until(lambda: (tmp_path / "sink.held").exists(), timeout=120, proc=first, message="the last leaf is held")
    finally:
        kill(first)
    out, _ = finish(app("reused_id_app", store, str(sink), "-", "clash"))
    assert out.strip() == "[1, True, 30]"
    sent = Counter(" ".join(line.split()[:2]) for line in sink.read_text().splitlines())
    assert sent == {"clash/1.kid.1 1": 1, "clash/1.3 30": 2}
