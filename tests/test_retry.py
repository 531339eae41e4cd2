"""Retries: never silent (a warning a user sees with no logging set up), and spread by jitter."""

from __future__ import annotations

import random
import textwrap
import time
from calendar import timegm

import pytest

from tests.support import python
from vow import Context, Exponential, LeafContext, TransientError, Vow
from vow import retry as retry_module
from vow.errors import ConfigError, PermanentError, RateLimitError
from vow.events import EventKind
from vow.http import error_for_status, parse_retry_after
from vow.retry import DEFAULT_LEAF_POLICY as DEFAULT_POLICY
from vow.retry import Constant, Linear, next_delay

SCRIPT = textwrap.dedent("""
    from vow import Constant, Context, LeafContext, TransientError, Vow

    def flaky(ctx: LeafContext) -> int:
        if ctx.attempt == 1:
            raise TransientError("service unavailable")
        return ctx.attempt

    def wf(ctx: Context):
        return (yield ctx.run(flaky).options(retry=Constant(delay=0.01)))

    with Vow(store="memory:") as vow:
        print(vow.run("r/1", wf))
""")


def test_a_retry_is_printed_to_stderr_without_any_logging_configuration() -> None:
    done = python("-c", SCRIPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    assert done.stderr.splitlines() == [
        "r/1.1 failed on attempt 1 (TransientError: service unavailable); retrying in 0.01s"]


def test_the_retry_log_can_be_silenced_like_any_logger() -> None:
    quiet = "import logging; logging.getLogger('vow.retry').setLevel(logging.ERROR)\n" + SCRIPT
    done = python("-c", quiet)
    assert done.returncode == 0 and done.stderr == "", done.stderr


# -- jitter: branches that fail together do not retry together ----------------------------------



@pytest.fixture
def seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry_module, "random", random.Random(17))


def draws(policy, attempt: int, n: int = 400) -> list[float]:
    return [policy.delay_for(attempt) for _ in range(n)]


def test_full_jitter_is_the_default_and_spreads_over_the_whole_delay(seeded) -> None:
    assert Exponential().jitter == "full"
    delays = draws(Exponential(delay=1.0, max_delay=60.0), attempt=3)  # the exponential delay is 4s
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert min(delays) < 0.5 and max(delays) > 3.5  # the old jitter kept every delay within 10% of 4s


def test_decorrelated_jitter_draws_between_the_base_and_three_times_the_delay_before(seeded) -> None:
    policy = Exponential(delay=1.0, max_delay=20.0, jitter="decorrelated")
    first = draws(policy, attempt=1)
    assert all(1.0 <= d <= 3.0 for d in first) and max(first) - min(first) > 1.5
    third = draws(policy, attempt=3)
    assert all(1.0 <= d <= 20.0 for d in third) and max(third) > 9.0  # it grows, up to 27s less the cap
    assert all(d <= 20.0 for d in draws(policy, attempt=7))  # capped by max_delay


def test_no_jitter_and_the_old_fraction_still_work(seeded) -> None:
    assert set(draws(Exponential(delay=1.0, jitter="none"), attempt=3)) == {4.0}
    assert set(draws(Exponential(delay=1.0, jitter=0), attempt=3)) == {4.0}
    assert all(3.6 <= d <= 4.0 for d in draws(Exponential(delay=1.0, jitter=0.1), attempt=3))
    assert set(draws(Linear(delay=1.0), attempt=2)) == {2.0} and set(draws(Constant(delay=1.0), 1)) == {1.0}
    assert all(0.0 <= d <= 2.0 for d in draws(Linear(delay=1.0, jitter="full"), attempt=2))


@pytest.mark.parametrize("bad", ["decorrelated", 2, -0.5, True, None])
def test_linear_and_constant_refuse_what_they_cannot_do(bad) -> None:
    with pytest.raises(ValueError, match="'jitter' must be 'full', 'none' or a fraction from 0 to 1"):
        Linear(jitter=bad)


def test_a_retry_after_is_waited_out(seeded) -> None:
    error = TransientError("429 too many requests", retry_after=2.0)
    assert {next_delay(Exponential(delay=1.0), 1, error) for _ in range(100)} == {2.0}  # never before it said
    assert max(next_delay(Exponential(delay=1.0), 3, error) for _ in range(100)) > 3.0  # nor cut a longer delay


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0), (" 1.5 ", 1.5), ("0", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date gone by: now
    ("inf", None), ("Infinity", None), ("nan", None), ("-inf", None), ("-5", None), ("soon", None), ("", None),
])
def test_a_retry_after_header_is_a_finite_wait_or_ignored(header: str, seconds: float | None) -> None:
    # Python's float() reads "inf" and "nan": they are bad values like "soon", not a wait of forever.
    assert parse_retry_after(header) == seconds
    error = error_for_status(429, {"retry-after": header})
    assert isinstance(error, TransientError) and error.retry_after == seconds


