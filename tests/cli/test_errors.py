"""Every mistake a user can make is one exact message (file, line, key path, what is allowed), exit code 2,
and nothing stored."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from vow.cli import cli
from vow.plugins import default_plugins

HEADER = """\
version: 1
name: order
id: "order/{{ input.order_id }}"
input:
  order_id: 7
  email: ada@example.com
"""
EMAIL = """\
  - channel: email
    to: "{{ input.email }}"
    subject: "Order {{ input.order_id }}"
    body: Thanks!
"""  # fan_out[0], lines 8-11 when nothing is inserted before fan_out


def pipeline(*branches: str, top: str = "") -> str:
    return HEADER + top + "fan_out:\n" + EMAIL + "".join(branches)


def deep(levels: int) -> str:
    """JSON (and YAML) lists nested ``levels`` deep."""
    return "[" * levels + "1" + "]" * levels


TOO_DEEP = ("nests lists and mappings more than 100 levels deep (at most 100 levels, the input mapping included); "
            "flatten it")

SMS_TWILIO = ('  - channel: sms\n    to: "+14155550100"\n    body: hi\n'
              '    options: {transport: twilio, from_number: "+14155550199"}\n')
RUN_ID_RULE = ("1-200 characters, no spaces, control characters or lone surrogates, no empty part between slashes: "
               "did an input come out empty?")
OWN_FORMS = ("a retry's back-off '{id}.backoff.{n}', a rate-limit wait '{id}.throttle.{n}.{m}', a ctx.patched "
             "marker '{run}.patched.{name}'")
OWN_FORM = (f"which has the form of vow's own bookkeeping ids ({OWN_FORMS}): no id may end in .backoff.N, "
            ".throttle.N.M or .patched.NAME")
EMAIL_FIELDS = ("channel, to, subject, body, data, options, id, for_each, retry, timeout, faults")

CASES = [
    ("syntax error", pipeline('  - channel: sms\n    to: "+14155550100\n    body: hi\n'), [],
     "order.yaml:15: invalid YAML: found unexpected end of stream while scanning a quoted scalar that starts on "
     "line 13, column 9"),
    ("duplicate key", pipeline("  - channel: slack\n    to: '#orders'\n    body: hi\n    to: '#sales'\n"), [],
     "order.yaml:15: fan_out[1].to: duplicate key (first given on line 13)"),
    ("unknown key", pipeline("  - channel: slack\n    to: '#orders'\n    body: hi\n    subjct: Order\n"), [],
     f"order.yaml:15: fan_out[1].subjct: unknown key (allowed: {EMAIL_FIELDS})"),
    ("unknown plugin", pipeline("  - channel: slack\n    to: '#orders'\n    body: hi\n",
                                "  - channel: emial\n    to: x\n"),
     [], "order.yaml:15: fan_out[2].channel: 'emial' is not installed (installed: {channels})"),
    ("unknown option", pipeline("  - channel: push\n    to: '{{ input.email }}'\n    body: hi\n    options:\n"
                                "      transport: pigeon\n"), [],
     "order.yaml:16: fan_out[1].options.transport: expected one of 'auto', 'fcm', 'apns', 'simulated', "
     "got text 'pigeon'"),
    ("unknown store", pipeline(top="store: mongodb://db/vow\n"), [],
     "order.yaml:7: store: 'mongodb://db/vow' names store 'mongodb', which is not installed (installed: {stores})"),
    ("wrong type", pipeline(top="defaults:\n  timeout: soon\n"), [],
     "order.yaml:8: defaults.timeout: 'soon' is not a duration: write a number of seconds, or a number and a "
     "unit (30s, 5m, 1h30m, 1d)"),
    ("run timeout not a duration", pipeline(top="timeout: soon\n"), [],
     "order.yaml:7: timeout: 'soon' is not a duration: write a number of seconds, or a number and a unit (30s, 5m, "
     "1h30m, 1d)"),
    # A whole number past a float's range (400 digits) was an OverflowError traceback, exit 1.
    ("a run timeout too large for a number of seconds", pipeline(top="timeout: " + "9" * 400 + "\n"), [],
     "order.yaml:7: timeout: too large a number of seconds (a whole number of 400 digits)"),
    ("a gate timeout too large for a number of seconds",
     pipeline(top="gate: {promise: approval, timeout: " + "9" * 400 + "}\n"), [],
     "order.yaml:7: gate.timeout: too large a number of seconds (a whole number of 400 digits)"),
    ("negative run timeout", pipeline(top="timeout: -1\n"), [],
     "order.yaml:7: timeout: must be more than 0 seconds, got -1"),
    # .inf and .nan are YAML numbers: every number of seconds is refused as the run's timeout is
    # (.nan passes "> 0", and a rate limit of .nan would be no limit at all).
    ("infinite retry delay", pipeline(top="defaults:\n  retry: {policy: exponential, max_delay: .inf}\n"), [],
     "order.yaml:8: defaults.retry.max_delay: expected a finite number of seconds, got inf"),
    ("rate limit of nan", pipeline(top="defaults:\n  rate_limit: {per_second: .nan}\n"), [],
     "order.yaml:8: defaults.rate_limit.per_second: expected a finite number of calls per second, got nan"),
    ("wrong type in a list", pipeline(top="gate: [approval]\n"), [],
     "order.yaml:7: gate: expected a mapping of keys (promise, timeout), got a list"),
    ("missing secret", pipeline(SMS_TWILIO), [],
     "order.yaml:15: fan_out[1].options: sms transport 'twilio': missing secret: set the environment variable "
     "TWILIO_ACCOUNT_SID"),
    ("bad template", pipeline('  - channel: slack\n    to: "#orders"\n    body: "New order {{ input.order_id }"\n'), [],
     "order.yaml:14: fan_out[1].body: template error: unexpected '}'"),
    ("undefined in a template", pipeline('  - channel: sms\n    to: "{{ input.phone }}"\n    body: hi\n'), [],
     "order.yaml:13: fan_out[1].to: input.phone is not defined (input has: email, order_id)"),
    # A size from the input multiplied text unchecked: the planner made the whole string (given ten
    # billion, it died trying, with every run in its process). Five million stays safe to make without the check.
    ("a template making too much",
     pipeline('  - channel: slack\n    to: "#orders"\n    body: "{{ \'=\' * input.n }}"\n'), ["--set", "n=5000000"],
     "order.yaml:14: fan_out[1].body: template error: repeating a value of length 1 5,000,000 times would make "
     "5,000,000 characters; a template makes at most 1,000,000 (check the value it was given)"),
    ("bad recipient", pipeline('  - channel: sms\n    to: "{{ input.phone }}"\n    body: hi\n'), ["--set",
                                                                                                  "phone=555-1234"],
     "order.yaml:13: fan_out[1].to: sms message.to: '555-1234' is not a phone number in E.164: '+' then 8-15 "
     "digits with the country code first, no spaces or dashes, e.g. +14155550123"),
    ("bad input JSON", pipeline(), ["--input", '{"order_id": 1'],
     "--input: not valid JSON (Expecting ',' delimiter: line 1 column 15 (char 14))"),
    ("input not an object", pipeline(), ["--input", "[1, 2]"],
     '--input: expected a JSON object such as {"order_id": 1042}, got list'),
    ("bad --set", pipeline(), ["--set", "order_id"],
     "--set: expected key=value (a dotted key such as customer.email=ada@example.com), got 'order_id'"),
    ("input nested too deeply", pipeline(), ["--input", f'{{"deep": {deep(400)}}}'], f"--input: 'deep' {TOO_DEEP}"),
    ("input too deep to read", pipeline(), ["--input", f'{{"deep": {deep(50_000)}}}'],  # 3.13 reads 5,000
     "--input: nested too deeply to read (lists or mappings hundreds of levels deep)"),
    ("--set nested too deeply", pipeline(), ["--set", f"deep={deep(400)}"], f"--set: 'deep' {TOO_DEEP}"),
    # Python reads at most 4,300 digits of a whole number: more was a ValueError traceback (exit 1).
    ("a number too long to read in --set", pipeline(), ["--set", "order_id=" + "1" * 5000],
     "--set order_id: a whole number of more than 4,300 digits cannot be read; give it as text (in quotes)"),
    ("a number too long to read in --input", pipeline(), ["--input", '{"order_id": ' + "1" * 5000 + "}"],
     "--input: a whole number of more than 4,300 digits cannot be read; give it as text (in quotes)"),
    ("a number too long to read in the file", pipeline(top="description: x\ntimeout: " + "1" * 5000 + "\n"), [],
     "order.yaml:8: timeout: invalid YAML: a whole number of more than 4,300 digits cannot be read; give it as "
     "text (in quotes)"),
    # Python's decoder takes NaN and Infinity, and reads 1e999 as infinity: none is JSON, and a run
    # was planned with them (the stored input then held Infinity, which no other JSON reader takes).
    ("NaN in --input", pipeline(), ["--input", '{"order_id": NaN}'], "--input: not valid JSON (NaN is not JSON)"),
    ("a number too large in --input", pipeline(), ["--input", '{"order_id": 1e999}'],
     "--input: 1e999 is too large a number (it would be infinity); give it as text"),
    ("a number too large in --set", pipeline(), ["--set", "order_id=1e999"],
     "--set order_id: 1e999 is too large a number (it would be infinity); give it as text"),
    ("input file missing", pipeline(), ["--input", "@event.json"], "--input @event.json: no such file"),
    # Was "cannot read it ([Errno 21] Is a directory: 3)": the 3 is the descriptor it was opened as.
    ("input file is a directory", pipeline(), ["--input", "@."], "--input @.: is a directory, not a JSON file"),
    # Python's decoder keeps the last of two equal keys: the first value was dropped without a word
    # (a pipeline file's duplicate key is an error).
    ("duplicate key in --input", pipeline(), ["--input", '{"order_id": 1, "email": "a@b.cd", "order_id": 2}'],
     "--input: not valid JSON (the key 'order_id' is given twice in one object)"),
    ("duplicate key in a --set value", pipeline(), ["--set", 'order_id={"a": 1, "a": 2}'],
     "--set order_id: not valid JSON (the key 'a' is given twice in one object)"),
    ("empty input in the run id", pipeline(), ["--set", "order_id="],
     f"order.yaml:3: id: 'order/' is not a usable run id ({RUN_ID_RULE})"),
    # A byte that is not UTF-8 on the command line arrives as a lone surrogate: it cannot be stored as
    # text, so it was a UnicodeEncodeError traceback from the store (exit 1), after the store was made.
    ("lone surrogate in the run id", pipeline(), ["--set", "order_id=a\udc80b"],
     f"order.yaml:3: id: 'order/a\\udc80b' is not a usable run id ({RUN_ID_RULE})"),
    ("lone surrogate in --id", pipeline(), ["--id", "a\udc80b"],
     f"--id: 'a\\udc80b' is not a usable run id ({RUN_ID_RULE})"),
    ("control character in the run id", pipeline(), ["--set", "order_id=a\x1b[2Jb"],
     f"order.yaml:3: id: 'order/a\\x1b[2Jb' is not a usable run id ({RUN_ID_RULE})"),
    # YAML reads 2025-06-01 as a date, !!binary as bytes and !!set as a set: none is JSON, so vow validate
    # said ok and vow run made the store, then stopped: "arguments of workflow vow.pipeline cannot be stored".
    ("a date in the input", HEADER.replace("  email: ada@example.com\n", "  email: ada@example.com\n"
                                           "  day: 2025-06-01\n") + "fan_out:\n" + EMAIL, [],
     "order.yaml:7: input.day: the date 2025-06-01 cannot be stored with the run (a value is text, a number, "
     "true/false, null, a list or a mapping); quote it to keep it as text: \"2025-06-01\""),
    ("binary in the input", HEADER.replace("  email: ada@example.com\n", "  email: ada@example.com\n"
                                           "  blob: !!binary aGk=\n") + "fan_out:\n" + EMAIL, [],
     "order.yaml:7: input.blob: binary data (bytes) cannot be stored with the run (a value is text, a number, "
     "true/false, null, a list or a mapping)"),
    ("a mapping key that is not text", HEADER.replace("  email: ada@example.com\n", "  email: ada@example.com\n"
                                                      "  sizes: {1: small, b: big}\n") + "fan_out:\n" + EMAIL, [],
     "order.yaml:7: input.sizes[1]: the key 1 is not text but other keys of its mapping are, so it cannot be stored "
     "with the run; quote it: \"1\""),
    ("a template that gives no JSON value",
     pipeline('  - channel: email\n    id: copy\n    to: a@example.com\n    body: hi\n'
              '    data: {keys: "{{ input.keys() }}"}\n'), [],
     "order.yaml:16: fan_out[1].data.keys: a dict_keys (dict_keys(['order_id', 'email'])) cannot be stored with "
     "the run (a value is text, a number, true/false, null, a list or a mapping)"),
    ("faults that fail nothing",
     pipeline('  - channel: slack\n    to: "#orders"\n    body: hi\n    faults: {status: 400}\n'),
     [], "order.yaml:15: fan_out[1].faults: status given, but no attempt is chosen to fail: add fail_attempts (such "
         "as [1]) or rate (a fraction of attempts, such as 0.3)"),
    ("same branch twice", pipeline(EMAIL), [],
     "order.yaml:12: fan_out[1]: branch id 'email' is used twice (fan_out[0] and fan_out[1]); give each branch its "
     "own id with id:"),
    # vow's own timers and markers take these ids without asking: vow validate said ok and vow run stored the
    # run, which then failed at the branch with DuplicateIdError (exit 1).
    ("a branch id in the form of a back-off timer",
     pipeline('  - channel: slack\n    id: x.backoff.2\n    to: "#orders"\n    body: hi\n'), [],
     f"order.yaml:13: fan_out[1].id: branch id 'x.backoff.2' makes promise 'order/7.x.backoff.2', {OWN_FORM}; "
     f"give the branch another id"),
    ("a branch id template giving a rate-limit wait's form",
     pipeline('  - channel: slack\n    for_each: [3, 4]\n    id: "x.throttle.{{ item }}.1"\n    to: "#orders"\n'
              '    body: hi\n'), [],
     f"order.yaml:14: fan_out[1].id: branch id 'x.throttle.3.1' makes promise 'order/7.x.throttle.3.1', "
     f"{OWN_FORM}; give the branch another id (for_each item 0: 3)"),
    ("a branch id that the run id makes a back-off timer",
     pipeline('  - channel: slack\n    id: "2"\n    to: "#orders"\n    body: hi\n'), ["--set", "order_id=7.backoff"],
     f"order.yaml:13: fan_out[1].id: branch id '2' makes promise 'order/7.backoff.2', {OWN_FORM}; "
     f"give the branch another id"),
    ("a gate promise in the form of a back-off timer", pipeline(top="gate: {promise: ok.backoff.1}\n"), [],
     f"order.yaml:7: gate.promise: promise name 'ok.backoff.1' makes promise 'order/7.ok.backoff.1', {OWN_FORM}; "
     f"give the gate another promise name"),
    ("a run id whose steps take a patch marker's form", pipeline(), ["--set", "order_id=7.patched"],
     f"order.yaml:3: id: 'order/7.patched' is not a usable run id: its step 'order/7.patched.started' would "
     f"have the form of vow's own bookkeeping ids ({OWN_FORMS}); a run id cannot end in .patched"),
]


@pytest.mark.parametrize("text, args, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_mistake_is_one_exact_message_with_exit_2_and_nothing_stored(text, args, expected, tmp_path,
                                                                          monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    for var in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY_SECRET"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "order.yaml").write_text(text)
    store = tmp_path / "vow.sqlite"
    result = CliRunner().invoke(cli, ["run", "order.yaml", "--store", f"sqlite:{store}", *args])
    installed = {"{channels}": default_plugins().channels.names(), "{stores}": default_plugins().stores.names()}
    for placeholder, names in installed.items():
        expected = expected.replace(placeholder, ", ".join(names))
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    assert result.stderr == f"error: {expected}\n"
    assert not store.exists()


def test_validate_refuses_an_id_in_the_form_of_vows_own_timers_as_run_does(tmp_path, monkeypatch) -> None:
    """Before, vow validate said ok for a branch named x.backoff.2; vow run then failed the run at that branch."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    (tmp_path / "order.yaml").write_text(pipeline('  - channel: slack\n    id: x.backoff.2\n    to: "#orders"\n'
                                                  '    body: hi\n'))
    result = CliRunner().invoke(cli, ["validate", "order.yaml"])
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    assert result.stderr == (f"error: order.yaml:13: fan_out[1].id: branch id 'x.backoff.2' makes promise "
                             f"'order/7.x.backoff.2', {OWN_FORM}; give the branch another id\n")
    result = CliRunner().invoke(cli, ["validate", "order.yaml", "--id", "order/x.patched"])
    assert result.stderr.startswith("error: --id: 'order/x.patched' is not a usable run id: its step "), result.output


