"""An image in the format a file name asks for: `save("fox.png")` on a JPEG writes a PNG.

The suffix names the format you get, as with `PIL.Image.save`, so the path you asked for
is the path that exists. PNG and WebP are written losslessly, JPEG at quality 95 with any
transparency flattened onto white, GIF through an adaptive 256-colour palette. An image
already in the asked format keeps its original bytes.
"""

from __future__ import annotations

import dataclasses
import io

from ..images import GeneratedImage
from .previews import has_transparency

JPEG_QUALITY = 95


def convert(image: GeneratedImage, fmt: str) -> GeneratedImage:
    if image.format == fmt:
        return image
    from PIL import Image

    with Image.open(io.BytesIO(image.data)) as img:
        img.load()
        if fmt == "jpeg":
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            pixels = Image.alpha_composite(white, rgba).convert("RGB")
        else:
            pixels = img.convert("RGBA" if has_transparency(img) else "RGB")
    buffer = io.BytesIO()
    if fmt == "jpeg":
        pixels.save(buffer, "JPEG", quality=JPEG_QUALITY)
    elif fmt == "webp":
        pixels.save(buffer, "WEBP", lossless=True)
    else:
        pixels.save(buffer, fmt.upper())
    return dataclasses.replace(image, data=buffer.getvalue(), format=fmt)


__all__ = ["convert"]
