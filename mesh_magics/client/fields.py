"""The request fields as keyword arguments, typed: what `Client.generate` and friends take
(`**fields: Unpack[ImageFields]`). Checked against `schema.REQUEST_FIELDS` by
tests/test_client_api.py, so the two cannot drift; the values are checked at run time by
the schema, exactly as the magic's options are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Union

if TYPE_CHECKING:
    import pandas

Quality = Literal["auto", "low", "medium", "high", "hd", "standard"]
OutputFormat = Literal["png", "jpeg", "jpg", "webp"]
Background = Literal["transparent", "opaque", "auto"]
Operation = Literal["edit", "remove_background", "upscale", "outpaint", "mix", "reframe", "inpaint"]
Progress = Literal["auto", "widget", "text", "none"]
# What a sweep takes: a prompt, a list of prompts, or a table (a row a run, with `prompt`).
Prompts = Union[str, Sequence[str], Sequence[Mapping[str, Any]], "pandas.DataFrame"]


class ImageFields(TypedDict, total=False):
    """Every request field this package knows, as a keyword argument (DESIGN: an option
    per field, underscores as dashes in the magic)."""

    model: str
    n: int
    size: str
    quality: Quality
    output_format: OutputFormat
    output_compression: int
    response_format: Literal["url", "b64_json"]
    background: Background
    moderation: Literal["low", "auto"]
    partial_images: int
    seed: int
    aspect_ratio: str
    resolution: str
    guidance_scale: float
    watermark: bool
    image: Any  # a SOURCE: a path, bytes, a PIL image, a data: URL
    sequential_image_generation: str
    sequential_image_generation_options: dict[str, Any]
    optimize_prompt_options: dict[str, Any]
    operation: Operation
    upscale_factor: int
    expand_factor: float
    mask_feather: float
    quality_tier: str


class SweepFields(TypedDict, total=False):
    """`ImageFields` for a sweep: the sweepable fields (`schema.SWEEPABLE`) also take a
    list of values, one run per combination."""

    model: str | Sequence[str]
    n: int
    size: str | Sequence[str]
    quality: Quality | Sequence[Quality]
    output_format: OutputFormat | Sequence[OutputFormat]
    output_compression: int
    response_format: Literal["url", "b64_json"]
    background: Background | Sequence[Background]
    moderation: Literal["low", "auto"] | Sequence[Literal["low", "auto"]]
    partial_images: int
    seed: int | Sequence[int]
    aspect_ratio: str
    resolution: str
    guidance_scale: float
    watermark: bool
    image: Any
    sequential_image_generation: str
    sequential_image_generation_options: dict[str, Any]
    optimize_prompt_options: dict[str, Any]
    operation: Operation
    upscale_factor: int
    expand_factor: float
    mask_feather: float
    quality_tier: str
