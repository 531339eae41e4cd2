"""`vow run`, `show`, `ls` and `plugins` in real subprocesses, on the seed example and small pipelines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ORDER = str(Path(__file__).resolve().parents[2] / "examples" / "order-confirmed.yaml")
CHANNELS = ("email", "sms", "slack", "push")


def test_order_example_retries_push_alone_and_the_same_id_runs_once(sandbox) -> None:
    first = sandbox.run("run", ORDER)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == (f"order-confirmed: run notify/A-1001 on sqlite://{sandbox.store_file} "
                        "(4 branches: email, sms, slack, push)")
    assert re.fullmatch(r"  push   attempt 1 failed: TransientError: push service unavailable \(attempt 1\); "
                        r"retrying in 0\.\d\ds", lines[1])
    settled = {line.split()[0]: line for line in lines[2:6]}
    assert set(settled) == set(CHANNELS)
    assert re.fullmatch(r"  email  ok        attempt 1   0\.\d\ds  simulated [0-9a-f-]{36}", settled["email"])
    assert re.fullmatch(r"  push   ok        attempt 2   0\.\d\ds  "
                        r"simulated projects/vow-simulated/messages/0:[0-9a-f]{16}", settled["push"])
    assert re.fullmatch(r"done: notify/A-1001 succeeded in \d\.\d\ds; 4 of 4 branches ok \(push after 2 attempts\)",
                        lines[6])
    assert re.fullmatch(r"  in parallel: \d\.\d\ds of branch time in \d\.\d\ds", lines[7])
    assert lines[8:] == ["  promise tree: vow show notify/A-1001"]

    ledger = sandbox.ledger()
    deliveries = {d.key: d for d in ledger.deliveries()}
    assert set(deliveries) == {f"notify/A-1001.{c}" for c in CHANNELS}
    assert all(d.duplicates == 0 for d in deliveries.values())
    assert deliveries["notify/A-1001.push"].receipt["attempt"] == 2
    stored = sandbox.records("notify/A-1001")

    again = sandbox.run("run", ORDER)
    assert again.returncode == 0, again.stderr
    assert "  this run already finished (resolved at " in again.stdout
    assert "showing its stored result; nothing runs again" in again.stdout
    assert [line.split()[0] for line in again.stdout.splitlines()[2:6]] == list(CHANNELS)  # file order
    assert {d.key: d.duplicates for d in ledger.deliveries()} == {k: 0 for k in deliveries}  # nothing sent again
    assert sandbox.records("notify/A-1001") == stored  # nothing stored again

    tree = sandbox.run("show", "notify/A-1001")
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert re.fullmatch(r"notify/A-1001  ok  vow\.pipeline \(order-confirmed\)  attempt 1  \d\.\d\ds", lines[0])
    assert lines[1].startswith("├── notify/A-1001.email  ok  deliver  attempt 1  ")
    assert ".started" not in tree.stdout  # the run's internal clock reading is not a step worth a line
    for channel in CHANNELS:
        attempt = 2 if channel == "push" else 1
        assert any(line.startswith(f"── notify/A-1001.{channel}  ok  deliver  attempt {attempt}  ", 1)
                   for line in lines), (channel, tree.stdout)
    assert any(line.startswith("└── notify/A-1001.push  ok  deliver  attempt 2") for line in lines)  # the last child

    as_json = json.loads(sandbox.run("show", "notify/A-1001", "--json").stdout)
    children = [c["id"] for c in as_json["children"]]
    assert children == ["notify/A-1001.started"] + [f"notify/A-1001.{c}" for c in CHANNELS]
    assert as_json["children"][4]["value"]["attempt"] == 2

    listing = sandbox.run("ls").stdout.splitlines()
    assert listing[0].split() == ["ID", "STATE", "WORKFLOW", "STARTED", "TOOK"]
    assert re.match(r"notify/A-1001  resolved  pipeline order-confirmed  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  \d\.\d\ds$",
                    listing[1])


FAILING = """\
version: 1
name: failing
id: "fail/{{ input.n }}"
input: {n: 1}
fan_out:
  - channel: email
    to: ada@example.com
    subject: hi
    body: hello
    options: {latency: 0.01}
  - channel: sms
    to: "+14155550100"
    body: hello
    options: {latency: 0.01}
    faults: {fail_attempts: [1], error: permanent, message: number blocked}
