"""The Python example the README shows runs as printed, and a second run sends nothing."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.support import python, vow_command
from vow.simulation import Ledger

ROOT = Path(__file__).resolve().parents[1]


def test_notify_example_sends_each_channel_once_and_retries_push_alone(tmp_path: Path) -> None:
    runs = [python(ROOT / "examples" / "notify.py", cwd=tmp_path, env={"VOW_SIM_DIR": str(tmp_path / "sim")})
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first = runs[0].stdout.splitlines()
    assert [line.split()[0:3] for line in first[:4]] == [
        ["email", "attempt", "1"], ["sms", "attempt", "1"], ["slack", "attempt", "1"], ["push", "attempt", "2"]]
    assert runs[1].stdout.splitlines()[:4] == first[:4]  # the stored receipts, word for word
    deliveries = Ledger(tmp_path / "sim" / "ledger.sqlite").deliveries()
    assert sorted(d.key for d in deliveries) == [f"notify-py/A-1001.{c}" for c in ("email", "push", "slack", "sms")]
    assert all(d.duplicates == 0 for d in deliveries)


def test_the_notify_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    """The README's output of `python examples/notify.py`, line for line, times aside.

    It showed stdout alone, but a reader's terminal shows the push retry first, on stderr.
    """
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("`examples/notify.py` is this workflow", 1)[1].split("```\n", 2)[1].splitlines()
    ran = python(ROOT / "examples" / "notify.py", cwd=tmp_path, env={"VOW_SIM_DIR": str(tmp_path / "sim")})
    assert ran.returncode == 0, ran.stderr
    printed = ran.stderr.splitlines() + ran.stdout.splitlines()  # stderr first: the retry comes before the receipts
    # What changes from run to run: the back-off's jitter, the timings, Slack's timestamp (numbers with a dot).
    patterns = [re.sub(r"\d+\\\.\d+", lambda _: r"\d+\.\d+", re.escape(line)) for line in shown]
    assert len(printed) == len(shown), (shown, printed)
    for pattern, line in zip(patterns, printed):
        assert re.fullmatch(pattern, line), (pattern, line)


def test_the_vow_module_docstring_example_runs(tmp_path: Path) -> None:
    import textwrap

    import vow

    example = vow.__doc__.split("::", 1)[1].split("\n\n", 1)[1].split("\nThe names below", 1)[0]
    compile(textwrap.dedent(example), "vow.__doc__", "exec")  # was a SyntaxError: yield in a comprehension
    (tmp_path / "example.py").write_text(textwrap.dedent(example))
    ran = python(tmp_path / "example.py", cwd=tmp_path, env={"VOW_SIM_DIR": str(tmp_path / "sim")})
    assert ran.returncode == 0, ran.stderr  # was a NameError: the example used an event it never made


def test_the_pipeline_module_docstring_example_runs(tmp_path: Path, monkeypatch) -> None:
    import textwrap

    import vow.pipeline

    example = textwrap.dedent(vow.pipeline.__doc__.split("::", 1)[1].split("\n\n``plan.spec``", 1)[0])
    example = example.replace('"examples/order-confirmed.yaml"', repr(str(ROOT / "examples" / "order-confirmed.yaml")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    scope: dict = {}
    exec(compile(example, "vow.pipeline.__doc__", "exec"), scope)
    assert scope["summary"]["ok"] and scope["summary"]["run_id"] == "notify/A-7"


def test_the_scheduled_example_adds_and_runs_its_tick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``examples/daily-digest.yaml`` is accepted by ``vow schedule add``, and its next tick runs."""
    from vow import Vow
    from vow.schedules.definition import Definition, run_id
    from vow.schedules.ticker import Ticker

    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.setenv("VOW_STORE", f"sqlite:{tmp_path / 'vow.sqlite'}")
    example = str(ROOT / "examples" / "daily-digest.yaml")
    added = vow_command("schedule", "add", example, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert 'scheduled daily-digest: cron "0 9 * * *" (Europe/Paris), catch_up latest' in added.stdout
    with Vow(os.environ["VOW_STORE"]) as vow:
        record = vow.store.schedules()[0]
        tick = Definition.from_json(record.definition).timing.after(record.cursor)  # the next 09:00 in Paris
        assert Ticker(vow, every=0, clock=lambda: tick + 1).look() == 1
    # Run it in a process of its own, as a worker would (channels built here would keep this test's ledger).
    ran = vow_command("resume", run_id("daily-digest", tick), "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)["result"]
    assert result["ok"] and [b["id"] for b in result["branches"]] == ["slack", "email"]


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readme_workflow_runs_as_printed_after_the_quick_start(tmp_path: Path) -> None:
    """A reader who ran the quick start, then pastes the tour's workflow into a file, gets receipts.

    The snippet was missing its ``event`` (a NameError), and its run id was the pipeline's own
    ``notify/A-1001``, which the quick start had just stored (a NonDeterminismError).
    It also runs beside ``examples/notify.py``, whose receipts it must not join.
    """
    env = {"VOW_SIM_DIR": str(tmp_path / "sim")}
    quick_start = vow_command("run", str(ROOT / "examples" / "order-confirmed.yaml"), cwd=tmp_path, env=env)
    assert quick_start.returncode == 0, quick_start.stderr
    example = python(ROOT / "examples" / "notify.py", cwd=tmp_path, env=env)
    assert example.returncode == 0, example.stderr
    snippet = tmp_path / "tour.py"
    snippet.write_text(readme_python_blocks()[0])
    ran = python(snippet, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert [line.split()[:2] for line in ran.stdout.splitlines()] == [["email", "1"], ["sms", "1"], ["slack", "1"],
                                                                        ["push", "1"]]  # its own run: no faults


def test_the_readme_image_step_returns_the_metadata_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's generate_image fragment, run in a workflow, writes its PNG and returns the keys it names.

    It promised "file, sha256, size, ...", and a reader's result["file"] was a KeyError: the key is `path`.
    """
    import textwrap

    from vow import Vow

    readme = " ".join((ROOT / "README.md").read_text().split())
    named = re.findall(r"`(\w+)`", readme.split("and returns its metadata (", 1)[1].split("):", 1)[0])
    fragment = readme_python_blocks()[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    scope: dict = {}
    exec("def step(ctx):\n" + textwrap.indent(fragment, "    ") + "    return (yield h)\n", scope)
    with Vow("memory:") as vow:
        made = vow.run("readme/image", vow.register(scope["step"]))
    assert len(named) >= 5 and not set(named) - set(made), (named, sorted(made))
    assert (tmp_path / "out" / "fox" / made["path"]).is_file()


def test_what_the_readme_calls_on_vow_is_on_the_client_its_tour_makes() -> None:
    """The tour binds ``vow = Vow()``; a later `vow.NAME(...)` or `@vow.NAME` must then be the client's.

    `vow.TransientError(...)` and `@vow.stored_as(...)` were the module's names: in the tour's file an
    AttributeError ('Vow' object has no attribute 'stored_as').
    """
    from vow import Vow

    readme = (ROOT / "README.md").read_text()
    assert "vow = Vow()" in readme_python_blocks()[0]
    called = set(re.findall(r"`@?vow\.(\w+)\(", readme))
    assert {"run", "resolve", "prune", "schedule"} <= called
    with Vow("memory:") as vow:
        assert not {name for name in called if not hasattr(vow, name)}
