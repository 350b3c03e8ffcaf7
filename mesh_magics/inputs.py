"""The input images of an edit: what `--edit`, `--mask` and `mm.edit()` take, read and
checked before anything is sent.

A SOURCE is an `ImageResult` (all its images), one image of one (the PIL image that
`result[0]` gives: its original bytes are sent, unless it was changed since, as
`originals.py` remembers them), a `Generation` that has finished, any PIL image (sent as
PNG), bytes, a `Path` or a string naming an image file, a `data:` URL, or a binary file
object. Each becomes an
`InputImage`: its bytes exactly as they will be sent, their SHA-256 (what the store keys
and provenance record, never the bytes), and the name the user gave it, where known.

The checks are the ones a server would make after an expensive upload: it is an image,
it is not over `MeshImageMagics.max_input_image_bytes`, there are at most `MAX_INPUTS`,
and a mask has an alpha channel and the first image's size.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import OptionError
from .images import sniff_format
from .originals import original_of
from .schema import MAX_INPUTS

if TYPE_CHECKING:
    from PIL import Image

ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
T = TypeVar("T")
Passes = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True, eq=False)
class InputImage:
    """One image an edit sends: the bytes as sent, and what is recorded of them."""

    data: bytes
    format: str  # png | jpeg | webp | gif, from the bytes
    width: int
    height: int
    has_alpha: bool
    sha256: str
    name: str | None = None  # the variable or file it came from, as the user wrote it
    role: str = "image"  # image | reference | mask
    request_id: str | None = None  # of the result it is an image of, when it is one

    @property
    def label(self) -> str:
        """How messages name it."""
        return self.name or f"an image of {self.width}x{self.height}"

    def record(self) -> dict[str, Any]:
        """What a result and a saved file keep of it: no bytes."""
        return {
            "role": self.role,
            "sha256": self.sha256,
            "name": self.name,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "bytes": len(self.data),
            "request_id": self.request_id,
        }


# -- reading sources ---------------------------------------------------------------------------


class ImageSource(Protocol):
    """What gives all its images to an edit: an `ImageResult`, a run's handle once done.
    Anything with this method is a SOURCE, so this module needs neither of them."""

    def _mesh_images_(self) -> tuple[Sequence[bytes], str | None]:
        """Its images' bytes and the request id that made them; an `OptionError` (the
        reason, without the source's name) when it has none to give."""
        ...


def read_source(value: Any, *, what: str, limit: int, name: str | None = None) -> list[InputImage]:
    """The images of one SOURCE (an `ImageSource` gives all of its own). `what` names it in
    errors (`--edit fox`); `name` is recorded with each image."""
    if hasattr(type(value), "_mesh_images_"):
        try:
            images, request_id = value._mesh_images_()
        except OptionError as exc:
            raise OptionError(f"{what}: {exc}") from None
        many = len(images) > 1
        return [
            replace(
                _checked(data, what, limit, f"{name}[{i}]" if name and many else name),
                request_id=request_id,
            )
            for i, data in enumerate(images)
        ]
    if _is_pil(value) and (original := original_of(value)) is not None:
        data, request_id = original[0].data, original[1]
        return [replace(_checked(data, what, limit, name), request_id=request_id)]
    return [_checked(_bytes_of(value, what, limit), what, limit, name)]


def users_code(what: str, doing: str, call: Callable[[], T], *, passes: Passes = ()) -> T:
    """`call()`, which runs code of the user's object (a property, `read()`, `__fspath__`).
    What it raises is that object's failure, not a bug of ours: a one-line `OptionError`
    naming the source (`--edit box: box.image raised RuntimeError: ...`). Exceptions in
    `passes` go through, for the caller to read."""
    try:
        return call()
    except passes:
        raise
    except Exception as exc:
        raise OptionError(f"{what}: {doing} raised {type(exc).__name__}: {exc}") from None


def _bytes_of(value: Any, what: str, limit: int) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str) and value.startswith("data:"):
        return _data_url_bytes(value, what, limit)
    if isinstance(value, str | os.PathLike):
        path = users_code(what, "__fspath__()", lambda: os.fspath(value))
        if not isinstance(path, str):
            raise OptionError(f"{what}: a path of bytes; give the path as text")
        return file_bytes(path, what, limit, missing=f"no image file {path!r}")
    if _is_pil(value):
        return _png_of(value, what)
    read = users_code(what, ".read", lambda: getattr(value, "read", None))
    if callable(read):
        data = users_code(what, ".read()", lambda: read(limit + 1))
        if not isinstance(data, bytes):
            raise OptionError(f"{what}: the file is open in text mode; open it with 'rb'")
        check_size(len(data), limit, what, "the file")
        return data
    raise OptionError(
        f"{what}: expected an ImageResult, an image, bytes, a file path or a data: URL, "
        f"not {type(value).__name__}"
    )


