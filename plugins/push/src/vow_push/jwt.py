"""Compact JWS signing with ``cryptography``: RS256 (Google service accounts), ES256 (APNs)."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWTs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def sign_rs256(claims: dict[str, Any], key: rsa.RSAPrivateKey, *, kid: str | None = None) -> str:
    """A JWT signed with RSASSA-PKCS1-v1_5 and SHA-256."""
    header = {"alg": "RS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def sign_es256(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey, *, kid: str) -> str:
    """A JWT signed with ECDSA P-256 and SHA-256 (signature as raw ``r || s``, as JWS requires)."""
    signing_input = f"{_segment({'alg': 'ES256', 'kid': kid})}.{_segment(claims)}"
    der = key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
