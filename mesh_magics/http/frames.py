"""What one frame of a generation stream is: an error, a preview, images, or a status.

Two shapes arrive (docs/protocol.md, "Streaming"). MeshAPI's: every frame is an
`image.chunk`; a preview is one whose `status` is `partial_image` (or that has a
`partial_image_index`), with its image in `data[0]`; the final chunk has the images in
`data`. OpenAI's typed events, which gateways forward: `image_generation.partial_image`
is a preview and `image_generation.completed` one finished image, both with the image
at the top level of the frame.

A field we act on that has the wrong JSON type (`"status": []`) is a broken frame: one
short `StreamError`, never a traceback (`checked`).
"""

from __future__ import annotations

import enum
from typing import Any

from ..errors import ImageDecodeError, StreamError
from ..events import PartialImage
from ..images import decode_base64, decode_data_url, sniff_format

PREVIEW_STATUSES = frozenset({"partial_image", "partial"})
# The fields of a frame that are read, and the JSON types they may have (or null).
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "type": (str,),
    "status": (str,),
    "data": (list, dict),
    "usage": (dict,),
    "partial_image_index": (int,),
    "b64_json": (str,),
    "url": (str,),
    "revised_prompt": (str,),
}
_JSON_TYPES = {dict: "an object", list: "a list", str: "text", int: "a number", bool: "true/false"}


class Frame(enum.Enum):
    ERROR = "error"
    PREVIEW = "preview"
    IMAGE = "one finished image (OpenAI's shape)"
    IMAGES = "the final chunk, with every image"
    STATUS = "where the job is"
    OTHER = "nothing we use"


def checked(frame: dict[str, Any], request_id: str) -> dict[str, Any]:
    """`frame`, if every field we read has a type we can use; else a `StreamError`."""
    for name, types in FIELD_TYPES.items():
        value = frame.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            wanted = " or ".join(_JSON_TYPES[t] for t in types)
            raise StreamError(
                f"the server sent a frame whose {name!r} is {_type_of(value)}, not {wanted} "
                f"(request {request_id})"
            )
    return frame


def _type_of(value: Any) -> str:
    if isinstance(value, float):
        return "a number"
    return next((text for t, text in reversed(_JSON_TYPES.items()) if isinstance(value, t)), "?")


def kind_of(frame: dict[str, Any]) -> Frame:
    event = frame.get("type")
    event = event if isinstance(event, str) else ""
    if frame.get("error") or event == "error" or event.endswith(".failed"):
        return Frame.ERROR
    status = frame.get("status")
    if event.endswith(".partial_image"):
        return Frame.PREVIEW
    if event.endswith(".completed"):
        return Frame.IMAGE
    if status == "completed" and frame.get("data"):
        return Frame.IMAGES  # even should it also carry a stray partial_image_index
    if status in PREVIEW_STATUSES or frame.get("partial_image_index") is not None:
        return Frame.PREVIEW
    if frame.get("data"):
        return Frame.IMAGES
    return Frame.STATUS if status else Frame.OTHER


def preview_of(frame: dict[str, Any]) -> PartialImage | None:
    """The preview a frame carries, or None if it carries no usable image: a broken
    preview is not worth failing a generation for."""
    source = frame
    data = frame.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        source = data[0]
    text = source.get("b64_json") or frame.get("b64_json")
    url = source.get("url")
    try:
        if isinstance(text, str) and text:
            raw = decode_base64(text, what="a preview")
        elif isinstance(url, str) and url.startswith("data:"):
            raw = decode_data_url(url, what="a preview")
        else:
            return None
    except ImageDecodeError:
        return None
    if sniff_format(raw) is None:
        return None
    index = frame.get("partial_image_index", source.get("partial_image_index"))
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        index = 0
    return PartialImage(index, raw)


def images_of(frame: dict[str, Any], request_id: str) -> list[Any]:
    """The image items of an IMAGES frame (one object is taken as a list of one)."""
    data = frame.get("data")
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise StreamError(f"the server sent images that are not a list (request {request_id})")
    return data