def test_input_nested_too_deeply_is_refused_by_validate_and_run_before_a_store_is_made(tmp_path,
                                                                                         monkeypatch) -> None:
    # 400 levels could be read but not stored: vow validate said ok, and vow run created the store
    # and then stopped with an EncodeError traceback and exit 1.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    store = tmp_path / "vow.sqlite"
    (tmp_path / "order.yaml").write_text(HEADER.replace("  email: ada@example.com\n",
                                                        f"  email: ada@example.com\n  deep: {deep(400)}\n")
                                         + "fan_out:\n" + EMAIL)
    for command in (["validate"], ["run", "--store", f"sqlite:{store}"]):
        result = CliRunner().invoke(cli, [*command, "order.yaml"])
        assert (result.exit_code, result.stdout) == (2, ""), result.output
        assert result.stderr == f"error: order.yaml:7: input.deep: {TOO_DEEP}\n"
        assert not store.exists()
    # The input mapping and 99 levels in it: at the limit, stored and run.
    (tmp_path / "order.yaml").write_text(pipeline())
    at_limit = ["order.yaml", "--input", f'{{"deep": {deep(99)}}}']
    assert CliRunner().invoke(cli, ["validate", *at_limit]).exit_code == 0
    result = CliRunner().invoke(cli, ["run", *at_limit, "--store", f"sqlite:{store}"])
    assert result.exit_code == 0, result.output


