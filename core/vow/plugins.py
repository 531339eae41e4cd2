"""Loading plugins and keeping the registries they fill.

Plugins come from the ``vow`` entry-point group, including vow's own builtins (stores, retry
policies), so the loader runs on every start. Two environment variables steer loading:

* ``VOW_PLUGINS=a,b`` — load only these third-party plugins (vow's builtins always load);
* ``VOW_DISABLE_PLUGINS=a,b`` — never load these (builtins included).

A plugin that fails to import or to register raises :class:`~vow.errors.PluginLoadError`
naming the plugin and its distribution: a broken install fails loudly, never silently.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from vow import hookspecs
from vow.config import structure
from vow.errors import ConfigError, PluginLoadError, UnknownPluginError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

CORE_DISTRIBUTION = "vow-durable"  # the distribution of the import package vow
ENTRY_POINT_GROUP = "vow"


@attrs.frozen
class Registration:
    """One named thing a plugin registered."""

    kind: str
    name: str
    factory: Callable[..., Any]
    options_class: type | None
    plugin: str
    distribution: str
    version: str
    description: str = ""


class Registry:
    """Named registrations of one kind (stores, channels, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Registration] = {}

    def add(self, registration: Registration) -> None:
        """Add a registration; the same name from two plugins is a :class:`PluginLoadError`."""
        taken = self._entries.get(registration.name)
        if taken is not None and taken.plugin != registration.plugin:
            raise PluginLoadError(
                f"{self.kind} {registration.name!r} is registered twice: by plugin {taken.plugin!r} "
                f"({taken.distribution}) and by plugin {registration.plugin!r} ({registration.distribution})"
            )
        self._entries[registration.name] = registration

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registration]:
        return iter(self._entries[n] for n in self.names())

    def get(self, name: str, *, where: str = "") -> Registration:
        """The registration for ``name``; an unknown name lists what is installed."""
        try:
            return self._entries[name]
        except KeyError:
            installed = ", ".join(self.names()) or "none"
            raise UnknownPluginError(f"{self.kind} {name!r} is not installed (installed: {installed})",
                                     where=where) from None

    def options(self, name: str, data: Mapping[str, Any] | Any | None = None, *, where: str = "") -> Any:
        """Validate ``data`` against the options class ``name`` registered (``None`` if it has none)."""
        reg = self.get(name, where=where)
        where = where or f"{self.kind} {name!r} options"
        if reg.options_class is None:
            if data:
                raise ConfigError(f"{self.kind} {name!r} takes no options", where=where)
            return None
        return structure(reg.options_class, data, where=where)

    def build(self, name: str, data: Mapping[str, Any] | Any | None = None, *, where: str = "") -> Any:
        """Validate options and call the factory: the ready-to-use thing."""
        reg = self.get(name, where=where)
        opts = self.options(name, data, where=where)
        return reg.factory() if reg.options_class is None else reg.factory(opts)


@attrs.frozen
class PluginInfo:
    """A loaded plugin, for ``vow plugins``."""

    name: str
    distribution: str
    version: str
    registered: dict[str, list[str]]


def disabled_plugins() -> set[str]:
    """The plugins ``VOW_DISABLE_PLUGINS`` names."""
    return _names_from_env("VOW_DISABLE_PLUGINS") or set()


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


