"""Reading pipeline files: the line of every key, and errors that point at it."""

from __future__ import annotations

import pytest

from vow.errors import ConfigError
from vow.pipeline.source import SpecError, format_path, parse, parse_path

TEXT = """\
version: 1
name: demo
defaults: &defaults
  timeout: 5
fan_out:
  - channel: email
    to: a@b.cd
  - <<: *defaults
    channel: sms
    body: |
      line one
      line two
"""


def test_every_key_path_knows_its_line() -> None:
    source = parse(TEXT, "demo.yaml")
    assert source.data["fan_out"][1] == {"timeout": 5, "channel": "sms", "body": "line one\nline two\n"}
    assert source.line(("version",)) == 1
    assert source.line(("fan_out", 0)) == 6
    assert source.line(("fan_out", 0, "to")) == 7
    assert source.line(("fan_out", 1, "channel")) == 9
    assert source.line(("fan_out", 1, "timeout")) == 4  # merged in from the anchor: where it is written
    assert source.line(("fan_out", 0, "options", "smtp")) == 6  # not in the file: its closest ancestor
    assert source.text_line(("fan_out", 1, "body"), 2) == 12  # a block scalar's text starts on the next line


def test_errors_read_file_line_path_problem() -> None:
    error = parse(TEXT, "demo.yaml").error(("fan_out", 1, "channel"), "'smz' is not installed")
    assert isinstance(error, ConfigError)
    assert str(error) == "demo.yaml:9: fan_out[1].channel: 'smz' is not installed"
    assert str(SpecError("--set: expected key=value")) == "--set: expected key=value"


@pytest.mark.parametrize("text, message", [
    ("a: 1\na: 2\n", "x.yaml:2: a: duplicate key (first given on line 1)"),
    ("a: [1, 2\n", "x.yaml:2: invalid YAML: expected ',' or ']', but got '<stream end>' while parsing a flow "
                   "sequence that starts on line 1, column 4"),
    ("a:\n\t- 1\n", "x.yaml:2: invalid YAML: found character '\\t' that cannot start any token (column 1)"),
])
def test_bad_yaml_names_the_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(text, "x.yaml")
    assert str(caught.value) == message


def test_an_error_from_a_plugin_is_moved_to_the_key_it_names() -> None:
    source = parse("fan_out:\n  - channel: email\n    options:\n      smtp:\n        port: 0\n      latncy: 1\n",
                   "p.yaml")
    moved = source.relocate(ConfigError("fan_out[0].options.smtp: invalid value: port must be a TCP port, got 0"),
                            ("fan_out", 0, "options"))
    assert str(moved) == "p.yaml:5: fan_out[0].options.smtp.port: port must be a TCP port, got 0"
    extra = source.relocate(ConfigError("fan_out[0].options: extra fields found (latncy) (allowed: smtp, latency)"),
                            ("fan_out", 0, "options"))
    assert str(extra) == "p.yaml:6: fan_out[0].options.latncy: unknown key (allowed: smtp, latency)"
    other = source.relocate(ConfigError("sms transport 'twilio': missing secret"), ("fan_out", 0, "options"))
    assert str(other) == "p.yaml:3: fan_out[0].options: sms transport 'twilio': missing secret"


def test_paths_format_and_parse_back() -> None:
    path = ("fan_out", 2, "options", "smtp", "port")
    assert format_path(path) == "fan_out[2].options.smtp.port"
    assert parse_path(format_path(path)) == path