def test_branches_that_fail_together_are_retried_apart() -> None:
    """Through the engine: twenty branches hit the same 429 at once; their back-offs differ."""
    delays: list[float] = []

    class Backoffs:
        def on_event(self, event) -> None:
            if event.kind is EventKind.RETRY_SCHEDULED:
                delays.append(event.delay)

    def limited(ctx: LeafContext) -> int:
        if ctx.attempt == 1:
            raise TransientError("429 too many requests")
        return ctx.attempt

    def fan_out(ctx: Context):
        handles = []
        for _ in range(20):
            handles.append((yield ctx.begin_run(limited).options(retry=Exponential(delay=0.2))))
        return (yield ctx.all(handles))

    with Vow(store="memory:", observers=[Backoffs()]) as vow:
        assert vow.run("burst/1", fan_out) == [2] * 20
    assert len(delays) == 20 and all(0.0 <= d <= 0.2 for d in delays)
    assert max(delays) - min(delays) > 0.05  # with the old jitter they all fell within 0.18-0.2s


# -- exponential growth saturates at max_delay -----------------------------------------------------

def test_exponential_growth_saturates_at_max_delay_however_many_attempts() -> None:
    # factor ** (attempt - 1) is beyond a float from about attempt 1,025 (factor 2): it raised OverflowError.
    policy = Exponential(delay=1.0, max_delay=60.0, max_attempts=100_000, jitter="none")
    assert [policy.delay_for(n) for n in (1, 2, 7, 1024, 1025, 1100, 99_999)] == [1.0, 2.0, 60.0, 60.0, 60.0, 60.0,
                                                                                   60.0]
    assert Exponential(delay=1.0, factor=10.0, max_delay=5.0, max_attempts=1000).delay_for(400) <= 5.0  # full jitter
    assert Exponential(delay=0.0, max_delay=5.0, max_attempts=2000, jitter="none").delay_for(1500) == 0.0


def test_a_leaf_retried_past_attempt_1025_runs_to_its_last_attempt() -> None:
    # The engine caught the OverflowError, logged it, and left the call pending for good.
    attempts: list[int] = []

    def flaky(ctx: LeafContext) -> int:
        attempts.append(ctx.attempt)
        raise TransientError("again")

    def wf(ctx: Context):
        policy = Exponential(delay=1e-9, max_delay=1e-6, max_attempts=1100, jitter="none")
        return (yield ctx.run(flaky).options(retry=policy))

    with Vow(store="memory:") as vow:
        with pytest.raises(TransientError, match="again"):
            vow.run("many/1", wf, timeout=60)
    assert attempts == list(range(1, 1101))


class _BrokenPolicy:
    """A user's retry policy that raises, or gives something that is not a number of seconds."""

    def __init__(self, gives: object) -> None:
        self.gives = gives

    def delay_for(self, attempt: int) -> float | None:
        if isinstance(self.gives, Exception):
            raise self.gives
        return self.gives  # type: ignore[return-value]


@pytest.mark.parametrize("gives", [ZeroDivisionError("division by zero"), "soon", float("nan"), -1.0, float("inf")])
def test_a_retry_policy_that_fails_fails_its_call_and_the_runs_beside_it_go_on(gives: object) -> None:
    """The engine logged the policy's error and left the call pending for good (a run with no
    timeout never finished); now the call fails with an error naming both failures."""
    def flaky(ctx: LeafContext) -> int:
        raise TransientError("service unavailable")

    def wf(ctx: Context):
        return (yield ctx.run(flaky).options(retry=_BrokenPolicy(gives)))

    def fine(ctx: Context):
        return (yield ctx.run(lambda c: 7))

    with Vow(store="memory:") as vow:
        handle = vow.begin_run("broken/1", wf)
        assert vow.run("fine/1", fine) == 7
        with pytest.raises(ConfigError, match=r"failed \(TransientError: service unavailable\) and its retry policy "
                                              r"could not say whether to try again: .*fix the policy's delay_for"):
            handle.result(timeout=60)


def test_a_workflow_retry_policy_that_fails_fails_its_run() -> None:
    def wf(ctx: Context):
        raise TransientError("body failed")
        yield  # a generator

    with Vow(store="memory:") as vow:
        vow.register(wf, retry=_BrokenPolicy(ZeroDivisionError("division by zero")))
        with pytest.raises(ConfigError, match=r"failed \(TransientError: body failed\) and its retry policy could "
                                              r"not say whether to try again: ZeroDivisionError: division by zero"):
            vow.run("wf/1", wf, timeout=60)


