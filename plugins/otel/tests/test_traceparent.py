"""A channel's and an image provider's HTTP requests carry their leaf's trace in ``traceparent``."""

from __future__ import annotations

import base64
import struct
import zlib

import httpx
import respx
from opentelemetry.trace import SpanKind, StatusCode

from vow import Context, Vow
from vow.channels import deliver
from vow.images.pipeline import generate_image
from vow_otel import span_id_for, trace_id_for, traceparent

WEBHOOK = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
IMAGES = "https://api.openai.com/v1/images/generations"


def _png(width: int, height: int) -> bytes:
    """A valid PNG of ``width`` x ``height``: the provider checks that it is whole and the size asked for."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * 3 * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = _png(512, 512)  # the openai provider's default size


def announce(ctx: Context, out_dir: str):
    slack = yield ctx.begin_run(deliver, "slack", {"to": "", "body": "order 7 shipped"},
                                {"transport": "webhook"}).options(id=f"{ctx.id}.slack")
    image = yield ctx.begin_run(generate_image, "openai", {"prompt": "a parcel", "style": "photo"},
                                out_dir).options(id=f"{ctx.id}.image")
    return (yield ctx.all([slack, image]))


def test_each_request_carries_the_trace_of_its_leaf(otel_memory, otel_httpx_instrumented, monkeypatch,
                                                    tmp_path) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", WEBHOOK)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    otel_httpx_instrumented(otel_memory.provider)
    with respx.mock(assert_all_called=True) as mock:
        hook = mock.post(WEBHOOK).mock(return_value=httpx.Response(200, text="ok"))
        images = mock.post(IMAGES).mock(return_value=httpx.Response(
            200, json={"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode()}]}))
        with Vow(store=f"sqlite:{tmp_path / 'vow.sqlite'}", observers=[otel_memory.observer]) as vow:
            vow.run("announce/7", announce, str(tmp_path))
            born = vow.store.get("announce/7").created_at  # the run's ids are derived from it too

    spans = otel_memory.finished()
    for route, leaf in ((hook, "announce/7.slack"), (images, "announce/7.image")):
        assert route.call_count == 1
        request = route.calls.last.request
        (client,) = [s for s in spans if s.kind is SpanKind.CLIENT and s.parent.span_id == span_id_for(leaf, born)]
        assert client.context.trace_id == trace_id_for("announce/7", born)
        assert request.headers["traceparent"] == traceparent("announce/7", client.context.span_id,
                                                             root_created_at=born)
        assert client.status.status_code is StatusCode.UNSET
        # the recorded URL is the origin only: a webhook URL carries its secret in the path
        recorded = {k: v for k, v in client.attributes.items() if k in ("http.url", "url.full")}
        assert recorded and set(recorded.values()) == {str(request.url.copy_with(path="/", query=None))[:-1]}
        assert "XXXXSECRET" not in repr(dict(client.attributes))
