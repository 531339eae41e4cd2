"""Store URLs: vow's own options split from the libpq ones, and passwords kept out of sight.

A store URL is a libpq connection URI (``postgresql://`` or ``postgres://``) whose query may also
carry vow's options (:data:`VOW_OPTIONS`). Everything else in it (``sslmode=``,
``application_name=``, ``connect_timeout=``, ...) goes to libpq unchanged, and libpq fills in
what the URL leaves out from the ``PG*`` environment variables (``PGHOST``, ``PGPASSWORD``,
``PGSSLMODE``, ...) and ``~/.pgpass``, as ``psql`` does.

A password, from the URL or the environment, never appears in ``store.url``, in a log line or in
an error message: :func:`vow.stores.redact_url` removes it from a URL and :func:`scrub` from any text.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

SCHEMES = ("postgresql", "postgres")
VOW_OPTIONS = ("schema", "pool_size", "synchronous_commit")
"""Query parameters vow reads itself (libpq would refuse them)."""

__all__ = ["SCHEMES", "VOW_OPTIONS", "split_url", "password_of", "secrets", "scrub"]


def _query(query: str) -> list[tuple[str, str, str]]:
    """``(key, value, the text as written)`` of each parameter of a URL's query, decoded as libpq
    decodes them: ``%XX`` only. A ``+`` is a plus (not a space, as in an HTML form's query)."""
    found = []
    for piece in query.split("&"):
        if piece:
            key, _, value = piece.partition("=")
            found.append((unquote(key), unquote(value), piece))
    return found


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """``(the libpq URL, vow's options)`` from a store URL; libpq's parameters are passed on as written."""
    parts = urlsplit(url)
    query = _query(parts.query)
    ours = {k: v for k, v, _ in query if k in VOW_OPTIONS}
    rest = "&".join(raw for k, _, raw in query if k not in VOW_OPTIONS)
    # Built by hand: urlunsplit would drop the "//" of a URL with no host ("postgresql://", all from PG*).
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else ""), ours


def password_of(url: str) -> str | None:
    """The password a URL carries (in its user part or a ``password=`` parameter), if any."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        return unquote(userinfo.split(":", 1)[1])
    for key, value, _ in _query(parts.query):
        if key == "password":
            return value
    return None


def secrets(url: str) -> list[str]:
    """Every password that may reach the server for ``url``: the URL's own and ``$PGPASSWORD``."""
    found = [password_of(url), os.environ.get("PGPASSWORD")]
    return [s for s in found if s]


def scrub(text: str, hidden: Iterable[str]) -> str:
    """``text`` with every occurrence of the ``hidden`` strings (and their URL-quoted forms) replaced by ``***``."""
    for secret in sorted(set(hidden), key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form:
                text = text.replace(form, "***")
    return text
