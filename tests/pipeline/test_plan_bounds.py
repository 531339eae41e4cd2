"""A whole plan's size is bounded, not only each template's: ``for_each`` multiplies a template's own
bound by its items, and an input of a few hundred kilobytes made a plan of gigabytes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from vow.pipeline import SpecError, parse
from vow.pipeline.plan import MAX_PLAN_SIZE, make_plan

PIPELINE = """\
version: 1
name: blast
id: blast/1
fan_out:
  - channel: email
    for_each: "{{ input.people }}"
    id: "to-{{ index }}"
    to: "{{ item }}@example.com"
    subject: news
    body: "Hi {{ item }}: {{ input.note }}"
"""


@pytest.fixture(autouse=True)
def _sim_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.chdir(tmp_path)


def test_a_plan_larger_than_the_bound_is_refused_naming_where_it_got_there(installed_plugins) -> None:
    people = [f"p{i}" for i in range(2_000)]
    note = "x" * 50_000  # 2,000 branches of 50 kB: 100 MB of plan from 60 kB of input
    with pytest.raises(SpecError) as caught:
        make_plan(parse(PIPELINE, "b.yaml"), plugins=installed_plugins, input={"people": people, "note": note})
    message = str(caught.value)
    assert message.startswith("b.yaml:10: fan_out[0].body: the plan would be larger than ")
    assert f"{MAX_PLAN_SIZE:,}" in message and "for_each item" in message


def test_a_plan_within_the_bound_is_made(installed_plugins) -> None:
    plan = make_plan(parse(PIPELINE, "b.yaml"), plugins=installed_plugins,
                     input={"people": [f"p{i}" for i in range(500)], "note": "x" * 1_000})
    assert len(plan.branches) == 500


def test_planning_a_hostile_input_stays_within_a_few_hundred_megabytes(tmp_path) -> None:
    """In a process of its own under a 1 GB address-space cap: without the bound, planning 5,000 items
    with a 200 kB note (a 230 kB input) took 1 GB and more."""
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from vow.pipeline import SpecError, parse
        from vow.pipeline.plan import make_plan
        from vow.plugins import Plugins
        try:
            make_plan(parse({PIPELINE!r}, "b.yaml"), plugins=Plugins(),
                      input={{"people": [str(i) for i in range(5000)], "note": "x" * 200_000}})
        except SpecError as exc:
            print("refused:", str(exc)[:80])
        """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"VOW_SIM_DIR": str(tmp_path / "sim"), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("refused: b.yaml:10: fan_out[0].body: the plan would be larger than")