def test_a_value_that_cannot_be_stored_is_one_line_and_exit_2_not_a_traceback(tmp_path, monkeypatch) -> None:
    # Should a value too deep to store get past the pipeline's checks, EncodeError is a user error.
    from vow.pipeline import inputs, plan

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VOW_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.setattr(inputs, "check_depth", lambda data, label: None)
    monkeypatch.setattr(plan, "check_depth", lambda data, label: None)
    (tmp_path / "order.yaml").write_text(pipeline())
    result = CliRunner().invoke(cli, ["run", "order.yaml", "--store", f"sqlite:{tmp_path / 'vow.sqlite'}",
                                      "--input", f'{{"deep": {deep(400)}}}'])
    assert result.exit_code == 2, result.output
    assert result.stderr == ("error: arguments of workflow vow.pipeline (order/7) cannot be stored: it is nested too "
                             "deeply for JSON (a structure that contains itself, or thousands of levels); flatten it\n")


def test_a_missing_file_and_the_issue_example_in_a_real_process(sandbox) -> None:
    missing = sandbox.run("run", "nope.yaml")
    assert (missing.returncode, missing.stdout, missing.stderr) == (2, "", "error: nope.yaml: no such file\n")

    sandbox.write("order.yaml", pipeline("  - channel: slack\n    to: '#orders'\n    body: hi\n",
                                         "  - channel: emial\n    to: x\n"))
    result = sandbox.run("run", "order.yaml")
    channels = ", ".join(default_plugins().channels.names())
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"error: order.yaml:15: fan_out[2].channel: 'emial' is not installed "
                             f"(installed: {channels})\n")
    assert sandbox.run("validate", "order.yaml").stderr == result.stderr
    assert not sandbox.store_file.exists()


