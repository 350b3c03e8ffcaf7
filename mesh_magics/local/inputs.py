"""Input images of a generation request (``image``): checked, decoded, ready to draw.

``image`` is a data URL (``data:image/png;base64,...``), bare base64, or a list of them.
A remote http(s) URL is refused, as the real API refuses it: it will not fetch for you.
Each must decode to a picture Pillow can read, of at most ``MAX_PIXELS`` pixels.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

MAX_IMAGES = 16
MAX_PIXELS = 64 * 1024 * 1024  # a decompression bomb is refused before it is decoded

Detail = dict[str, Any]


@dataclass(frozen=True)
class InputImage:
    """One decoded input image: its bytes and what Pillow found in them."""

    data: bytes
    format: str
    width: int
    height: int


def _detail(loc: list[str | int], msg: str, kind: str) -> Detail:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def _decode(value: Any, loc: list[str | int]) -> tuple[InputImage | None, Detail | None]:
    if not isinstance(value, str):
        return None, _detail(loc, "Input should be a valid string", "string_type")
    text = value.strip()
    if text.lower().startswith(("http://", "https://")):
        message = "Remote image URLs are not supported; send a data URL or base64"
        return None, _detail(loc, message, "url_not_supported")
    if text.startswith("data:"):
        head, comma, text = text.partition(",")
        media, _, params = head[len("data:") :].partition(";")
        if not comma or "base64" not in params.lower().split(";"):
            return None, _detail(
                loc, "A data URL should be base64: data:image/...;base64,", "value_error"
            )
        if not media.lower().startswith("image/"):
            return None, _detail(
                loc, f"A data URL should hold an image, not {media or 'text'!r}", "value_error"
            )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None, _detail(loc, "Input is not valid base64", "value_error")
    return _open(data, loc)


def _open(data: bytes, loc: list[str | int]) -> tuple[InputImage | None, Detail | None]:
    from PIL import Image

    too_many = f"The image has more than {MAX_PIXELS:,} pixels"
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height, fmt = img.width, img.height, str(img.format or "").lower()
            if width * height > MAX_PIXELS:
                return None, _detail(loc, f"{too_many}: {width}x{height}", "value_error")
            img.load()
    except Image.DecompressionBombError:  # Pillow's own limit, met while opening
        return None, _detail(loc, too_many, "value_error")
    except (OSError, ValueError, SyntaxError):
        return None, _detail(loc, "Input is not a readable image", "value_error")
    return InputImage(data, fmt, width, height), None


def decode_image(value: Any, loc: list[str | int]) -> tuple[InputImage | None, Detail | None]:
    """One input image (a data URL or bare base64) decoded, or the detail saying why not."""
    return _decode(value, loc)


def check_images(value: Any) -> tuple[tuple[InputImage, ...], list[Detail]]:
    """The decoded input images of VALUE, and a detail for each bad one."""
    if value is None:
        return (), []
    if isinstance(value, list):
        if not value or len(value) > MAX_IMAGES:
            message = f"List should have between 1 and {MAX_IMAGES} items"
            return (), [_detail(["image"], message, "too_long" if value else "too_short")]
        items: list[tuple[Any, list[str | int]]] = [(v, ["image", i]) for i, v in enumerate(value)]
    else:
        items = [(value, ["image"])]
    images, details = [], []
    for item, loc in items:
        image, detail = _decode(item, loc)
        if image is not None:
            images.append(image)
        if detail is not None:
            details.append(detail)
    return tuple(images), details
