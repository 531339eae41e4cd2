"""A pipeline run stored by vow 0.2 before plans were typed resumes under this code.

``stored_run_0_2.json`` holds the records that code stored for a run of a gated pipeline with a
channel branch, a channel branch that failed once and an image branch (written by running that
code; ``@OUTPUT@`` stands for its output folder). Each test puts them in a fresh SQLite store as a
crash would have left them, and resumes: every step must be met again as the same call (function
and arguments), and nothing that finished may run again.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import vow_command
from vow import Vow, encoding
from vow.pipeline.model import ChannelBranch, ImageBranch, PlannedRun
from vow.records import Kind, PromiseRecord, State
from vow.simulation import Ledger
from vow.stores import open_store

FIXTURE = Path(__file__).with_name("stored_run_0_2.json")
RUN = "upgrade/1"


@pytest.fixture
def sim_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    return tmp_path / "sim"


def stored_records(out: Path) -> list[dict[str, Any]]:
    text = FIXTURE.read_text().replace("@OUTPUT@", str(out))  # a folder name needs no JSON escape
    return list(json.loads(text)["records"])


def store_as_left(tmp_path: Path, crash: Callable[[dict[str, Any]], dict[str, Any] | None]) -> str:
    """A SQLite store with the 0.2 run's records as ``crash`` leaves each (``None``: never written)."""
    url = f"sqlite:{tmp_path / 'vow.sqlite'}"
    store = open_store(url)
    try:
        kept = [r for r in (crash(dict(r)) for r in stored_records(tmp_path / "out")) if r is not None]
        for r in kept:
            store.create(PromiseRecord(r["id"], State.PENDING, Kind(r["kind"]), r["root"], r["func"], r["args"], None,
                                       r["parent"], r["timeout"], r["idempotency_key"], r["attempt"],
                                       r["created_at"], None, r["tags"]))
        for r in kept:
            if r["state"] != State.PENDING.value:
                store.settle(r["id"], State(r["state"]), r["value"], settled_at=r["settled_at"])
    finally:
        store.close()
    return url


def pending(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "state": State.PENDING.value, "value": None, "settled_at": None}


def test_the_stored_plan_reads_as_a_typed_plan(tmp_path: Path) -> None:
    root = stored_records(tmp_path / "out")[0]
    [stored] = encoding.decode_args(root["args"])[0]
    plan = PlannedRun.from_json(stored)
    assert [(type(b), b.id) for b in plan.branches] == [
        (ChannelBranch, "slack"), (ChannelBranch, "sms"), (ImageBranch, "cartoon")]
    assert encoding.encode_args((plan,), {}, what=RUN) == root["args"]


def test_a_run_that_crashed_before_settling_replays_every_step_and_runs_nothing_again(
        tmp_path: Path, sim_dir: Path) -> None:
    """Every branch, the gallery and result.json were stored; only the run's own settle was lost."""
    records = stored_records(tmp_path / "out")
    expected = encoding.decode(records[0]["value"])
    url = store_as_left(tmp_path, lambda r: pending(r) if r["id"] == RUN else r)
    with Vow(url) as vow:
        assert vow.resume(RUN).result(60) == expected
        assert vow.get(RUN).state is State.RESOLVED
    assert not Ledger(sim_dir / "ledger.sqlite").deliveries()  # no message sent, no image generated again
    assert not (tmp_path / "out").exists()  # the gallery and result.json were not written again


def crashed_mid_sms(record: dict[str, Any]) -> dict[str, Any] | None:
    """The crash came while the sms branch ran its second attempt: before the gallery and result."""
    if record["id"] in (f"{RUN}.gallery", f"{RUN}.result"):
        return None
    return pending(record) if record["id"] in (RUN, f"{RUN}.sms") else record


def test_a_run_that_crashed_mid_branch_finishes_that_branch_alone(tmp_path: Path, sim_dir: Path) -> None:
    url = store_as_left(tmp_path, crashed_mid_sms)
    with Vow(url) as vow:
        result = vow.resume(RUN).result(60)
    assert result["ok"] and [(b["id"], b["state"]) for b in result["branches"]] == [
        ("slack", "resolved"), ("sms", "resolved"), ("cartoon", "resolved")]
    assert result["approval"] == {"by": "ada"}
    assert [(d.key, d.channel) for d in Ledger(sim_dir / "ledger.sqlite").deliveries()] == [(f"{RUN}.sms", "sms")]
    assert json.loads((tmp_path / "out" / "result.json").read_text())["ok"] is True
    assert json.loads((tmp_path / "out" / "gallery.json").read_text())["images"][0]["style"] == "cartoon"


PIPELINE = """\
version: 1
name: upgrade
id: upgrade/1
gate: {promise: approval}
defaults: {retry: {policy: constant, delay: 0.01, max_attempts: 3}}
output: @OUTPUT@
fan_out:
  - {channel: slack, to: "#orders", body: "order 1", options: {latency: 0.01}}
  - {channel: sms, to: "+14155550100", body: "order 1", options: {latency: 0.01}, faults: {fail_attempts: [1]}}
  - {image: image_sim, prompt: a fox, style: cartoon, size: 32, options: {latency: 0}}
"""
"""The file the stored run was made from."""


def vow_on(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``vow ARGS`` on store ``url``."""
    return vow_command(*args, cwd=tmp_path, env={"VOW_STORE": url, "VOW_SIM_DIR": str(tmp_path / "sim")})


def test_vow_run_of_the_same_file_is_the_same_run(tmp_path: Path) -> None:
    """The plan made from the file now encodes to the stored text, so `vow run` finds the same run."""
    url = store_as_left(tmp_path, lambda r: r)
    (tmp_path / "upgrade.yaml").write_text(PIPELINE.replace("@OUTPUT@", str(tmp_path / "out")))
    done = vow_on(tmp_path, url, "run", "upgrade.yaml")
    assert done.returncode == 0, done.stderr
    assert "this run already finished (resolved" in done.stdout
    changed = vow_on(tmp_path, url, "run", "upgrade.yaml", "--set", "extra=1")
    assert changed.returncode == 2
    assert "was started with other input or another version of upgrade.yaml" in changed.stderr


def test_vow_resume_shows_the_stored_plans_branches(tmp_path: Path) -> None:
    url = store_as_left(tmp_path, crashed_mid_sms)
    done = vow_on(tmp_path, url, "resume", RUN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"upgrade: run {RUN} on {url.replace('sqlite:', 'sqlite://')} " \
                                          "(3 branches: slack, sms, cartoon)"
    assert "resuming upgrade/1 where it stopped: 2 of 3 already settled" in done.stdout
    assert f"done: {RUN} succeeded" in done.stdout
