"""Leaves that are not plain functions (a partial, a callable object, a bound method) resume after a
crash: the name stored for each must be the one another process gives it again."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from tests.support import python
from vow import Context, LeafContext, Vow

APP = textwrap.dedent('''
    import functools, os, sys
    from vow import Vow

    store, log, crash = sys.argv[1:4]

    def record(name):
        with open(log, "a") as f:
            f.write(name + "\\n")

    def send(ctx, channel, *, greeting):
        record("partial")
        return f"{greeting} by {channel}"

    class Sender:
        def __call__(self, ctx, channel):
            record("object")
            return f"sent by {channel}"

        def method(self, ctx, channel):
            record("method")
            return f"method by {channel}"

    def last(ctx):
        if os.path.exists(crash):
            os.remove(crash)
            os._exit(9)  # the process dies here, as under kill -9: the three steps above are stored
        record("last")
        return "done"

    def notify(ctx):
        a = yield ctx.run(functools.partial(send, greeting="hello"), "email")
        b = yield ctx.run(Sender(), "sms")
        c = yield ctx.run(Sender().method, "push")
        d = yield ctx.run(last)
        return [a, b, c, d]

    vow = Vow(store=store)
    print(vow.run("notify/1", notify))
    vow.close()
''')


def test_partial_object_and_method_leaves_resume_in_another_process(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    store, log, crash = f"sqlite:{tmp_path / 'vow.sqlite'}", tmp_path / "sink.log", tmp_path / "crash"
    crash.touch()
    first = python(app, store, log, crash)
    assert first.returncode == 9, first.stderr
    assert log.read_text().split() == ["partial", "object", "method"]

    second = python(app, store, log, crash)
    assert second.returncode == 0, second.stderr
    assert "['hello by email', 'sent by sms', 'method by push', 'done']" in second.stdout
    assert log.read_text().split() == ["partial", "object", "method", "last"]  # none of the three again


UPGRADE_APP = textwrap.dedent('''
    import dataclasses, os, sys
    import vow.client
    from vow import Vow

    store, log, crash = sys.argv[1:4]
    if os.environ.get("AS_BEFORE"):  # name objects as vow 0.2.0 did: module (as imported) and repr
        from vow.naming import main_module_name
        named = vow.client.function_name
        vow.client.function_name = lambda fn: named(fn) if hasattr(fn, "__code__") else f"{main_module_name()}.{fn!r}"

    @dataclasses.dataclass(frozen=True)
    class Sms:
        sender: str

        def __call__(self, ctx, text):
            with open(log, "a") as f:
                f.write("sms\\n")
            return f"{text} from {self.sender}"

    def last(ctx):
        if os.path.exists(crash):
            os.remove(crash)
            os._exit(9)
        return "done"

    def notify(ctx):
        sent = yield ctx.run(Sms("shop"), "hello")
        return [sent, (yield ctx.run(last))]

    vow = Vow(store=store)
    print(vow.run("upgrade/1", notify))
    vow.close()
''')


def test_a_run_that_stored_an_object_leaf_under_its_repr_resumes_after_the_upgrade(tmp_path: Path) -> None:
    """vow 0.2.0 stored a callable object under ``module.Sms(sender='shop')``, which is stable for a
    frozen dataclass; a run left pending by it resumes under today's name, ``module.Sms``."""
    app = tmp_path / "app.py"
    app.write_text(UPGRADE_APP)
    store, log, crash = f"sqlite:{tmp_path / 'vow.sqlite'}", tmp_path / "sink.log", tmp_path / "crash"
    crash.touch()
    before = python(app, store, log, crash, env={"AS_BEFORE": "1"})
    assert before.returncode == 9, before.stderr
    after = python(app, store, log, crash)
    assert after.returncode == 0, after.stderr
    assert "['hello from shop', 'done']" in after.stdout
    assert log.read_text().split() == ["sms"]  # not sent again


@dataclasses.dataclass
class Channel:
    """A leaf that is an object holding its settings: equal by value, so not hashable."""

    name: str

    def __call__(self, ctx: LeafContext, message: str) -> str:
        return f"{message} by {self.name}"

    def send(self, ctx: LeafContext, message: str) -> str:
        return f"{message} sent by {self.name}"


def test_an_unhashable_callable_object_is_a_leaf_like_any_other() -> None:
    def notify(ctx: Context):
        first = yield ctx.run(Channel("sms"), "hi")
        second = yield ctx.run(Channel("push").send, "hello")
        return [first, second]

    vow = Vow(store="memory:")
    try:
        assert vow.run("unhashable", notify) == ["hi by sms", "hello sent by push"]
        assert [r.func for r in vow.store.tree("unhashable") if r.id != "unhashable"] == [
            f"{__name__}.Channel", f"{__name__}.Channel.send"]
    finally:
        vow.close()
