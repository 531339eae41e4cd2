"""Text a provider sent back (an error message) is shown escaped: a newline or a terminal's escape sequence in
it cannot break vow's one line per branch, nor retitle, clear or recolour the terminal that shows it."""

from __future__ import annotations

from vow.testing import wait_until

FAILING = """\
version: 1
name: odd
id: odd/1
fan_out:
  - channel: slack
    to: "#orders"
    body: hi
    options: {latency: 0}
    faults: {fail_attempts: [1], error: permanent, message: "bad\\e]0;owned\\a\\nsecond line"}
"""
SHOWN = "bad\\x1b]0;owned\\x07\\nsecond line"


def test_an_error_with_control_characters_is_shown_escaped_by_run_show_and_ls(sandbox) -> None:
    # Before: the message went out as it was: `vow run` and `vow show` printed a second line, and on a terminal
    # ESC ] 0 ; ... BEL set its title (click strips colour codes from piped output, not these).
    sandbox.write("odd.yaml", FAILING)
    run = sandbox.run("run", "odd.yaml")
    assert run.returncode == 1, run.stderr
    show = sandbox.run("show", "odd/1")
    assert show.returncode == 0, show.stderr
    for out in (run.stdout, show.stdout):
        assert SHOWN in out, out
        assert not any(c in out for c in "\x1b\x07") and "second line" not in out.replace(SHOWN, "")
    assert len(show.stdout.splitlines()) == 2  # the run and its branch, a line each

    # A run id and a workflow's name given through the Python API may hold any text.
    stored = sandbox.python("-c", "from vow import Vow\n"
                                  "def wf(ctx):\n    return 1\n    yield\n"
                                  f"with Vow({sandbox.store!r}) as vow:\n"
                                  "    vow.register(wf, name='w\\x1b[2Jf')\n"
                                  "    vow.run('odd\\x1b]0;owned\\x07/2', 'w\\x1b[2Jf')\n")
    assert stored.returncode == 0, stored.stderr
    ls = sandbox.run("ls")
    assert ls.returncode == 0, ls.stderr
    assert "odd\\x1b]0;owned\\x07/2" in ls.stdout and "w\\x1b[2Jf" in ls.stdout
    assert not any(c in ls.stdout for c in "\x1b\x07")


def test_the_worker_log_shows_such_an_error_escaped_on_one_line(sandbox, start_worker) -> None:
    # Before: the worker's line about the failed run went out with the message's newline and escape sequences.
    worker = start_worker()
    sandbox.write("odd.yaml", FAILING)
    assert sandbox.run("run", "odd.yaml", "--detach").returncode == 0
    wait_until(lambda: any("run odd/1 rejected" in line for line in worker.lines), message="the run to fail",
               proc=worker.proc)
    worker.stop()
    line = next(line for line in worker.lines if "run odd/1 rejected" in line)
    assert line.endswith(f"slack: PermanentError: {SHOWN} (attempt 1)\n"), line
