"""The email a send produces, identified by the idempotency key."""

from __future__ import annotations

import email.utils
import hashlib
from email.message import EmailMessage

from vow.channels import Message
from vow.simulation import stable_uuid

IDEMPOTENCY_HEADER = "X-Idempotency-Key"


def key_digest(key: str) -> str:
    """A stable stand-in for a key that cannot go in a header as it is: ``vow-sha256-<hex digest>``."""
    return "vow-sha256-" + hashlib.sha256(key.encode()).hexdigest()


def message_id_for(key: str, domain: str) -> str:
    """The Message-ID header for ``key``: ``<uuid5(key)@domain>``.

    Derived, never random: every attempt, retry and process sending the same key writes the
    same Message-ID, so a receiving system that dedupes or threads on it sees one message.
    """
    return f"<{stable_uuid(key)}@{domain}>"


def build_email(message: Message, *, from_addr: str, message_id: str, key: str) -> EmailMessage:
    """A MIME message: text body, plus an HTML alternative when ``message.data['html']`` is set."""
    mail = EmailMessage()
    mail["From"] = from_addr
    mail["To"] = message.to
    mail["Subject"] = message.subject or ""
    mail["Date"] = email.utils.formatdate(usegmt=True)
    mail["Message-ID"] = message_id
    mail[IDEMPOTENCY_HEADER] = key_digest(key) if "\r" in key or "\n" in key else key  # no header holds a line break
    mail.set_content(message.body)
    html = message.data.get("html")
    if html:
        mail.add_alternative(html, subtype="html")
    return mail