def test_a_fifo_is_read_when_a_process_writes_to_it_and_refused_at_once_when_none_does(sandbox) -> None:
    # Opened as a file, a FIFO nobody writes to waited for a writer for ever: `vow validate` hung.
    os.mkfifo(sandbox.cwd / "order.yaml")
    done = sandbox.run("validate", "order.yaml", timeout=30)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: order.yaml: is a FIFO (named pipe) that no process is writing to: nothing to read\n"
    # A pipe with a writer is read, as `vow validate <(cat order.yaml)` gives one.
    read_end, write_end = os.pipe()
    os.write(write_end, pipeline().encode())
    os.close(write_end)
    try:
        done = subprocess.run([sys.executable, "-m", "vow", "validate", f"/dev/fd/{read_end}"], pass_fds=(read_end,),
                              cwd=sandbox.cwd, env={**os.environ, **sandbox.env}, capture_output=True, text=True,
                              timeout=60)
    finally:
        os.close(read_end)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"ok: /dev/fd/{read_end}: run order/7 fans out to 1 branch: email (email)\n"


def test_an_input_file_that_is_too_large_or_a_fifo_without_a_writer_is_one_line_and_exit_2(sandbox) -> None:
    # `--input @FILE` was read whole, however large (/dev/zero filled the memory), and a FIFO nobody
    # writes to waited for ever.
    sandbox.write("order.yaml", pipeline())
    sandbox.write("big.json", '{"order_id": "' + "1" * 10_000_001 + '"}')
    done = sandbox.run("validate", "order.yaml", "--input", "@big.json")
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == "error: --input @big.json: larger than 10,000,000 bytes, the most an input file may be\n"
    os.mkfifo(sandbox.cwd / "event.json")
    done = sandbox.run("validate", "order.yaml", "--input", "@event.json", timeout=30)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("error: --input @event.json: is a FIFO (named pipe) that no process is writing to: nothing "
                           "to read\n")


