"""vow-image-sim: an image provider that paints real PNGs locally, with no API key.

Three styles (``photorealistic``, ``cartoon``, ``abstract``), deterministic from the prompt,
style, seed and size; generations are counted in a crash-proof ledger and deduplicated by
idempotency key, the way a paid provider bills them.
"""

from vow_image_sim.plugin import ImageSimOptions, ImageSimProvider
from vow_image_sim.render import STYLES, render_png

__all__ = ["ImageSimOptions", "ImageSimProvider", "STYLES", "render_png"]
