"""What a generation answers: pictures, their delivery forms, and the JSON shapes.

Each model answers the way its real counterpart does: gpt-image-1 and the local
sketch model give data URLs, DALL·E 3 gives remote URLs, Imagen always gives
``b64_json`` and no usage. Every stream frame is an ``image.chunk`` (the SDK's
``ImageGenerationChunk``): processing, partial previews, the result, an error.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from . import pictures
from .faults import Fault
from .validation import ImageParams

REMOTE_URL_MODELS = frozenset({"openai/dall-e-3"})
B64_ONLY_MODELS = frozenset({"vertex/imagen-3"})

# Publishes bytes of a format at a remote URL and returns that URL.
Publisher = Callable[[bytes, str], str]


def make_images(params: ImageParams, fault: Fault | None) -> list[tuple[bytes, str]]:
    """The (bytes, claimed format) of each picture, spoiled as an image fault asks."""
    kind = fault.kind if fault else None
    count = max(0, params.n - 1) if kind == "fewer" else params.n
    images: list[tuple[bytes, str]] = []
    background = None
    if params.images and kind not in ("not_image", "bomb"):
        first = params.images[0].data
        background = pictures.backdrop(first, params.width, params.height)
    for index in range(count):
        if kind == "not_image":
            images.append((pictures.NOT_AN_IMAGE, params.output_format))
        elif kind == "bomb":
            images.append((pictures.bomb_png(), "png"))
        elif kind == "noise":
            img = pictures.noise(params.prompt, params.seed, index, params.width, params.height)
            data = pictures.encode(img, params.output_format, params.output_compression)
            images.append((data, params.output_format))
        else:
            img = pictures.render(
                params.prompt,
                params.seed,
                index,
                params.width,
                params.height,
                transparent=params.transparent,
                background=background,
            )
            if kind == "truncated_png" or (kind == "one_corrupt" and index == count - 1):
                images.append((pictures.truncated(pictures.encode(img, "png")), "png"))
            else:
                data = pictures.encode(img, params.output_format, params.output_compression)
                images.append((data, params.output_format))
    return images


def image_entry(params: ImageParams, data: bytes, fmt: str, publish: Publisher) -> dict[str, Any]:
    """One item of ``data``, in the delivery form this model uses."""
    b64 = base64.b64encode(data).decode("ascii")
    if params.model in B64_ONLY_MODELS:
        return {"b64_json": b64}
    entry: dict[str, Any]
    if params.response_format == "b64_json":
        entry = {"b64_json": b64}
    elif params.model in REMOTE_URL_MODELS:
        entry = {"url": publish(data, fmt)}
    else:
        entry = {"url": f"data:image/{fmt};base64,{b64}"}
    if params.prompt:  # an edit without a prompt (remove_background) revises none
        entry["revised_prompt"] = f"{params.prompt}, rendered by mesh local"
    return entry


def usage(params: ImageParams, count: int) -> dict[str, Any] | None:
    """A usage object like the protocol's example; None for models that report none."""
    if params.model in B64_ONLY_MODELS:
        return None
    text_tokens = max(1, len(params.prompt.split()))
    image_tokens = count * max(1, params.width * params.height // 4096)
    return {
        "prompt_tokens": text_tokens,
        "completion_tokens": image_tokens,
        "total_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
        "output_tokens_details": {"image_tokens": image_tokens},
    }


def response_body(
    params: ImageParams, entries: list[dict[str, Any]], created: int
) -> dict[str, Any]:
    """The non-streaming answer; Imagen sends only ``created`` and ``data``."""
    body: dict[str, Any] = {"created": created, "data": entries}
    if params.model in B64_ONLY_MODELS:
        return body
    body.update(
        background="transparent" if params.transparent else "opaque",
        output_format=params.output_format,
        quality="high" if params.quality == "auto" else params.quality,
        size=params.size,
        usage=usage(params, len(entries)),
    )
    return body


def chunk(
    stream_id: str, params: ImageParams, created: int, status: str, **fields: Any
) -> dict[str, Any]:
    """A stream frame: an ``image.chunk`` with STATUS, ``data`` empty unless FIELDS give it."""
    return {
        "id": stream_id,
        "object": "image.chunk",
        "created": created,
        "model": params.model,
        "status": status,
        "data": [],
        **fields,
    }


def processing_chunk(stream_id: str, params: ImageParams, created: int) -> dict[str, Any]:
    return chunk(stream_id, params, created, "processing")


def final_chunk(
    stream_id: str, params: ImageParams, created: int, entries: list[dict[str, Any]]
) -> dict[str, Any]:
    final = chunk(stream_id, params, created, "completed", data=entries)
    spent = usage(params, len(entries))
    if spent is not None:
        final["usage"] = spent
    return final


def partial_chunk(stream_id: str, params: ImageParams, created: int, index: int) -> dict[str, Any]:
    """Partial preview INDEX of ``partial_images``: sharper as the index grows."""
    png = pictures.preview(
        params.prompt,
        params.seed,
        params.width,
        params.height,
        transparent=params.transparent,
        blur=float(params.partial_images - index),
        background=params.images[0].data if params.images else None,
    )
    b64 = base64.b64encode(png).decode("ascii")
    return chunk(
        stream_id,
        params,
        created,
        "partial_image",
        partial_image_index=index,
        data=[{"b64_json": b64}],
    )


def error_chunk(
    stream_id: str, params: ImageParams, created: int, envelope: dict[str, Any]
) -> dict[str, Any]:
    """The error envelope as a frame; the chunk fields make it an ``image.chunk`` too."""
    return {**chunk(stream_id, params, created, "failed"), **envelope}