def test_validate_checks_without_running_or_storing(sandbox) -> None:
    sandbox.write("order.yaml", pipeline(top="gate: {promise: approval}\n"))
    result = sandbox.run("validate", "order.yaml", "--set", "order_id=9")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ok: order.yaml: run order/9 fans out to 1 branch: email (email)",
        "    it first waits for order/9.approval (vow resolve order/9.approval VALUE)",
    ]
    assert not sandbox.store_file.exists()


@pytest.mark.parametrize("args", [["ls"], ["show", "notify/1"], ["run", "order.yaml"], ["resume", "--all"],
                                  ["resolve", "x.approval", "yes"]])
def test_a_damaged_store_file_is_one_line_and_exit_2_for_every_command(sandbox, args: list[str]) -> None:
    sandbox.write("order.yaml", pipeline())
    sandbox.store_file.write_bytes(b"this is not a database" * 100)
    done = sandbox.run(*args)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == (f"error: SQLite store {sandbox.store_file}: not a SQLite database (wrong path, or a "
                           "damaged file)\n")


@pytest.mark.parametrize("kind", ["FIFO (named pipe)", "character device"])
def test_a_store_path_that_is_no_regular_file_says_what_it_is(sandbox, kind: str) -> None:
    # Was "error: SQLite store /dev/null: disk I/O error" (SQLite's word for it), which names no cause.
    store = "/dev/null"
    if kind.startswith("FIFO"):
        store = str(sandbox.cwd / "store.sqlite")
        os.mkfifo(store)
    for args in (["ls"], ["run", sandbox.write("order.yaml", pipeline())]):
        done = sandbox.run(*args, "--store", f"sqlite:{store}")
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert done.stderr == f"error: SQLite store {store}: is a {kind}, not a database file\n"


