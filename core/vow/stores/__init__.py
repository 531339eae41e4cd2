"""Promise stores: the contract (:mod:`vow.stores.base`) and how a store is chosen.

A store is named by URL::

    sqlite:///abs/path/vow.sqlite?synchronous=full
    sqlite:relative/path.sqlite
    memory:
    ./state.sqlite            (a bare path means SQLite)
    (a SQLite URL names no host: sqlite://host/path is refused, not read as the path host/path;
     its path is taken as written: a '#' or a '%' in it is part of the file's name)
    mystore?option=value      (any registered store name, options as query parameters)
    postgresql://user@host:5432/db?sslmode=require   (the ``postgresql`` store, from vow-postgres;
                                                       ``postgres://`` too)

A URL may carry a password; :func:`redact_url` is what may be shown of it.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from vow import __version__
from vow.errors import ConfigError, StoreError
from vow.stores.base import Store

if TYPE_CHECKING:
    from vow.plugins import Plugins

# The plugin machinery (pluggy, the options converter) is imported in the functions that open a
# store: importing vow.stores.base for the contract's types — vow's pytest plugin does, in every
# pytest session — must not load it.

DEFAULT_URL = "sqlite:.vow/vow.sqlite"
"""Where ``Vow()`` keeps its promises when no store is given."""

__all__ = ["Store", "DEFAULT_URL", "open_store", "parse_store_url", "redact_url"]

POSTGRES_SCHEMES = ("postgresql", "postgres")
"""URL schemes of the ``postgresql`` store; its options are the whole URL (libpq reads it)."""


SQLITE_FORMS = "sqlite:relative/path.sqlite, sqlite:/absolute/path.sqlite, sqlite:///absolute/path.sqlite"
"""The forms of a SQLite store URL, as error messages show them."""


def parse_store_url(url: str) -> tuple[str, dict[str, Any]]:
    """Split a store URL into ``(store name, options)``; :class:`~vow.errors.ConfigError` for an empty
    URL and for a SQLite URL that names a host."""
    url = url.strip()
    if not url:
        raise ConfigError("the store URL is empty: give one (sqlite:PATH, memory:, postgresql://HOST/DB, or "
                          f"another installed store), or give none for the default, {DEFAULT_URL}")
    if url in ("memory", "memory:", "memory://"):
        return "memory", {}
    if "://" not in url and ":" not in url.split("/", 1)[0].split("?", 1)[0]:
        name, _, query = url.partition("?")
        if "/" in name or name.endswith((".sqlite", ".sqlite3", ".db")):
            return "sqlite", {"path": name, **dict(parse_qsl(query))}
        return name, dict(parse_qsl(query))
    parts = urlsplit(url)
    if parts.scheme in POSTGRES_SCHEMES:
        return "postgresql", {"url": url}
    if parts.scheme == "sqlite" and "#" in url:
        # A file's path may hold '#' (and is not percent-decoded): no fragment in a sqlite: URL, whose
        # path would otherwise end there.
        parts = urlsplit(url.replace("#", "\0"))  # NUL: in no path (and refused in one)
        parts = parts._replace(**{part: getattr(parts, part).replace("\0", "#")
                                  for part in ("netloc", "path", "query")})
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        if parts.netloc:  # SQLite opens a local file: a host here is a slip, once read as a relative path
            raise ConfigError(f"store URL {redact_url(url)!r} names a host ({parts.hostname or parts.netloc!r}), "
                              f"and a SQLite store is a local file: write {SQLITE_FORMS}, or a bare path")
        path = parts.path
        if path.startswith("//"):  # sqlite:////abs/path, SQLAlchemy's form: //abs would be a URI authority
            path = "/" + path.lstrip("/")
        if path:
            options["path"] = path
    elif parts.netloc or parts.path:
        options.setdefault("location", (parts.netloc + parts.path) or "")
    return parts.scheme, options


_BUILTIN = {"sqlite": "vow.stores.sqlite", "memory": "vow.stores.memory"}


def _registry_for(name: str) -> Plugins:
    """The plugins to build store ``name`` from when the caller gives none: vow's own store alone
    when it is one of the two builtins (no third-party plugin is imported just to read a SQLite
    file: ``vow ls`` stays fast), else every installed plugin, loaded now."""
    from vow.plugins import CORE_DISTRIBUTION, Plugins, disabled_plugins

    if name not in _BUILTIN or name in disabled_plugins():
        return Plugins()
    plugins = Plugins(entry_points=False)
    plugins.add(importlib.import_module(_BUILTIN[name]), name, distribution=CORE_DISTRIBUTION, version=__version__)
    return plugins


def open_store(spec: str | os.PathLike[str] | Store | None = None, *, plugins: Plugins | None = None,
               read_only: bool = False) -> Store:
    """The store ``spec`` names (a URL, a path, or a store object); the default SQLite file when ``None``.

    ``plugins`` is the registry that builds it (a client passes its own); without one, vow's
    builtin store for ``sqlite:`` and ``memory:`` URLs, else every installed plugin. ``read_only``:
    for reading only, so a store this user may not write can be read (a store with a ``read_only``
    option gets it; any other opens as usual).
    """
    if spec is not None and not isinstance(spec, (str, os.PathLike)):
        return spec
    name, options = parse_store_url(os.fspath(spec) if spec is not None else DEFAULT_URL)
    if plugins is None:
        plugins = _registry_for(name)
    where = f"store {redact_url(os.fspath(spec)) if spec is not None else DEFAULT_URL!r}"
    options_class = plugins.stores.get(name, where=where).options_class
    if read_only and options_class is not None and hasattr(getattr(options_class, "__attrs_attrs__", ()), "read_only"):
        options = {**options, "read_only": True}
    if options_class is not None:  # a URL's query is text: ?busy_timeout=0.3 is the number 0.3
        from vow.config import from_text

        options = from_text(options_class, options)
    try:
        store: Store = plugins.stores.build(name, options, where=f"{where} options")
        return store
    except OSError as exc:  # a store that could not open its file or socket: a StoreError like any other
        raise StoreError(f"{where}: cannot be opened: {exc.strerror or exc}"
                         + (f" ({exc.filename})" if exc.filename else "")) from exc


def redact_url(url: str) -> str:
    """``url`` without a password (in its user part or a ``password=`` parameter): safe to print;
    every other parameter as written (a ``+`` stays a plus, as libpq reads it)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    pieces = parts.query.split("&") if parts.query else []
    kept = [piece for piece in pieces if unquote(piece.partition("=")[0]) != "password"]
    if not (at and ":" in userinfo) and len(kept) == len(pieces):
        return url
    netloc = (userinfo.split(":", 1)[0] + "@" + hosts) if at else parts.netloc
    # Built by hand: urlunsplit would drop the "//" of a URL with no host ("postgresql://", all from PG*)
    start = f"{parts.scheme}:" if parts.scheme else ""
    if url[len(start):].startswith("//"):
        start += "//"
    return f"{start}{netloc}{parts.path}" + (f"?{'&'.join(kept)}" if kept else "") + (
        f"#{parts.fragment}" if parts.fragment else "")
