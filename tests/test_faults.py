"""Failure injection's hold: an attempt kept in flight until a file exists, not for a guessed time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from vow.config import structure
from vow.errors import ConfigError, TransientError
from vow.faults import Faults, with_faults
from vow.leaf import LeafContext
from vow.pipeline import load
from vow.pipeline.source import SpecError


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, payload: str, ctx: LeafContext) -> str:
        self.sent.append(payload)
        return "sent"


def test_an_attempt_is_held_until_the_file_exists_then_sent_once(tmp_path: Path) -> None:
    release = tmp_path / "release"
    target = Recorder()
    channel = with_faults(target, {"hold_until_file": str(release)})
    results: list[str] = []
    sending = threading.Thread(target=lambda: results.append(channel.send("hello", LeafContext(id="r/1.sms"))))
    sending.start()
    sending.join(0.2)  # not a wait for anything: however long, the call has no file to go on
    assert (sending.is_alive(), target.sent) == (True, [])

    release.touch()
    sending.join(60)
    assert (sending.is_alive(), target.sent, results) == (False, ["hello"], ["sent"])
    assert channel.send("again", LeafContext(id="r/1.sms", attempt=2)) == "sent"  # the file is there: no hold


def test_a_held_attempt_ends_at_its_deadline_with_a_timeout(tmp_path: Path) -> None:
    target = Recorder()
    channel = with_faults(target, {"hold_until_file": str(tmp_path / "never")})
    with pytest.raises(TransientError, match=r"^timed out: held until .*never exists \(attempt 3\)$") as caught:
        channel.send("hello", LeafContext(id="r/1.sms", attempt=3, deadline=time.time() - 1))
    assert (caught.value.code, target.sent) == ("timeout", [])


@pytest.mark.parametrize(("value", "problem"), [
    ("", "'hold_until_file' must name a file (a path, relative to the working directory of the process "
         "running the branch), got text ''"),
    (5, "expected text, got the number 5"),
])
def test_hold_until_file_must_name_a_file(value: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        structure(Faults, {"hold_until_file": value}, where="faults")
    assert str(caught.value) == f"faults.hold_until_file: {problem}"


def test_a_bad_hold_in_a_pipeline_names_its_file_line_and_key(tmp_path: Path, installed_plugins) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nname: p\nid: p/1\nfan_out:\n  - channel: slack\n    to: '#x'\n    body: hi\n"
                    "    faults: {hold_until_file: ' '}\n")
    with pytest.raises(SpecError) as caught:
        load(str(path), plugins=installed_plugins)
    assert str(caught.value).startswith(f"{path}:8: fan_out[0].faults.hold_until_file: 'hold_until_file' must name")