def test_a_store_location_that_cannot_be_made_is_one_line_and_exit_2(sandbox) -> None:
    (sandbox.cwd / "blocker").write_text("a file where a directory should be")
    sandbox.write("order.yaml", pipeline())
    done = sandbox.run("run", "order.yaml", "--store", "sqlite:blocker/vow.sqlite")
    assert done.returncode == 2 and done.stdout == "", done.stderr
    where = sandbox.cwd / "blocker" / "vow.sqlite"
    assert done.stderr == f"error: store 'sqlite:blocker/vow.sqlite': cannot be opened: Not a directory ({where})\n"


@pytest.mark.parametrize("args", [
    ["ls"], ["show", "order/1"], ["resolve", "order/1.x", "1"], ["reject", "order/1.x", "no"], ["cancel", "order/1"],
    ["resume", "order/1"], ["retry", "order/1"], ["fork", "order/1", "--from", "order/1.1"],
    ["prune", "--older-than", "1d"], ["schedule", "ls"], ["schedule", "rm", "nightly"], ["ui"],
])
@pytest.mark.parametrize("given", [True, False])
def test_a_command_that_reads_runs_makes_no_store_where_none_is(sandbox, args: list[str], given: bool) -> None:
    # A mistyped --store path had made an empty store there, folders and all, then said "no runs".
    store = sandbox.cwd / "typo" / "vow.sqlite"
    if not given:
        del sandbox.env["VOW_STORE"]  # the default store, .vow/vow.sqlite
    done = sandbox.run(*args, *(["--store", f"sqlite:{store}"] if given else []), timeout=60)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    if given:
        assert done.stderr == f"error: no store at {store}: the file does not exist; check --store or $VOW_STORE " \
                              "(vow run and vow worker make a new store)\n"
    else:
        assert done.stderr.startswith("error: no store at .vow/vow.sqlite: nothing has run here yet")
    assert not (sandbox.cwd / "typo").exists() and not (sandbox.cwd / ".vow").exists()


