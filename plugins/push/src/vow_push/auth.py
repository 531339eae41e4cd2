"""Short-lived provider credentials: Google OAuth2 access tokens and APNs provider tokens.

Both are cached process-wide, not per channel object: vow builds a channel for every
delivery, and APNs rejects provider tokens refreshed more often than every 20 minutes
(``TooManyProviderTokenUpdates``), while a token exchange per push would double FCM's latency.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import attrs
import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from vow.errors import ConfigError, PermanentError
from vow.http import error_for_exception, is_transient_status, parse_retry_after, request, text_field, transient_error

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # Google accepts assertions valid for at most one hour
EARLY_REFRESH = 60  # renew an access token this many seconds before it expires
APNS_TOKEN_LIFETIME = 50 * 60  # Apple rejects tokens older than 60 min and refreshes faster than 20 min


class TokenCache:
    """Tokens by key, each valid until its expiry time; thread-safe.

    Each key has its own lock, held while its token is made: a fan-out of many sends for one
    account mints one token, not one per thread, while a slow token exchange for one account
    never holds up the sends of another.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the two dicts; never held while a token is made
        self._tokens: dict[Hashable, tuple[str, float]] = {}
        self._making: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, make: Callable[[], tuple[str, float]]) -> str:
        """The cached token for ``key``, or a new one from ``make() -> (token, expires_at)``."""
        token = self._valid(key)
        if token is not None:
            return token
        with self._lock:
            making = self._making.setdefault(key, threading.Lock())
        with making:
            token = self._valid(key)  # another thread may have made it while this one waited
            if token is not None:
                return token
            token, expires_at = make()
            with self._lock:
                self._tokens[key] = (token, expires_at)
            return token

    def _valid(self, key: Hashable) -> str | None:
        with self._lock:
            cached = self._tokens.get(key)
        return cached[0] if cached is not None and cached[1] > time.time() else None

    def forget(self, key: Hashable, token: str) -> None:
        """Drop ``token`` (the provider refused it), unless another thread already replaced it."""
        with self._lock:
            if self._tokens.get(key, ("", 0))[0] == token:
                del self._tokens[key]

    def clear(self) -> None:
        """Forget every token."""
        with self._lock:
            self._tokens.clear()


ACCESS_TOKENS = TokenCache()
"""Google OAuth2 access tokens by service account."""
PROVIDER_TOKENS = TokenCache()
"""APNs provider tokens (ES256 JWTs) by team and key id."""


def _load_key(pem: bytes, where: str) -> Any:
    try:
        return load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not a readable unencrypted PEM private key ({exc})") from None


@attrs.frozen
class ServiceAccount:
    """The parts of a Google service-account JSON key that the token exchange needs."""

    client_email: str
    private_key: rsa.RSAPrivateKey = attrs.field(repr=False)
    private_key_id: str | None = None
    token_uri: str = GOOGLE_TOKEN_URI
    project_id: str | None = None

    @classmethod
    def load(cls, path: str, *, where: str) -> ServiceAccount:
        """Read and check the key file at ``path``; problems are :class:`ConfigError` naming ``where``."""
        try:
            info = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the service-account file {path!r}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"{where}: {path!r} is not JSON (expected a service-account key file)") from None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ConfigError(f"{where}: {path!r} is not a service-account key (\"type\" must be \"service_account\")")
        missing = [k for k in ("client_email", "private_key") if not info.get(k)]
        if missing:
            raise ConfigError(f"{where}: {path!r} lacks {', '.join(missing)}")
        key = _load_key(info["private_key"].encode(), f"{where}: private_key in {path!r}")
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"{where}: private_key in {path!r} must be an RSA key")
        return cls(info["client_email"], key, info.get("private_key_id"),
                   info.get("token_uri") or GOOGLE_TOKEN_URI, info.get("project_id"))

    def assertion(self, now: int) -> str:
        """The RS256 JWT that asks the token endpoint for an FCM access token."""
        claims = {"iss": self.client_email, "scope": FCM_SCOPE, "aud": self.token_uri,
                  "iat": now, "exp": now + ASSERTION_LIFETIME}
        headers = {"kid": self.private_key_id} if self.private_key_id else None
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)