def _is_pil(value: Any) -> bool:
    pil = sys.modules.get("PIL.Image")  # not imported: then it is no PIL image
    return pil is not None and isinstance(value, pil.Image)


def _png_of(image: Image.Image, what: str) -> bytes:
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    try:
        image.save(buffer, format="PNG")
    except (OSError, ValueError) as exc:
        raise OptionError(f"{what}: the image cannot be written as PNG ({exc})") from None
    return buffer.getvalue()


def _data_url_bytes(value: str, what: str, limit: int) -> bytes:
    payload = data_url_payload(value, what, limit)
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise OptionError(f"{what}: the data: URL is not valid base64") from None


def data_url_payload(value: str, what: str, limit: int) -> str:
    """The base64 text of a `data:` URL, once its form and its size are checked."""
    header, comma, payload = value.partition(",")
    if not comma or ";base64" not in header:
        raise OptionError(f"{what}: a data: URL must carry base64 content")
    check_size(len(payload) * 3 // 4, limit, what, "the data: URL")
    return payload


def file_bytes(value: str | os.PathLike[str], what: str, limit: int, *, missing: str) -> bytes:
    """The bytes of the file at `value` (`~` expanded), once it is known to exist and to be
    within `limit`; `missing` says what is wrong when there is no such file."""
    path = Path(value)
    try:  # expanduser raises for an unknown ~user; stat for NUL bytes and over-long names
        path = path.expanduser()
        size = path.stat().st_size if path.is_file() else None
    except (OSError, RuntimeError, ValueError):
        size = None
    if size is None:
        raise OptionError(f"{what}: {missing}")
    check_size(size, limit, what, path.name)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OptionError(f"{what}: cannot read {path.name}: {exc.strerror}") from None


def _checked(data: bytes, what: str, limit: int, name: str | None) -> InputImage:
    """`data` as an `InputImage`, once it is known to be an image within the limit."""
    from PIL import Image, UnidentifiedImageError

    check_size(len(data), limit, what, "the image")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise OptionError(f"{what}: not an image (PNG, JPEG, WebP or GIF)")
    try:
        with Image.open(io.BytesIO(data)) as image:  # the header only: no pixels decoded
            width, height = image.size
            alpha = image.mode in ALPHA_MODES or "transparency" in image.info
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise OptionError(f"{what}: a damaged {fmt.upper()} image") from None
    digest = hashlib.sha256(data).hexdigest()
    return InputImage(data, fmt, width, height, alpha, digest, name)


def check_size(size: int, limit: int, source: str, what: str) -> None:
    if size > limit:
        raise OptionError(
            f"{source}: {what} is {megabytes(size)}, over the {megabytes(limit)} limit "
            "(MeshImageMagics.max_input_image_bytes); make it smaller"
        )


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 10_000_000 else f"{size:,} bytes"


# -- an edit's inputs, together --------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A SOURCE as given: the value, how errors name it, and the name recorded."""

    value: Any
    what: str
    name: str | None = None


def edit_inputs(
    images: Sequence[Source], mask: Source | None, *, limit: int
) -> tuple[InputImage, ...]:
    """The images of an edit in the order they are sent (the image, its references, then
    the mask), every check made."""
    if not images:
        raise OptionError("an edit needs an image: --edit SOURCE")
    read = [image for source in images for image in _read(source, limit)]
    if len(read) > MAX_INPUTS:
        raise OptionError(
            f"--edit: {len(read)} images, but one edit takes at most {MAX_INPUTS} (the first "
            "is edited, the others are its references); an ImageResult counts all its images"
        )
    inputs = [read[0], *(replace(image, role="reference") for image in read[1:])]
    if mask is not None:
        [masked] = _read(mask, limit)[:1]
        inputs.append(replace(_checked_mask(masked, mask.what, read[0]), role="mask"))
    return tuple(inputs)


def _read(source: Source, limit: int) -> list[InputImage]:
    return read_source(source.value, what=source.what, limit=limit, name=source.name)


def _checked_mask(mask: InputImage, what: str, first: InputImage) -> InputImage:
    if not mask.has_alpha:
        raise OptionError(
            f"{what}: the mask has no alpha channel; a mask is a PNG whose transparent "
            "pixels mark what to change (make one with image.putalpha(...))"
        )
    if (mask.width, mask.height) != (first.width, first.height):
        raise OptionError(
            f"{what}: the mask is {mask.width}x{mask.height}, but the image it masks "
            f"({first.label}) is {first.width}x{first.height}; a mask has its image's size"
        )
    return mask
