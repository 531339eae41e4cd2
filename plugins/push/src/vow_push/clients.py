"""Long-lived HTTP clients shared by every push channel in the process."""

from __future__ import annotations

import functools

import httpx


@functools.cache
def shared_client(*, http2: bool, timeout: float) -> httpx.Client:
    """One client per setting, kept open: vow builds a channel per delivery, and APNs treats
    opening and closing a connection per notification as a denial-of-service attack."""
    return httpx.Client(http2=http2, timeout=timeout)
