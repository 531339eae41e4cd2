"""Image variations: one prompt, several styles generated in parallel, one gallery.

``image_variations`` is the workflow: it fans out one durable :func:`generate_image` per
style, fans in with ``ctx.all_settled`` (a style that fails for good does not lose the others)
and writes the gallery. Each style is its own promise (``{run id}.{style}``), so a failing
style is retried alone while the others finish, and a resumed run does not generate again the
styles that already finished::

    vow.run("images/fox", image_variations, "a fox in a misty forest",
            ["photorealistic", "cartoon", "abstract"], "out/fox",
            faults={"abstract": {"fail_attempts": [1]}})
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import struct
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

from vow.config import structure
from vow.errors import ConfigError, PermanentError
from vow.faults import with_faults
from vow.images import ImageRequest
from vow.leaf import LeafContext

_STYLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # it becomes a file name and a promise id
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
    width, height = png_size(image.png, what=f"{provider} image for style {req.style!r}")
    name = f"{req.style}.png"
    write_atomic(Path(out_dir) / name, image.png)
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


def image_variations(ctx: Any, prompt: str, styles: Sequence[str], out_dir: str, provider: str = "image_sim",
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
    if len(set(styles)) != len(styles):
        raise ConfigError(f"image_variations: styles has duplicates: {styles}")
    faults = dict(faults or {})
    unknown = sorted(set(faults) - set(styles) - {"*"})
    if unknown:
        raise ConfigError(f"image_variations: faults name styles that are not generated: {unknown} "
                          f"(styles: {styles}, or '*' for all)")

    # Durable, so a resumed run keeps the first start time and the gallery's wall time stays honest.
    started_at = yield ctx.run(wall_clock).options(id=f"{ctx.id}.started")
    handles = []
    for style in styles:
        request = {"prompt": prompt, "style": style, "seed": seed, "width": width, "height": height}
        handle = yield ctx.begin_run(generate_image, provider, request, out_dir, options,
                                     faults.get(style, faults.get("*"))).options(id=f"{ctx.id}.{style}")
        handles.append(handle)
    outcomes = yield ctx.all_settled(handles)

    images = []
    for style, outcome, handle in zip(styles, outcomes, handles):
        if outcome.ok:
            images.append({**outcome.value, "ok": True})
        else:  # how many attempts it took to fail for good, for the gallery's count
            images.append({"style": style, "ok": False, "attempt": handle.attempt,
                           "error": f"{type(outcome.error).__name__}: {outcome.error}"})
    run = {"run_id": ctx.id, "prompt": prompt, "provider": provider, "seed": seed, "width": width,
           "height": height, "started_at": started_at, "images": images}
    paths = yield ctx.run(write_gallery_step, out_dir, run).options(id=f"{ctx.id}.gallery")
    return {**run, **paths}


def wall_clock(ctx: LeafContext) -> float:
    """Leaf: the current time (a durable step, so a replay reads the first answer)."""
    return time.time()


def write_gallery_step(ctx: LeafContext, out_dir: str, run: Mapping[str, Any]) -> dict[str, Any]:
    """Leaf: write ``index.html`` and ``gallery.json`` for ``run``; returns their paths and the wall time."""
    from vow.images.gallery import write_gallery

    run = {**run, "finished_at": time.time()}
    return write_gallery(out_dir, run)


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


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` to ``path`` so a reader never sees half a file (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp")
    # Mode 0666 less the umask, as open() gives any new file (mkstemp's 0600 would keep a web
    # server from serving the gallery).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_style_name(style: str) -> None:
    if not isinstance(style, str) or not _STYLE_NAME.match(style):
        raise ConfigError(f"style {style!r}: a style name is letters, digits, '-' and '_' "
                          "(it names the image file and the branch's promise id)")
