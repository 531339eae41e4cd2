"""Retries: whether a failed attempt runs again, and the durable timer that holds it back.

When a leaf or a workflow body fails and its policy allows another attempt, the engine stores,
in the same commit, the new attempt number and a back-off timer: a sleep promise
``{id}.backoff.{attempt}`` under the failing promise, whose ``timeout`` is when the next attempt
may start and whose ``args`` hold the stored error of the attempt that failed (so ``vow show`` and
the console can list every attempt's error). The timer is armed only after that commit, and the
next attempt starts only after the commit that settles the timer. A crash in between cannot cut a
back-off — or a provider's ``Retry-After`` — short: the resumed run waits out what is left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from vow.engine.committer import Committer
from vow.engine.model import PromiseNode, WorkflowRun
from vow.engine.timers import Timer, Timers
from vow.errors import EncodeError
from vow.records import Kind, PromiseRecord, Settle, State
from vow.reserved import BACKOFF_FUNC, THROTTLE_FUNC
from vow.retry import DEFAULT_LEAF_POLICY, RetryPolicy, is_rate_limit, next_delay

__all__ = ["BACKOFF_FUNC", "THROTTLE_FUNC", "Retries", "backoff_id", "throttle_id"]

_log = logging.getLogger("vow")


def backoff_id(promise_id: str, attempt: int) -> str:
    """The id of the timer that holds back attempt ``attempt`` of ``promise_id``."""
    return f"{promise_id}.backoff.{attempt}"


def throttle_id(promise_id: str, attempt: int, n: int) -> str:
    """The id of the ``n``-th wait for a rate limit of attempt ``attempt`` of ``promise_id``."""
    return f"{promise_id}.throttle.{attempt}.{n}"


class Retries:
    """Decides on retries and keeps their back-offs durable."""

    def __init__(self, committer: Committer, timers: Timers, now: Callable[[], float], *,
                 encode_error: Callable[[BaseException], str], decode_error: Callable[[str | None], BaseException],
                 default_policy: RetryPolicy | None = None,
                 on_retry: Callable[[PromiseNode, int, BaseException, float], None],
                 start_leaf: Callable[[PromiseNode], None], start_body: Callable[[WorkflowRun], None]) -> None:
        self._committer = committer
        self._timers = timers
        self._now = now
        self._encode_error = encode_error
        self._decode_error = decode_error
        self._on_retry = on_retry
        self._start_leaf = start_leaf
        self._start_body = start_body
        self._default_policy: RetryPolicy = default_policy or DEFAULT_LEAF_POLICY
        self._waits: dict[str, int] = {}  # promise id -> rate-limit waits of its current attempt so far
        # promise id -> the timer of its back-off or rate-limit wait, canceled when it settles or its root stops
        # here: an hour's Retry-After would otherwise hold the node, its run and maybe its client that long
        self._armed: dict[str, Timer] = {}
        # promise id -> its attempts refused for the provider's rate (is_rate_limit) so far: the policy
        # counts them apart from its other failures. On a resume, counted again from the back-off timers.
        self._rate_limited: dict[str, int] = {}

    # -- after a failure

    def retry_leaf(self, node: PromiseNode, error: BaseException) -> bool:
        """Schedule the next attempt of a failed leaf if its policy allows; whether it will run again."""
        opts = node.opts
        assert opts is not None
        if isinstance(error, EncodeError):
            return False
        delay = next_delay(opts.retry or self._default_policy, node.attempt, error, opts.non_retryable,
                           rate_limited=self._rate_limited.get(node.id, 0))
        if delay is None:
            return False
        now = self._now()
        deadline = _deadline(node)
        if deadline is not None and now + delay >= deadline:
            return False  # the next attempt could not start before the call's deadline, or its run's
        self._hold_back(node, now + delay, error, delay)
        return True

    def retry_workflow(self, run: WorkflowRun, error: BaseException) -> bool:
        """Schedule the next attempt of a failed workflow body if its policy allows."""
        if isinstance(error, EncodeError):
            return False
        delay = next_delay(run.policy, run.node.attempt, error, run.non_retryable,
                           rate_limited=self._rate_limited.get(run.node.id, 0))
        if delay is None:
            return False
        now = self._now()
        deadline = _deadline(run.node)
        if deadline is not None and now + delay >= deadline:
            return False  # as for a leaf: the next attempt could not start before the deadline
        self._hold_back(run.node, now + delay, error, delay)
        return True

    def _hold_back(self, node: PromiseNode, until: float, error: BaseException, delay: float) -> None:
        root = node.root
        failed = node.attempt
        node.attempt = failed + 1
        self._waits.pop(node.id, None)
        if is_rate_limit(error):
            self._rate_limited[node.id] = self._rate_limited.get(node.id, 0) + 1
        timer_id = backoff_id(node.id, node.attempt)
        self._committer.attempt(root.id, root.token, node.id, node.attempt)
        self._committer.create(root.id, root.token, PromiseRecord(
            timer_id, State.PENDING, Kind.SLEEP, root.id, BACKOFF_FUNC, self._encode_error(error), None, node.id,
            until, timer_id, 1, root.stamp(self._now()), None, {}))
        self._committer.after(root.id, root.token, self._arm, node, until, time.monotonic() + delay)
        self._committer.after(root.id, root.token, self._on_retry, node, failed, error, delay)

    def throttle(self, node: PromiseNode, wait: float) -> None:
        """Hold a leaf back ``wait`` seconds for a shared rate limit (durably), then start the same attempt."""
        root = node.root
        n = self._waits.get(node.id, 0) + 1
        self._waits[node.id] = n
        timer_id = throttle_id(node.id, node.attempt, n)
        until = self._now() + wait
        self._committer.create(root.id, root.token, PromiseRecord(
            timer_id, State.PENDING, Kind.SLEEP, root.id, THROTTLE_FUNC, "", None, node.id, until, timer_id, 1,
            root.stamp(self._now()), None, {}))
        self._committer.after(root.id, root.token, self._arm_wait, node, timer_id, until, time.monotonic() + wait)

    def _arm_wait(self, node: PromiseNode, timer_id: str, until: float, due: float | None = None) -> None:
        """Start the leaf again at the stored ``until`` (at ``due`` when this process chose the wait)."""
        self._armed[node.id] = self._timers.at_wall(until, self._wait_over, (node, timer_id), due=due)

    def _wait_over(self, arg: tuple[PromiseNode, str]) -> None:
        node, timer_id = arg
        root = node.root
        if node.state is not State.PENDING or root.done:
            return
        self._committer.settle(root.id, root.token, Settle(timer_id, State.RESOLVED, "null", root.stamp(self._now())))
        self._committer.after(root.id, root.token, self._start_leaf, node)

    def forget(self, promise_id: str) -> None:
        """A promise settled (or its root stopped here): drop what was kept about its waits."""
        self._waits.pop(promise_id, None)
        self._rate_limited.pop(promise_id, None)
        self._timers.cancel(self._armed.pop(promise_id, None))  # a fired one is canceled already: no-op

    # -- holding back

    def resume_in_backoff(self, node: PromiseNode, stored: dict[str, PromiseRecord]) -> bool:
        """For a node met again on a resume: if its back-off timer, or a wait for a rate limit, was still
        running, wait out what is left of it (armed after the next commit) and return True."""
        if not stored:
            return False
        self._count_rate_limited(node, stored)
        root = node.root
        waits = 0
        pending_wait = None
        while (wait := stored.pop(throttle_id(node.id, node.attempt, waits + 1), None)) is not None:
            waits += 1
            if not wait.settled:
                pending_wait = wait
        if waits:
            self._waits[node.id] = waits
        if pending_wait is not None:
            self._committer.after(root.id, root.token, self._arm_wait, node, pending_wait.id,
                                  pending_wait.timeout or 0.0)
            return True
        if node.attempt <= 1:
            return False
        timer = stored.pop(backoff_id(node.id, node.attempt), None)
        if timer is None or timer.settled:
            return False
        self._committer.after(root.id, root.token, self._arm, node, timer.timeout or 0.0)
        return True

    def _count_rate_limited(self, node: PromiseNode, stored: dict[str, PromiseRecord]) -> None:
        """Count again, from the errors its back-off timers keep, how many of ``node``'s attempts so far
        were refused for the provider's rate (a resumed run: the count was in the process that died)."""
        refused = 0
        for attempt in range(2, node.attempt + 1):
            timer = stored.get(backoff_id(node.id, attempt))
            if timer is not None and is_rate_limit(self._decode_error(timer.args)):
                refused += 1
        if refused:
            self._rate_limited[node.id] = refused

    def _arm(self, node: PromiseNode, until: float, due: float | None = None) -> None:
        """The next attempt at the stored ``until`` (at ``due`` when this process chose the back-off)."""
        self._armed[node.id] = self._timers.at_wall(until, self._due, node, due=due)

    def _due(self, node: PromiseNode) -> None:
        root = node.root
        if node.state is not State.PENDING or root.done:
            return
        self._committer.settle(root.id, root.token, Settle(backoff_id(node.id, node.attempt), State.RESOLVED,
                                                           "null", root.stamp(self._now())))
        if node.kind is Kind.WORKFLOW:
            assert node.child is not None
            self._start_body(node.child)  # its body may run ahead: it starts nothing before the commit
        else:
            self._committer.after(root.id, root.token, self._start_leaf, node)


def _deadline(node: PromiseNode) -> float | None:
    """The earliest deadline of ``node`` and the workflows it runs under: a retry held back past its
    run's deadline (a provider's Retry-After of an hour in a run of 30 s) only waited to time out, the
    error that made it wait seen nowhere but in its back-off timer."""
    deadline = node.deadline
    run = node.run
    while run is not None:
        above = run.node.deadline
        if above is not None and (deadline is None or above < deadline):
            deadline = above
        run = run.node.run
    return deadline