"""


def test_a_failed_branch_fails_the_run_with_exit_1_and_json_names_it(sandbox) -> None:
    sandbox.write("failing.yaml", FAILING)
    result = sandbox.run("run", "failing.yaml", "--json")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["run_id"], doc["state"], doc["ok"]) == ("fail/1", "rejected", False)
    assert doc["error"] == "PipelineFailed: 1 of 2 branches failed: sms: PermanentError: number blocked (attempt 1)"
    branches = {b["id"]: b for b in doc["branches"]}
    assert (branches["email"]["state"], branches["sms"]["state"], branches["sms"]["attempt"]) == \
        ("resolved", "rejected", 1)
    assert [d.key for d in sandbox.ledger().deliveries()] == ["fail/1.email"]

    plain = sandbox.run("run", "failing.yaml")  # the stored failure, as text, still exit 1
    assert plain.returncode == 1
    assert re.search(r"^  sms    failed    attempt 1  +\d\.\d\ds  PermanentError: number blocked \(attempt 1\)$",
                     plain.stdout, re.M), plain.stdout
    assert re.search(r"^failed: fail/1 rejected after \d\.\d\ds: PipelineFailed: 1 of 2 branches failed", plain.stdout,
                     re.M)
    assert "fail/1  rejected" in sandbox.run("ls", "--state", "rejected").stdout
    assert sandbox.run("ls", "--state", "resolved").stdout.startswith("no runs in state resolved in ")


def test_a_one_branch_run_says_branch(sandbox) -> None:
    sandbox.write("one.yaml", "version: 1\nname: one\nid: one/1\nfan_out:\n  - {channel: slack, to: '#a', body: hi}\n")
    result = sandbox.run("run", "one.yaml")
    assert result.returncode == 0, result.stderr
    assert f"one: run one/1 on {sandbox.store.replace('sqlite:', 'sqlite://')} (1 branch: slack)\n" in result.stdout


def test_the_runs_result_is_where_docs_pipeline_says(sandbox) -> None:
    """`vow run --json` prints a document about the run with the result under `result`, `vow show --json`
    the promise tree with it under `value`; docs/pipeline.md said both printed the result itself."""
    sandbox.write("out.yaml", "version: 1\nname: out\nid: out/1\noutput: made\n"
                              "fan_out:\n  - {channel: slack, to: '#a', body: hi}\n")
    ran = sandbox.run("run", "out.yaml", "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)["result"]
    assert result["run_id"] == "out/1" and result["ok"] and [b["id"] for b in result["branches"]] == ["slack"]
    assert json.loads(sandbox.run("show", "out/1", "--json").stdout)["value"] == result
    written = json.loads((sandbox.cwd / "made" / "result.json").read_text())
    assert written == {k: v for k, v in result.items() if k != "result_file"}
    assert result["result_file"] == str(sandbox.cwd / "made" / "result.json")
    docs = " ".join((Path(__file__).resolve().parents[2] / "docs" / "pipeline.md").read_text().split())
    assert ("The run's result — under `result` in the document `vow run --json` prints, under `value` in "
            "`vow show ID --json`, and in `result.json` (all but its own `result_file`) — is:") in docs


def test_plugins_lists_each_plugin_with_its_distribution_and_what_it_registered(sandbox) -> None:
    result = sandbox.run("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["email"]["distribution"] == "vow-email"
    assert plugins["email"]["registered"] == {"channel": ["email"]}
    assert plugins["sqlite"]["distribution"] == "vow-durable"
    assert plugins["sqlite"]["registered"] == {"store": ["sqlite"]}
    text = sandbox.run("plugins").stdout.splitlines()
    assert text[0].split() == ["PLUGIN", "DISTRIBUTION", "VERSION", "REGISTERED"]
    assert any(re.fullmatch(r"sms +vow-sms +\S+ +channel sms", line) for line in text), text


def test_resume_all_says_once_that_a_run_of_an_unregistered_workflow_is_skipped(sandbox) -> None:
    from vow import Vow

    def elsewhere(ctx):  # registered only in this process, never in the `vow` command's
        return 1
        yield

    with Vow(sandbox.store) as client:
        client.register(elsewhere, name="shop.elsewhere")
        client.submit("other/1", "shop.elsewhere")
    done = sandbox.run("resume", "--all")
    assert done.returncode == 0, done.stderr
    said = (done.stdout + done.stderr).splitlines()
    assert [line for line in said if "other/1" in line] == [
        "  other/1  skipped: workflow 'shop.elsewhere' is not registered here (add --app MODULE)"]


# What `vow --help`, `vow ls` and `vow show` may not import: plugins (httpx, Pillow, ...), the
# engine and its event loop. Checked by module, not by the clock, so a loaded machine cannot make
# it fail; the README gives the times these keep under a quarter of a second.
HEAVY = ("vow_email", "vow_sms", "vow_slack", "vow_push", "vow_image_sim", "httpx", "PIL", "rich.console",
         "vow.client", "vow.engine", "asyncio", "jinja2", "yaml")

PROBE = """
import atexit, json, sys
from vow.cli import main
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
main({args!r})
"""


@pytest.mark.parametrize("args", [["--help"], ["ls"], ["show", "notify/A-1001"], ["ls", "--json"]])
def test_fast_commands_load_no_plugin_and_no_engine(sandbox, args: list[str]) -> None:
    assert sandbox.run("run", ORDER).returncode == 0
    done = sandbox.python("-c", PROBE.format(args=args))
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stderr.splitlines()[-1]))
    assert not [m for m in HEAVY if m in loaded]


def test_a_parked_run_is_resumed_only_with_force(sandbox) -> None:
    import sqlite3

    detached = sandbox.run("run", ORDER, "--set", "order_id=P-1", "--detach")  # stored, not run
    assert detached.returncode == 0, detached.stderr
    reason = "run 'notify/P-1' was taken over 5 times in a row (test)"
    with sqlite3.connect(sandbox.store_file) as con:  # as the store parks a run whose process kept dying
        con.execute("INSERT OR REPLACE INTO leases (root, owner, token, expires_at, recoveries, parked) "
                    "VALUES ('notify/P-1', '', 1, 0, 5, ?)", (reason,))
    con.close()
    assert "parked" in sandbox.run("ls").stdout

    refused = sandbox.run("resume", "notify/P-1")
    assert refused.returncode != 0 and reason in refused.stdout + refused.stderr
    assert sandbox.ledger().deliveries() == []  # nothing ran

    both = sandbox.run("resume", "--force", "--all")
    assert both.returncode == 2 and "--force takes one run ID" in both.stderr

    forced = sandbox.run("resume", "--force", "notify/P-1")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert len(sandbox.ledger().deliveries()) == 4 and sandbox.records("notify/P-1")["notify/P-1"].settled
