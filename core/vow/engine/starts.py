"""Starting root workflows: the request a caller makes, and whether a stored run is "the same run".

``vow.run(id, fn, *args)`` of an id that exists joins or resumes that run — if it is the same run:
the same workflow with the same arguments. That one rule lives here, used by the engine, the
client (``submit``) and the command line (``vow run`` of a pipeline file).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from vow.errors import ArgumentMismatchError, NonDeterminismError, VowError
from vow.records import Lease, PromiseRecord

__all__ = ["RunFuture", "StartRequest", "same_run_error"]


class RunFuture(concurrent.futures.Future[Any]):
    """The future of a root's result, which keeps ``keepalive`` (the client that asked) alive until it
    is answered: a run goes on to its end though nothing else refers to its client.

    Let go before the answer is set, so that a caller woken by it finds the client held by nothing of
    the engine's (the engine may keep the future a while after)."""

    def __init__(self, keepalive: Any = None) -> None:
        super().__init__()
        self.keepalive = keepalive

    def set_result(self, result: Any) -> None:
        self.keepalive = None
        super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        self.keepalive = None
        super().set_exception(exception)


class StartRequest:
    """A caller's request to run (or join, or resume) root workflow ``id``.

    ``fn`` is ``None`` to resume by the name stored with the run; ``lease`` is a lease the caller
    already claimed for it (a worker claims many at once); ``resume_only`` refuses to create it;
    ``timeout`` is how long a new run may take before it and its pending promises time out;
    ``keepalive`` lives as long as the request's future (see :class:`RunFuture`).
    """

    __slots__ = ("id", "name", "fn", "args", "kwargs", "args_text", "policy", "concurrency", "tags", "future",
                 "resume_only", "lease", "timeout", "tree")

    def __init__(self, id: str, name: str, fn: Callable[..., Any] | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any], args_text: str, policy: Any, concurrency: int | None,
                 tags: dict[str, str], *, resume_only: bool = False, lease: Lease | None = None,
                 timeout: float | None = None, keepalive: Any = None) -> None:
        self.id = id
        self.name = name
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.args_text = args_text
        self.policy = policy
        self.concurrency = concurrency
        self.tags = tags
        self.future: concurrent.futures.Future[Any] = RunFuture(keepalive)
        self.resume_only = resume_only
        self.lease = lease
        self.timeout = timeout  # seconds the run may take, from its first start (a new run only)
        self.tree: list[PromiseRecord] | None = None  # the run's records, when read with others' in one query

    @classmethod
    def resume(cls, id: str, *, lease: Lease | None = None, keepalive: Any = None) -> StartRequest:
        """A request to resume the stored run ``id`` with the workflow registered under its stored name."""
        return cls(id, "", None, (), {}, "", None, None, {}, resume_only=True, lease=lease, keepalive=keepalive)

    def fail(self, error: BaseException) -> None:
        """Answer the caller with ``error`` (unless answered already)."""
        if not self.future.done():
            self.future.set_exception(error)


def same_run_error(id: str, stored_name: str, stored_args: str, name: str, args_text: str) -> VowError | None:
    """Why a start of ``name(args_text)`` under ``id`` cannot join the stored run, or ``None`` if it can."""
    if stored_name != name:
        return NonDeterminismError(f"workflow id {id!r} belongs to workflow {stored_name!r}, not {name!r}")
    if stored_args != args_text:
        return ArgumentMismatchError(
            f"workflow id {id!r} was started with arguments {stored_args}; starting it again with different "
            f"arguments {args_text} is not allowed (use a new id, or the same arguments to join the run)")
    return None