def _broken(ctx: LeafContext) -> None:
    raise ValueError("the real error")


def test_a_workflow_whose_next_attempt_is_past_its_deadline_fails_with_its_error(tmp_path) -> None:
    """A leaf whose next attempt could not start before its deadline fails at once with its own error;
    a workflow (a child with .options(timeout=), a run with timeout=) had waited out its deadline and
    then timed out, the error it failed with seen only in a back-off timer."""
    from vow.errors import PromiseTimeoutError
    from vow.retry import Never

    def child(ctx: Context):
        yield ctx.run(_broken).options(retry=Never())

    def parent(ctx: Context):
        try:
            yield ctx.run(child).options(timeout=5, retry=Constant(delay=3600))
        except PromiseTimeoutError as exc:
            return f"timed out: {exc}"
        except Exception as exc:  # noqa: BLE001 - the child's error, as the parent sees it
            return f"failed: {exc}"

    def run(ctx: Context):
        yield ctx.run(_broken).options(retry=Never())

    with Vow(f"sqlite:{tmp_path / 'vow.sqlite'}") as vow:
        vow.register(child)
        vow.register(parent)
        vow.register(run, retry=Constant(delay=3600))
        assert vow.run("parent/1", parent) == "failed: the real error"
        with pytest.raises(Exception) as caught:
            vow.run("run/1", run, timeout=5)
        assert not isinstance(caught.value, PromiseTimeoutError) and "the real error" in str(caught.value)
        assert [r.id for r in vow.store.tree("run/1") if ".backoff." in r.id] == []


# -- a Retry-After too long to wait out ----------------------------------------------------------

@pytest.mark.parametrize("hint", [1e20, float("inf"), 86401.0])
def test_a_retry_after_longer_than_vow_waits_fails_the_call_saying_so(hint: float) -> None:
    error = TransientError("429 too many requests", retry_after=hint)
    with pytest.raises(PermanentError, match=r"asked to wait .* before the next attempt, longer than the "
                                             r"longest Retry-After vow waits out \(86400s, a day\)") as caught:
        next_delay(Exponential(delay=1.0), 1, error)
    assert caught.value.__cause__ is error and caught.value.code == "retry_after_too_long"
    assert next_delay(Constant(delay=1.0), 1, TransientError("x", retry_after=retry_module.MAX_RETRY_AFTER)) == \
        retry_module.MAX_RETRY_AFTER  # a day is still waited out


@pytest.mark.parametrize("hint", [float("nan"), -5.0, "soon", True])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(hint: object) -> None:
    assert next_delay(Constant(delay=1.0), 1, TransientError("x", retry_after=hint)) == 1.0  # type: ignore[arg-type]


@pytest.mark.parametrize("header", ["1e20", "Fri, 01 Jan 2500 00:00:00 GMT"])
def test_a_provider_asking_to_wait_for_centuries_fails_the_branch_instead_of_waiting_for_ever(header: str) -> None:
    """The branch used to hold a back-off timer for 1e20 s: a run with no timeout never ended."""
    def provider(ctx: LeafContext) -> int:
        raise error_for_status(429, {"retry-after": header}, provider="acme")

    def wf(ctx: Context):
        return (yield ctx.run(provider).options(retry=Constant(delay=0.01)))

    with Vow(store="memory:") as vow:
        handle = vow.begin_run("late/1", wf)
        with pytest.raises(PermanentError, match=r"acme answered HTTP 429.* asked to wait") as caught:
            handle.result(timeout=10)
        assert "Retry-After" in str(caught.value)
        assert [r.id for r in vow.store.tree("late/1") if ".backoff." in r.id] == []


def test_a_retry_after_date_without_a_zone_is_read_in_gmt(monkeypatch: pytest.MonkeyPatch) -> None:
    # "-0000" (no zone given) made email.utils return a naive datetime, read in the machine's zone.
    import time as time_module

    monkeypatch.setenv("TZ", "America/New_York")
    time_module.tzset()
    try:
        now = float(timegm((2025, 1, 6, 12, 0, 0)))
        assert parse_retry_after("Mon, 06 Jan 2025 12:01:00 -0000", now=now) == 60.0
        assert parse_retry_after("Mon, 06 Jan 2025 12:01:00 GMT", now=now) == 60.0
    finally:
        monkeypatch.delenv("TZ")
        time_module.tzset()


