"""The image-provider interface.

An image-provider plugin registers a factory (see
:func:`vow.hookspecs.vow_register_image_providers`) that builds an :class:`ImageProvider`
from its options. ``generate`` is called once per attempt with the leaf's context; a provider
that bills per generation must treat a repeated ``ctx.idempotency_key`` as the same request.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs

from vow.leaf import LeafContext


@attrs.frozen
class ImageRequest:
    """Turn ``prompt`` into a ``width`` x ``height`` image in ``style``; ``seed`` makes it repeatable."""

    prompt: str
    style: str
    seed: int = 0
    width: int = 512
    height: int = 512


@attrs.frozen
class GeneratedImage:
    """A provider's answer: PNG bytes plus what the provider said about them."""

    png: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    provider: str
    model: str = ""
    revised_prompt: str | None = None
    duplicate: bool = False  # the provider recognised the idempotency key: not generated (or billed) again
    detail: dict[str, Any] = attrs.field(factory=dict)


@runtime_checkable
class ImageProvider(Protocol):
    """Generates one image per call."""

    def generate(self, request: ImageRequest, ctx: LeafContext) -> GeneratedImage:
        """Generate once; raise ``TransientError`` or ``PermanentError`` on failure."""
