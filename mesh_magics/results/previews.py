"""Previews: an image scaled to fit a box and encoded for a notebook, as PNG when it has
transparency and JPEG when it has none. Those two are the formats every notebook renderer
shows (nbconvert drops `image/webp`; a GIF would cut the colours to 256)."""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..images import GeneratedImage

if TYPE_CHECKING:
    from PIL import Image

# Thumbnails box-reduce by a whole factor before resampling: 1024 px to a 320 px cell in a
# third of the time (bench/: displaying an n=4 cell), a mean difference below 1/255.
_REDUCING_GAP = 1.0
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Preview:
    data: bytes
    mime: str  # image/png or image/jpeg
    width: int
    height: int

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{self.base64()}"


def make_preview(image: GeneratedImage, max_px: int) -> Preview:
    """A PNG or JPEG no larger than `max_px` on the long side (0: full size).

    A PNG or JPEG that already fits is its own preview, byte for byte: nothing is lost and
    nothing is spent re-encoding it."""
    fits = max_px <= 0 or max(image.width, image.height) <= max_px
    if fits and image.format in ("png", "jpeg"):
        return Preview(image.data, f"image/{image.format}", image.width, image.height)
    from PIL import Image

    with Image.open(io.BytesIO(image.data)) as img:
        img.load()
        if not fits:
            # Bilinear: half the time of the default filter (bench/ row 4: a 1024 px image
            # to a 640 px tile), and a preview is shown at half that size anyway.
            img.thumbnail((max_px, max_px), Image.Resampling.BILINEAR, _REDUCING_GAP)
        return encode_preview(img)


@functools.cache
def preview_pool() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that make previews side by side, one per core (at most four)."""
    workers = max(1, min(4, os.cpu_count() or 1))
    return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="mesh-preview")


def encode_preview(img: Image.Image) -> Preview:
    buffer = io.BytesIO()
    if has_transparency(img):
        img.convert("RGBA").save(buffer, "PNG")
        mime = "image/png"
    else:
        img.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
        mime = "image/jpeg"
    return Preview(buffer.getvalue(), mime, img.width, img.height)


def has_transparency(img: Image.Image) -> bool:
    """Whether any pixel is less than opaque (an alpha channel of all 255 does not count)."""
    if img.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in img.info:
        return False
    alpha = (img if img.mode == "RGBA" else img.convert("RGBA")).getchannel("A")
    low, _ = alpha.getextrema()  # one band: (min, max)
    return bool(low != 255)


__all__ = ["Preview", "encode_preview", "has_transparency", "make_preview", "preview_pool"]