def _asks_for_an_hour(ctx: LeafContext) -> int:
    raise TransientError("429 too many requests", retry_after=3600)


def test_a_retry_after_past_the_runs_deadline_fails_the_call_with_its_error_at_once() -> None:
    """The leaf's own deadline was checked, not its run's: the branch waited out the run's timeout and
    the run ended as a bare PromiseTimeoutError, the 429 seen only in a back-off timer."""
    from vow.errors import PromiseTimeoutError

    def wf(ctx: Context):
        try:
            return (yield ctx.run(_asks_for_an_hour).options(retry=Constant(delay=0.01, max_attempts=5)))
        except PromiseTimeoutError:
            raise
        except TransientError as exc:
            return f"gave up: {exc}"

    with Vow(store="memory:") as vow:
        vow.register(wf)
        handle = vow.begin_run("r/1", wf, timeout=30)
        assert handle.result(timeout=10) == "gave up: 429 too many requests"
        assert [r.id for r in vow.store.tree("r/1") if ".backoff." in r.id] == []


def test_the_client_docstring_states_the_default_leaf_policy() -> None:
    """``help(vow.Vow)`` said 5 attempts while a leaf without a policy gets 8."""
    policy = retry_module.DEFAULT_LEAF_POLICY
    assert isinstance(policy, Exponential)
    doc = " ".join((Vow.__doc__ or "").split())
    assert f"the default is exponential back-off from {policy.delay:g} s, {policy.max_attempts} attempts" in doc


def test_the_retry_policy_hooks_python_example_runs() -> None:
    """help(vow.hookspecs) showed ``vow.retry.policy("linear", delay=1)``, a TypeError: ``plugins`` is required."""
    import re

    from vow import hookspecs

    call = re.search(r"``(policy\(.*?\))``", hookspecs.vow_register_retry_policies.__doc__ or "")
    assert call is not None
    with Vow("memory:") as vow:
        built = eval(call.group(1), {"policy": retry_module.policy, "vow": vow})  # noqa: S307 - vow's own docstring
    assert isinstance(built, Linear) and built.delay == 1


# -- a rate limit is waited out longer than a plain failure ---------------------------------------

PROVIDER_URL = "https://api.acme.test/v1/messages"


def _send_through_acme(ctx: LeafContext) -> str:
    """A provider call as the shipped channels make it: one POST, its status classified by vow.http."""
    import httpx

    from vow.http import request

    with httpx.Client() as client:
        answer = request(client, "POST", PROVIDER_URL, provider="acme", json={"key": ctx.idempotency_key})
    if answer.status_code == 201:
        return str(answer.json()["id"])
    raise error_for_status(answer.status_code, answer.headers, answer.text, provider="acme")


def _notify(ctx: Context):
    return (yield ctx.run(_send_through_acme).options(id=f"{ctx.id}.send"))  # the default policy


def _provider(clock, refuse: int, refuse_for: float, answers: list[int], retry_after: str | None = None):
    """A respx side effect: ``refuse`` (with ``retry_after`` as its Retry-After, if any) until ``refuse_for``
    seconds of the engine's clock have passed since the first request, then 201 with one message id."""
    import httpx

    started: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        started.append(started[0] if started else clock.now())
        status = refuse if clock.now() - started[0] < refuse_for else 201
        answers.append(status)
        if status == 201:
            return httpx.Response(201, json={"id": "msg-1"})
        return httpx.Response(status, headers={"Retry-After": retry_after} if retry_after else {},
                              json={"error": "Too Many Requests" if status == 429 else "oops"})
    return answer


def _attempts_sent(route) -> list[bytes]:
    return [call.request.content for call in route.calls]


@pytest.mark.parametrize("workflow", ["vow.http", "raise_for_status"])
def test_a_429_without_retry_after_is_waited_out_and_the_message_delivered_once(
        seeded, monkeypatch: pytest.MonkeyPatch, workflow: str) -> None:
    """The default policy (0.1 s doubling, 8 attempts) gave up within 12.7 s of a 429 that named no
    wait: a provider refusing for a minute lost the message. A rate limit now waits longer, raised as
    vow.http's RateLimitError or as the httpx.HTTPStatusError of a user's own ``raise_for_status()``."""
    import respx

    from tests.support import warped_engine_clock

    answers: list[int] = []
    with warped_engine_clock(monkeypatch) as clock, respx.mock(assert_all_called=True) as mock:
        route = mock.post(PROVIDER_URL).mock(side_effect=_provider(clock, 429, 60.0, answers))
        with Vow(store="memory:") as vow:
            assert vow.run("notify/1", _notify if workflow == "vow.http" else _notify_own) == "msg-1"
    assert answers.count(201) == 1 and answers[-1] == 201 and set(answers[:-1]) == {429}
    assert route.call_count == len(answers) >= 2
    assert route.call_count <= DEFAULT_POLICY.rate_limit_attempts
    assert set(_attempts_sent(route)) == {b'{"key":"notify/1.send"}'}  # the same request every time
    assert clock.waited >= 60.0


