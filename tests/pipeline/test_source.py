"""Reading pipeline files: the line of every key, and errors that point at it."""

from __future__ import annotations

import attrs
import pytest

from vow.config import structure
from vow.errors import ConfigError, format_path
from vow.pipeline.source import SpecError, parse, read

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
    # The composer's two halves were run together backwards: "but found another document expected a
    # single document in the stream that starts on line 1, column 1".
    ("a: 1\n---\nb: 2\n", "x.yaml:2: invalid YAML: expected a single document in the stream (on line 1, column 1); "
                         "but found another document (column 1)"),
    ("a: &x 1\nb: &x 2\n", "x.yaml:2: invalid YAML: found duplicate anchor 'x'; first occurrence (on line 1, column "
                          "4); second occurrence (column 4)"),
])
def test_bad_yaml_names_the_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(text, "x.yaml")
    assert str(caught.value) == message


def test_a_key_yaml_reads_as_true_or_a_number_knows_its_line() -> None:
    # YAML reads the key on: as true and 2: as the number 2. Lines were indexed by the key's text
    # ("on"), the data by the key (True), so an error about either said line 1 of the file.
    source = parse("version: 1\non: 1\n2: x\n", "x.yaml")
    assert source.data == {"version": 1, True: 1, 2: "x"}
    assert (source.line((True,)), source.line((2,))) == (2, 3)
    # Two spellings of one key: PyYAML kept the last without a word.
    with pytest.raises(SpecError) as caught:
        parse("on: 1\ntrue: 2\n", "x.yaml")
    assert str(caught.value) == "x.yaml:2: [True]: duplicate key (first given on line 1)"


def test_an_alias_inside_its_own_anchor_is_refused_not_recursed_into() -> None:
    with pytest.raises(SpecError) as caught:
        parse("version: 1\ninput:\n  a: &a\n    b: [1, *a]\n", "x.yaml")
    assert str(caught.value) == ("x.yaml:4: input.a.b[1]: invalid YAML: an alias (*name) inside the value of its "
                                 "own anchor (&name): the value would contain itself")


def test_aliases_of_aliases_that_stand_for_billions_of_values_are_refused_at_once() -> None:
    # Nine levels of ten aliases each: 10**9 values in ten lines. Read as written, this never ends.
    text = "l0: &l0 [" + ", ".join(["lol"] * 10) + "]\n"
    text += "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 9))
    with pytest.raises(SpecError, match=r"^x\.yaml:\d+: l\d[\[\]\d]*: invalid YAML: aliases \(\*name\) repeat "
                                        r"more than 100,000 values; write the data out, or pass it with --input$"):
        parse(text, "x.yaml")
    assert parse("a: &a [1, 2]\nb: [*a, *a]\n").data == {"a": [1, 2], "b": [[1, 2], [1, 2]]}  # a few: fine


def test_lists_nested_thousands_deep_are_an_error_not_a_recursion_error() -> None:
    with pytest.raises(SpecError) as caught:
        parse("a: " + "[" * 5000 + "]" * 5000 + "\n", "x.yaml")
    assert str(caught.value) == "x.yaml: nested too deeply to read (lists or mappings hundreds of levels deep)"


@attrs.frozen
class _Smtp:
    port: int = attrs.field(default=587, validator=[attrs.validators.ge(1), attrs.validators.le(65535)])


@attrs.frozen
class _Options:
    smtp: _Smtp = attrs.Factory(_Smtp)
    latency: float = 0.0


