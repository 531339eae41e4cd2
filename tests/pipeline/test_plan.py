"""Planning: a pipeline file and its input become one checked run, typed, stored as plain JSON."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from vow import encoding
from vow.channels import Message, Receipt
from vow.errors import ConfigError
from vow.hookspecs import hookimpl
from vow.images import ImageRequest
from vow.pipeline import SpecError, load, parse
from vow.pipeline.model import Gate, PlannedRun
from vow.pipeline.plan import make_plan
from vow.plugins import Plugins

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _refusal(text: str, file: str, plugins: Plugins) -> str:
    """The message of the :class:`SpecError` planning ``text`` (read as ``file``) raises."""
    with pytest.raises(SpecError) as caught:
        make_plan(parse(text, file), plugins=plugins)
    return str(caught.value)


@pytest.fixture(autouse=True)
def _sim_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))  # building simulated channels opens their ledger
    monkeypatch.chdir(tmp_path)


def test_the_order_example_plans_four_rendered_branches(installed_plugins) -> None:
    plan = load(str(EXAMPLES / "order-confirmed.yaml"), plugins=installed_plugins)
    assert (plan.name, plan.run_id, plan.store, plan.gate_id) == ("order-confirmed", "notify/A-1001", None, None)
    assert [(b.id, b.kind, b.plugin) for b in plan.branches] == [
        ("email", "channel", "email"), ("sms", "channel", "sms"), ("slack", "channel", "slack"),
        ("push", "channel", "push")]
    email, sms, slack, push = plan.branches
    assert email.message == Message(to="Ada Lovelace <ada@example.com>", subject="Order A-1001 confirmed",
                                    body="Hi Ada Lovelace,\n\nyour order A-1001 ($42.00) is confirmed and on its way.")
    assert sms.message.to == "+14155550100" and slack.message.to == "#orders"
    assert push.faults == {"fail_attempts": [1], "message": "push service unavailable"}
    assert {json.dumps(b.retry) for b in plan.branches} == {
        json.dumps({"policy": "exponential", "delay": 0.1, "max_attempts": 4})}
    assert {b.timeout for b in plan.branches} == {60.0}
    stored = plan.spec.to_json()
    assert json.loads(json.dumps(stored)) == stored  # plain JSON: a worker needs no file
    assert PlannedRun.from_json(stored) == plan.spec


def test_command_line_input_merges_over_the_files_input(installed_plugins) -> None:
    plan = load(str(EXAMPLES / "order-confirmed.yaml"), plugins=installed_plugins,
                input={"order_id": "A-7", "customer": {"name": "Bob"}})
    assert plan.run_id == "notify/A-7"
    assert plan.branches[0].message.to == "Bob <ada@example.com>"  # the email stayed, the name changed
    assert plan.spec.input["customer"]["phone"] == "+14155550100"
    custom = load(str(EXAMPLES / "order-confirmed.yaml"), plugins=installed_plugins, run_id="custom/1")
    assert custom.run_id == "custom/1"


def test_without_an_id_template_the_same_input_is_the_same_run(installed_plugins) -> None:
    text = "version: 1\nname: hello\nfan_out:\n  - {channel: slack, to: '#general', body: 'hi {{ input.who }}'}\n"

    def plan(who: str):
        return make_plan(parse(text, "h.yaml"), plugins=installed_plugins, input={"who": who})

    first = plan("ada")
    assert first.run_id.startswith("hello/") and len(first.run_id) == len("hello/") + 12
    assert plan("ada").run_id == first.run_id
    assert plan("bob").run_id != first.run_id


def test_for_each_expands_from_a_template_with_an_id_per_item(installed_plugins) -> None:
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
    plan = make_plan(parse(text, "t.yaml"), plugins=installed_plugins)
    assert [(b.id, b.message.to, b.message.subject) for b in plan.branches] == [
        ("mail-ada", "ada@example.com", "Hello ada (1 of 2)"), ("mail-bob", "bob@example.com", "Hello bob (2 of 2)")]
    assert (plan.gate_id, plan.spec.gate, plan.spec.concurrency, plan.spec.fan_in) == (
        "team/1.go", Gate(promise="go", timeout=30.0), 2, "all")

    without_id = text.replace('    id: "mail-{{ item.name }}"\n', "")
    refusal = _refusal(without_id, "t.yaml", installed_plugins)
    assert refusal == ("t.yaml:11: fan_out[0].for_each: its items are not names, so give the branch an "
                       "id template such as id: \"{{ item.name }}\"")

    bad_item = text.replace("bob@example.com", "bob-at-example")
    refusal = _refusal(bad_item, "t.yaml", installed_plugins)
    assert refusal.startswith("t.yaml:13: fan_out[0].to: email message.to: 'bob-at-example' is not a "
                              "valid email address")
    assert refusal.endswith(" (for_each item 1: {'name': 'bob', 'email': 'bob-at-example'})")


@pytest.mark.parametrize("entry, expected", [
    # Each item named fan_out[0], so the message read "fan_out[0] and fan_out[0]".
    ("{channel: slack, to: '#general', body: hi, for_each: [1, 1]}",
     "d.yaml:4: fan_out[0].for_each: branch id '1' is used twice (fan_out[0].for_each[0] and "
     "fan_out[0].for_each[1]); give each branch its own id with id:"),
    ("{channel: slack, to: '#general', body: hi, for_each: [a, b, a]}",
     "d.yaml:4: fan_out[0].for_each: branch id 'a' is used twice (fan_out[0].for_each[0] and "
     "fan_out[0].for_each[2]); give each branch its own id with id:"),
    ("{image: image_sim, prompt: a fox, size: 64, seed: 1, id: 'v{{ index }}', for_each: [cartoon, cartoon]}",
     "d.yaml:4: fan_out[0].for_each: style 'cartoon' is generated twice (fan_out[0].for_each[0] and "
     "fan_out[0].for_each[1]); each style is one image file, cartoon.png"),
])
def test_a_duplicate_for_each_item_is_named_by_its_own_position(installed_plugins, entry: str, expected: str) -> None:
    text = f"version: 1\nname: dup\nfan_out:\n  - {entry}\n"
    assert _refusal(text, "d.yaml", installed_plugins) == expected


def test_a_branch_id_used_by_two_entries_names_both_entries(installed_plugins) -> None:
    text = ("version: 1\nname: dup\nfan_out:\n  - {channel: slack, to: '#a', body: hi, for_each: [x, y]}\n"
            "  - {channel: slack, to: '#b', body: hi, id: y}\n")
    refusal = _refusal(text, "d.yaml", installed_plugins)
    assert refusal == ("d.yaml:5: fan_out[1]: branch id 'y' is used twice (fan_out[0].for_each[1] and "
                       "fan_out[1]); give each branch its own id with id:")


@pytest.mark.parametrize("block, expected", [
    # Python's repr had shown YAML's true as True, a word nobody wrote.
    ("{every: true}", "s.yaml:3: schedule.every: expected a duration (a number of seconds, or text such as 30s, "
                      "5m, 1h30m or 1d), got true (true/false)"),
    ("{every: [1h]}", "s.yaml:3: schedule.every: expected a duration (a number of seconds, or text such as 30s, "
                      "5m, 1h30m or 1d), got a list"),
    ("{every: 1h, catch_up: none, grace: false}",
     "s.yaml:3: schedule.grace: expected a duration (a number of seconds, or text such as 30s, 5m, 1h30m or 1d), "
     "got false (true/false)"),
])
def test_a_schedule_interval_that_is_not_a_duration_is_shown_as_written(installed_plugins, block: str,
                                                                         expected: str) -> None:
    text = f"version: 1\nname: nightly\nschedule: {block}\nfan_out:\n  - {{channel: slack, to: '#a', body: hi}}\n"
    assert _refusal(text, "s.yaml", installed_plugins) == expected


def test_the_image_example_plans_one_branch_per_style_with_its_own_faults(tmp_path, installed_plugins) -> None:
    plan = load(str(EXAMPLES / "image-variations.yaml"), plugins=installed_plugins)
    assert plan.run_id == "images/a-fox-in-a-misty-forest-at-dawn-7"
    assert plan.spec.output == str(tmp_path / "out" / "images-a-fox-in-a-misty-forest-at-dawn-7")
    assert [(b.id, b.kind, b.request.style, b.faults["fail_attempts"]) for b in plan.branches] == [
        ("photorealistic", "image", "photorealistic", []), ("cartoon", "image", "cartoon", []),
        ("abstract", "image", "abstract", [1])]
    assert plan.branches[0].request == ImageRequest(prompt="a fox in a misty forest at dawn", style="photorealistic",
                                                    seed=7, width=512, height=512)


# A pipeline, and the JSON vow 0.2 stored for its run before plans were typed (from
# `encoding.encode_args((plan.spec,), {})` on that code): the typed plan must store the very same text,
# or a run started before the upgrade would read as "other input" and could not be joined.
GOLDEN = """\
version: 1
name: golden
id: "golden/{{ input.n }}"
input: {n: 1}
gate: {promise: approval, timeout: 300}
defaults: {retry: {policy: exponential, max_attempts: 3, delay: 0.01}, timeout: 60, concurrency: 4}
output: /srv/golden-out
fan_out:
  - {channel: slack, to: "#orders", body: "order {{ input.n }}", options: {latency: 0.01}}
  - {channel: email, id: mail, to: ada@example.com, subject: hello, body: hi, data: {k: 1},
     faults: {fail_attempts: [1]}}
  - {image: image_sim, prompt: a fox, style: cartoon, size: 64, seed: 3, retry: constant}
