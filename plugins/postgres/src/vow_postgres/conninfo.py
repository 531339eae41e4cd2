"""Store URLs: vow's own options split from the libpq ones, and passwords kept out of sight.

A store URL is a libpq connection URI (``postgresql://`` or ``postgres://``) whose query may also
carry vow's options (:data:`VOW_OPTIONS`). Everything else in it (``sslmode=``,
``application_name=``, ``connect_timeout=``, ...) goes to libpq unchanged, and libpq fills in
what the URL leaves out from the ``PG*`` environment variables (``PGHOST``, ``PGPASSWORD``,
``PGSSLMODE``, ...) and ``~/.pgpass``, as ``psql`` does.

A password, from the URL or the environment, never appears in ``store.url``, in a log line or in
an error message: :func:`redact` removes it from a URL and :func:`scrub` from any text.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from vow.stores import redact_url as redact

SCHEMES = ("postgresql", "postgres")
VOW_OPTIONS = ("schema", "pool_size", "synchronous_commit")
"""Query parameters vow reads itself (libpq would refuse them)."""

__all__ = ["SCHEMES", "VOW_OPTIONS", "split_url", "password_of", "redact", "secrets", "scrub"]


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """``(the libpq URL, vow's options)`` from a store URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in VOW_OPTIONS}
    theirs = [(k, v) for k, v in query if k not in VOW_OPTIONS]
    rest = urlencode(theirs, quote_via=quote)
    # Built by hand: urlunsplit would drop the "//" of a URL with no host ("postgresql://", all from PG*).
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else ""), ours


def password_of(url: str) -> str | None:
    """The password a URL carries (in its user part or a ``password=`` parameter), if any."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        return unquote(userinfo.split(":", 1)[1])
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
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