def test_an_error_from_a_plugin_is_moved_to_the_key_it_names() -> None:
    source = parse("fan_out:\n  - channel: email\n    options:\n      smtp:\n        port: 0\n      latncy: 1\n",
                   "p.yaml")
    path = ("fan_out", 0, "options")
    with pytest.raises(ConfigError) as caught:
        structure(_Options, source.at(path), where=format_path(path))
    # Two issues, each with its key path (no text parsed back): the first in the file is reported.
    assert caught.value.issues == (
        (("smtp", "port"), "'port' must be >= 1: 0"), (("latncy",), "unknown key (allowed: smtp, latency)"))
    assert str(source.relocate(caught.value, path)) == "p.yaml:5: fan_out[0].options.smtp.port: 'port' must be >= 1: 0"
    with pytest.raises(ConfigError) as caught:
        structure(_Options, {"latncy": 1}, where=format_path(path))
    assert str(source.relocate(caught.value, path)) == (
        "p.yaml:6: fan_out[0].options.latncy: unknown key (allowed: smtp, latency)")
    other = source.relocate(ConfigError("sms transport 'twilio': missing secret"), path)
    assert str(other) == "p.yaml:3: fan_out[0].options: sms transport 'twilio': missing secret"


def test_paths_format() -> None:
    assert format_path(("fan_out", 2, "options", "smtp", "port")) == "fan_out[2].options.smtp.port"


def test_an_empty_file_name_is_said_as_such() -> None:
    # `vow run ""` read the working directory: "error: is a directory, not a pipeline file", naming nothing.
    with pytest.raises(SpecError) as caught:
        read("")
    assert str(caught.value) == "no pipeline file given (the file name is empty)"


def test_a_character_yaml_does_not_take_is_an_error_at_its_line_not_a_traceback() -> None:
    # PyYAML checks the characters when the loader is made, outside the error handling: a NUL (a binary
    # file that is valid UTF-8) was a ReaderError traceback and exit code 1.
    with pytest.raises(SpecError) as caught:
        parse("version: 1\nname: a\x00b\n", "x.yaml")
    assert str(caught.value) == ("x.yaml:2: invalid YAML: the character #x0000 is not allowed (YAML takes printable "
                                 "characters, tabs and line breaks) (column 8)")


def test_a_file_of_too_many_values_is_refused_before_reading_them_all() -> None:
    # 200,000 values took half a minute to read on a busy machine (the YAML reader is pure Python),
    # and a megabyte of "a, " stands for 300,000 of them.
    with pytest.raises(SpecError) as caught:
        parse("version: 1\nitems: [" + "a, " * 200_000 + "]\n", "x.yaml")
    assert str(caught.value) == (
        "x.yaml:2: invalid YAML: more than 20,000 values (keys, values and list items); a pipeline file holds at "
        "most 20,000: pass large data with --input @file.json")
    assert len(parse("items: [" + "a, " * 5_000 + "]\n").data["items"]) == 5_000  # many: fine


def test_a_file_larger_than_a_pipeline_file_is_refused_without_reading_it_all(tmp_path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("version: 1\nname: " + "a" * 5_000_000 + "\n")
    with pytest.raises(SpecError) as caught:
        read(str(big))
    assert str(caught.value) == f"{big}: larger than 1,000,000 bytes, the most a pipeline file may be"
    with pytest.raises(SpecError) as caught:
        read("/dev/zero")  # endless: read as a whole, it filled the memory
    assert str(caught.value) == "/dev/zero: larger than 1,000,000 bytes, the most a pipeline file may be"


@pytest.mark.parametrize(("value", "expected"), [
    ("!!int nonsense", "'nonsense' tagged !!int is not a whole number"),  # was a ValueError traceback
    ("!!float nonsense", "'nonsense' tagged !!float is not a number"),  # a ValueError
    ("!!bool nonsense", "'nonsense' tagged !!bool is not true or false"),  # a KeyError
    ("!!timestamp nonsense", "'nonsense' tagged !!timestamp is not a date or time (such as 2025-06-01 or "
                             "2025-06-01T09:30:00Z)"),  # an AttributeError
])
def test_a_value_its_explicit_tag_does_not_fit_is_an_error_at_its_line(value: str, expected: str) -> None:
    for text, where in ((f"version: 1\ninput:\n  n: {value}\n", "x.yaml:3: input.n: "),
                        (f"version: 1\n{value}: 1\n", "x.yaml:2: ")):  # a value, and a key
        with pytest.raises(SpecError) as caught:
            parse(text, "x.yaml")
        assert str(caught.value) == f"{where}invalid YAML: {expected}"