class Plugins:
    """The pluggy manager plus one :class:`Registry` per kind.

    ``Plugins()`` loads every entry point of the ``vow`` group. Tests and embedding code may
    pass ``entry_points=False`` and add plugin objects with :meth:`add`.
    """

    def __init__(self, *, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("vow")
        self.pm.add_hookspecs(hookspecs)
        self.registries = {kind: Registry(kind) for kind in hookspecs.REGISTRATION_HOOKS}
        self._info: dict[str, PluginInfo] = {}
        if entry_points:
            self._load_entry_points()

    # -- registries, by kind
    @property
    def stores(self) -> Registry:
        return self.registries["store"]

    @property
    def retry_policies(self) -> Registry:
        return self.registries["retry_policy"]

    @property
    def channels(self) -> Registry:
        return self.registries["channel"]

    @property
    def image_providers(self) -> Registry:
        return self.registries["image_provider"]

    @property
    def observers(self) -> Registry:
        return self.registries["observer"]

    def declared_errors(self) -> list[type[BaseException]]:
        """The exception classes plugins declared through ``vow_declare_errors``."""
        found: list[type[BaseException]] = []
        for declared in self.pm.hook.vow_declare_errors():
            found.extend(declared or ())
        return found

    def info(self) -> list[PluginInfo]:
        """Every loaded plugin with what it registered, sorted by name."""
        return [self._info[n] for n in sorted(self._info)]

    def add(self, plugin: Any, name: str, *, distribution: str = "(local)", version: str = "") -> None:
        """Register a plugin object or module and run its registration hooks.

        A plugin that implements no hook of vow's under a hook's name (a misspelled
        ``vow_register_channel``), leaves a hook function unmarked, or whose hook takes arguments
        the hook does not have, is a :class:`PluginLoadError` in one line: it would otherwise
        register nothing, silently.
        """
        where = f"plugin {name!r} from distribution {distribution!r}"
        unmarked = [attr for attr in HOOK_NAMES if callable(getattr(plugin, attr, None))
                    and self.pm.parse_hookimpl_opts(plugin, attr) is None]
        if unmarked:
            raise PluginLoadError(f"{where}: {', '.join(unmarked)} is not marked @vow.hookimpl, so vow would "
                                  "never call it")
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except (ValueError, pluggy.PluginValidationError) as exc:
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            raise PluginLoadError(f"{where}: {_one_line(exc)} (vow's hooks: {', '.join(HOOK_NAMES)})") from None
        registered: dict[str, list[str]] = {}
        for kind, hook_name in hookspecs.REGISTRATION_HOOKS.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin_name != name:
                    continue
                names: list[str] = []

                def register(reg_name: str, factory: Callable[..., Any], options_class: type | None = None,
                             description: str = "", *, _kind: str = kind, _names: list[str] = names) -> None:
                    self.registries[_kind].add(Registration(
                        _kind, reg_name, factory, options_class, name, distribution, version,
                        description or (factory.__doc__ or "").strip().split("\n")[0]))
                    _names.append(reg_name)

                try:
                    impl.function(**{arg: register for arg in impl.argnames})
                except PluginLoadError:
                    raise
                except Exception as exc:
                    raise PluginLoadError(
                        f"plugin {name!r} from distribution {distribution!r} failed in {hook_name}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                if names:
                    registered[kind] = names
        if self.pm.hook.vow_register_commands.get_hookimpls():
            commands = [i for i in self.pm.hook.vow_register_commands.get_hookimpls() if i.plugin_name == name]
            if commands:
                registered["command"] = ["(cli)"]
        self._info[name] = PluginInfo(name, distribution, version, registered)

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its subcommands to the ``vow`` click group."""
        for impl in self.pm.hook.vow_register_commands.get_hookimpls():
            try:
                impl.function(**{arg: cli for arg in impl.argnames})
            except Exception as exc:
                raise PluginLoadError(f"plugin {impl.plugin_name!r} failed in vow_register_commands: {exc}") from exc

    def command_names(self) -> dict[str, list[str]]:
        """The commands each plugin adds to ``vow``, by plugin name (asked of a group of its own, so
        nothing is added to the real one and no plugin's command module loads when ``vow`` starts)."""
        import click

        names: dict[str, list[str]] = {}
        for impl in self.pm.hook.vow_register_commands.get_hookimpls():
            group = click.Group()
            try:
                impl.function(**{arg: group for arg in impl.argnames})
            except Exception as exc:
                raise PluginLoadError(f"plugin {impl.plugin_name!r} failed in vow_register_commands: {exc}") from exc
            names.setdefault(impl.plugin_name, []).extend(sorted(group.commands))
        return names

    def _load_entry_points(self) -> None:
        allow = _names_from_env("VOW_PLUGINS")
        block = _names_from_env("VOW_DISABLE_PLUGINS") or set()
        entry_points = list(_entry_points())
        if allow is not None:
            third_party = sorted({ep.name for ep in entry_points if _distribution(ep) != CORE_DISTRIBUTION})
            missing = sorted(allow - set(third_party))
            if missing:
                raise ConfigError(f"VOW_PLUGINS names {', '.join(map(repr, missing))}, which "
                                  f"{'is' if len(missing) == 1 else 'are'} not installed (installed plugins: "
                                  f"{', '.join(third_party) or 'none'}; vow's builtins always load)")
        for ep in entry_points:
            dist = _distribution(ep)
            version = ep.dist.version if ep.dist is not None else ""
            if ep.name in block:
                continue
            if allow is not None and dist != CORE_DISTRIBUTION and ep.name not in allow:
                continue
            if ep.name in self._info:
                continue  # the same distribution seen twice on sys.path
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {ep.name!r} from distribution {dist!r} failed to load ({ep.value}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.add(module, ep.name, distribution=dist, version=version)


HOOK_NAMES = tuple(sorted(name for name in vars(hookspecs) if name.startswith("vow_")))
"""Every hook a plugin can implement (see :mod:`vow.hookspecs`)."""


def _one_line(exc: BaseException) -> str:
    """pluggy's message, which spans lines, as one line."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _distribution(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "(unknown distribution)"


def _entry_points() -> Iterable[EntryPoint]:
    import importlib.metadata  # here: a registry of vow's builtins alone (vow ls) never reads entry points

    seen: set[tuple[str, str]] = set()
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        key = (ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            yield ep


_default: Plugins | None = None
_default_lock = threading.Lock()


def default_plugins() -> Plugins:
    """The process-wide plugin manager, loaded from entry points on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Plugins()
        return _default


def reset_default_plugins() -> None:
    """Forget the process-wide manager (tests that change the installed plugins use this)."""
    global _default
    with _default_lock:
        _default = None
