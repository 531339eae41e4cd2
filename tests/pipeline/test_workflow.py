"""The ``vow.pipeline`` workflow through the engine: fan-in modes, concurrency, outputs, images."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from vow import Vow
from vow.events import EventKind
from vow.pipeline import NAME, PipelineFailed, load, make_plan, parse
from vow.testing import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _sandbox(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.chdir(tmp_path)


def slack_branches(n: int, latency: float, **extra: str) -> str:
    lines = "".join(f"  - {{channel: slack, id: b{i}, to: '#c{i}', body: hi, options: {{latency: {latency}}}"
                    + "".join(f", {k}: {v}" for k, v in extra.items()) + "}\n" for i in range(n))
    return "fan_out:\n" + lines


class Running:
    """Observer: the most leaves of one kind that ran at the same time."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def on_event(self, event) -> None:
        if event.promise_kind != "step" or not event.func.endswith("deliver"):
            return
        with self.lock:
            if event.kind is EventKind.STARTED:
                self.now += 1
                self.most = max(self.most, self.now)
            elif event.kind in (EventKind.SETTLED, EventKind.RETRY_SCHEDULED):
                self.now -= 1


def test_defaults_concurrency_caps_the_branches_running_at_once(installed_plugins) -> None:
    plan = make_plan(parse("version: 1\nname: cap\nid: cap/1\ndefaults: {concurrency: 2}\n" + slack_branches(5, 0.05),
                           "cap.yaml"), plugins=installed_plugins)
    running = Running()
    with Vow("memory:", observers=[running]) as vow:
        result = vow.run(plan.run_id, NAME, plan.spec)
    assert result["ok"] and [b["id"] for b in result["branches"]] == [f"b{i}" for i in range(5)]
    assert running.most == 2


def test_all_settled_keeps_every_outcome_and_fails_the_run_naming_the_failed_branch(
        tmp_path, installed_plugins) -> None:
    text = ("version: 1\nname: mixed\nid: mixed/1\noutput: out\n" + slack_branches(2, 0.01)
            + "  - {channel: sms, to: '+14155550100', body: hi, options: {latency: 0.01}, "
              "faults: {fail_attempts: [1], error: permanent, message: blocked}}\n")
    plan = make_plan(parse(text, "m.yaml"), plugins=installed_plugins)
    with Vow("memory:") as vow:
        with pytest.raises(PipelineFailed) as caught:
            vow.run(plan.run_id, NAME, plan.spec)
        assert str(caught.value) == "1 of 3 branches failed: sms: PermanentError: blocked (attempt 1)"
        assert vow.get("mixed/1.b0").state.value == "resolved"
    written = json.loads((tmp_path / "out" / "result.json").read_text())
    assert written["ok"] is False
    assert [(b["id"], b["state"]) for b in written["branches"]] == [("b0", "resolved"), ("b1", "resolved"),
                                                                    ("sms", "rejected")]
    assert written["branches"][0]["result"]["channel"] == "slack"


def test_fan_in_all_fails_at_the_first_failure_and_cancels_the_rest(installed_plugins) -> None:
    text = ("version: 1\nname: strict\nid: strict/1\nfan_in: all\n" + slack_branches(1, 0.4)
            + "  - {channel: sms, to: '+14155550100', body: hi, options: {latency: 0.01}, "
              "faults: {fail_attempts: [1], error: permanent}}\n")
    plan = make_plan(parse(text, "s.yaml"), plugins=installed_plugins)
    with Vow("memory:") as vow:
        started = time.monotonic()
        with pytest.raises(PipelineFailed) as caught:
            vow.run(plan.run_id, NAME, plan.spec)
        took = time.monotonic() - started
        assert vow.get("strict/1.b0").state.value == "canceled"
    assert str(caught.value) == ("2 of 2 branches failed: b0: canceled: another branch failed first (fan_in: all); "
                                 "sms: PermanentError: injected failure (attempt 1)")
    assert took < 0.35  # did not wait for the slow branch


