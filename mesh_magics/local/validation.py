"""Validation of a generation request body, as the protocol's request table says.

Errors come back as pydantic-like details (``loc``, ``msg``, ``type``), one per bad
field, so a 422 can list them all at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .catalogue import DEFAULT_MODEL
from .inputs import InputImage, check_images

QUALITIES = ("auto", "low", "medium", "high", "hd", "standard")
RESPONSE_FORMATS = ("url", "b64_json")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
BACKGROUNDS = ("transparent", "opaque", "auto")
MODERATIONS = ("low", "auto")

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
MIN_SIDE, MAX_SIDE = 16, 4096
# n × width × height one request may ask for: one image of the largest size, or 16 of 1024².
MAX_REQUEST_PIXELS = MAX_SIDE * MAX_SIDE

Detail = dict[str, Any]


@dataclass(frozen=True)
class ImageParams:
    """A valid generation request, with defaults filled in."""

    prompt: str
    model: str = DEFAULT_MODEL
    n: int = 1
    width: int = 1024
    height: int = 1024
    quality: str = "auto"
    response_format: str = "url"
    output_format: str = "png"
    output_compression: int | None = None
    background: str = "auto"
    partial_images: int = 0
    seed: int | None = None
    stream: bool = False
    images: tuple[InputImage, ...] = ()  # the decoded ``image`` inputs, first drawn on

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def transparent(self) -> bool:
        # JPEG has no alpha channel: a transparent request is drawn opaque.
        return self.background == "transparent" and self.output_format != "jpeg"


def _detail(field: str, msg: str, kind: str, value: Any = None) -> Detail:
    detail: Detail = {"loc": ["body", field], "msg": msg, "type": kind}
    if value is not None:
        detail["input"] = value
    return detail


class _Checker:
    """Reads fields off the body, collecting a detail for each bad one."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.details: list[Detail] = []

    def fail(self, field: str, msg: str, kind: str) -> None:
        self.details.append(_detail(field, msg, kind, self.body.get(field)))

    def integer(self, field: str, lo: int, hi: int) -> int | None:
        value = self.body.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, "Input should be a valid integer", "int_type")
        elif value < lo:
            self.fail(field, f"Input should be greater than or equal to {lo}", "greater_than_equal")
        elif value > hi:
            self.fail(field, f"Input should be less than or equal to {hi}", "less_than_equal")
        else:
            return value
        return None

    def number(self, field: str, lo: float, hi: float) -> float | None:
        value = self.body.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(field, "Input should be a valid number", "float_type")
        elif not lo <= value <= hi:
            self.fail(field, f"Input should be between {lo:g} and {hi:g}", "range_error")
        else:
            return float(value)
        return None

    def choice(self, field: str, allowed: tuple[str, ...]) -> str | None:
        value = self.body.get(field)
        if value is None:
            return None
        if not isinstance(value, str) or value not in allowed:
            options = ", ".join(repr(a) for a in allowed)
            self.fail(field, f"Input should be one of {options}", "literal_error")
            return None
        return value

    def boolean(self, field: str) -> bool | None:
        value = self.body.get(field)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.fail(field, "Input should be a valid boolean", "bool_type")
            return None
        return value

    def string(self, field: str, *, required: bool = False) -> str | None:
        value = self.body.get(field)
        if value is None:
            if required:
                self.details.append(_detail(field, "Field required", "missing"))
            return None
        if not isinstance(value, str):
            self.fail(field, "Input should be a valid string", "string_type")
        elif required and not value.strip():
            self.fail(field, "String should have at least 1 character", "string_too_short")
        else:
            return value
        return None

    def size(self, field: str) -> tuple[int, int] | None:
        value = self.body.get(field)
        if value is None or value == "auto":
            return None
        match = _SIZE.match(value) if isinstance(value, str) else None
        if match is None:
            self.fail(field, "Input should be 'auto' or WIDTHxHEIGHT", "string_pattern_mismatch")
            return None
        width, height = int(match[1]), int(match[2])
        if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
            self.fail(
                field,
                f"Each side should be between {MIN_SIDE} and {MAX_SIDE} pixels",
                "value_error",
            )
            return None
        return width, height


def validate_generation(body: dict[str, Any]) -> tuple[ImageParams | None, list[Detail]]:
    """Check BODY; return the params (None if invalid) and the details of every bad field.

    Fields the table does not name are provider pass-through: accepted and ignored.
    ``image`` is checked here and decoded (see ``inputs.py``).
    """
    check = _Checker(body)
    prompt = check.string("prompt", required=True)
    model = check.string("model")
    n = check.integer("n", 1, 10)
    size = check.size("size")
    quality = check.choice("quality", QUALITIES)
    response_format = check.choice("response_format", RESPONSE_FORMATS)
    output_format = check.choice("output_format", OUTPUT_FORMATS)
    compression = check.integer("output_compression", 0, 100)
    background = check.choice("background", BACKGROUNDS)
    check.choice("moderation", MODERATIONS)
    partial_images = check.integer("partial_images", 0, 3)
    seed = check.integer("seed", -1, 2147483647)
    check.number("guidance_scale", 1, 10)
    check.boolean("watermark")
    stream = check.boolean("stream")
    images, image_details = check_images(body.get("image"))
    check.details.extend(image_details)
    if check.details or prompt is None:
        return None, check.details
    width, height = size or (1024, 1024)
    params = ImageParams(
        prompt=prompt,
        model=model or DEFAULT_MODEL,
        n=n or 1,
        width=width,
        height=height,
        quality=quality or "auto",
        response_format=response_format or "url",
        output_format=output_format or "png",
        output_compression=compression,
        background=background or "auto",
        partial_images=partial_images or 0,
        # -1 is the conventional "no seed": the picture then depends on the prompt only.
        seed=None if seed is None or seed == -1 else seed,
        stream=bool(stream),
        images=images,
    )
    return params, []


def summarize(details: list[Detail]) -> str:
    """One readable line for the envelope's message."""
    parts = [f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in details]
    return "Request validation failed: " + "; ".join(parts)
