"""Who may use the console: the access token, the CSRF check on actions, and the safe headers.

* **Token.** Bound to a loopback address the console needs none (only this machine reaches it).
  Bound elsewhere it refuses to start without one (``--token`` / ``VOW_UI_TOKEN``). With a token,
  every request must carry it: ``Authorization: Bearer TOKEN``, or the ``vow_ui_token`` cookie,
  which opening ``/?token=TOKEN`` once sets (and then redirects to the URL without it).
* **Host.** Without a token, requests must name a loopback host (``127.0.0.1``, ``localhost``,
  ``[::1]``), so a page elsewhere cannot reach the console through DNS rebinding.
* **CSRF.** Every action is a POST whose form carries the console's CSRF token (random per
  process, written into its pages, unknowable to another site) and, when the browser says where
  it comes from (``Origin``, ``Sec-Fetch-Site``), comes from the console itself.
* **Headers.** A strict Content-Security-Policy (scripts and styles from the console only, no
  inline script), no framing, no sniffing, no referrer.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "vow_ui_token"
LOOPBACK_NAMES = ("localhost",)

SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
                                "object-src 'none'"),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host part of a ``Host`` header (``127.0.0.1:8765`` -> ``127.0.0.1``, ``[::1]:80`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """The console's access rules (see the module docstring); ``middleware`` wraps the app."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        self.csrf = secrets.token_urlsafe(32)

    # -- the token

    def _has_token(self, request: Request) -> bool:
        assert self.token is not None
        given = request.cookies.get(TOKEN_COOKIE, "")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    # -- CSRF

    def csrf_ok(self, request: Request, form_token: str | None) -> bool:
        """Whether a POST may act: the right CSRF token, sent from the console's own pages."""
        if not form_token or not hmac.compare_digest(form_token.encode(), self.csrf.encode()):
            return False
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            own = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if origin != own:
                return False
        elif origin == "null":
            return False
        return True

    # -- the middleware

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap ``app``: host and token checks before it, security headers on every answer."""
        guard = self

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            request = Request(scope)

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                    message = {**message, "headers": headers}
                await send(message)

            refusal = guard._refusal(request)
            if refusal is not None:
                await refusal(scope, receive, send_with_headers)
                return
            await app(scope, receive, send_with_headers)

        return guarded

    def _refusal(self, request: Request) -> Callable[[Scope, Receive, Send], Awaitable[None]] | None:
        if self.token is None:
            if not is_loopback(host_of(request.headers.get("host", ""))):
                return _plain(400, "This console answers only to a loopback host name (127.0.0.1, localhost). "
                                   "To serve it to other machines, start it with --host and a --token.")
            return None
        query = dict(parse_qsl(request.url.query))
        given = query.pop("token", None)
        if given is not None and request.method == "GET":
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _plain(401, "Wrong token for this console.")
            # Keep the token out of the address bar and the history: a cookie carries it from now on.
            target = request.url.path + (f"?{urlencode(query)}" if query else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
            return response
        if not self._has_token(request):
            return _plain(401, "This console needs its token: open the address `vow ui` printed "
                               "(it ends in ?token=...), or send Authorization: Bearer TOKEN.")
        return None


def _plain(status: int, text: str) -> Response:
    return Response(text + "\n", status_code=status, media_type="text/plain; charset=utf-8")


def same_site_path(target: str, default: str = "/") -> str:
    """``target`` if it is a path on this site (for redirects after an action), else ``default``.

    A browser reads a backslash as a slash and drops tabs and line breaks from a URL, so a target
    holding either (``/\\evil.example``, ``/<tab>/evil.example``) could lead to another site: refused."""
    if "\\" in target or any(ord(c) < 0x20 or c == "\x7f" for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target