def test_the_image_example_writes_images_gallery_and_result_once(tmp_path, installed_plugins) -> None:
    plan = load(str(EXAMPLES / "image-variations.yaml"), plugins=installed_plugins,
                input={"prompt": "a lighthouse in a storm"})
    store = f"sqlite:{tmp_path / 'vow.sqlite'}"
    with Vow(store) as vow:
        result = vow.run(plan.run_id, NAME, plan.spec)
    out = Path(plan.spec.output)
    assert result["ok"] and result["result_file"] == str(out / "result.json")
    assert {b["id"]: b["result"]["attempt"] for b in result["branches"]} == {
        "photorealistic": 1, "cartoon": 1, "abstract": 2}  # abstract failed once and was retried alone
    assert sorted(p.name for p in out.iterdir()) == ["abstract.png", "cartoon.png", "gallery.json", "index.html",
                                                     "photorealistic.png", "result.json"]
    assert result["gallery"] == str(out / "index.html")
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    with Vow(store) as vow:  # the same run again: the stored result, nothing generated or written again
        assert vow.run(plan.run_id, NAME, plan.spec) == result
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == written


def test_a_branch_retry_policy_comes_from_the_running_clients_registry() -> None:
    """A policy only this client's registry has (not the environment's) retries the branch."""
    import attrs

    from vow.hookspecs import hookimpl
    from vow.plugins import Plugins

    @attrs.frozen
    class Twice:
        def delay_for(self, attempt: int) -> float | None:
            return 0.001 if attempt < 2 else None

    class OnlyHere:
        @hookimpl
        def vow_register_retry_policies(self, register) -> None:
            register("only_here", Twice, None)

    plugins = Plugins()
    plugins.add(OnlyHere(), "only_here")
    plan = make_plan(parse("version: 1\nname: own\nid: own/1\nfan_out:\n"
                           "  - {channel: slack, to: '#a', body: hi, options: {latency: 0}, retry: only_here,\n"
                           "     faults: {fail_attempts: [1]}}\n", "own.yaml"), plugins=plugins)
    with Vow("memory:", plugins=plugins) as vow:
        result = vow.run(plan.run_id, NAME, plan.spec)
    assert result["ok"] and result["branches"][0]["result"]["attempt"] == 2


def test_result_json_lists_every_attempts_error_of_a_branch_that_failed_for_good(tmp_path, installed_plugins) -> None:
    text = ("version: 1\nname: tries\nid: tries/1\noutput: out\nfan_out:\n"
            "  - {channel: slack, to: '#a', body: hi, options: {latency: 0}}\n"
            "  - {channel: sms, to: '+14155550100', body: hi, options: {latency: 0},\n"
            "     retry: {policy: constant, delay: 0.001, max_attempts: 3},\n"
            "     faults: {fail_attempts: [1, 2, 3], message: gateway said no}}\n")
    plan = make_plan(parse(text, "tries.yaml"), plugins=installed_plugins)
    with Vow(f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
        with pytest.raises(PipelineFailed):
            vow.run(plan.run_id, NAME, plan.spec)
    written = {b["id"]: b for b in json.loads((tmp_path / "out" / "result.json").read_text())["branches"]}
    assert written["sms"]["errors"] == [
        {"attempt": n, "error": f"TransientError: gateway said no (attempt {n})"} for n in (1, 2, 3)]
    assert written["sms"]["error"] == "TransientError: gateway said no (attempt 3)"  # the last, as before
    assert "errors" not in written["slack"]


def test_result_json_is_strict_json_when_a_stored_value_holds_nan_or_infinity(tmp_path, installed_plugins) -> None:
    """A gate resolved from Python with ``nan``/``inf`` (the store keeps them): result.json stays JSON."""
    text = ("version: 1\nname: odd\nid: odd/1\ngate: {promise: approval}\noutput: out\nfan_out:\n"
            "  - {channel: slack, to: '#a', body: hi, options: {latency: 0}}\n")
    plan = make_plan(parse(text, "odd.yaml"), plugins=installed_plugins)
    with Vow(f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
        handle = vow.begin_run(plan.run_id, NAME, plan.spec)
        wait_until(lambda: vow.get("odd/1.approval") is not None, 30, "the run never reached its gate")
        vow.resolve("odd/1.approval", {"score": float("nan"), "limit": float("inf"), "floor": float("-inf")})
        assert handle.result(30)["ok"]

    def refuse(name: str) -> None:
        raise AssertionError(f"result.json holds {name}, which is not JSON")

    written = json.loads((tmp_path / "out" / "result.json").read_text(), parse_constant=refuse)
    assert written["approval"] == {"score": None, "limit": None, "floor": None}  # as `--json` prints them
