"""Images as durable steps: one image per branch, and the gallery of a run's images.

:func:`generate_image` is the leaf: one image with a named provider, written to
``<out_dir>/<style>.png``. :func:`begin_image` starts it as the branch ``{run id}.{branch id}``
and :func:`gallery_step` writes the gallery of a run's images — the one way both the
``image_variations`` workflow below and YAML pipelines (:mod:`vow.pipeline.workflow`) fan images
out and in. ``image_variations`` fans out one image per style, fans in with ``ctx.all_settled``
(a style that fails for good does not lose the others) and writes the gallery. Each style is
its own promise (``{run id}.{style}``), so a failing style is retried alone while the others
finish, and a resumed run does not generate again the styles that already finished::

    vow.run("images/fox", image_variations, "a fox in a misty forest",
            ["photorealistic", "cartoon", "abstract"], "out/fox",
            faults={"abstract": {"fail_attempts": [1]}})

The leaves here are stored by name (``vow.images.pipeline.generate_image``, ...): runs hold those
names, so they stay in this module.
"""

from __future__ import annotations

import hashlib
import re
import struct
import time
import zlib
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

from vow.config import structure
from vow.context import Call, Context
from vow.errors import ConfigError, PermanentError
from vow.faults import with_faults
from vow.files import remove_orphans, write_output
from vow.images import ImageRequest
from vow.images.gallery import write_gallery
from vow.leaf import LeafContext
from vow.steps import wall_clock

