"""What a generation request answers, apart from the wire.

The checks of a body, in order (its ``mesh_local`` controls, a status fault, validation,
the model, image input, the pixel cap), and the ImagesResponse JSON of a plain answer.
The handler sends these over HTTP; a batch writes them into its output and error files
(``batches.py``). Both answer a body with this code, so a batch line fails or succeeds
exactly as the same body sent to ``/v1/images/generations`` would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import generation
from .catalogue import accepts_image_input, image_model_ids
from .faults import (
    RETRY_AFTER_STATUSES,
    Fault,
    RequestControls,
    parse_controls,
    retry_after_seconds,
    status_error,
)
from .generation import Publisher
from .validation import Detail, ImageParams, summarize, validate_generation

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# Makes a plain answer's ``data`` entries under a fault (by default: the generation's).
Entries = Callable[[Fault | None], list[dict[str, Any]]]


def new_request_id() -> str:
    """``req_`` and a ULID: 48 bits of milliseconds and 80 random bits, in Crockford base32."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = [_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26))]
    return "req_" + "".join(chars)


def envelope(code: str, message: str, request_id: str, **extra: Any) -> dict[str, Any]:
    """The protocol's error envelope (the SDK's ``ApiErrorEnvelope``)."""
    return {"error": {"code": code, "message": message, **extra}, "request_id": request_id}


@dataclass(frozen=True)
class Refusal:
    """An error answer: its status, the envelope's code and message, and its extra fields
    (``details``, ``retry_after_seconds``)."""

    status: int
    code: str
    message: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def envelope(self, request_id: str) -> dict[str, Any]:
        return envelope(self.code, self.message, request_id, **self.extra)


class Refused(Exception):
    """A request that is answered with REFUSAL (its envelope), not with what it asked for."""

    def __init__(self, refusal: Refusal, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.headers = dict(headers or {})


def invalid(message: str) -> Refused:
    """A 400 ``invalid_request`` saying MESSAGE."""
    return Refused(Refusal(400, "invalid_request", message))


def not_found(message: str) -> Refused:
    return Refused(Refusal(404, "not_found", message))


def validation_refusal(details: list[Detail]) -> Refusal:
    return Refusal(422, "validation_error", summarize(details), {"details": details})


def controls_of(body: Any, defaults: RequestControls) -> tuple[dict[str, Any], RequestControls]:
    """The body without its ``mesh_local``, and the controls that field asks for over
    DEFAULTS. Raises Refused (400) if the body is not an object or the controls are bad."""
    if not isinstance(body, dict):
        raise invalid("The request body must be an object")
    body = dict(body)
    try:
        controls = parse_controls(body.pop("mesh_local", None), defaults)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    return body, controls


def fault_refusal(fault: Fault, retry_after: str, model: Any) -> Refusal:
    """The envelope a page fault (``status:``, ``html:``, ``text:``) stands for."""
    status = fault.status or 500
    code, message = status_error(status)
    if status == 404 and isinstance(model, str):
        message = f"Model '{model}' not found"
    extra: dict[str, Any] = {}
    seconds = retry_after_seconds(retry_after) if status in RETRY_AFTER_STATUSES else None
    if seconds is not None:
        extra["retry_after_seconds"] = seconds
    return Refusal(status, code, message, extra)


def pixel_refusal(params: ImageParams, cap: int) -> Refusal | None:
    """A 400 if PARAMS ask for more pixels than the backend makes at once.

    A 400 with a message, not a 422 with details: no one field is wrong, their product is.
    """
    pixels = params.n * params.width * params.height
    if pixels <= cap:
        return None
    message = (
        f"n × width × height is {pixels:,} pixels ({params.n} × {params.size}); this "
        f"backend makes at most {cap:,} per request"
    )
    return Refusal(400, "invalid_request", message)


def check_generation(body: dict[str, Any], max_pixels: int) -> ImageParams:
    """A generation body (without ``mesh_local``), checked. Raises Refused: 422 for a bad
    field, 404 for a model that draws no images, 400 over the pixel cap."""
    params, details = validate_generation(body)
    if params is None:
        raise Refused(validation_refusal(details))
    if params.model not in image_model_ids():
        message = f"Model '{params.model}' not found or does not generate images"
        raise Refused(Refusal(404, "model_not_found", message))
    if params.images and not accepts_image_input(params.model):
        message = f"Model '{params.model}' does not accept image input"
        details = [{"loc": ["body", "image"], "msg": message, "type": "value_error"}]
        raise Refused(validation_refusal(details))
    over = pixel_refusal(params, max_pixels)
    if over is not None:
        raise Refused(over)
    return params


def image_entries(
    params: ImageParams, fault: Fault | None, publish: Publisher
) -> list[dict[str, Any]]:
    """The ``data`` entries of a generation: its pictures, spoiled as an image fault asks."""
    return [
        generation.image_entry(params, data, fmt, publish)
        for data, fmt in generation.make_images(params, fault)
    ]


def images_response(
    params: ImageParams, fault: Fault | None, publish: Publisher, make: Entries | None = None
) -> dict[str, Any]:
    """The ImagesResponse of a plain answer; a ``cut`` fault leaves ``data`` empty.

    MAKE makes the entries (by default: the generation's pictures).
    """
    if fault is not None and fault.kind == "cut":
        entries: list[dict[str, Any]] = []
    elif make is not None:
        entries = make(fault)
    else:
        entries = image_entries(params, fault, publish)
    return generation.response_body(params, entries, int(time.time()))