"""
GOLDEN_STORED = (
    '[{"branches":[{"channel":"slack","faults":null,"id":"slack","kind":"channel","message":{"body":"order 1",'
    '"data":{},"subject":null,"to":"#orders"},"options":{"latency":0.01},"retry":{"delay":0.01,"max_attempts":3,'
    '"policy":"exponential"},"timeout":60.0},{"channel":"email","faults":{"fail_attempts":[1]},"id":"mail",'
    '"kind":"channel","message":{"body":"hi","data":{"k":1},"subject":"hello","to":"ada@example.com"},'
    '"options":{},"retry":{"delay":0.01,"max_attempts":3,"policy":"exponential"},"timeout":60.0},{"faults":null,'
    '"id":"cartoon","kind":"image","options":{},"provider":"image_sim","request":{"height":64,"prompt":"a fox",'
    '"seed":3,"style":"cartoon","width":64},"retry":{"policy":"constant"},"timeout":60.0}],"concurrency":4,'
    '"fan_in":"all_settled","gate":{"promise":"approval","timeout":300.0},"input":{"n":1},"name":"golden",'
    '"output":"/srv/golden-out"}]')


def test_a_typed_plan_is_stored_as_the_same_json_as_before(installed_plugins) -> None:
    plan = make_plan(parse(GOLDEN, "golden.yaml"), plugins=installed_plugins)
    assert encoding.encode_args((plan.spec,), {}, what="golden") == GOLDEN_STORED  # as vow.run stores it
    assert encoding.encode_args((plan.spec.to_json(),), {}, what="golden") == GOLDEN_STORED
    [stored] = encoding.decode_args(GOLDEN_STORED)[0]
    assert PlannedRun.from_json(stored) == plan.spec  # and an old stored plan reads back as the typed one


def test_branch_default_and_gate_timeouts_take_durations_and_store_seconds(installed_plugins) -> None:
    written = (GOLDEN.replace("gate: {promise: approval, timeout: 300}", "gate: {promise: approval, timeout: 5m}")
               .replace("max_attempts: 3, delay: 0.01}, timeout: 60,", "max_attempts: 3, delay: 0.01}, timeout: 1m,")
               .replace("seed: 3, retry: constant}", "seed: 3, retry: constant, timeout: 60s}"))
    assert written.count("5m") == written.count("1m,") == written.count("60s") == 1
    plan = make_plan(parse(written, "golden.yaml"), plugins=installed_plugins)
    assert encoding.encode_args((plan.spec,), {}, what="golden") == GOLDEN_STORED  # seconds, as before


@pytest.mark.parametrize(("written", "seconds"), [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("2.5", 2.5),
                                                 ("1", 1.0)])
def test_the_run_timeout_is_seconds_or_a_duration_and_leaves_the_stored_plan_as_it_was(
        written: str, seconds: float, installed_plugins) -> None:
    plan = make_plan(parse(f"timeout: {written}\n" + GOLDEN, "golden.yaml"), plugins=installed_plugins)
    assert plan.timeout == seconds
    # The run's timeout is stored as the root's deadline, not in its argument: the same plan JSON as without it.
    assert encoding.encode_args((plan.spec,), {}, what="golden") == GOLDEN_STORED
    assert make_plan(parse(GOLDEN, "golden.yaml"), plugins=installed_plugins).timeout is None


@pytest.mark.parametrize(("written", "problem"), [
    ("soon", "'soon' is not a duration: write a number of seconds, or a number and a unit (30s, 5m, 1h30m, 1d)"),
    ('"90"', "'90' is not a duration: write a number of seconds, or a number and a unit (30s, 5m, 1h30m, 1d)"),
    ("-1", "must be more than 0 seconds, got -1"),
    ("0s", "must be more than 0 seconds, got 0"),
    ("-5m", "'-5m' is not a duration: write a number of seconds, or a number and a unit (30s, 5m, 1h30m, 1d)"),
    (".inf", "expected a finite number of seconds, got inf"),
    (".nan", "expected a finite number of seconds, got nan"),
    ("true", "expected a duration (a number of seconds, or text such as 30s or 5m), got true (true/false)"),
    ("[30]", "expected a duration (a number of seconds, or text such as 30s or 5m), got a list"),
])
def test_a_bad_run_timeout_is_one_error_at_its_line(written: str, problem: str, installed_plugins) -> None:
    timed = GOLDEN.replace("input: {n: 1}\n", f"input: {{n: 1}}\ntimeout: {written}\n")
    refusal = _refusal(timed, "g.yaml", installed_plugins)
    assert refusal == f"g.yaml:5: timeout: {problem}"


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda p: p["branches"][0].update(kind="fax"), "branches[0]: expected a branch with kind 'channel' or 'image', "
                                                    "got kind text 'fax'"),
    (lambda p: p["branches"][2]["request"].update(seed="3"), "branches[2].request.seed: expected a whole number, "
                                                             "got text '3'"),
    (lambda p: p.update(colour="red"), "colour: unknown key"),
])
def test_a_damaged_stored_plan_is_one_error_naming_the_key(damage, problem: str) -> None:
    [stored] = encoding.decode_args(GOLDEN_STORED)[0]
    damage(stored)
    with pytest.raises(ConfigError) as caught:
        PlannedRun.from_json(stored, where="plan")
    assert str(caught.value).startswith(f"plan.{problem}")


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
    assert [b.id for b in plan.branches] == ["a", "b", "c", "d"]
    assert log == ["build eu", "validate a", "validate b", "validate c", "build us", "validate d"]

    refusal = _refusal(text.replace("[a, b, c]", "[a, nobody]"), "c.yaml", plugins)
    assert refusal == ("c.yaml:5: fan_out[0].to: counting message.to: 'nobody' cannot receive anything "
                       "(for_each item 1: 'nobody')")


class PathChannel:
    """Refuses a recipient as CONTRIBUTING tells a plugin to: ``ConfigError(problem, path=("to",))``."""

    def validate(self, message) -> None:
        if not message.to.startswith("+"):
            raise ConfigError(f"not a fax number: {message.to!r}", path=("to",))

    def send(self, message, ctx) -> Receipt:  # pragma: no cover - planning never sends
        raise AssertionError("planning must not send")


def test_a_validate_error_with_a_path_names_the_key_once() -> None:
    class Plugin:
        @hookimpl
        def vow_register_channels(self, register) -> None:
            register("fax", PathChannel)

    plugins = Plugins(entry_points=False)
    plugins.add(Plugin(), "fax")
    text = "version: 1\nname: f\nid: f/1\nfan_out:\n  - {channel: fax, to: '12345', body: hi}\n"
    refusal = _refusal(text, "f.yaml", plugins)
    assert refusal == "f.yaml:5: fan_out[0].to: not a fax number: '12345'"  # was "...to: to: not a..."


@pytest.mark.parametrize("entry, expected", [
    # The rule read "1-128 letters, digits and _ . @ + -", which '_x' fits, so the refusal did not say why.
    ("fan_out:\n  - {channel: slack, to: '#a', body: hi, id: _x}\n",
     "b.yaml:4: fan_out[0].id: '_x' is not a usable branch id (1-128 letters, digits and _ . @ + -, "
     "starting with a letter, a digit or +)"),
    # "$" also matches before a final line break, so the id "a\n" passed as if it were "a".
    ("fan_out:\n  - {channel: slack, to: '#a', body: hi, id: \"a\\n\"}\n",
     "b.yaml:4: fan_out[0].id: 'a\\n' is not a usable branch id (1-128 letters, digits and _ . @ + -, "
     "starting with a letter, a digit or +)"),
    ("gate: {promise: .approve}\nfan_out:\n  - {channel: slack, to: '#a', body: hi}\n",
     "b.yaml:3: gate.promise: '.approve' is not a usable promise name (1-128 letters, digits and _ . @ + -, "
     "starting with a letter, a digit or +)"),
])
def test_a_refused_branch_id_is_told_the_rule_it_breaks(installed_plugins, entry: str, expected: str) -> None:
    text = f"version: 1\nname: ids\n{entry}"
    assert _refusal(text, "b.yaml", installed_plugins) == expected


def test_a_secrets_variable_name_with_a_line_break_is_refused_as_a_name(installed_plugins, monkeypatch) -> None:
    """A block scalar (``|``) ends its text with a line break. The name check's ``$`` matched before it, so
    "ORDERS_SLACK_TOKEN\\n" passed as a name, was looked up as it is, and the plan failed with "missing
    secret: set the environment variable ORDERS_SLACK_TOKEN" while that variable was set."""
    monkeypatch.setenv("ORDERS_SLACK_TOKEN", "xoxb-1")
    text = ("version: 1\nname: n\nfan_out:\n  - channel: slack\n    to: '#orders'\n    body: hi\n"
            "    options:\n      transport: bot\n      bot_token_env: |\n        ORDERS_SLACK_TOKEN\n")
    with pytest.raises(SpecError, match=r"'ORDERS_SLACK_TOKEN\\n' is not an environment variable name"):
        make_plan(parse(text, "n.yaml"), plugins=installed_plugins)
    assert make_plan(parse(text.replace("|", ">-"), "n.yaml"), plugins=installed_plugins).branches