# \A and \Z, not ^ and $: "$" also matches before a final line break, and "cartoon\n" named a file
# "cartoon\n.png". A name Windows reserves for a device (nul.png is the null device there) is refused
# too, so an output folder can be copied to any machine.
STYLE_NAME = re.compile(r"\A(?!(?i:con|prn|aux|nul|com[0-9]|lpt[0-9])\Z)[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
"""What a style may be called: it names the image file (``<style>.png``) and a promise id."""
STYLE_RULE = "1-64 letters, digits, '-' and '_', starting with a letter or digit, not a device name such as nul"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def generate_image(ctx: LeafContext, provider: str, request: Mapping[str, Any], out_dir: str,
                   options: Mapping[str, Any] | None = None, faults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Leaf: generate one image with ``provider`` and write it to ``out_dir/<style>.png``.

    ``request`` holds the :class:`~vow.images.ImageRequest` fields (prompt, style, seed, width,
    height). The call's idempotency key goes to the provider, so a retry is not billed twice
    where the provider supports it. Returns JSON-able metadata: the file (relative to
    ``out_dir``), its sha256 and size, the provider and model, the attempt that succeeded,
    whether the provider answered from its idempotency cache, and the timings. The provider comes
    from the registry of the client running the workflow (``ctx.plugins``). ``options["rate_limit"]``
    limits the calls to this provider across every worker sharing the store (:mod:`vow.ratelimit`).

    Use it from a workflow, one branch per image::

        yield ctx.begin_run(generate_image, "image_sim", {"prompt": "a fox", "style": "cartoon"}, "out/fox")
    """
    from vow.ratelimit import limited, split_options

    started_at, started = time.time(), time.monotonic()
    req = structure(ImageRequest, request, where="image request")
    _check_style_name(req.style)
    provider_options, limit = split_options(options, where=f"image provider {provider!r} options")
    built = ctx.registry().image_providers.build(provider, provider_options,
                                                 where=f"image provider {provider!r} options")
    with limited(ctx, limit, f"image:{provider}"):
        image = with_faults(built, faults).generate(req, ctx)
    width, height = check_png(image.png, what=f"{provider} image for style {req.style!r}")
    name = f"{req.style}.png"
    write_output(Path(out_dir) / name, image.png, f"the image of style {req.style!r}")
    return {
        "style": req.style,
        "path": name,
        "sha256": hashlib.sha256(image.png).hexdigest(),
        "bytes": len(image.png),
        "width": width,
        "height": height,
        "provider": image.provider,
        "model": image.model,
        "revised_prompt": image.revised_prompt,
        "attempt": ctx.attempt,
        "duplicate": image.duplicate,
        "idempotency_key": ctx.idempotency_key,
        "started_at": started_at,
        "finished_at": time.time(),
        "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
    }


def begin_image(ctx: Context, branch_id: str, provider: str, request: Mapping[str, Any], out_dir: str | None,
                options: Mapping[str, Any] | None, faults: Mapping[str, Any] | None) -> Call:
    """The call that generates one image as the branch ``{ctx.id}.{branch_id}``: yield it for a handle.

    Add the branch's retry policy and timeout with ``.options(retry=..., timeout=...)``.
    """
    return ctx.begin_run(generate_image, provider, request, out_dir, options, faults).options(
        id=f"{ctx.id}.{branch_id}")


def gallery_image(style: str, value: Mapping[str, Any] | None, error: str | None, attempt: int) -> dict[str, Any]:
    """One image's entry in a gallery: the leaf's metadata when it succeeded (``error`` is
    ``None``), else the style, the error and the attempts it took to fail."""
    if error is None:
        return {**(value or {}), "ok": True}
    return {"style": style, "ok": False, "error": error, "attempt": attempt}


def gallery_step(ctx: Context, out_dir: str, started_at: float, provider: str,
                 images: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> tuple[Call, dict[str, Any]]:
    """The durable step ``{ctx.id}.gallery`` that writes the gallery of ``images`` — pairs of a
    request (prompt, style, seed, width, height) and its :func:`gallery_image` entry — and the
    run summary it writes (the first request's prompt, seed and size stand for the run's)."""
    first = images[0][0]
    run = {"run_id": ctx.id, "prompt": first["prompt"], "provider": provider, "seed": first["seed"],
           "width": first["width"], "height": first["height"], "started_at": started_at,
           "images": [entry for _, entry in images]}
    return ctx.run(write_gallery_step, out_dir, run).options(id=f"{ctx.id}.gallery"), run


def image_variations(ctx: Context, prompt: str, styles: Sequence[str], out_dir: str, provider: str = "image_sim",
                     seed: int = 0, size: int | str = 512, options: Mapping[str, Any] | None = None,
                     faults: Mapping[str, Mapping[str, Any]] | None = None) -> Generator[Any, Any, dict[str, Any]]:
    """Workflow: ``prompt`` in every style of ``styles`` at once, then a gallery in ``out_dir``.

    ``size`` is a side in pixels (``512``) or ``"WIDTHxHEIGHT"``; ``options`` go to the
    provider; ``faults`` maps a style (or ``"*"`` for all) to the faults injected into it.
    Returns the run's summary: every style's metadata (or its error) and the gallery's paths.
    """
    width, height = parse_size(size)
    styles = list(styles)
    if not styles:
        raise ConfigError("image_variations: styles is empty (give at least one style)")
    for style in styles:
        _check_style_name(style)
    # Compared without case: on a case-insensitive file system (macOS, Windows) "Cartoon" and
    # "cartoon" are one file, and one style's image would overwrite the other's.
    if len({style.lower() for style in styles}) != len(styles):
        raise ConfigError(f"image_variations: styles has duplicates (letter case aside: each style names "
                          f"a file): {styles}")
    faults = dict(faults or {})
    unknown = sorted(set(faults) - set(styles) - {"*"})
    if unknown:
        raise ConfigError(f"image_variations: faults name styles that are not generated: {unknown} "
                          f"(styles: {styles}, or '*' for all)")

    # Durable, so a resumed run keeps the first start time and the gallery's wall time stays honest.
    started_at = yield ctx.run(wall_clock).options(id=f"{ctx.id}.started")
    requests: list[dict[str, Any]] = [{"prompt": prompt, "style": style, "seed": seed, "width": width,
                                       "height": height} for style in styles]
    handles = []
    for style, request in zip(styles, requests):
        handles.append((yield begin_image(ctx, style, provider, request, out_dir, options,
                                          faults.get(style, faults.get("*")))))
    outcomes = yield ctx.all_settled(handles)

    images = [(request, gallery_image(style, outcome.value,
                                      None if outcome.ok else f"{type(outcome.error).__name__}: {outcome.error}",
                                      handle.attempt))  # the attempts it took to fail, for the gallery's count
              for style, request, outcome, handle in zip(styles, requests, outcomes, handles)]
    step, run = gallery_step(ctx, out_dir, started_at, provider, images)
    paths = yield step
    return {**run, **paths}


def write_gallery_step(ctx: LeafContext, out_dir: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """Leaf: write ``index.html`` and ``gallery.json`` for ``run``; returns their paths and the wall time.

    First the temp files a killed writer left of each style's image are removed: a style killed
    while writing its image that then failed for good never writes that image again.
    """
    for image in run["images"]:
        style = image.get("style")
        if isinstance(style, str) and STYLE_NAME.match(style):
            remove_orphans(Path(out_dir) / f"{style}.png")
    return write_gallery(out_dir, {**run, "finished_at": time.time()})


def parse_size(size: int | str) -> tuple[int, int]:
    """``512`` -> ``(512, 512)``; ``"768x512"`` -> ``(768, 512)``; anything else is a :class:`ConfigError`."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size, size
    if isinstance(size, str):
        match = re.fullmatch(r"\s*([1-9][0-9]*)\s*(?:x\s*([1-9][0-9]*)\s*)?", size)
        if match:
            width = int(match.group(1))
            return width, int(match.group(2) or width)
    raise ConfigError(f"size: expected pixels (512) or WIDTHxHEIGHT (768x512), got {size!r}")


def png_size(png: bytes, *, what: str = "image") -> tuple[int, int]:
    """Width and height from a PNG's header; :class:`PermanentError` if ``png`` is not a PNG."""
    if len(png) < 24 or not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise PermanentError(f"{what} is not a PNG", code="bad_image")
    return struct.unpack(">II", png[16:24])


def check_png(png: bytes, *, what: str = "image") -> tuple[int, int]:
    """:func:`png_size`, once every chunk of ``png`` is whole (its length and CRC) up to its IEND chunk.

    A provider may answer with a cut or damaged PNG (a body cut short, a bad proxy) whose header
    is fine: written as it is, the gallery would show a broken image as a success.
    """
    width, height = png_size(png, what=what)
    at = len(PNG_SIGNATURE)
    while at + 12 <= len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        end = at + 12 + length
        if end > len(png):
            break
        if zlib.crc32(png[at + 4:end - 4]) != struct.unpack(">I", png[end - 4:end])[0]:
            raise PermanentError(f"{what} is a damaged PNG (the CRC of its {kind.decode('latin-1')!r} chunk at byte "
                                 f"{at} is wrong)", code="bad_image")
        at = end
        if kind == b"IEND":
            return width, height
    raise PermanentError(f"{what} is a PNG cut short (it ends before its IEND chunk)", code="bad_image")


def _check_style_name(style: str) -> None:
    if not isinstance(style, str) or not STYLE_NAME.match(style):
        raise ConfigError(f"style {style!r}: a style name is {STYLE_RULE} "
                          "(it names the image file and the branch's promise id)")
