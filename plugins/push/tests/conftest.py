"""Fixtures for the push plugin tests: throwaway keys, a clean environment, a plugin manager."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vow.plugins import Plugins
from vow_push import plugin
from vow_push.auth import ACCESS_TOKENS, PROVIDER_TOKENS

PUSH_ENV = ("GOOGLE_APPLICATION_CREDENTIALS", "FCM_ACCESS_TOKEN", "APNS_AUTH_KEY")


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(autouse=True)
def push_clean_state(monkeypatch: pytest.MonkeyPatch):
    """No real credentials leak in from the environment; no token survives from another test."""
    for name in PUSH_ENV:
        monkeypatch.delenv(name, raising=False)
    ACCESS_TOKENS.clear()
    PROVIDER_TOKENS.clear()
    yield
    ACCESS_TOKENS.clear()
    PROVIDER_TOKENS.clear()


@pytest.fixture(scope="session")
def push_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def push_service_account(tmp_path: Path, push_rsa_key: rsa.RSAPrivateKey) -> Path:
    """A service-account key file like the one the Firebase console downloads (the key is throwaway)."""
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "kid-123",
        "private_key": _pem(push_rsa_key),
        "client_email": "vow-push@demo-project.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
    return path


@pytest.fixture(scope="session")
def push_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def push_p8(push_ec_key: ec.EllipticCurvePrivateKey) -> str:
    """The PEM text of a throwaway APNs .p8 key."""
    return _pem(push_ec_key)


@pytest.fixture
def push_plugins() -> Plugins:
    plugins = Plugins(entry_points=False)
    plugins.add(plugin, "push")
    return plugins


def _b64decode(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _decode_jwt(token: str) -> tuple[dict, dict, bytes, bytes]:
    header, claims, signature = token.split(".")
    return (json.loads(_b64decode(header)), json.loads(_b64decode(claims)),
            f"{header}.{claims}".encode(), _b64decode(signature))


@pytest.fixture
def push_jwt():
    """Split a JWT into (header, claims, signing input, signature bytes) for verification."""
    return _decode_jwt