@pytest.mark.parametrize("url", ["sqlite:", "sqlite://"])  # as VOW_STORE=sqlite:$STORE_PATH with the variable unset
@pytest.mark.parametrize("args", [["ls"], ["show", "order/1"], ["schedule", "ls"]])
def test_a_sqlite_url_without_a_path_makes_no_store_for_a_reading_command(sandbox, args: list[str], url: str) -> None:
    # The URL names the default file, which the check for a store that is there passed over: an empty store was
    # made at .vow/vow.sqlite, folder and all, and `vow ls` said "no runs in sqlite:///.../.vow/vow.sqlite".
    done = sandbox.run(*args, "--store", url)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == ("error: no store at .vow/vow.sqlite: the file does not exist; check --store or $VOW_STORE "
                           "(vow run and vow worker make a new store)\n")
    assert not (sandbox.cwd / ".vow").exists()


@pytest.mark.parametrize("args", [["ls"], ["worker"]])
@pytest.mark.parametrize("url, expected", [
    # An empty URL was reported as the default URL, which nobody gave; a SQLite URL with a host was
    # the relative path host/x.sqlite, made (folders and all) by the commands that make a store.
    ("", "error: the store URL is empty: give one (sqlite:PATH, memory:, postgresql://HOST/DB, or another "
         "installed store), or give none for the default, sqlite:.vow/vow.sqlite"),
    ("sqlite://host/x.sqlite",
     "error: store URL 'sqlite://host/x.sqlite' names a host ('host'), and a SQLite store is a local file: write "
     "sqlite:relative/path.sqlite, sqlite:/absolute/path.sqlite, sqlite:///absolute/path.sqlite, or a bare path"),
])
def test_an_empty_or_hosted_store_url_is_one_line_and_exit_2(sandbox, args: list[str], url: str, expected: str) -> None:
    done = sandbox.run(*args, "--store", url, timeout=30)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.splitlines() == [expected]
    assert not (sandbox.cwd / "host").exists() and not (sandbox.cwd / ".vow").exists()


@pytest.mark.parametrize("args, expected", [
    # nan passed the range check (every comparison is false), and a wait of nan returns at once: the
    # worker claimed in a loop without pause, a core at 100 % on the store. inf and 1e10 were a
    # traceback (OverflowError: timestamp out of range for platform time_t) once the store was made.
    (["worker", "--poll", "nan"], "Invalid value for '--poll': expected a finite number of seconds, got nan"),
    (["worker", "--poll", "inf"], "Invalid value for '--poll': inf is not in the range 0.01<=x<=3153600000.0."),
    (["worker", "--poll", "1e10"], "Invalid value for '--poll': 10000000000.0 is not in the range "
                                   "0.01<=x<=3153600000.0."),
])
def test_a_bad_number_on_the_command_line_is_a_usage_error_before_the_store_is_made(sandbox, args, expected) -> None:
    done = sandbox.run(*args, timeout=30)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.splitlines()[-1] == f"Error: {expected}"
    assert not sandbox.store_file.exists()


