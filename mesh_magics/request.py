"""The request: the JSON body of one `POST /v1/images/generations`, built from what the cell
set and the configured defaults, with its input images read and checked.

Only what the user, the configuration or a profile set is sent: the API's own defaults
(`size: auto`, `quality: auto`, `n: 1`) are not, because some models reject them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OptionError

DEFAULT_MAX_INPUT_IMAGE_BYTES = 20 * 1024 * 1024  # base64 makes it ~27 MB on the wire


@dataclass(frozen=True)
class ImageRequest:
    """The JSON body of one `POST /v1/images/generations`, exactly as it is sent."""

    body: dict[str, Any]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def prompt(self) -> str:
        return str(self.body["prompt"])

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def n(self) -> int:
        return int(self.body.get("n", 1))

    @property
    def size(self) -> str:
        return str(self.body.get("size", "auto"))


def build_request(
    prompt: str,
    fields: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    stream: bool = True,
    max_input_image_bytes: int = DEFAULT_MAX_INPUT_IMAGE_BYTES,
) -> ImageRequest:
    """The body: the configured defaults that are set, overridden by the cell's fields."""
    body: dict[str, Any] = {"prompt": prompt}
    body.update({k: v for k, v in defaults.items() if v is not None and k not in fields})
    body.update(fields)
    if "image" in body:
        body["image"] = input_images(body["image"], max_input_image_bytes)
    body["stream"] = stream
    return ImageRequest(body)


# -- input images ---------------------------------------------------------------------------


def input_images(value: Any, limit: int) -> Any:
    """`--image`'s value as data URLs: a file is read, every image is checked (it is an
    image, and not over `limit` bytes) before anything is sent."""
    if isinstance(value, list):
        return [_data_url(item, limit, f"--image item {i + 1}") for i, item in enumerate(value)]
    return _data_url(value, limit, "--image")


def _data_url(value: Any, limit: int, source: str) -> str:
    if not isinstance(value, str):
        raise OptionError(f"{source}: expected a data: URL or a file path, not {value!r}")
    if value.startswith("data:"):
        header, comma, payload = value.partition(",")
        if not comma or ";base64" not in header:
            raise OptionError(f"{source}: a data: URL must carry base64 content")
        _check_size(len(payload) * 3 // 4, limit, source, "the data: URL")
        try:
            head = base64.b64decode(payload[:32] + "=" * (-len(payload[:32]) % 4))
        except (binascii.Error, ValueError):
            raise OptionError(f"{source}: the data: URL is not valid base64") from None
        _sniff(head, source, "the data: URL")
        return value
    path = Path(value)
    try:  # expanduser raises for an unknown ~user; stat for NUL bytes and over-long names
        path = path.expanduser()
        size = path.stat().st_size if path.is_file() else None
    except (OSError, RuntimeError, ValueError):
        size = None
    if size is None:
        raise OptionError(
            f"{source}: invalid value {value!r}; expected a data: URL or the path of an "
            "existing image file"
        )
    _check_size(size, limit, source, path.name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OptionError(f"{source}: cannot read {path.name}: {exc.strerror}") from None
    fmt = _sniff(data, source, path.name)
    return f"data:image/{fmt};base64,{base64.b64encode(data).decode('ascii')}"


def _check_size(size: int, limit: int, source: str, what: str) -> None:
    if size > limit:
        raise OptionError(
            f"{source}: {what} is {_megabytes(size)}, over the {_megabytes(limit)} limit "
            "(MeshImageMagics.max_input_image_bytes); make it smaller"
        )


def _sniff(head: bytes, source: str, what: str) -> str:
    from .images import sniff_format

    fmt = sniff_format(head)
    if fmt is None:
        raise OptionError(f"{source}: {what} is not an image (PNG, JPEG, WebP or GIF)")
    return fmt


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 10_000_000 else f"{size:,} bytes"


# -- what --dry-run shows ----------------------------------------------------------------------

_SHOWN_CHARS = 120  # a data: URL of megabytes is shown by its head and its length


def shown_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body as a person wants to read it: long strings cut, with their length."""

    def shorten(value: Any) -> Any:
        if isinstance(value, str) and len(value) > _SHOWN_CHARS:
            return f"{value[:60]}… ({len(value):,} characters)"
        if isinstance(value, list):
            return [shorten(item) for item in value]
        if isinstance(value, dict):
            return {key: shorten(item) for key, item in value.items()}
        return value

    return {key: shorten(value) for key, value in body.items()}
