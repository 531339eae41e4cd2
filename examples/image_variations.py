"""One prompt, three styles generated in parallel; one style can be made to fail once.

    python examples/image_variations.py "a fox in a misty forest"
    python examples/image_variations.py "a fox in a misty forest" --crash

Each style is its own durable promise. With ``--crash`` the abstract style fails on its first
attempt (injected with vow's faults) and is retried on its own while the other two finish
once; the wall time stays that of the slowest branch. The images and an ``index.html``
gallery land in ``out/<run id>`` (``out/images/<prompt>-<time>`` by default; ``--out`` for
another folder). Runs are stored in ``.vow/vow.sqlite``: start the same
``--id`` again and the stored result comes back (or an interrupted run resumes) without
generating finished styles again. No API key is needed: the ``image_sim`` provider paints the
pictures locally (``pip install -e plugins/image_sim``); ``--provider openai`` (``pip install -e
plugins/image_openai``) uses ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time

from vow import Vow
from vow.events import Event, EventKind
from vow.images.pipeline import image_variations

STYLES = ["photorealistic", "cartoon", "abstract"]


class BranchPrinter:
    """Prints one line per attempt of each style as it happens (an engine observer)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        if event.parent != self.run_id or not event.func.endswith("generate_image"):
            return
        style = event.id.rsplit(".", 1)[-1]
        with self.lock:
            if event.kind is EventKind.STARTED:
                self.started.setdefault(style, event.time)
                print(f"  ▶ {style:<15} attempt {event.attempt} started")
            elif event.kind is EventKind.RETRY_SCHEDULED:
                print(f"  ✗ {style:<15} attempt {event.attempt} failed: {event.error} "
                      f"(retrying alone in {event.delay:.2f} s)")
            elif event.kind is EventKind.SETTLED:
                mark = "✓" if event.state == "resolved" else "✗"
                took = event.time - self.started.get(style, event.time)
                print(f"  {mark} {style:<15} {event.state} after {took:.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompt")
    parser.add_argument("--crash", action="store_true", help="make the abstract style fail on its first attempt")
    parser.add_argument("--styles", default=",".join(STYLES), help="comma-separated styles (default: %(default)s)")
    parser.add_argument("--id", help="the run id (default: images/<prompt>-<time>); reuse it to resume or join")
    parser.add_argument("--provider", default="image_sim", help="image provider (default: %(default)s)")
    parser.add_argument("--size", default="512", help="pixels or WIDTHxHEIGHT (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="output directory (default: out/<run id>)")
    parser.add_argument("--store", help="promise store (default: .vow/vow.sqlite)")
    args = parser.parse_args(argv)

    slug = re.sub(r"[^a-z0-9]+", "-", args.prompt.lower()).strip("-")[:40] or "prompt"
    run_id = args.id or f"images/{slug}-{int(time.time())}"
    out = args.out or f"out/{run_id}"
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    faults = {"abstract": {"fail_attempts": [1], "message": "Image generation service timeout for style 'abstract'"}} \
        if args.crash and "abstract" in styles else None

    printer = BranchPrinter(run_id)
    vow = Vow(store=args.store, observers=[printer])
    vow.register(image_variations)
    print(f"run {run_id}: {args.prompt!r} in {', '.join(styles)}" + (" (abstract fails once)" if faults else ""))
    try:
        result = vow.run(run_id, image_variations, args.prompt, styles, out, provider=args.provider,
                         seed=args.seed, size=args.size, faults=faults)
    finally:
        vow.close()

    if not printer.started:
        print("  (already finished: this is the stored result of that run; nothing was generated again)")
    print()
    for img in result["images"]:
        if img["ok"]:
            retried = "  (retried)" if img["attempt"] > 1 else ""
            print(f"  {img['style']:<15} attempt {img['attempt']}  {img['elapsed_ms'] / 1000:.2f} s  "
                  f"{out}/{img['path']}{retried}")
        else:
            print(f"  {img['style']:<15} FAILED  {img['error']}")
    total = sum(img["elapsed_ms"] for img in result["images"] if img["ok"]) / 1000
    print(f"\nwall time {result['wall_ms'] / 1000:.2f} s (the styles took {total:.2f} s in all)")
    print(f"gallery: {result['gallery']}")
    return 0 if all(img["ok"] for img in result["images"]) else 1


if __name__ == "__main__":
    sys.exit(main())