def test_a_limit_larger_than_any_store_lists_every_run(sandbox) -> None:
    # An OverflowError traceback (Python int too large to convert to SQLite INTEGER), exit 1.
    sandbox.write("order.yaml", pipeline())
    assert sandbox.run("run", "order.yaml").returncode == 0
    done = sandbox.run("ls", "--limit", "9" * 30)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["ID", "order/7"]


BAD_BYTE = "a\udc80b"  # the argument a\x80b: Python reads a byte that is not UTF-8 as a lone surrogate


@pytest.mark.parametrize("args, name", [
    (["show", BAD_BYTE], "ID"), (["resolve", BAD_BYTE, "yes"], "ID"), (["reject", BAD_BYTE, "no"], "ID"),
    (["cancel", BAD_BYTE], "ID"), (["resume", BAD_BYTE], "[ID]"), (["retry", BAD_BYTE], "RUN"),
    (["fork", BAD_BYTE, "--from", "x"], "RUN"), (["fork", "r", "--from", BAD_BYTE], "--from"),
    (["retry", "r", "--id", BAD_BYTE], "--id"), (["ls", "--name", BAD_BYTE], "--name"),
])
def test_an_id_that_is_not_utf8_is_a_usage_error_not_a_traceback(sandbox, args, name) -> None:
    # Each was a UnicodeEncodeError traceback from the store's first read (exit 1), after the store was made.
    done = sandbox.run(*args)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.splitlines()[-1] == (f"Error: Invalid value for '{name}': 'a\\udc80b' is not UTF-8 text "
                                            "(character 2 is a byte that is not UTF-8)")
    assert not sandbox.store_file.exists()


@pytest.mark.parametrize("args", [["validate", "ORDER"], ["run", "ORDER"], ["ls"]])
def test_a_working_directory_that_was_deleted_is_one_line_and_exit_2(sandbox, args: list[str]) -> None:
    # `vow validate /abs/order.yaml` in a deleted directory was a FileNotFoundError traceback from
    # os.getcwd() (exit 1); `vow ls` said "no store at .vow/vow.sqlite", as if nothing had run.
    order = sandbox.cwd / "order.yaml"
    order.write_text(pipeline())
    (sandbox.cwd / "gone").mkdir()
    command = " ".join(str(order) if arg == "ORDER" else arg for arg in args)
    env = {k: v for k, v in {**os.environ, **sandbox.env}.items() if k != "VOW_STORE"}  # the default store
    done = subprocess.run(["sh", "-c", f'cd gone && rmdir ../gone && exec "{sys.executable}" -m vow {command}'],
                          cwd=sandbox.cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("error: the working directory cannot be read (No such file or directory): was it "
                           "deleted? cd to a directory that exists\n")


def test_a_store_path_under_the_home_directory_is_found_by_the_commands_that_read_runs(sandbox) -> None:
    # The SQLite store expands ~ and vow run made ~/runs/vow.sqlite; vow ls, show and the others checked
    # whether the path "~/runs/vow.sqlite" existed as written and said "no store at ~/runs/vow.sqlite".
    sandbox.write("order.yaml", pipeline())
    home = sandbox.cwd / "home with space"
    sandbox.env["HOME"] = str(home)
    store = "sqlite:~/runs/vow.sqlite"
    assert sandbox.run("run", "order.yaml", "--store", store).returncode == 0
    assert (home / "runs" / "vow.sqlite").exists()
    listed = sandbox.run("ls", "--store", store)
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.splitlines()[1].startswith("order/7 ")
    shown = sandbox.run("show", "order/7", "--store", store)
    assert (shown.returncode, shown.stderr) == (0, "")