def test_a_500_still_gives_up_at_the_default_budget(seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    import respx

    from tests.support import warped_engine_clock

    answers: list[int] = []
    with warped_engine_clock(monkeypatch) as clock, respx.mock() as mock:
        route = mock.post(PROVIDER_URL).mock(side_effect=_provider(clock, 500, float("inf"), answers))
        with Vow(store="memory:") as vow, pytest.raises(TransientError, match="acme answered HTTP 500"):
            vow.run("notify/1", _notify)
    assert route.call_count == DEFAULT_POLICY.max_attempts == 8
    assert clock.waited <= 0.1 * (2 ** 7 - 1)  # 12.7 s: each wait at most 0.1 s doubled


def test_a_429_for_ever_gives_up_at_the_documented_bound_saying_why(seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    import respx

    from tests.support import warped_engine_clock

    policy = DEFAULT_POLICY
    bound = sum(min(policy.rate_limit_max_delay, policy.rate_limit_delay * 2 ** n)
                for n in range(policy.rate_limit_attempts - 1))
    assert bound == 3015.0  # 50 minutes, as docs/pipeline.md says
    answers: list[int] = []
    with warped_engine_clock(monkeypatch) as clock, respx.mock() as mock:
        route = mock.post(PROVIDER_URL).mock(side_effect=_provider(clock, 429, float("inf"), answers))
        with Vow(store="memory:") as vow, pytest.raises(PermanentError) as caught:
            vow.run("notify/1", _notify)
    assert route.call_count == policy.rate_limit_attempts == 16
    assert bound / 2 <= clock.waited <= bound
    error = caught.value
    assert error.code == "rate_limited_too_long"
    assert str(error).startswith("RateLimitError: acme answered HTTP 429")
    assert "still refused for the provider's rate limit after 16 attempts refused for it, as many as Exponential " \
           "gives a rate limit, so the call fails here: give the policy a rate_limit_attempts above 16" in str(error)
    assert isinstance(error.__cause__, RateLimitError)


def test_a_rate_limit_with_retry_after_waits_at_least_that_and_a_day_is_still_the_most(seeded) -> None:
    assert next_delay(Exponential(), 1, RateLimitError("429", retry_after=60.0)) == 60.0  # longer than 2.5-5 s
    late = next_delay(Exponential(), 12, RateLimitError("429", retry_after=1.0), rate_limited=11)  # past max_attempts
    assert late is not None and 150.0 <= late <= 300.0
    with pytest.raises(PermanentError, match="longer than the longest Retry-After") as caught:
        next_delay(Exponential(), 1, RateLimitError("429", retry_after=retry_module.MAX_RETRY_AFTER + 1))
    assert caught.value.code == "retry_after_too_long"


def test_rate_limit_waits_grow_from_their_own_floor_and_spread_by_half(seeded) -> None:
    policy = Constant(delay=0.01, rate_limit_delay=4.0, rate_limit_max_delay=20.0, rate_limit_attempts=6)
    first = [next_delay(policy, 1, RateLimitError("429")) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in first) and max(first) - min(first) > 1.5
    fifth = [next_delay(policy, 5, RateLimitError("429"), rate_limited=4) for _ in range(50)]
    assert all(d is not None and 10.0 <= d <= 20.0 for d in fifth)  # capped: 4 * 16
    with pytest.raises(PermanentError, match="after 6 attempts refused for it, as many as Constant gives a rate limit"):
        next_delay(policy, 6, RateLimitError("429"), rate_limited=5)
    assert next_delay(policy, 1, TransientError("503")) == 0.01  # a plain failure keeps the policy's delay


def test_a_rate_limit_gets_at_least_max_attempts_and_never_retries_none() -> None:
    from vow.retry import Never

    assert Exponential(max_attempts=30).rate_limit_delay_for(20) is not None
    assert Exponential(max_attempts=30).rate_limit_delay_for(30) is None
    assert next_delay(Never(), 1, RateLimitError("429")) is None


def test_a_policy_without_rate_limit_patience_treats_a_rate_limit_as_before() -> None:
    class Twice:
        def delay_for(self, attempt: int) -> float | None:
            return 0.5 if attempt < 2 else None

    assert next_delay(Twice(), 1, RateLimitError("429")) == 0.5
    assert next_delay(Twice(), 2, RateLimitError("429")) is None


def test_rate_limit_options_are_read_from_yaml_and_checked() -> None:
    from vow.retry import from_config

    with Vow("memory:") as vow:
        policy = from_config({"policy": "linear", "rate_limit_delay": 30, "rate_limit_attempts": 40},
                             plugins=vow.plugins)
        assert (policy.rate_limit_delay, policy.rate_limit_max_delay, policy.rate_limit_attempts) == (30, 300, 40)
        with pytest.raises(ConfigError, match="rate_limit_attempts"):
            from_config({"policy": "exponential", "rate_limit_attempts": 0}, plugins=vow.plugins)
        with pytest.raises(ConfigError, match="rate_limit_delay"):
            from_config({"policy": "constant", "rate_limit_delay": float("inf")}, plugins=vow.plugins)
    assert Linear(0.5, 60.0, 5).max_attempts == 5  # the options a policy took by position are where they were


def test_a_429_with_a_short_retry_after_is_waited_out_as_long_as_one_without(
        seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Retry-After was the whole wait: 16 attempts 1 s apart gave up after 15 s, and the message was
    lost, where the same refusal without the header is waited out for up to 50 minutes. (A Slack
    channel, a Twilio sender, that many branches crowd at once, says "1 s" while it stays full.)"""
    import respx

    from tests.support import warped_engine_clock

    answers: list[int] = []
    with warped_engine_clock(monkeypatch) as clock, respx.mock(assert_all_called=True) as mock:
        route = mock.post(PROVIDER_URL).mock(side_effect=_provider(clock, 429, 60.0, answers, retry_after="1"))
        with Vow(store="memory:") as vow:
            assert vow.run("notify/1", _notify) == "msg-1"
    assert answers.count(201) == 1 and answers[-1] == 201 and set(answers[:-1]) == {429}
    assert route.call_count == len(answers) <= DEFAULT_POLICY.rate_limit_attempts
    assert clock.waited >= 60.0


def test_branches_refused_together_with_one_retry_after_come_back_apart(seeded) -> None:
    """Every branch told "Retry-After: 1" came back at the same instant, to be refused together again."""
    waits = [next_delay(Exponential(), 1, RateLimitError("429", retry_after=1.0)) for _ in range(50)]
    assert all(w is not None and w >= 1.0 for w in waits)  # never sooner than the provider asked
    assert len(set(waits)) > 40


def test_giving_up_a_rate_limit_names_a_change_that_waits_longer() -> None:
    """The advice was always "raise the policy's rate_limit_attempts or rate_limit_max_delay": under
    max_attempts=20 raising rate_limit_attempts from 16 to 19 changes nothing (the larger counts), and a
    plugin's policy with its own rate_limit_delay_for has neither option."""
    with pytest.raises(PermanentError, match=r"after 20 attempts refused for it, .*: give the policy a "
                                             r"rate_limit_attempts above 20"):
        next_delay(Exponential(max_attempts=20), 20, RateLimitError("429"), rate_limited=19)

    class Patient:
        def delay_for(self, attempt: int) -> float | None:
            return None

        def rate_limit_delay_for(self, attempt: int) -> float | None:
            return 1.0 if attempt < 3 else None

    with pytest.raises(PermanentError) as caught:
        next_delay(Patient(), 3, RateLimitError("429"), rate_limited=2)
    assert "rate_limit_attempts" not in str(caught.value)
    assert str(caught.value).endswith("after 3 attempts refused for it: Patient.rate_limit_delay_for(3) gave up, so "
                                      "the call fails here")


def test_a_503_among_rate_limits_keeps_its_own_attempts(seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every attempt counted against max_attempts, rate-limited ones too: after nine 429s (ten minutes waited),
    one 503 from the same overloaded provider was attempt 10 of the default policy's 8, and the call failed
    at once, its message lost. Each kind of failure now counts its own attempts."""
    import httpx
    import respx

    from tests.support import warped_engine_clock

    answers: list[int] = []

    def provider(request: httpx.Request) -> httpx.Response:
        status = 429 if len(answers) < 9 else 503 if len(answers) == 9 else 201
        answers.append(status)
        return httpx.Response(status, json={"id": "msg-1"} if status == 201 else {"error": "busy"})

    with warped_engine_clock(monkeypatch), respx.mock(assert_all_called=True) as mock:
        route = mock.post(PROVIDER_URL).mock(side_effect=provider)
        with Vow(store="memory:") as vow:
            assert vow.run("notify/1", _notify) == "msg-1"
    assert answers == [429] * 9 + [503, 201] and route.call_count == 11


def test_each_kind_of_failure_counts_its_own_attempts() -> None:
    policy = Exponential(delay=1.0, jitter="none", max_attempts=3, rate_limit_delay=5.0, rate_limit_attempts=4)
    # the first 429 after two 503s waits the schedule's first wait (2.5-5 s), not its third (10-20 s)
    assert 2.5 <= next_delay(policy, 3, RateLimitError("429"), rate_limited=0) <= 5.0
    # a 503 after five 429s is the first plain failure: the policy's first delay
    assert next_delay(policy, 6, TransientError("503"), rate_limited=5) == 1.0
    assert next_delay(policy, 8, TransientError("503"), rate_limited=5) is None  # its third: max_attempts
    with pytest.raises(PermanentError, match="after 4 attempts refused for it"):
        next_delay(policy, 9, RateLimitError("429"), rate_limited=3)


CRASH_AMONG_RATE_LIMITS = textwrap.dedent("""
    import os, sys
    from vow import Context, Exponential, LeafContext, RateLimitError, TransientError, Vow

    store, crashed = sys.argv[1], sys.argv[2]
    POLICY = Exponential(delay=0.01, max_attempts=2, rate_limit_delay=0.01, rate_limit_attempts=10)

    def send(ctx: LeafContext) -> int:
        print(ctx.attempt, flush=True)
        if ctx.attempt <= 3:
            raise RateLimitError("429")
        if ctx.attempt == 4 and not os.path.exists(crashed):
            open(crashed, "w").close()
            os._exit(9)  # the process dies with three rate limits counted, in memory only
        if ctx.attempt == 4:
            raise TransientError("503")  # its first plain failure: max_attempts=2 allows one more
        return ctx.attempt

    def flow(ctx: Context):
        return (yield ctx.run(send).options(id=f"{ctx.id}.send", retry=POLICY))

    with Vow(store=store) as vow:
        print("result", vow.run("c/1", flow), flush=True)
""")


def test_a_resumed_run_counts_the_rate_limits_from_before_the_crash(tmp_path) -> None:
    """The count of attempts refused for the rate lives in the engine's memory: after a crash it is
    counted again from the errors the back-off timers keep, or a 503 after three 429s would be the
    fourth plain failure of a policy allowing two."""
    store, crashed = f"sqlite:{tmp_path / 'vow.sqlite'}", tmp_path / "crashed"
    first = python("-c", CRASH_AMONG_RATE_LIMITS, store, crashed)
    assert (first.returncode, first.stdout.split()) == (9, ["1", "2", "3", "4"]), first.stderr
    second = python("-c", CRASH_AMONG_RATE_LIMITS, store, crashed)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["4", "5", "result", "5"]


# -- a user's own leaf: httpx's raise_for_status() on a 429 is a rate limit too ------------------


def _send_with_raise_for_status(ctx: LeafContext) -> str:
    """A leaf as a user writes it: plain httpx, ``raise_for_status()``, no vow.http."""
    import httpx

    with httpx.Client() as client:
        answer = client.post(PROVIDER_URL, json={"key": ctx.idempotency_key})
        answer.raise_for_status()
    return str(answer.json()["id"])


def _notify_own(ctx: Context):
    return (yield ctx.run(_send_with_raise_for_status).options(id=f"{ctx.id}.send"))  # the default policy


def test_an_httpx_429_with_retry_after_waits_at_least_that(seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Retry-After header of the response httpx raised for was ignored: the retry came 0.1 s later."""
    import respx

    from tests.support import warped_engine_clock

    answers: list[int] = []
    sent_at: list[float] = []
    with warped_engine_clock(monkeypatch) as clock, respx.mock(assert_all_called=True) as mock:
        provider = _provider(clock, 429, 1.0, answers, retry_after="30")

        def timed(request):
            sent_at.append(clock.now())
            return provider(request)

        mock.post(PROVIDER_URL).mock(side_effect=timed)
        with Vow(store="memory:") as vow:
            assert vow.run("notify/1", _notify_own) == "msg-1"
    assert answers == [429, 201]
    assert sent_at[1] - sent_at[0] >= 30.0  # on the engine's clock, from the refusal to the next request


def test_an_httpx_500_from_raise_for_status_keeps_the_default_budget(
        seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx
    import respx

    from tests.support import warped_engine_clock

    answers: list[int] = []
    with warped_engine_clock(monkeypatch) as clock, respx.mock() as mock:
        route = mock.post(PROVIDER_URL).mock(side_effect=_provider(clock, 500, float("inf"), answers))
        with Vow(store="memory:") as vow, pytest.raises(httpx.HTTPStatusError, match="500"):
            vow.run("notify/1", _notify_own)
    assert route.call_count == DEFAULT_POLICY.max_attempts == 8
    assert clock.waited <= 0.1 * (2 ** 7 - 1)


def _status_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    import httpx

    request = httpx.Request("POST", PROVIDER_URL)
    response = httpx.Response(status, headers=headers or {}, request=request)
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as error:
        return error
    raise AssertionError(f"no error for {status}")


def _requests_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    import requests

    response = requests.Response()
    response.status_code, response.url = status, PROVIDER_URL
    response.headers.update(headers or {})
    try:
        response.raise_for_status()
    except requests.HTTPError as error:
        return error
    raise AssertionError(f"no error for {status}")


@pytest.mark.parametrize("error_for", [_status_error, _requests_error], ids=["httpx", "requests"])
def test_a_response_error_with_429_is_a_rate_limit_and_its_retry_after_counts(seeded, error_for) -> None:
    from email.utils import formatdate

    from vow.retry import is_rate_limit, retry_after_of

    refused = error_for(429)
    assert is_rate_limit(refused) and is_rate_limit(RateLimitError("429"))
    first = next_delay(Exponential(), 1, refused)
    assert first is not None and 2.5 <= first <= 5.0  # rate_limit_delay, spread by half; not 0-0.1 s
    assert next_delay(Exponential(), 9, refused, rate_limited=8) is not None  # past max_attempts: its own count
    assert retry_after_of(error_for(429, {"Retry-After": "30"})) == 30.0
    dated = retry_after_of(error_for(429, {"Retry-After": formatdate(time.time() + 120, usegmt=True)}))
    assert dated is not None and 100.0 <= dated <= 120.0
    assert next_delay(Exponential(), 1, error_for(429, {"Retry-After": "30"})) >= 30.0
    with pytest.raises(PermanentError, match="longer than the longest Retry-After"):
        next_delay(Exponential(), 1, error_for(429, {"Retry-After": str(retry_module.MAX_RETRY_AFTER + 1)}))
    for plain in (500, 503, 408):
        assert not is_rate_limit(error_for(plain))
        delay = next_delay(Exponential(), 1, error_for(plain))
        assert delay is not None and delay <= 0.1  # the policy's own first delay
    assert next_delay(Exponential(), 8, error_for(500)) is None  # max_attempts, as before
    assert retry_after_of(error_for(503, {"Retry-After": "30"})) == 30.0  # a transient status's hint counts
    assert retry_after_of(error_for(400, {"Retry-After": "30"})) is None  # not for a status no wait mends


def test_an_httpx_429_read_back_from_the_store_is_still_a_rate_limit() -> None:
    """A resumed run counts its rate-limited attempts again from the stored errors."""
    from vow.failures import FailureCodec
    from vow.retry import is_rate_limit, retry_after_of

    codec = FailureCodec()
    stored = codec.decode(codec.encode(_status_error(429, {"Retry-After": "7"})))
    assert is_rate_limit(stored)
    assert retry_after_of(stored) == 7.0
    assert not is_rate_limit(codec.decode(codec.encode(_status_error(503))))



def test_an_httpx_429_for_ever_is_counted_apart_and_gives_up_at_the_rate_limit_bound(
        seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine counts a 429 raised by httpx among the rate-limited attempts, as a RateLimitError."""
    import httpx
    import respx

    from tests.support import warped_engine_clock

    answers: list[int] = []
    with warped_engine_clock(monkeypatch) as clock, respx.mock() as mock:
        refuse = _provider(clock, 429, float("inf"), answers)

        def refuse_40_times(request: httpx.Request) -> httpx.Response:
            # each 429 counted as the first was waited out for ever: end it, and the test, at 40 requests
            return refuse(request) if len(answers) < 40 else httpx.Response(201, json={"id": "msg-1"})

        route = mock.post(PROVIDER_URL).mock(side_effect=refuse_40_times)
        with Vow(store="memory:") as vow, pytest.raises(PermanentError) as caught:
            vow.run("notify/1", _notify_own)
    assert route.call_count == DEFAULT_POLICY.rate_limit_attempts == 16
    assert caught.value.code == "rate_limited_too_long"
    assert str(caught.value).startswith("HTTPStatusError: Client error '429 Too Many Requests'")
    assert isinstance(caught.value.__cause__, httpx.HTTPStatusError)
    assert clock.waited >= 3015.0 / 2
