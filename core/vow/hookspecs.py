"""Every hook a vow plugin can implement.

A plugin is a module (or object) with functions marked ``@vow.hookimpl`` and named after the
specs below, listed under the ``vow`` entry-point group of its distribution::

    [project.entry-points.vow]
    email = "vow_email.plugin"

Registration hooks receive a ``register`` callable and call it once per thing they provide::

    register(name, factory, options_class=None, description="")

``factory`` builds the thing from an instance of ``options_class`` (an attrs class) or, when
``options_class`` is ``None``, with no arguments. vow validates user options (YAML or Python)
against ``options_class`` with :func:`vow.config.structure` (strict types, attrs validators)
before calling the factory, so a plugin receives options that are already well-typed, and a bad
field is reported with its exact key path.

Everything is looked up by name in a registry, so no behaviour depends on the order in which
pluggy calls plugins. Two plugins that register the same name in the same kind are an error
that names both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("vow")
hookimpl = pluggy.HookimplMarker("vow")

Register = Callable[..., None]


@hookspec
def vow_register_stores(register: Register) -> None:
    """Register promise stores.

    ``factory(options) -> vow.stores.Store``. Called once when the plugin manager loads.
    A store must pass the contract suite :class:`vow.testing.StoreContract`.
    The store is chosen by URL scheme (``sqlite:///path``, ``memory:``) or by name.
    """


@hookspec
def vow_register_retry_policies(register: Register) -> None:
    """Register retry policies.

    ``factory(options) -> vow.retry.RetryPolicy``: an object whose ``delay_for(attempt)``
    returns the seconds to wait before the next attempt, or ``None`` to stop retrying. One that
    also has ``rate_limit_delay_for(attempt)`` (as :class:`vow.retry.RateLimitPatience` gives the builtins)
    is asked that instead after a rate limit (:func:`vow.retry.is_rate_limit`), with the number of attempts
    refused for the rate, and its ``delay_for`` then with the number of the other failures; one
    without treats a rate limit like any transient failure and counts every attempt.
    Called once when the plugin manager loads; looked up by name from YAML (``retry: {policy:
    exponential, ...}``) and from Python with :func:`vow.retry.policy` and the client's plugins
    (``policy("linear", plugins=vow.plugins, delay=1)``).
    """


@hookspec
def vow_register_channels(register: Register) -> None:
    """Register notification channels (email, SMS, Slack, push, ...).

    ``factory(options) -> vow.channels.Channel``: an object with ``send(message, ctx) ->
    Receipt``. ``ctx`` is the leaf's :class:`vow.LeafContext`, carrying the idempotency key the
    channel must pass to its provider and the attempt number. Raise
    :class:`vow.errors.TransientError` for errors worth retrying and
    :class:`vow.errors.PermanentError` for the rest. Called once when the plugin manager loads.
    """


@hookspec
def vow_register_image_providers(register: Register) -> None:
    """Register image providers.

    ``factory(options) -> vow.images.ImageProvider``: an object with ``generate(request, ctx)
    -> GeneratedImage``. Same error and idempotency rules as channels. Called once when the
    plugin manager loads.
    """


@hookspec
def vow_register_observers(register: Register) -> None:
    """Register event observers (progress displays, tracing, metrics).

    ``factory(options) -> vow.events.Observer | None``: an object with ``on_event(event)``.
    Each :class:`vow.Vow` client builds every registered observer when it starts; a factory
    may return ``None`` to stay off (for example, when its environment variable is not set).
    ``on_event`` runs on the engine thread, so it must return quickly.
    """


@hookspec
def vow_register_commands(cli: Any) -> None:
    """Add subcommands to the ``vow`` command line.

    ``cli`` is the root :class:`click.Group`; call ``cli.add_command(...)``. Called each time
    the command line starts.
    """


@hookspec
def vow_declare_errors() -> Iterable[type[BaseException]]:
    """Declare the exception classes a stored failure may come back as.

    Return an iterable of exception classes your plugin raises (and that workflows may want to
    catch by type). A failure is stored as its type name and decoded only into declared classes,
    so a run resumed elsewhere receives the same exception as the live run did; an undeclared
    type comes back as :class:`vow.errors.RejectedError`. Called when a client starts.
    """
    return ()


REGISTRATION_HOOKS: dict[str, str] = {
    "store": "vow_register_stores",
    "retry_policy": "vow_register_retry_policies",
    "channel": "vow_register_channels",
    "image_provider": "vow_register_image_providers",
    "observer": "vow_register_observers",
}
"""Registry kind -> the hook that fills it."""
