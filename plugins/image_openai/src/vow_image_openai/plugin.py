"""Registers the ``openai`` image provider with vow (entry point ``openai = "vow_image_openai.plugin"``)."""

from __future__ import annotations

from vow.hookspecs import Register, hookimpl
from vow_image_openai.provider import PROVIDER, OpenAIImageOptions, OpenAIImageProvider


@hookimpl
def vow_register_image_providers(register: Register) -> None:
    """Register ``openai``."""
    register(PROVIDER, OpenAIImageProvider, OpenAIImageOptions,
             "Any OpenAI-compatible /v1/images/generations endpoint (OpenAI, LocalAI, gateways)")
