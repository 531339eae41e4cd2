"""The ``image_sim`` provider: paints real PNGs, bills and deduplicates like a paid API.

Each generation is recorded in a :class:`vow.simulation.Ledger` under the call's idempotency
key, and its PNG is cached in an ``image_sim/`` directory next to the ledger. A retry with a
key the ledger already holds is answered from the cache with ``duplicate=True`` and is not
counted as a second generation, even after a crash or in another process.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import attrs

from vow.errors import PermanentError
from vow.files import write_output
from vow.hookspecs import Register, hookimpl
from vow.http import error_for_status
from vow.images import GeneratedImage, ImageRequest
from vow.leaf import LeafContext
from vow.simulation import Ledger, latency, stable_hex
from vow_image_sim.render import MAX_SIDE, MIN_SIDE, STYLES, render_png
from vow_image_sim.scene import read_scene

PROVIDER = "image_sim"
# Mean seconds per generation: detailed pictures take longer, as with a real model.
STYLE_LATENCY = {"photorealistic": 0.7, "cartoon": 0.5, "abstract": 0.35}
REPLAY_LATENCY = 0.1  # answering a known key from the provider's cache is much faster
# A full disk names the file and is retried; a read-only cache folder fails at once (vow.files.write_output).
CACHED = "image_sim's cached image"


@attrs.frozen
class ImageSimOptions:
    """Options of the ``image_sim`` provider.

    ``latency``: mean seconds per generation (default: by style, 0.35 s abstract to 0.7 s
    photorealistic); ``jitter``: how much it varies (a fraction); ``ledger``: the ledger file
    (default ``$VOW_SIM_DIR/ledger.sqlite`` or ``.vow/sim/ledger.sqlite``), the PNG cache lives
    beside it; ``model``: the model name reported with each image.
    """

    latency: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    jitter: float = attrs.field(default=0.25, validator=[attrs.validators.ge(0), attrs.validators.le(1)])
    ledger: str | None = None
    model: str = "image-sim-1"


class ImageSimProvider:
    """Generates images locally; see the module docstring for how it bills and deduplicates."""

    def __init__(self, options: ImageSimOptions | None = None) -> None:
        self.options = options or ImageSimOptions()
        self.ledger = Ledger(self.options.ledger)
        self.cache_dir = self.ledger.path.parent / PROVIDER

    def generate(self, request: ImageRequest, ctx: LeafContext) -> GeneratedImage:
        """Generate ``request`` once per idempotency key; a repeated key returns the first image."""
        _check(request)
        key = ctx.idempotency_key
        started = time.monotonic()
        fresh = None if self.ledger.get(key) else self._paint(request, ctx)
        receipt, duplicate = self.ledger.deliver(
            key, PROVIDER, attrs.asdict(request), lambda: (fresh or self._paint(request, ctx))["receipt"])
        if duplicate:
            _sleep_until(started, latency(REPLAY_LATENCY, self.options.jitter, key, ctx.attempt))
        png = fresh["png"] if fresh and not duplicate else self._cached(receipt)
        return GeneratedImage(
            png=png, provider=PROVIDER, model=receipt["model"], revised_prompt=receipt["revised_prompt"],
            duplicate=duplicate,
            detail={"generation_id": receipt["generation_id"], "sha256": receipt["sha256"],
                    "render_ms": receipt["render_ms"], "cache_file": str(self.cache_dir / receipt["file"])},
        )

    def error_for_status(self, status: int, headers: Mapping[str, str] | None = None, detail: str = "") -> Exception:
        """Classify an (injected) HTTP status as a real image API's answer would be."""
        return error_for_status(status, headers, detail, provider=PROVIDER)

    def generations(self) -> int:
        """How many images were generated (billed) so far; duplicates are not counted."""
        return len(self.ledger.deliveries(PROVIDER))

    def _paint(self, request: ImageRequest, ctx: LeafContext) -> dict[str, Any]:
        """Render, wait out the simulated latency, cache the PNG; the receipt the ledger will keep."""
        started = time.monotonic()
        png = render_png(request.prompt, request.style, request.seed, request.width, request.height)
        render_ms = round((time.monotonic() - started) * 1000, 1)
        mean = self.options.latency if self.options.latency is not None else STYLE_LATENCY[request.style]
        _sleep_until(started, latency(mean, self.options.jitter, ctx.idempotency_key, ctx.attempt))
        digest = hashlib.sha256(png).hexdigest()
        # The digest is in the name so two racing first attempts never overwrite each other's file.
        name = f"{stable_hex(ctx.idempotency_key, 24)}-{digest[:12]}.png"
        write_output(self.cache_dir / name, png, CACHED)
        scene = read_scene(request.prompt, request.style, request.seed)
        receipt = {
            "generation_id": "gen_" + stable_hex(ctx.idempotency_key, 20, salt=PROVIDER),
            "model": self.options.model, "file": name, "sha256": digest, "render_ms": render_ms,
            "revised_prompt": f"{request.prompt} ({request.style}; {scene.time}"
                              + "".join(f", {e}" for e in sorted(scene.elements)) + ")",
            "request": attrs.asdict(request),
        }
        return {"png": png, "receipt": receipt}

    def _cached(self, receipt: Mapping[str, Any]) -> bytes:
        """The first generation's PNG; repainted from its request if the cache file was deleted."""
        path = self.cache_dir / receipt["file"]
        try:
            return bytes(path.read_bytes())
        except FileNotFoundError:
            req = receipt["request"]
            png = render_png(req["prompt"], req["style"], req["seed"], req["width"], req["height"])
            write_output(path, png, CACHED)
            return png


def _check(request: ImageRequest) -> None:
    """Reject what a real API would answer with HTTP 400."""
    if not request.prompt.strip():
        raise PermanentError("image_sim: the prompt is empty", code="invalid_prompt")
    if request.style not in STYLES:
        raise PermanentError(f"image_sim: unknown style {request.style!r} (available: {', '.join(STYLES)})",
                             code="invalid_style")
    for name, side in (("width", request.width), ("height", request.height)):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise PermanentError(f"image_sim: {name} must be between {MIN_SIDE} and {MAX_SIDE} pixels, "
                                 f"got {side}", code="invalid_size")


def _sleep_until(started: float, seconds: float) -> None:
    remaining = started + seconds - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


@hookimpl
def vow_register_image_providers(register: Register) -> None:
    """Register ``image_sim``."""
    register(PROVIDER, ImageSimProvider, ImageSimOptions,
             "Simulated image generation: real PNGs painted locally (photorealistic, cartoon, abstract), no API key")
