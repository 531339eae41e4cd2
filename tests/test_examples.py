"""The Python example the README shows runs as printed, and a second run sends nothing."""

from __future__ import annotations

from pathlib import Path

from tests.support import python
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


def test_the_vow_module_docstring_example_is_valid_python() -> None:
    import textwrap

    import vow

    example = vow.__doc__.split("::", 1)[1].split("\n\n", 1)[1].split("\nThe names below", 1)[0]
    compile(textwrap.dedent(example), "vow.__doc__", "exec")  # was a SyntaxError: yield in a comprehension


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
