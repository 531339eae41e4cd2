"""The Python example the README shows runs as printed, and a second run sends nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vow.simulation import Ledger

ROOT = Path(__file__).resolve().parents[1]


def test_notify_example_sends_each_channel_once_and_retries_push_alone(tmp_path: Path) -> None:
    env = {**os.environ, "VOW_SIM_DIR": str(tmp_path / "sim")}
    runs = [subprocess.run([sys.executable, str(ROOT / "examples" / "notify.py")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first = runs[0].stdout.splitlines()
    assert [line.split()[0:3] for line in first[:4]] == [
        ["email", "attempt", "1"], ["sms", "attempt", "1"], ["slack", "attempt", "1"], ["push", "attempt", "2"]]
    assert runs[1].stdout.splitlines()[:4] == first[:4]  # the stored receipts, word for word
    deliveries = Ledger(tmp_path / "sim" / "ledger.sqlite").deliveries()
    assert sorted(d.key for d in deliveries) == [f"notify-py/A-1001.{c}" for c in ("email", "push", "slack", "sms")]
    assert all(d.duplicates == 0 for d in deliveries)


def test_the_vow_module_docstring_example_is_valid_python() -> None:
    import textwrap

    import vow

    example = vow.__doc__.split("::", 1)[1].split("\n\n", 1)[1].split("\nThe names below", 1)[0]
    compile(textwrap.dedent(example), "vow.__doc__", "exec")  # was a SyntaxError: yield in a comprehension


def test_the_scheduled_example_adds_and_runs_its_tick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``examples/daily-digest.yaml`` is accepted by ``vow schedule add``, and its next tick runs."""
    from vow import Vow
    from vow.schedules.definition import Definition, run_id
    from vow.schedules.ticker import Ticker

    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.setenv("VOW_STORE", f"sqlite:{tmp_path / 'vow.sqlite'}")
    example = str(ROOT / "examples" / "daily-digest.yaml")
    added = subprocess.run([sys.executable, "-m", "vow", "schedule", "add", example], cwd=tmp_path, text=True,
                           capture_output=True, timeout=120)
    assert added.returncode == 0, added.stderr
    assert 'scheduled daily-digest: cron "0 9 * * *" (Europe/Paris), catch_up latest' in added.stdout
    with Vow(os.environ["VOW_STORE"]) as vow:
        record = vow.store.schedules()[0]
        tick = Definition.from_json(record.definition).timing.after(record.cursor)  # the next 09:00 in Paris
        assert Ticker(vow, every=0, clock=lambda: tick + 1).look() == 1
    # Run it in a process of its own, as a worker would (channels built here would keep this test's ledger).
    ran = subprocess.run([sys.executable, "-m", "vow", "resume", run_id("daily-digest", tick), "--json"],
                         cwd=tmp_path, text=True, capture_output=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)["result"]
    assert result["ok"] and [b["id"] for b in result["branches"]] == ["slack", "email"]
