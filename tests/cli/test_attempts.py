"""Every attempt's error, not only the last: `vow show` and `vow run` read them from the store."""

from __future__ import annotations

import json
import re
from typing import Any

RETRIED = """\
version: 1
name: retried
id: retried/1
fan_out:
  - {channel: slack, to: "#a", body: hi, options: {latency: 0}}
  - channel: sms
    to: "+14155550100"
    body: hi
    options: {latency: 0}
    retry: {policy: constant, delay: 0.01, max_attempts: 3}
    faults: {fail_attempts: [1, 2, 3], message: gateway said no}
  - channel: email
    to: ada@example.com
    subject: hi
    body: hi
    options: {latency: 0}
    retry: {policy: constant, delay: 0.01, max_attempts: 3}
    faults: {fail_attempts: [1], message: mailbox busy}
"""


def test_vow_show_lists_each_retried_attempt_with_its_error(sandbox) -> None:
    assert sandbox.run("run", sandbox.write("retried.yaml", RETRIED)).returncode == 1
    tree = sandbox.run("show", "retried/1")
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    sms = next(i for i, line in enumerate(lines) if "retried/1.sms  failed  deliver  attempt 3" in line)
    assert lines[sms].endswith("TransientError: gateway said no (attempt 3)")  # the attempt it ended on
    assert re.fullmatch(r"│   ├── attempt 1  failed  TransientError: gateway said no \(attempt 1\)  "
                        r"\(retried after 0\.0\ds\)", lines[sms + 1])
    assert re.fullmatch(r"│   └── attempt 2  failed  TransientError: gateway said no \(attempt 2\)  "
                        r"\(retried after 0\.0\ds\)", lines[sms + 2])
    assert any(re.fullmatch(r"    └── attempt 1  failed  TransientError: mailbox busy \(attempt 1\)  .*", line)
               for line in lines)  # a branch that succeeded on its second attempt shows the first's error
    assert ".backoff." not in tree.stdout  # the engine's timers are read, not listed

    document = json.loads(sandbox.run("show", "retried/1", "--json").stdout)
    by_id = {c["id"]: c for c in document["children"]}
    assert [(a["attempt"], a["error"]) for a in by_id["retried/1.sms"]["failed_attempts"]] == [
        (1, "TransientError: gateway said no (attempt 1)"), (2, "TransientError: gateway said no (attempt 2)")]
    assert by_id["retried/1.sms"]["error"] == "TransientError: gateway said no (attempt 3)"
    assert "failed_attempts" not in by_id["retried/1.slack"]


def test_vow_run_names_every_attempts_error_of_a_branch_that_failed_for_good(sandbox) -> None:
    pipeline = sandbox.write("retried.yaml", RETRIED)
    first = sandbox.run("run", pipeline)
    again = sandbox.run("run", pipeline)  # the stored run: the same summary, read from the store alone
    for done in (first, again):
        assert done.returncode == 1, done.stderr
        lines = done.stdout.splitlines()
        at = lines.index("  sms failed on 3 attempts:")
        assert lines[at + 1:at + 4] == [f"    attempt {n}: TransientError: gateway said no (attempt {n})"
                                        for n in (1, 2, 3)]
        assert "email failed" not in done.stdout  # it succeeded in the end
    document = json.loads(sandbox.run("run", pipeline, "--json").stdout)
    errors = {b["id"]: [(e["attempt"], e["error"]) for e in b["errors"]] for b in document["branches"]}
    assert errors == {
        "slack": [],
        "sms": [(n, f"TransientError: gateway said no (attempt {n})") for n in (1, 2, 3)],
        "email": [(1, "TransientError: mailbox busy (attempt 1)")],
    }


def test_vow_show_says_when_an_attempt_waited_for_a_rate_limit(tmp_path) -> None:
    from click.testing import CliRunner

    from vow import Context, LeafContext, Throttled, Vow
    from vow.cli import cli

    calls: list[int] = []

    def limited(ctx: LeafContext) -> str:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise Throttled(wait=0.001)
        return "sent"

    def wf(ctx: Context):
        return (yield ctx.run(limited).options(id=f"{ctx.id}.limited"))

    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    with Vow(store) as vow:
        assert vow.run("rl/1", wf) == "sent"
    shown = CliRunner().invoke(cli, ["show", "rl/1", "--store", store])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"└── attempt 1  held back by a rate limit \(waited \d\.\d\ds\)\n", shown.output), shown.output
    assert ".throttle." not in shown.output


NEVER_AGAIN = """\
version: 1
name: never-again
id: never-again/1
fan_out:
  - channel: sms
    to: "+14155550100"
    body: hi
    faults: {fail_attempts: [1], error: never_again.ComeBackNever, message: come back never}
"""
# A pipeline file's own retry_after is a finite number of seconds (.inf is refused); a leaf's error
# may still say "never", as this one does: faults raise it by its importable name.
COME_BACK_NEVER = """\
import math

from vow.errors import TransientError


class ComeBackNever(TransientError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=math.inf)
"""


def test_an_infinite_retry_after_fails_the_branch_saying_so_in_vow_run_and_vow_show(sandbox) -> None:
    # A Retry-After of inf held the branch back for good ("retrying in never"); it is longer than any
    # wait vow makes (vow.retry.MAX_RETRY_AFTER), so the branch fails at once and says why.
    sandbox.write("never_again.py", COME_BACK_NEVER)  # importable: `python -m vow` has its cwd on sys.path
    ran = sandbox.run("run", sandbox.write("never.yaml", NEVER_AGAIN))
    assert ran.returncode == 1, ran.stderr
    said = ("PermanentError: ComeBackNever: come back never (attempt 1); the provider asked to wait for ever before "
            "the next attempt, longer than the longest Retry-After vow waits out (86400s, a day)")
    assert said in ran.stdout + ran.stderr
    tree = sandbox.run("show", "never-again/1")
    assert tree.returncode == 0, tree.stderr
    assert said in tree.stdout and "next attempt at" not in tree.stdout
    shown = sandbox.run("show", "never-again/1", "--json")
    assert shown.returncode == 0, shown.stderr
    strict_json(shown.stdout)


def strict_json(text: str) -> Any:
    """``text`` read as JSON that has no Infinity, -Infinity or NaN (which Python's json reads by default)."""
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_vow_show_json_writes_numbers_that_are_not_finite_as_null(tmp_path) -> None:
    from click.testing import CliRunner

    from vow import Context, Vow
    from vow.cli import cli

    def wf(ctx: Context):
        return {"ratio": float("inf"), "below": float("-inf"), "unknown": float("nan"), "ok": [1.5]}
        yield  # a workflow is a generator

    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    with Vow(store) as vow:
        vow.run("odd/1", wf)
    shown = CliRunner().invoke(cli, ["show", "odd/1", "--json", "--store", store])
    assert shown.exit_code == 0, shown.output
    assert strict_json(shown.stdout)["value"] == {"ratio": None, "below": None, "unknown": None, "ok": [1.5]}
