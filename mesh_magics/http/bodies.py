"""The bytes of a request body as they go on the wire.

A generation's body is small: encoded once, sent as it is on every attempt. An edit's
carries its input images as `data:` URLs, tens of MB each: those are never built whole.
The JSON around them is encoded once; each image's base64 is made a piece at a time as
the connection takes it, so at most one piece of one image exists as base64 at any time,
and the length (sent as Content-Length) is known before the first byte. bench/ measures
the peak memory of a 40 MB edit.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pybase64

from ..request import ImageRequest, reference

PIECE = 3 * 256 * 1024  # input bytes encoded at a time: 1 MiB of base64
IMAGE_FIELDS = frozenset({"image", "reference_images", "mask"})  # where a body names inputs


@dataclass(frozen=True)
class WireBody:
    """A body to send: `size` bytes, from `content()` (call it once per attempt)."""

    size: int
    _parts: tuple[bytes | tuple[bytes, bytes], ...]  # JSON text, or (data: prefix, image)

    def content(self) -> bytes | AsyncIterator[bytes]:
        if len(self._parts) == 1 and isinstance(self._parts[0], bytes):
            return self._parts[0]
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            if isinstance(part, bytes):
                yield part
                continue
            prefix, data = part
            yield prefix
            view = memoryview(data)
            for start in range(0, len(data), PIECE):
                yield pybase64.b64encode(view[start : start + PIECE])
            yield b'"'


def wire_body(request: ImageRequest) -> WireBody:
    """`request.body` as JSON, with an edit's `sha256:` references replaced by the data URLs
    of their images."""
    if not request.inputs:
        return WireBody(len(encoded := _json(request.body)), (encoded,))
    marker = f"mesh-input-{uuid.uuid4().hex}-"
    images = {reference(image): image for image in request.inputs}
    numbered = list(images.values())
    index = {ref: i for i, ref in enumerate(images)}

    def marked(value: Any) -> Any:
        if isinstance(value, str) and value in index:
            return f"{marker}{index[value]}"
        if isinstance(value, list):
            return [marked(item) for item in value]
        return value

    # Only the image fields name inputs: a prompt that happens to be a `sha256:` reference
    # (pasted from a record) is sent as typed.
    text = _json(
        {
            key: marked(value) if key in IMAGE_FIELDS else value
            for key, value in request.body.items()
        }
    )
    parts: list[bytes | tuple[bytes, bytes]] = []
    size = 0
    # A marker stands alone between quotes; inside another string its quotes are escaped.
    for i, piece in enumerate(re.split(rf'"{re.escape(marker)}(\d+)"', text.decode())):
        if i % 2 == 0:
            parts.append(piece.encode())
            size += len(parts[-1])
        else:
            image = numbered[int(piece)]
            prefix = f'"data:image/{image.format};base64,'.encode()
            parts.append((prefix, image.data))
            size += len(prefix) + 4 * -(-len(image.data) // 3) + 1
    return WireBody(size, tuple(parts))


def _json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
