"""One strict converter for every option: retry policies, failure injection, plugin options, pipelines."""

from __future__ import annotations

import pytest

from vow import ConfigError, Exponential
from vow.config import structure
from vow.faults import Faults
from vow.pipeline import load
from vow.pipeline.source import SpecError
from vow.plugins import Plugins
from vow.retry import from_config


@pytest.mark.parametrize(("data", "path", "problem"), [
    ({"max_attempts": 2.5}, ("max_attempts",), "expected a whole number, got the number 2.5"),  # was 2
    ({"max_attempts": "10"}, ("max_attempts",), "expected a whole number, got text '10'"),  # was 10
    ({"delay": "1"}, ("delay",), "expected a number, got text '1'"),
    ({"max_attempts": 0}, ("max_attempts",), "'max_attempts' must be >= 1: 0"),
    ({"jitter": 1.5}, ("jitter",),
     "'jitter' must be 'full', 'decorrelated', 'none' or a fraction from 0 to 1, got 1.5"),
    ({"jitter": "ful"}, ("jitter",), "expected one of 'full', 'decorrelated', 'none' or a number, got text 'ful'"),
    ({"jitter": True}, ("jitter",),
     "expected one of 'full', 'decorrelated', 'none' or a number, got true (true/false)"),
    ({"delay": float("inf")}, ("delay",), "expected a finite number of seconds, got inf"),  # as timeout: .inf
    ({"max_delay": float("inf")}, ("max_delay",), "expected a finite number of seconds, got inf"),
    ({"max_delay": float("nan")}, ("max_delay",), "expected a finite number of seconds, got nan"),
    ({"factor": float("inf")}, ("factor",), "expected a finite number, got inf"),
    ({"dealy": 1}, ("dealy",), "unknown key (allowed: delay, factor, max_delay, max_attempts, jitter, "
                                "rate_limit_delay, rate_limit_max_delay, rate_limit_attempts)"),
])
def test_retry_policies_are_structured_strictly_with_a_key_path(data: dict, path: tuple, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_config({"policy": "exponential", **data}, plugins=Plugins(), where="retry")
    assert (caught.value.path, caught.value.problem) == (path, problem)
    assert str(caught.value) == f"retry.{path[0]}: {problem}"


def test_a_valid_policy_is_built() -> None:
    assert from_config({"policy": "exponential", "max_attempts": 4, "delay": 1}, plugins=Plugins()) == Exponential(
        delay=1.0, max_attempts=4)


def test_every_issue_is_kept_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        structure(Faults, {"rate": "often", "fail_attempts": [1, "2"], "colour": "red"}, where="faults")
    assert sorted(caught.value.issues) == [
        (("colour",), "unknown key (allowed: fail_attempts, rate, seed, error, message, status, retry_after, latency, "
                      "hold_until_file)"),
        (("fail_attempts", 1), "expected a whole number, got text '2'"),
        (("rate",), "expected a number, got text 'often'"),
    ]
    with pytest.raises(ConfigError) as caught:
        structure(Faults, {"fail_attempts": [1, 0]}, where="faults")
    assert caught.value.issues == ((("fail_attempts",), "'fail_attempts' must be >= 1: 0"),)


@pytest.mark.parametrize("faults", [{"status": 400}, {"error": "permanent"}, {"retry_after": 2}])
def test_faults_that_choose_no_attempt_to_fail_are_an_error_not_a_no_op(faults: dict) -> None:
    with pytest.raises(ConfigError, match=r"faults: .* given, but no attempt is chosen to fail: add fail_attempts"):
        structure(Faults, faults, where="faults")
    assert structure(Faults, {**faults, "fail_attempts": [1]}).fail_attempts == [1]
    assert structure(Faults, {**faults, "rate": 0.5}).rate == 0.5
    assert structure(Faults, {**faults, "fail_attempts": []}).fail_attempts == []  # a template's "none here"


@pytest.mark.parametrize(("faults", "problem"), [
    ({"latency": float("inf")}, "latency: expected a finite number of seconds, got inf"),
    ({"latency": float("nan")}, "latency: expected a finite number of seconds, got nan"),
    ({"fail_attempts": [1], "retry_after": float("inf")}, "retry_after: expected a finite number of seconds, got inf"),
    ({"rate": float("nan")}, "rate: expected a fraction from 0 to 1, got nan"),  # had said "must be >= 0.0: nan"
    ({"rate": 1, "status": 200}, "status: 'status' must be >= 400: 200"),  # had failed as a permanent "HTTP 200"
])
def test_fault_latency_and_retry_after_are_finite_seconds(faults: dict, problem: str) -> None:
    # As a pipeline's timeout: .inf would sleep or hold a branch back for good, .nan passes ">= 0".
    with pytest.raises(ConfigError) as caught:
        structure(Faults, faults, where="faults")
    assert str(caught.value) == f"faults.{problem}"


def test_a_pipeline_retry_policy_is_as_strict_as_the_pipeline(tmp_path, installed_plugins) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nname: p\nid: p/1\ndefaults:\n  retry: {policy: linear, max_attempts: 2.5}\n"
                    "fan_out:\n  - {channel: slack, to: '#x', body: hi}\n")
    with pytest.raises(SpecError) as caught:
        load(str(path), plugins=installed_plugins)
    assert str(caught.value) == (
        f"{path}:5: defaults.retry.max_attempts: expected a whole number, got the number 2.5")
