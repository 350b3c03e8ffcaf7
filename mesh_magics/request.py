"""The request: the JSON body of one `POST /v1/images/generations` or `/v1/images/edits`,
built from what the cell set and the configured defaults, with its input images read and
checked.

Only what the user, the configuration or a profile set is sent: the API's own defaults
(`size: auto`, `quality: auto`, `n: 1`) are not, because some models reject them.

An edit's body names its input images by hash (`"image": "sha256:<hex>"`): that is what is
kept (in the result, the store's key and row, saved files), and the bytes travel beside it
in `ImageRequest.inputs`. Only the wire body (`http/bodies.py`) holds them, as data URLs,
encoded a piece at a time as they are sent.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OptionError, warn_caller
from .inputs import data_url_payload, file_bytes
from .schema import REQUEST_FIELDS

if TYPE_CHECKING:
    from .inputs import InputImage

DEFAULT_MAX_INPUT_IMAGE_BYTES = 20 * 1024 * 1024  # base64 makes it ~27 MB on the wire


@dataclass(frozen=True)
class ImageRequest:
    """The JSON body of one request, exactly as it is sent, except that an edit's images
    are `sha256:<hex>` references to `inputs`."""

    body: dict[str, Any]
    inputs: tuple[InputImage, ...] = ()  # an edit's images: the image, references, mask

    @property
    def endpoint(self) -> str:
        """`generations` or `edits`: the path is `/v1/images/<endpoint>`."""
        return "edits" if self.inputs else "generations"

    @property
    def path(self) -> str:
        return f"/v1/images/{self.endpoint}"

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def prompt(self) -> str:
        return str(self.body.get("prompt", ""))

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
    check_fields_of("generations", fields)
    body: dict[str, Any] = {"prompt": prompt}
    body.update({k: v for k, v in defaults.items() if v is not None and k not in fields})
    body.update(fields)
    if "image" in body:
        body["image"] = input_images(body["image"], max_input_image_bytes)
    body["stream"] = stream
    return ImageRequest(body)


def build_edit_request(
    prompt: str,
    fields: Mapping[str, Any],
    defaults: Mapping[str, Any],
    inputs: tuple[InputImage, ...],
    *,
    notes: bool = True,
) -> ImageRequest:
    """The body of an edit, in the shape of the SDK's `ImageEditParams`: the first input
    as `image`, the others as `reference_images`, the mask as `mask`. No `stream`: the
    edits endpoint answers in one piece. `notes`: warn of fields the operation ignores."""
    check_fields_of("edits", fields)
    body: dict[str, Any] = {"prompt": prompt} if prompt else {}
    taken = {k: v for k, v in defaults.items() if _takes("edits", k)}
    body.update({k: v for k, v in taken.items() if v is not None and k not in fields})
    body.update(fields)
    images = [image for image in inputs if image.role != "mask"]
    body["image"] = reference(images[0])
    if len(images) > 1:
        body["reference_images"] = [reference(image) for image in images[1:]]
    for mask in (image for image in inputs if image.role == "mask"):
        body["mask"] = reference(mask)
    for note in ignored_by_operation(body) if notes else ():
        warn_caller(note)
    return ImageRequest(body, inputs)


# Which operation uses which field; another operation ignores it (the API says nothing).
_USED_BY = {
    "upscale_factor": ("--upscale-factor", {"upscale"}),
    "expand_factor": ("--expand-factor", {"outpaint"}),
    "mask": ("--mask", {"edit", "inpaint", "mix"}),
}


def ignored_by_operation(body: Mapping[str, Any]) -> list[str]:
    """Notes on the fields of an edit that its operation does not use: sent, but they
    change nothing, which a user would rather know than wonder about."""
    operation = body.get("operation", "edit")
    notes = [
        f"{flag} is ignored by --operation {operation}; it is for {' and '.join(sorted(users))}"
        for field, (flag, users) in _USED_BY.items()
        if field in body and operation not in users
    ]
    if "mask_feather" in body and "mask" not in body:
        notes.append("--mask-feather is ignored without a --mask")
    return notes


def reference(image: InputImage) -> str:
    """How a body names an input image: by the hash of its bytes."""
    return f"sha256:{image.sha256}"


def _takes(endpoint: str, name: str) -> bool:
    option = REQUEST_FIELDS.get(name)
    if option is None:
        return True  # a field this package does not know (-p): sent as given
    return option.for_edits if endpoint == "edits" else option.for_generations


def check_fields_of(endpoint: str, fields: Mapping[str, Any]) -> None:
    """Refuse a field the endpoint does not take, before anything is sent."""
    for name in fields:
        if _takes(endpoint, name):
            continue
        flag = REQUEST_FIELDS[name].flags[0]
        if endpoint == "generations":
            raise OptionError(f"{flag} is for edits: add --edit SOURCE (the image to edit)")
        taken = [o.flags[0] for o in REQUEST_FIELDS.values() if o.for_edits]
        raise OptionError(
            f"{flag}: the edits endpoint does not take it; an edit takes {', '.join(taken)}"
        )


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
        payload = data_url_payload(value, source, limit)
        try:
            head = base64.b64decode(payload[:32] + "=" * (-len(payload[:32]) % 4))
        except (binascii.Error, ValueError):
            raise OptionError(f"{source}: the data: URL is not valid base64") from None
        _sniff(head, source, "the data: URL")
        return value
    missing = f"invalid value {value!r}; expected a data: URL or the path of an existing image file"
    data = file_bytes(value, source, limit, missing=missing)
    fmt = _sniff(data, source, Path(value).name)
    return f"data:image/{fmt};base64,{base64.b64encode(data).decode('ascii')}"


def _sniff(head: bytes, source: str, what: str) -> str:
    from .images import sniff_format

    fmt = sniff_format(head)
    if fmt is None:
        raise OptionError(f"{source}: {what} is not an image (PNG, JPEG, WebP or GIF)")
    return fmt


# -- what --dry-run shows ----------------------------------------------------------------------

_SHOWN_CHARS = 120  # a data: URL of megabytes is shown by its head and its length


def shown_body(request: ImageRequest) -> dict[str, Any]:
    """The body as a person wants to read it: long strings cut, with their length; an
    edit's images as the data: URLs that will be sent, cut, with where they came from."""
    images = {reference(image): image for image in request.inputs}

    def shorten(value: Any) -> Any:
        if isinstance(value, str) and value in images:
            image = images[value]
            length = len(f"data:image/{image.format};base64,") + 4 * -(-len(image.data) // 3)
            return f"data:image/{image.format};base64,… ({length:,} characters: {image.label})"
        if isinstance(value, str) and len(value) > _SHOWN_CHARS:
            return f"{value[:60]}… ({len(value):,} characters)"
        if isinstance(value, list):
            return [shorten(item) for item in value]
        if isinstance(value, dict):
            return {key: shorten(item) for key, item in value.items()}
        return value

    return {key: shorten(value) for key, value in request.body.items()}
