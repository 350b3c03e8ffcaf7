"""The original bytes of the PIL images decoded from results, so that an edit of one sends
the very bytes the server made (the store knows them by their hash), not a re-encoding.

`result[0]` is a PIL image. When a result decodes one, it calls `remember_original`;
`original_of` gives the bytes back while the image's pixels are unchanged (checked then,
by decoding the original again). The one registry of the process is `_ORIGINALS`: keyed by
`id(image)`, since a PIL image is not hashable (no `WeakKeyDictionary`), and each entry
holds the image only through a weak reference whose callback drops the entry when the
image is collected, so nothing here keeps an image alive and a reused id is never taken
for the old image.
"""

from __future__ import annotations

import io
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

    from .images import GeneratedImage

_ORIGINALS: dict[int, tuple[weakref.ref[Image.Image], GeneratedImage, str | None]] = {}


def remember_original(image: Image.Image, original: GeneratedImage, request_id: str | None) -> None:
    """`image` was decoded from `original`, an image of the result `request_id`."""
    key = id(image)
    held = weakref.ref(image, lambda _: _ORIGINALS.pop(key, None))
    _ORIGINALS[key] = (held, original, request_id)


def original_of(image: Image.Image) -> tuple[GeneratedImage, str | None] | None:
    """What `image` was decoded from (and its result's request id), if it is unchanged."""
    entry = _ORIGINALS.get(id(image))
    if entry is None or entry[0]() is not image:
        return None
    from PIL import Image

    with Image.open(io.BytesIO(entry[1].data)) as fresh:
        fresh.load()
        unchanged = fresh.mode == image.mode and fresh.size == image.size
        return entry[1:] if unchanged and fresh.tobytes() == image.tobytes() else None


__all__ = ["original_of", "remember_original"]
