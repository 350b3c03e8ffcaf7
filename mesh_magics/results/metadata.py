"""The prompt and model inside an image file, without touching its pixels: PNG `iTXt`
chunks, a JPEG comment segment. WebP and GIF get a `.json` file beside them instead
(`needs_sidecar`): their metadata blocks are read by few tools."""

from __future__ import annotations

import json
import zlib
from typing import Any

from ..images import GeneratedImage

_END_OF_IHDR = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
_JPEG_COMMENT_BYTES = 65000  # a segment's length field is 16 bits


def needs_sidecar(fmt: str) -> bool:
    return fmt not in ("png", "jpeg")


def with_metadata(image: GeneratedImage, metadata: dict[str, Any]) -> bytes:
    """The image bytes with `metadata` embedded (empty values left out)."""
    text = {key: value for key, value in metadata.items() if value}
    if image.format == "png":
        chunks = b"".join(_png_itxt(key, str(value)) for key, value in text.items())
        return image.data[:_END_OF_IHDR] + chunks + image.data[_END_OF_IHDR:]
    if image.format == "jpeg":
        comment = json.dumps(text, ensure_ascii=False).encode("utf-8")[:_JPEG_COMMENT_BYTES]
        segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        return image.data[:2] + segment + image.data[2:]
    return image.data


def sidecar(metadata: dict[str, Any]) -> bytes:
    return json.dumps(metadata, ensure_ascii=False, indent=2).encode("utf-8")


def _png_itxt(key: str, value: str) -> bytes:
    body = key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
    return (
        len(body).to_bytes(4, "big")
        + b"iTXt"
        + body
        + zlib.crc32(b"iTXt" + body).to_bytes(4, "big")
    )


__all__ = ["needs_sidecar", "sidecar", "with_metadata"]
