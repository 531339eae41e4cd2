"""The ``openai`` image provider: any server that speaks OpenAI's image-generation API.

Each attempt is one ``POST {base_url}/v1/images/generations`` with ``response_format:
b64_json``; the PNG comes back inline. It works with OpenAI itself and with compatible servers
(LocalAI, vLLM-style gateways, proxies) — point ``base_url`` at them.

Idempotency: the call's idempotency key is sent as an ``Idempotency-Key`` header. OpenAI's
image endpoint and most compatible servers ignore it, so a retry after a lost response may be
generated (and billed) twice; a gateway that honours the key and answers
``Idempotent-Replayed: true`` is reported as ``duplicate=True``.

Errors: 429 (unless the quota is exhausted), 5xx, timeouts and connection failures are
transient, with any ``Retry-After`` honoured (a 429 as a :class:`~vow.errors.RateLimitError`, waited
out longer than a 5xx); a content-policy rejection, a validation error, a
bad key or an exhausted quota are permanent and carry the provider's ``error.message`` and
``error.code``. An answer that is not a usable image is permanent too (``code="bad_response"``):
one larger than ``max_bytes`` (not read further), no inline ``b64_json`` (a URL instead), bad
base64, something other than a PNG, or a PNG of another size than the one asked for.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import attrs
import httpx

from vow.config import secret
from vow.errors import PermanentError
from vow.http import error_for_exception, error_for_status, is_transient_status, text_field
from vow.images import GeneratedImage, ImageRequest
from vow.images.pipeline import png_size
from vow.leaf import LeafContext

PROVIDER = "openai"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A 429 that no wait can fix: the account is out of credit or over a spending limit. OpenAI gives these
# the type insufficient_quota and tells them apart by code; its rate limits (rate_limit_exceeded,
# slow_down) are waited out as a RateLimitError.
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "credit_balance_exhausted",
                         "organization_spend_limit_exceeded", "project_spend_limit_exceeded",
                         "organization_usage_limit_exceeded"})
ERROR_BYTES = 64 * 1024  # of an error's body: its message is at the start


def _template(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if "{prompt}" not in value:
        raise ValueError(f"{attribute.name} must contain {{prompt}} (and may contain {{style}}), got {value!r}")


@attrs.frozen
class OpenAIImageOptions:
    """Options of the ``openai`` image provider.

    ``base_url``: the server (``/v1`` is added unless it already ends with it); ``model``;
    ``api_key_env``: the environment variable holding the key; ``size``: the ``WxH`` to ask
    for (default: the request's width and height — OpenAI accepts only a few sizes);
    ``timeout``: seconds per attempt; ``prompt_template``: how the style joins the prompt;
    ``extra``: more body fields passed as they are (``quality``, ``background``, ...);
    ``max_bytes``: the largest answer read (default 50 MiB; a 4096x4096 PNG in base64 fits).
    """

    base_url: str = attrs.field(default="https://api.openai.com",
                                validator=attrs.validators.matches_re(r"https?://[^/\s]+.*"))  # an http(s) URL
    model: str = "dall-e-3"
    api_key_env: str = "OPENAI_API_KEY"
    size: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.matches_re(r"[1-9][0-9]*x[1-9][0-9]*")))  # like 1024x1024
    timeout: float = attrs.field(default=120.0, validator=attrs.validators.gt(0))
    prompt_template: str = attrs.field(default="{prompt}, in a {style} style", validator=_template)
    extra: dict[str, Any] = attrs.field(factory=dict)
    max_bytes: int = attrs.field(default=50 * 1024 * 1024, validator=attrs.validators.gt(0))


class OpenAIImageProvider:
    """Generates images through an OpenAI-compatible HTTP API (see the module docstring)."""

    def __init__(self, options: OpenAIImageOptions | None = None) -> None:
        self.options = options or OpenAIImageOptions()
        self._api_key = secret(self.options.api_key_env, needed_for=f"image provider {PROVIDER!r}")
        base = self.options.base_url.rstrip("/")
        self.url = base + ("" if base.endswith("/v1") else "/v1") + "/images/generations"

    def body(self, request: ImageRequest) -> dict[str, Any]:
        """The JSON body for ``request`` (OpenAI has no seed: ``request.seed`` is not sent)."""
        return {
            **self.options.extra,
            "model": self.options.model,
            "prompt": self.options.prompt_template.format(prompt=request.prompt, style=request.style),
            "n": 1,
            "size": self.options.size or f"{request.width}x{request.height}",
            "response_format": "b64_json",
        }

    def generate(self, request: ImageRequest, ctx: LeafContext) -> GeneratedImage:
        """POST one generation and decode the PNG; raise ``TransientError``/``PermanentError`` on failure."""
        headers = {"Authorization": f"Bearer {self._api_key}", "Idempotency-Key": ctx.idempotency_key}
        timeout = httpx.Timeout(self.options.timeout, connect=min(10.0, self.options.timeout))
        try:
            with httpx.Client(timeout=timeout) as client, client.stream(
                    "POST", self.url, json=self.body(request), headers=headers) as response:
                body = self._read(response)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, provider=PROVIDER) from exc
        if response.status_code >= 400:
            raise self.error_for_status(response.status_code, response.headers,
                                        body.decode(response.encoding or "utf-8", errors="replace"))
        return self._image(request, response, body)

    def _read(self, response: httpx.Response) -> bytes:
        """The answer's body, read no further than ``max_bytes``: a server may send any amount.

        An error's body is only its message: past ``ERROR_BYTES`` it is cut, and the status decides.
        """
        error = response.status_code >= 400
        limit = ERROR_BYTES if error else self.options.max_bytes
        too_large = PermanentError(f"{PROVIDER}: the answer is larger than max_bytes ({limit} bytes); raise "
                                   "max_bytes if images this large are expected", code="bad_response")
        length = response.headers.get("content-length", "")
        if not error and length.isdigit() and int(length) > limit:
            raise too_large
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                if error:
                    break
                raise too_large
        return b"".join(chunks)[:limit]

    def error_for_status(self, status: int, headers: Mapping[str, str] | None = None, detail: str = "") -> Exception:
        """The error an HTTP answer means, using the provider's ``error.message`` and ``error.code``."""
        message, code, kind = _provider_error(detail)
        if status == 429 and (code in QUOTA_CODES or kind == "insufficient_quota"):
            return PermanentError(f"{PROVIDER}: quota exhausted: {message}", code=code)
        if is_transient_status(status):
            return error_for_status(status, headers, message, provider=PROVIDER)
        what = "rejected the request" if status == 400 else f"answered HTTP {status}"
        return PermanentError(f"{PROVIDER} {what}: {message}", code=code or str(status))

    def _image(self, request: ImageRequest, response: httpx.Response, body: bytes) -> GeneratedImage:
        text = body[:200].decode(response.encoding or "utf-8", errors="replace")
        try:
            payload = json.loads(body)
            item = payload["data"][0]
            encoded = item["b64_json"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise PermanentError(f"{PROVIDER}: the answer has no data[0].b64_json (does the server "
                                 f"honour response_format=b64_json?): {text}", code="bad_response") from None
        if isinstance(encoded, str):
            # Line breaks every 76 characters (MIME style, as Python's base64.encodebytes writes) and
            # a data: URL's prefix are how some compatible servers send valid base64.
            encoded = "".join(encoded.removeprefix("data:image/png;base64,").split())
        try:
            png = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise PermanentError(f"{PROVIDER}: data[0].b64_json is not valid base64", code="bad_response") from None
        if not png.startswith(PNG_SIGNATURE):
            raise PermanentError(f"{PROVIDER}: the image is not a PNG (set output_format to png)", code="bad_response")
        asked = self.options.size or f"{request.width}x{request.height}"
        width, height = png_size(png, what=f"{PROVIDER}: the image")
        if f"{width}x{height}" != asked:
            # A server that resizes on its own would have the gallery show another picture than asked for.
            raise PermanentError(f"{PROVIDER}: the image is {width}x{height}, not the {asked} asked for "
                                 "(set the size option to one the model makes)", code="bad_response")
        return GeneratedImage(
            # Only text is a revised prompt; the image itself is good, so another value is left out, not fatal.
            png=png, provider=PROVIDER, model=self.options.model, revised_prompt=text_field(item, "revised_prompt"),
            duplicate=response.headers.get("idempotent-replayed", "").lower() == "true",
            detail={"created": payload.get("created"), "request_id": response.headers.get("x-request-id")},
        )


def _provider_error(detail: str) -> tuple[str, str | None, str | None]:
    """``(message, code, type)`` from an OpenAI-style error body ``{"error": {"message", "code", "type"}}``;
    ``code`` is the type when the body has no code."""
    try:
        error = json.loads(detail)["error"]
        message = error.get("message") or detail
        # Compatible servers send a code as text or as a number (vLLM: 400); a list, an object or a
        # boolean is none, and the HTTP status stands in for it.
        code = next((c for c in (error.get("code"), error.get("type"))
                     if c and isinstance(c, (str, int)) and not isinstance(c, bool)), None)
        kind = error.get("type")
        return str(message), (str(code) if code else None), (kind if isinstance(kind, str) else None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return detail[:500], None, None