class StaticToken:
    """An access token the user supplied; a refused one cannot be renewed."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get(self, client: httpx.Client) -> str:
        """The token as given."""
        return self._token

    def reject(self, token: str) -> bool:
        """Nothing to renew: the user must supply a new token."""
        return False


class ServiceAccountToken:
    """Access tokens minted from a service account, cached until shortly before they expire."""

    def __init__(self, account: ServiceAccount) -> None:
        self.account = account
        self._key = (account.client_email, account.private_key_id, account.token_uri)

    def get(self, client: httpx.Client) -> str:
        """A valid access token, exchanging a fresh JWT assertion when the cached one is due."""
        return ACCESS_TOKENS.get(self._key, lambda: self._exchange(client))

    def reject(self, token: str) -> bool:
        """Forget a token FCM refused; the next attempt mints a new one."""
        ACCESS_TOKENS.forget(self._key, token)
        return True

    def _exchange(self, client: httpx.Client) -> tuple[str, float]:
        now = int(time.time())
        form = {"grant_type": JWT_BEARER_GRANT, "assertion": self.account.assertion(now)}
        where = f"Google token endpoint {self.account.token_uri}"
        try:
            response = request(client, "POST", self.account.token_uri, provider=where, data=form)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, provider=where) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        token = text_field(body, "access_token")
        if response.status_code == 200 and token:
            return token, now + self._lifetime(body, where) - EARLY_REFRESH
        if response.status_code == 200 and "access_token" in body:
            raise self._malformed(body, "access_token", "text", where)
        code = text_field(body, "error") or str(response.status_code)
        reason = (f"{where} refused the service account {self.account.client_email}: "
                  f"HTTP {response.status_code} {code}: {body.get('error_description') or response.text[:200]}")
        if is_transient_status(response.status_code):
            raise transient_error(reason, status=response.status_code, code=code,
                                  retry_after=parse_retry_after(response.headers.get("retry-after")))
        # invalid_grant and friends: a revoked key or a skewed clock; retrying the same key cannot help.
        raise PermanentError(reason, code=code)

    def _lifetime(self, body: dict[str, Any], where: str) -> float:
        """Seconds the granted token lives: ``expires_in`` (3600 when absent), a positive finite number."""
        seconds = body.get("expires_in", 3600)
        # bool is an int to Python, but true is no number of seconds; "3599" or null is no JSON number.
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < math.inf:
            raise self._malformed(body, "expires_in", "a positive number of seconds", where)
        return float(seconds)

    def _malformed(self, body: dict[str, Any], name: str, expected: str, where: str) -> PermanentError:
        """A 200 from the token endpoint with ``name`` of the wrong type: permanent, like a 200 without a token
        (the exchange failed as a whole; no push is sent with a token vow cannot read)."""
        value = body[name]
        # A token is a secret, so only its JSON type is shown; expires_in is shown as sent.
        shown = f"is {_json_type(value)}" if name == "access_token" else f"= {json.dumps(value)[:100]}"
        return PermanentError(f"{where} answered the service account {self.account.client_email} with HTTP 200, "
                              f"but {name!r} {shown}: expected {expected}", code="invalid_token_response")


def _json_type(value: Any) -> str:
    """What kind of JSON value ``value`` is, in words (``a list``, ``null``, ``empty text``)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text" if value else "empty text"
    kinds = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return kinds.get(type(value), type(value).__name__)


def load_apns_key(value: str, *, where: str) -> ec.EllipticCurvePrivateKey:
    """The APNs ``.p8`` signing key from PEM text or from the path of the ``.p8`` file."""
    if value.lstrip().startswith("-----BEGIN"):
        pem = value.encode()
    else:
        try:
            pem = Path(value).read_bytes()
        except OSError as exc:
            # The value is not echoed: it may be key material pasted without its PEM header.
            raise ConfigError(f"{where}: holds neither a PEM key (-----BEGIN PRIVATE KEY-----...) nor the "
                              f"path of a readable .p8 file ({exc.strerror})") from None
    key = _load_key(pem, where)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"{where}: the APNs key must be the P-256 (ES256) .p8 key from the Apple developer account")
    return key


def apns_provider_token(team_id: str, key_id: str, key: ec.EllipticCurvePrivateKey) -> str:
    """The current APNs provider token (ES256 JWT), renewed every 50 minutes."""
    def make() -> tuple[str, float]:
        now = int(time.time())
        # The header Apple documents: alg and kid, no typ. PyJWT writes the signature as raw r || s.
        token = jwt.encode({"iss": team_id, "iat": now}, key, algorithm="ES256", headers={"kid": key_id, "typ": None})
        return token, now + APNS_TOKEN_LIFETIME

    return PROVIDER_TOKENS.get((team_id, key_id), make)
