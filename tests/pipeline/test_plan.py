"""Planning: a pipeline file and its input become one checked, plain-JSON run."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from vow.channels import Receipt
from vow.errors import ConfigError
from vow.hookspecs import hookimpl
from vow.pipeline import SpecError, load, parse
from vow.pipeline.plan import make_plan
from vow.plugins import Plugins

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _sim_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))  # building simulated channels opens their ledger
    monkeypatch.chdir(tmp_path)


def test_the_order_example_plans_four_rendered_branches() -> None:
    plan = load(str(EXAMPLES / "order-confirmed.yaml"))
    assert (plan.name, plan.run_id, plan.store, plan.gate_id) == ("order-confirmed", "notify/A-1001", None, None)
    assert [b["id"] for b in plan.branches] == ["email", "sms", "slack", "push"]
    email, sms, slack, push = plan.branches
    assert email["message"] == {"to": "Ada Lovelace <ada@example.com>", "subject": "Order A-1001 confirmed",
                                "body": "Hi Ada Lovelace,\n\nyour order A-1001 ($42.00) is confirmed and on its way.",
                                "data": {}}
    assert sms["message"]["to"] == "+14155550100" and slack["message"]["to"] == "#orders"
    assert push["faults"] == {"fail_attempts": [1], "message": "push service unavailable"}
    assert {json.dumps(b["retry"]) for b in plan.branches} == {
        json.dumps({"policy": "exponential", "delay": 0.1, "max_attempts": 4})}
    assert {b["timeout"] for b in plan.branches} == {60.0}
    assert json.loads(json.dumps(plan.spec)) == plan.spec  # plain JSON: a worker needs no file


def test_command_line_input_merges_over_the_files_input() -> None:
    plan = load(str(EXAMPLES / "order-confirmed.yaml"), input={"order_id": "A-7", "customer": {"name": "Bob"}})
    assert plan.run_id == "notify/A-7"
    assert plan.branches[0]["message"]["to"] == "Bob <ada@example.com>"  # the email stayed, the name changed
    assert plan.spec["input"]["customer"]["phone"] == "+14155550100"
    assert load(str(EXAMPLES / "order-confirmed.yaml"), run_id="custom/1").run_id == "custom/1"


def test_without_an_id_template_the_same_input_is_the_same_run() -> None:
    text = "version: 1\nname: hello\nfan_out:\n  - {channel: slack, to: '#general', body: 'hi {{ input.who }}'}\n"
    first = make_plan(parse(text, "h.yaml"), input={"who": "ada"})
    assert first.run_id.startswith("hello/") and len(first.run_id) == len("hello/") + 12
    assert make_plan(parse(text, "h.yaml"), input={"who": "ada"}).run_id == first.run_id
    assert make_plan(parse(text, "h.yaml"), input={"who": "bob"}).run_id != first.run_id


def test_for_each_expands_from_a_template_with_an_id_per_item() -> None:
    text = """\
version: 1
name: team
id: team/1
gate: {promise: go, timeout: 30}
defaults: {concurrency: 2}
fan_in: all
input:
  people: [{name: ada, email: ada@example.com}, {name: bob, email: bob@example.com}]
fan_out:
  - channel: email
    for_each: "{{ input.people }}"
    id: "mail-{{ item.name }}"
    to: "{{ item.email }}"
    subject: "Hello {{ item.name }} ({{ index + 1 }} of {{ input.people | length }})"
    body: hi
"""
    plan = make_plan(parse(text, "t.yaml"))
    assert [(b["id"], b["message"]["to"], b["message"]["subject"]) for b in plan.branches] == [
        ("mail-ada", "ada@example.com", "Hello ada (1 of 2)"), ("mail-bob", "bob@example.com", "Hello bob (2 of 2)")]
    assert (plan.gate_id, plan.spec["gate"], plan.spec["concurrency"], plan.spec["fan_in"]) == (
        "team/1.go", {"promise": "go", "timeout": 30.0}, 2, "all")

    without_id = text.replace('    id: "mail-{{ item.name }}"\n', "")
    with pytest.raises(SpecError) as caught:
        make_plan(parse(without_id, "t.yaml"))
    assert str(caught.value) == ("t.yaml:11: fan_out[0].for_each: its items are not names, so give the branch an "
                                 "id template such as id: \"{{ item.name }}\"")

    bad_item = text.replace("bob@example.com", "bob-at-example")
    with pytest.raises(SpecError) as caught:
        make_plan(parse(bad_item, "t.yaml"))
    assert str(caught.value).startswith("t.yaml:13: fan_out[0].to: email message.to: 'bob-at-example' is not a "
                                        "valid email address")
    assert str(caught.value).endswith(" (for_each item 1: {'name': 'bob', 'email': 'bob-at-example'})")


def test_the_image_example_plans_one_branch_per_style_with_its_own_faults(tmp_path) -> None:
    plan = load(str(EXAMPLES / "image-variations.yaml"))
    assert plan.run_id == "images/a-fox-in-a-misty-forest-at-dawn-7"
    assert plan.spec["output"] == str(tmp_path / "out" / "images-a-fox-in-a-misty-forest-at-dawn-7")
    assert [(b["id"], b["request"]["style"], b["faults"]["fail_attempts"]) for b in plan.branches] == [
        ("photorealistic", "photorealistic", []), ("cartoon", "cartoon", []), ("abstract", "abstract", [1])]
    assert plan.branches[0]["request"] == {"prompt": "a fox in a misty forest at dawn", "style": "photorealistic",
                                           "seed": 7, "width": 512, "height": 512}


@attrs.frozen
class CountingOptions:
    region: str = "eu"


class CountingChannel:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def validate(self, message) -> None:
        self.log.append(f"validate {message.to}")
        if message.to == "nobody":
            raise ConfigError("counting message.to: 'nobody' cannot receive anything")

    def send(self, message, ctx) -> Receipt:  # pragma: no cover - planning never sends
        raise AssertionError("planning must not send")


def test_each_channel_is_built_once_and_every_message_validated_before_anything_runs() -> None:
    log: list[str] = []

    class Plugin:
        @hookimpl
        def vow_register_channels(self, register) -> None:
            def build(options: CountingOptions) -> CountingChannel:
                log.append(f"build {options.region}")
                return CountingChannel(log)
            register("counting", build, CountingOptions)

    plugins = Plugins(entry_points=False)
    plugins.add(Plugin(), "counting")
    text = ("version: 1\nname: c\nid: c/1\nfan_out:\n"
            "  - {channel: counting, for_each: [a, b, c], to: '{{ item }}', body: hi}\n"
            "  - {channel: counting, id: d, to: d, body: hi, options: {region: us}}\n")
    plan = make_plan(parse(text, "c.yaml"), plugins=plugins)
    assert [b["id"] for b in plan.branches] == ["a", "b", "c", "d"]
    assert log == ["build eu", "validate a", "validate b", "validate c", "build us", "validate d"]

    with pytest.raises(SpecError) as caught:
        make_plan(parse(text.replace("[a, b, c]", "[a, nobody]"), "c.yaml"), plugins=plugins)
    assert str(caught.value) == ("c.yaml:5: fan_out[0].to: counting message.to: 'nobody' cannot receive anything "
                                 "(for_each item 1: 'nobody')")
