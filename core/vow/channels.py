"""The notification-channel interface, and the leaf that delivers one message.

A channel plugin registers a factory (see :func:`vow.hookspecs.vow_register_channels`) that
builds a :class:`Channel` from its options. The core calls ``validate`` before anything is
sent, then ``send`` once per attempt with the leaf's context, whose ``idempotency_key`` the
channel must hand to its provider.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from vow.faults import with_faults
from vow.leaf import LeafContext

if TYPE_CHECKING:
    from vow.plugins import Plugins


@attrs.frozen
class Message:
    """One message to one recipient; ``to`` is an address, phone number, channel or device token."""

    to: str
    body: str
    subject: str | None = None
    data: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Receipt:
    """What the provider said when it accepted a message."""

    channel: str
    transport: str
    message_id: str
    to: str
    idempotency_key: str
    attempt: int
    duplicate: bool = False
    detail: dict[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (what the workflow stores as the branch's result)."""
        return attrs.asdict(self)


@runtime_checkable
class Channel(Protocol):
    """Sends one message to one recipient."""

    def validate(self, message: Message) -> None:
        """Raise :class:`~vow.errors.ConfigError` for a malformed recipient or message, before any send."""

    def send(self, message: Message, ctx: LeafContext) -> Receipt:
        """Deliver ``message`` once; raise ``TransientError`` or ``PermanentError`` on failure."""


def build_channel(name: str, options: Mapping[str, Any] | Any | None = None,
                  faults: Mapping[str, Any] | Any | None = None, *, plugins: Plugins,
                  where: str = "") -> Channel:
    """Build channel ``name`` from ``plugins``' registry and its options class, wrapped in ``faults`` if given."""
    channel: Channel = plugins.channels.build(name, options, where=where or f"channel {name!r} options")
    return with_faults(channel, faults)


def _key(data: Mapping[str, Any] | None) -> str:
    return json.dumps(data, sort_keys=True, default=str) if data else ""


# Built channels per client registry, so a channel added to one client's Plugins is never used by
# another client, and a registry that goes away takes its channels with it.
_built: weakref.WeakKeyDictionary[Plugins, dict[tuple[str, str, str], Channel]] = weakref.WeakKeyDictionary()
_built_lock = threading.Lock()


def _channel(plugins: Plugins, name: str, options: Mapping[str, Any] | None,
             faults: Mapping[str, Any] | None) -> Channel:
    key = (name, _key(options), _key(faults))
    with _built_lock:
        cached = _built.setdefault(plugins, {}).get(key)
    if cached is not None:
        return cached
    built = build_channel(name, options, faults, plugins=plugins)  # outside the lock: it may read secrets, files
    with _built_lock:
        return _built[plugins].setdefault(key, built)


def deliver(ctx: LeafContext, channel: str, message: Mapping[str, Any],
            options: Mapping[str, Any] | None = None, faults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Leaf: deliver ``message`` over ``channel`` and return the receipt as a dict.

    Use it from a workflow::

        yield ctx.begin_run(deliver, "email", {"to": "ada@example.com", "subject": "Hi", "body": "..."})

    The channel comes from the registry of the client that runs the workflow (``ctx.plugins``).
    Channels are built once per (registry, name, options, faults) and reused, so a transport may
    keep its HTTP client open across sends; a channel object must therefore be safe to use from
    many threads.

    ``options["rate_limit"]`` (``{"per_second": 1}``) is not the channel's: it limits the sends
    over this channel across every worker sharing the store (see :mod:`vow.ratelimit`). A send
    that must wait raises :class:`~vow.errors.Throttled` before anything is sent.
    """
    from vow.ratelimit import limited, split_options

    channel_options, limit = split_options(options, where=f"channel {channel!r} options")
    built = _channel(ctx.registry(), channel, channel_options, faults)
    msg = Message(**message)
    built.validate(msg)
    with limited(ctx, limit, f"channel:{channel}"):
        return built.send(msg, ctx).to_dict()
