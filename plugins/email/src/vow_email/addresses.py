"""Checking email addresses before anything is sent."""

from __future__ import annotations

import email.utils
import re
from email.headerregistry import Address

import idna

from vow.errors import ConfigError

ALLOWED = "one address such as ada@example.com or 'Ada Lovelace <ada@example.com>'"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_address(value: object, *, where: str) -> tuple[str, str]:
    """``(display name, addr-spec)`` of one email address; :class:`ConfigError` naming ``where`` if it is not one.

    A "sane" check rather than full RFC 5322: exactly one address, no control characters (which
    would let a value inject headers), a non-empty local part and a domain made of hostname
    labels (internationalised domains are accepted as IDNA 2008 allows them, after UTS #46 mapping).
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: an email address is required ({ALLOWED}); got {value!r}")
    if _CONTROL.search(value):
        raise ConfigError(f"{where}: {value!r} contains control characters; expected {ALLOWED}")
    found = email.utils.getaddresses([value])
    if len(found) != 1:
        raise ConfigError(f"{where}: {value!r} is not exactly one address; expected {ALLOWED}")
    name, addr = found[0]
    local, at, domain = addr.rpartition("@")
    # The parser quietly repairs some inputs ("a@b.c d" -> "a@b.cd"): insist it took the text as written.
    if (not at or not local or addr not in value or any(c.isspace() for c in addr)
            or not _valid_domain(domain)):
        raise ConfigError(f"{where}: {value!r} is not a valid email address; expected {ALLOWED}")
    return name, addr


def domain_of(addr: str) -> str:
    """The domain part of an addr-spec (``shop.example`` for ``orders@shop.example``)."""
    return addr.rpartition("@")[2]


def check_domain(domain: str, *, where: str) -> str:
    """``domain`` in ASCII if it is a hostname (such as ``shop.example``); :class:`ConfigError` naming ``where``
    if not."""
    if not _valid_domain(domain):
        raise ConfigError(f"{where}: {domain!r} is not a domain name; expected a hostname such as shop.example")
    return _ascii(domain)


def ascii_domain(addr: str) -> str:
    """``addr`` with its domain in ASCII (``ada@xn--bcher-kva.example`` for ``ada@Bücher.example``): the
    form every mail server and API takes, where the Unicode one needs the SMTPUTF8 extension."""
    local, _, domain = addr.rpartition("@")
    return f"{local}@{_ascii(domain)}"


def ascii_form(value: str, *, where: str) -> tuple[str, str]:
    """``(address, addr-spec)`` of the address ``value`` with its domain in ASCII, the form every mail server
    and API takes: ``value`` itself when its domain is ASCII, else ``Ada <ada@xn--bcher-kva.example>`` for
    ``Ada <ada@Bücher.example>``."""
    name, addr = parse_address(value, where=where)
    spec = ascii_domain(addr)
    return (value if spec == addr else str(Address(display_name=name, addr_spec=spec))), spec


def _ascii(domain: str) -> str:
    """An internationalised ``domain`` in its ASCII (IDNA) form; an ASCII one as it is."""
    return domain if domain.isascii() else idna.encode(domain, uts46=True, std3_rules=True).decode("ascii")


def _valid_domain(domain: str) -> bool:
    """Whether ``domain`` is a hostname: the ``idna`` package's IDNA 2008 with UTS #46 mapping and
    the STD3 hostname rules (Python's own "idna" codec is the older IDNA 2003, which accepts
    symbols such as ``☃`` that registries no longer do)."""
    try:
        idna.encode(domain, uts46=True, std3_rules=True)
    except (idna.IDNAError, UnicodeError):
        return False
    return True
