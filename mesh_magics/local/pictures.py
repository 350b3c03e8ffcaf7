"""Deterministic procedural pictures: a sky, a sun, hills and a few shapes.

The palette comes from the prompt, the layout from (prompt, seed, index), so the
same request always yields the same bytes. An input image, when the request has one,
is fitted to the picture and replaces the sky: the drawing is made over it. Pillow
is imported lazily: importing the embedded backend must stay cheap.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import struct
import zlib
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

NOT_AN_IMAGE = b"this is not an image"
PREVIEW_WIDTH = 64

Color = tuple[int, ...]


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x00".join(repr(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _color(hue: float, saturation: float, value: float, alpha: bool) -> Color:
    rgb = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    channels = tuple(round(c * 255) for c in rgb)
    return (*channels, 255) if alpha else channels


def backdrop(data: bytes, width: int, height: int) -> Image.Image:
    """Input image DATA as RGBA, scaled and centre-cropped to fill WIDTH x HEIGHT."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as source:
        fitted = ImageOps.fit(source.convert("RGBA"), (width, height), Image.Resampling.BILINEAR)
    return fitted


def render(
    prompt: str,
    seed: int | None,
    index: int,
    width: int,
    height: int,
    *,
    transparent: bool,
    background: Image.Image | None = None,
) -> Image.Image:
    """Draw picture INDEX of a request: RGBA with a see-through sky if TRANSPARENT, else RGB.

    BACKGROUND (RGBA, from ``backdrop``) is laid over the sky, its own alpha respected.
    """
    from PIL import Image, ImageDraw

    hue = _rng("palette", prompt).random()
    layout = _rng("layout", prompt, seed, index)
    size = (width, height)
    short = min(width, height)
    if transparent:
        img = Image.new("RGBA", size, (0, 0, 0, 0))
    else:
        top = Image.new("RGB", size, _color(hue, 0.55, 0.85, False))
        bottom = Image.new("RGB", size, _color(hue + 0.08, 0.2, 1.0, False))
        # A 256x256 gradient stretched by Pillow: no per-pixel Python.
        mask = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
        img = Image.composite(bottom, top, mask)
    if background is not None:
        img = Image.alpha_composite(img.convert("RGBA"), background)
        img = img if transparent else img.convert("RGB")
    draw = ImageDraw.Draw(img)

    radius = short * layout.uniform(0.08, 0.16)
    cx, cy = width * layout.uniform(0.15, 0.85), height * layout.uniform(0.12, 0.38)
    sun = _color(hue + 0.5, 0.6, 1.0, transparent)
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=sun)

    for layer in range(3):
        base = height * (0.55 + 0.12 * layer)
        ridge = [
            (width * step / 8, base + height * layout.uniform(-0.08, 0.08)) for step in range(9)
        ]
        shade = _color(hue + 0.25 + 0.07 * layer, 0.5, 0.75 - 0.18 * layer, transparent)
        draw.polygon([(0, height), *ridge, (width, height)], fill=shade)

    for i in range(layout.randint(3, 6)):
        x, y = width * layout.random(), height * layout.random()
        s = short * layout.uniform(0.03, 0.09)
        fill = _color(hue + 0.618 * (i + 1), 0.7, 0.95, transparent)
        kind = layout.choice(("circle", "triangle", "diamond"))
        if kind == "circle":
            draw.ellipse((x - s, y - s, x + s, y + s), fill=fill)
        elif kind == "triangle":
            draw.polygon([(x, y - s), (x + s, y + s), (x - s, y + s)], fill=fill)
        else:
            draw.polygon([(x, y - s), (x + s, y), (x, y + s), (x - s, y)], fill=fill)

    if short >= 64:
        _caption(draw, prompt, width, height, transparent)
    return img


def noise(prompt: str, seed: int | None, index: int, width: int, height: int) -> Image.Image:
    """Picture INDEX of a request as RGB noise (the ``noise`` fault): the same request, the
    same bytes, and a file as big as the pixels (no encoder shrinks noise)."""
    from PIL import Image

    pixels = _rng("noise", prompt, seed, index).randbytes(width * height * 3)
    return Image.frombytes("RGB", (width, height), pixels)


def _caption(draw: object, prompt: str, width: int, height: int, transparent: bool) -> None:
    from PIL import ImageDraw, ImageFont

    assert isinstance(draw, ImageDraw.ImageDraw)
    words = " ".join(prompt.split()[:4])[:40]
    size = max(8, min(width, height) // 32)
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    try:
        font = ImageFont.load_default(size=size)
    except (OSError, ImportError):  # Pillow built without FreeType
        font = ImageFont.load_default()
    margin = size // 2
    draw.text((margin, height - margin - size), words, fill=_color(0, 0, 1, transparent), font=font)


def encode(img: Image.Image, fmt: str, compression: int | None = None) -> bytes:
    """IMG as FMT (png, jpeg or webp) bytes; COMPRESSION (0..100) is the jpeg/webp quality."""
    buf = io.BytesIO()
    quality = 90 if compression is None else compression
    if fmt == "png":
        img.save(buf, "PNG", compress_level=6)
    elif fmt == "jpeg":
        img.convert("RGB").save(buf, "JPEG", quality=quality)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=quality, method=4)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buf.getvalue()


def preview(
    prompt: str,
    seed: int | None,
    width: int,
    height: int,
    *,
    transparent: bool,
    blur: float,
    background: bytes | None = None,
) -> bytes:
    """A small blurred PNG of the first picture, as a streamed partial image."""
    from PIL import ImageFilter

    small_height = max(1, round(PREVIEW_WIDTH * height / width))
    img = render(
        prompt,
        seed,
        0,
        PREVIEW_WIDTH,
        small_height,
        transparent=transparent,
        background=None
        if background is None
        else backdrop(background, PREVIEW_WIDTH, small_height),
    )
    if blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    return encode(img, "png")


def truncated(data: bytes) -> bytes:
    """The first half of DATA: an image cut off in transit."""
    return data[: len(data) // 2]


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


@cache
def bomb_png(side: int = 60000) -> bytes:
    """A valid 1-bit PNG of SIDE x SIDE black pixels: ~440 KB that inflate to gigabytes."""
    rows = 1000
    assert side % rows == 0
    block = bytes((1 + (side + 7) // 8) * rows)  # filter byte + packed bits, all zero
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    # After a full flush the compressor restarts, so every block compresses the same.
    piece = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    body = piece * (side // rows) + deflate.flush(zlib.Z_FINISH)
    # Adler-32 of all-zero data: a stays 1, b is the length.
    adler = ((len(block) * (side // rows)) % 65521) << 16 | 1
    stream = b"\x78\xda" + body + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", stream)
        + _chunk(b"IEND", b"")
    )
