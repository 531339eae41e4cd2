"""Registers the ``push`` channel and builds it from :class:`PushOptions`."""

from __future__ import annotations

import os
from typing import Any

from vow.config import secret
from vow.errors import ConfigError
from vow.hookspecs import hookimpl
from vow.simulation import Ledger
from vow_push.apns import ApnsTransport
from vow_push.auth import ServiceAccount, ServiceAccountToken, StaticToken, load_apns_key
from vow_push.fcm import FcmTransport
from vow_push.options import PushOptions
from vow_push.simulated import SimulatedTransport

WHERE = "channel 'push' options"


def build_push(options: PushOptions) -> Any:
    """The push channel: FCM, APNs or simulated, as ``options.transport`` says."""
    transport: str = options.transport
    if transport == "auto":
        transport = detect_transport(options)
    if transport == "fcm":
        return _build_fcm(options)
    if transport == "apns":
        return _build_apns(options)
    return SimulatedTransport(Ledger(options.ledger), mean_latency=options.latency,
                              project_id=options.fcm.project_id)


def detect_transport(options: PushOptions) -> str:
    """``fcm`` when FCM credentials are in the environment, else ``apns`` when an APNs key is, else ``simulated``."""
    if os.environ.get(options.fcm.access_token_env) or os.environ.get(options.fcm.credentials_env):
        return "fcm"
    if os.environ.get(options.apns.key_env):
        return "apns"
    return "simulated"


def _build_fcm(options: PushOptions) -> FcmTransport:
    fcm = options.fcm
    token = os.environ.get(fcm.access_token_env) if fcm.access_token_env else None
    if token:
        tokens: Any = StaticToken(token)
        project_id = fcm.project_id
        if not project_id:
            raise ConfigError(f"{WHERE}.fcm.project_id: required when the access token comes from "
                              f"${fcm.access_token_env} (there is no service-account file to read it from)")
    else:
        path = secret(fcm.credentials_env, needed_for=(
            f"push transport 'fcm' (the path of a service-account JSON key; or put an OAuth2 access "
            f"token in ${fcm.access_token_env})"))
        account = ServiceAccount.load(path, where=f"${fcm.credentials_env}")
        tokens = ServiceAccountToken(account)
        project_id = fcm.project_id or account.project_id
        if not project_id:
            raise ConfigError(f"{WHERE}.fcm.project_id: required (the service-account file has no project_id)")
    return FcmTransport(project_id, tokens, timeout=options.timeout)


def _build_apns(options: PushOptions) -> ApnsTransport:
    apns = options.apns
    for field, given in (("team_id", apns.team_id), ("key_id", apns.key_id), ("topic", apns.topic)):
        if not given:
            raise ConfigError(f"{WHERE}.apns.{field}: required for the apns transport "
                              "(team_id and key_id from the Apple developer account, topic = the app's bundle id)")
    assert apns.team_id and apns.key_id and apns.topic  # just checked, for the type checker
    value = secret(apns.key_env, needed_for="push transport 'apns' (the .p8 signing key, as PEM text or a file path)")
    key = load_apns_key(value, where=f"${apns.key_env}")
    return ApnsTransport(team_id=apns.team_id, key_id=apns.key_id, topic=apns.topic, key=key,
                         sandbox=apns.sandbox, priority=apns.priority, timeout=options.timeout)


@hookimpl
def vow_register_channels(register: Any) -> None:
    """Register the ``push`` channel."""
    register("push", build_push, PushOptions,
             "Push notifications: FCM HTTP v1, APNs (HTTP/2, token auth), or simulated")
