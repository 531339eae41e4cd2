"""The openai image provider (vow-image-openai) against a respx-mocked OpenAI-compatible server."""

from __future__ import annotations

import base64
import functools
import json
import struct
import zlib
from collections.abc import Iterator

import attrs
import httpx
import pytest
import respx

from vow.errors import ConfigError, PermanentError, RateLimitError, TransientError
from vow.faults import with_faults
from vow.images import ImageRequest
from vow.leaf import LeafContext
from vow.plugins import Plugins
from vow_image_openai import plugin
from vow_image_openai.provider import OpenAIImageOptions, OpenAIImageProvider

URL = "https://api.openai.com/v1/images/generations"
REQUEST = ImageRequest("a fox in a misty forest", "cartoon", seed=5, width=1024, height=1024)
CTX = LeafContext("images/fox.cartoon", attempt=2)


@functools.cache
def tiny_png(width: int = 1024, height: int = 1024) -> bytes:
    """A PNG of ``width`` x ``height`` (the size REQUEST asks for, by default: the provider checks it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x80\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def ok_body(png: bytes = b"", revised: str | None = "A fox, cartoon style") -> dict:
    item = {"b64_json": base64.b64encode(png or tiny_png()).decode()}
    if revised:
        item["revised_prompt"] = revised
    return {"created": 1700000000, "data": [item]}


def error_body(message: str, code: str | None, type_: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> OpenAIImageProvider:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    return OpenAIImageProvider(OpenAIImageOptions())


@respx.mock
def test_request_shape_and_decoded_png(provider: OpenAIImageProvider) -> None:
    png = tiny_png()
    route = respx.post(URL).mock(return_value=httpx.Response(200, json=ok_body(png), headers={"x-request-id": "req_1"}))
    image = provider.generate(REQUEST, CTX)

    sent = route.calls.last.request
    assert sent.headers["authorization"] == "Bearer sk-test-123"
    assert sent.headers["idempotency-key"] == "images/fox.cartoon"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {
        "model": "dall-e-3", "prompt": "a fox in a misty forest, in a cartoon style", "n": 1,
        "size": "1024x1024", "response_format": "b64_json",
    }
    assert image.png == png
    assert (image.provider, image.model, image.revised_prompt, image.duplicate) == (
        "openai", "dall-e-3", "A fox, cartoon style", False)
    assert image.detail == {"created": 1700000000, "request_id": "req_1"}


@respx.mock
def test_options_shape_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALAI_KEY", "local")
    options = OpenAIImageOptions(base_url="http://127.0.0.1:8080/v1/", model="sdxl", api_key_env="LOCALAI_KEY",
                                 size="512x512", prompt_template="{style}: {prompt}", extra={"quality": "hd"})
    route = respx.post("http://127.0.0.1:8080/v1/images/generations").mock(
        return_value=httpx.Response(200, json=ok_body(tiny_png(512, 512), revised=None)))
    image = OpenAIImageProvider(options).generate(REQUEST, CTX)
    body = json.loads(route.calls.last.request.content)
    assert body == {"quality": "hd", "model": "sdxl", "prompt": "cartoon: a fox in a misty forest", "n": 1,
                    "size": "512x512", "response_format": "b64_json"}
    assert route.calls.last.request.headers["authorization"] == "Bearer local"
    assert image.revised_prompt is None


@respx.mock
def test_a_gateway_that_replays_the_key_reports_a_duplicate(provider: OpenAIImageProvider) -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, json=ok_body(), headers={"Idempotent-Replayed": "true"}))
    assert provider.generate(REQUEST, CTX).duplicate


@respx.mock
def test_429_is_transient_and_honours_retry_after(provider: OpenAIImageProvider) -> None:
    respx.post(URL).mock(return_value=httpx.Response(
        429, json=error_body("Rate limit reached for images per minute", "rate_limit_exceeded", "requests"),
        headers={"Retry-After": "7"}))
    with pytest.raises(RateLimitError, match="Rate limit reached") as info:
        provider.generate(REQUEST, CTX)
    assert info.value.retry_after == 7
    assert info.value.code == "429"


@pytest.mark.parametrize("code", ["credit_balance_exhausted", "organization_spend_limit_exceeded",
                                  "project_spend_limit_exceeded", "organization_usage_limit_exceeded", None])
@respx.mock
def test_429_of_type_insufficient_quota_is_permanent_whatever_its_code(provider: OpenAIImageProvider, code) -> None:
    """OpenAI's billing refusals share the type insufficient_quota and differ in code; only the code was
    looked at, so a spent project budget was a rate limit, waited out for 50 minutes to no avail."""
    route = respx.post(URL).mock(return_value=httpx.Response(
        429, json=error_body("You exceeded your current quota", code, "insufficient_quota")))
    with pytest.raises(PermanentError, match="quota exhausted: You exceeded your current quota") as info:
        provider.generate(REQUEST, CTX)
    assert info.value.code == (code or "insufficient_quota") and route.call_count == 1


@respx.mock
def test_429_for_an_exhausted_quota_is_permanent(provider: OpenAIImageProvider) -> None:
    respx.post(URL).mock(return_value=httpx.Response(
        429, json=error_body("You exceeded your current quota", "insufficient_quota", "insufficient_quota")))
    with pytest.raises(PermanentError, match="quota exhausted: You exceeded your current quota") as info:
        provider.generate(REQUEST, CTX)
    assert info.value.code == "insufficient_quota"


@pytest.mark.parametrize("status", [500, 502, 503])
@respx.mock
def test_5xx_is_transient(provider: OpenAIImageProvider, status: int) -> None:
    respx.post(URL).mock(return_value=httpx.Response(status, text="<html>upstream error</html>"))
    with pytest.raises(TransientError, match=f"openai answered HTTP {status}: <html>upstream error") as info:
        provider.generate(REQUEST, CTX)
    assert info.value.code == str(status)


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("read timed out"), httpx.ConnectError("connection refused")])
@respx.mock
def test_timeouts_and_connection_errors_are_transient(provider: OpenAIImageProvider, exc: Exception) -> None:
    respx.post(URL).mock(side_effect=exc)
    with pytest.raises(TransientError, match=type(exc).__name__):
        provider.generate(REQUEST, CTX)


@respx.mock
def test_content_policy_rejection_is_permanent_with_the_providers_message(provider: OpenAIImageProvider) -> None:
    message = "Your request was rejected as a result of our safety system."
    respx.post(URL).mock(return_value=httpx.Response(400, json=error_body(message, "content_policy_violation")))
    with pytest.raises(PermanentError) as info:
        provider.generate(REQUEST, CTX)
    assert str(info.value) == f"openai rejected the request: {message}"
    assert info.value.code == "content_policy_violation"


@respx.mock
def test_validation_error_and_bad_key_are_permanent(provider: OpenAIImageProvider) -> None:
    respx.post(URL).mock(return_value=httpx.Response(
        400, json=error_body("'1000x1000' is not one of ['1024x1024', '1792x1024']", None)))
    with pytest.raises(PermanentError, match="is not one of") as info:
        provider.generate(REQUEST, CTX)
    assert info.value.code == "invalid_request_error"  # no code: the error type stands in

    respx.post(URL).mock(return_value=httpx.Response(401, json=error_body("Incorrect API key provided",
                                                                          "invalid_api_key")))
    with pytest.raises(PermanentError, match="openai answered HTTP 401: Incorrect API key provided") as info:
        provider.generate(REQUEST, CTX)
    assert info.value.code == "invalid_api_key"


@pytest.mark.parametrize("body, message", [
    ({"data": [{"url": "https://example.com/x.png"}]}, "no data\\[0\\].b64_json"),
    ({"data": []}, "no data\\[0\\].b64_json"),
    ({"data": [{"b64_json": "not base64!"}]}, "not valid base64"),
    ({"data": [{"b64_json": base64.b64encode(b"\xff\xd8\xff jpeg").decode()}]}, "not a PNG"),
])
@respx.mock
def test_unusable_answers_are_permanent(provider: OpenAIImageProvider, body: dict, message: str) -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(PermanentError, match=message) as info:
        provider.generate(REQUEST, CTX)
    assert info.value.code == "bad_response"


@pytest.mark.parametrize("body, message", [
    ([{"b64_json": "x"}], "no data\\[0\\].b64_json"),
    ({"data": {"0": {"b64_json": "x"}}}, "no data\\[0\\].b64_json"),
    ({"data": "iVBORw0KGgo="}, "no data\\[0\\].b64_json"),
    ({"data": ["iVBORw0KGgo="]}, "no data\\[0\\].b64_json"),
    ({"data": None}, "no data\\[0\\].b64_json"),
    ({"data": [{"b64_json": None}]}, "not valid base64"),
    ({"data": [{"b64_json": 12345}]}, "not valid base64"),
    ({"data": [{"b64_json": ["iVBORw0KGgo="]}]}, "not valid base64"),
])
@respx.mock
def test_answers_with_fields_of_the_wrong_type_are_permanent(provider: OpenAIImageProvider, body, message) -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(PermanentError, match=message) as info:
        provider.generate(REQUEST, CTX)
    assert info.value.code == "bad_response"
    assert str(info.value).startswith("openai: ")


@pytest.mark.parametrize("revised", [123, ["A fox"], {"text": "A fox"}, True, ""])
@respx.mock
def test_a_revised_prompt_that_is_not_text_is_left_out(provider: OpenAIImageProvider, revised) -> None:
    body = ok_body()
    body["data"][0]["revised_prompt"] = revised
    respx.post(URL).mock(return_value=httpx.Response(200, json=body))
    image = provider.generate(REQUEST, CTX)
    assert image.png == tiny_png() and image.revised_prompt is None


@pytest.mark.parametrize("code", [["content_policy_violation"], {"c": 1}, True])
@respx.mock
def test_an_error_code_that_is_not_text_is_the_status(provider: OpenAIImageProvider, code) -> None:
    respx.post(URL).mock(return_value=httpx.Response(400, json={"error": {"message": "Your request was rejected",
                                                                          "code": code}}))
    with pytest.raises(PermanentError, match="openai rejected the request: Your request was rejected") as info:
        provider.generate(REQUEST, CTX)
    assert info.value.code == "400"


def test_a_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_IMAGES_KEY", raising=False)
    with pytest.raises(ConfigError,
                       match="image provider 'openai': missing secret: set the environment variable MY_IMAGES_KEY"):
        OpenAIImageProvider(OpenAIImageOptions(api_key_env="MY_IMAGES_KEY"))


def test_bad_options_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk")
    plugins = Plugins(entry_points=False)
    plugins.add(plugin, "openai")
    for options, message in [({"size": "big"}, r"options\.size: 'size' must match regex"),
                             ({"base_url": "api.openai.com"}, r"options\.base_url: 'base_url' must match regex"),
                             ({"prompt_template": "{style}"}, "prompt_template must contain \\{prompt\\}"),
                             ({"timeout": 0}, r"options\.timeout: 'timeout' must be > 0: 0"),
                             ({"modle": "x"}, r"options\.modle: unknown key \(allowed: base_url, model")]:
        with pytest.raises(ConfigError, match=message):
            plugins.image_providers.build("openai", options)


@respx.mock
def test_an_injected_status_maps_like_a_real_one(provider: OpenAIImageProvider) -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200, json=ok_body()))
    faulty = with_faults(provider, {"fail_attempts": [1], "status": 503, "retry_after": 1.5})
    with pytest.raises(TransientError) as info:
        faulty.generate(REQUEST, LeafContext("x", attempt=1))
    assert info.value.retry_after == 1.5
    assert not route.called  # the fault answered instead of the server
    assert faulty.generate(REQUEST, LeafContext("x", attempt=2)).png == tiny_png()


def test_registered_by_its_own_distribution_through_the_entry_point() -> None:
    registration = Plugins().image_providers.get("openai")
    assert (registration.distribution, registration.options_class) == ("vow-image-openai", OpenAIImageOptions)


@respx.mock
def test_an_image_of_another_size_than_asked_is_permanent(provider: OpenAIImageProvider) -> None:
    # Before: a 3x2 PNG for a 1024x1024 request was accepted; the gallery showed a picture nobody asked for.
    respx.post(URL).mock(return_value=httpx.Response(200, json=ok_body(tiny_png(3, 2))))
    with pytest.raises(PermanentError, match="openai: the image is 3x2, not the 1024x1024 asked for") as info:
        provider.generate(REQUEST, CTX)
    assert info.value.code == "bad_response"


def test_an_answer_larger_than_max_bytes_is_refused_before_it_is_read(provider: OpenAIImageProvider) -> None:
    # Before: the whole answer was read into memory whatever its size (a hostile or broken server: gigabytes).
    read = []

    def huge() -> Iterator[bytes]:  # 64 MiB of base64, more than the default max_bytes (50 MiB)
        yield b'{"data": [{"b64_json": "'
        for _ in range(64):
            read.append(1)
            yield b"A" * (1024 * 1024)
        yield b'"}]}'

    with respx.mock:
        respx.post(URL).mock(return_value=httpx.Response(200, content=huge()))
        with pytest.raises(PermanentError, match=r"the answer is larger than max_bytes \(52428800 bytes\)") as info:
            provider.generate(REQUEST, CTX)
    assert info.value.code == "bad_response" and len(read) <= 51  # not read any further
    with respx.mock:
        respx.post(URL).mock(return_value=httpx.Response(200, headers={"content-length": str(10 ** 12)},
                                                         content=b"{}"))
        with pytest.raises(PermanentError, match="larger than max_bytes"):
            provider.generate(REQUEST, CTX)
    small = OpenAIImageProvider(attrs.evolve(provider.options, max_bytes=100))
    with respx.mock:
        respx.post(URL).mock(return_value=httpx.Response(200, json=ok_body()))
        with pytest.raises(PermanentError, match=r"larger than max_bytes \(100 bytes\)"):
            small.generate(REQUEST, CTX)


@respx.mock
def test_a_huge_error_body_is_cut_and_the_status_decides(provider: OpenAIImageProvider) -> None:
    body = json.dumps(error_body("overloaded", None)).encode() + b" " * (10 * 1024 * 1024)
    respx.post(URL).mock(return_value=httpx.Response(503, content=body, headers={"retry-after": "2"}))
    with pytest.raises(TransientError, match="openai answered HTTP 503") as info:
        provider.generate(REQUEST, CTX)
    assert info.value.retry_after == 2 and len(str(info.value)) < 1000


@pytest.mark.parametrize("header, wait", [("-1", None), ("nan", None), ("inf", None), ("1e400", None), ("soon", None),
                                          ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), (" 7 ", 7.0), ("", None)])
@respx.mock
def test_an_odd_retry_after_is_a_transient_error_without_a_bad_wait(provider: OpenAIImageProvider, header: str,
                                                                    wait: float | None) -> None:
    respx.post(URL).mock(return_value=httpx.Response(429, json=error_body("slow down", "rate_limit_exceeded"),
                                                     headers={"retry-after": header}))
    with pytest.raises(TransientError, match="slow down") as info:
        provider.generate(REQUEST, CTX)
    assert info.value.retry_after == wait


@pytest.mark.parametrize("content, content_type, message", [
    (b"<html>502 Bad Gateway</html>", "text/html", "no data\\[0\\].b64_json .*: <html>502 Bad Gateway"),
    (tiny_png(), "image/png", "no data\\[0\\].b64_json"),  # the image itself, not JSON
    (b"\xff\xfe\x00garbage", "application/json", "no data\\[0\\].b64_json"),
])
@respx.mock
def test_an_answer_that_is_not_json_is_permanent(provider: OpenAIImageProvider, content: bytes, content_type: str,
                                                 message: str) -> None:
    respx.post(URL).mock(return_value=httpx.Response(200, content=content, headers={"content-type": content_type}))
    with pytest.raises(PermanentError, match=message) as info:
        provider.generate(REQUEST, CTX)
    assert info.value.code == "bad_response"


@pytest.mark.parametrize("encode", [
    lambda png: base64.encodebytes(png).decode(),  # a line break every 76 characters
    lambda png: "data:image/png;base64," + base64.b64encode(png).decode(),
    lambda png: " " + base64.b64encode(png).decode() + "\n",
])
@respx.mock
def test_valid_base64_as_some_servers_write_it_is_decoded(provider: OpenAIImageProvider, encode) -> None:
    # Before: refused for good as "not valid base64" (validate=True takes no line break and no data: prefix).
    png = tiny_png()
    respx.post(URL).mock(return_value=httpx.Response(200, json={"data": [{"b64_json": encode(png)}]}))
    assert provider.generate(REQUEST, CTX).png == png
