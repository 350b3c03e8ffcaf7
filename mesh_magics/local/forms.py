"""Multipart bodies (`multipart/form-data`, RFC 7578), as the openai SDK sends an edit
(`images.edit`: read into the JSON shape that `edits.validate_edit` checks) and a file
(`files.create`: an `Upload`).

The parts are files (`image`, `image[]` for several, `mask`, `reference_images[]`) and
text fields (`prompt`, `model`, `n`, `size`, ...). The first image is the one edited, the
others go as `reference_images`; a file goes on as bare base64. A text field is a string
on the wire: the numbers and booleans of an edit are read back as such (a value that
is not one is left a string, for the validator to refuse by name).

The body is already in memory within the server's body cap (`bodies.py`); reading it is
bounded too: at most `MAX_PARTS` parts, `MAX_PART_HEAD` bytes of headers each, text
fields of at most `MAX_TEXT_FIELD` bytes, each part found with one forward scan.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from email.message import Message
from typing import Any

MAX_PARTS = 64
MAX_PART_HEAD = 8 * 1024
MAX_TEXT_FIELD = 64 * 1024
MAX_BOUNDARY = 70  # RFC 2046
IMAGE_FIELDS = {"image": "image", "image[]": "image", "reference_images": "reference_images",
                "reference_images[]": "reference_images", "mask": "mask"}  # fmt: skip
WHOLE = frozenset({"n", "mask_feather", "output_compression", "partial_images", "seed"})
NUMBER = frozenset({"expand_factor", "guidance_scale"})
BOOLEAN = frozenset({"stream", "watermark"})
_WHOLE = re.compile(r"^-?\d{1,12}$")
_NUMBER = re.compile(r"^-?\d{1,12}(\.\d{1,12})?$")


class FormError(ValueError):
    """The multipart body cannot be read; its message says why, in one line."""


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    data: bytes


def boundary_of(content_type: str) -> str:
    """The boundary a `multipart/form-data` Content-Type declares."""
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_boundary()
    if not boundary or len(boundary) > MAX_BOUNDARY:
        raise FormError("The multipart body needs a boundary of 1 to 70 characters")
    return boundary


def parts(body: bytes, boundary: str) -> list[Part]:
    """The parts of BODY, in order."""
    delimiter = b"--" + boundary.encode("latin-1")
    at = body.find(delimiter)  # anything before the first delimiter is preamble
    if at < 0:
        raise FormError("The multipart body has no part")
    found: list[Part] = []
    at += len(delimiter)
    while not body.startswith(b"--", at):  # the close delimiter ends the body
        line_end = body.find(b"\r\n", at, at + 256)  # transport padding, then CRLF
        if line_end < 0:
            raise FormError("A multipart delimiter is not followed by CRLF")
        at = line_end + 2
        if body.startswith(b"\r\n", at):  # a part without headers
            head, start = b"", at + 2
        else:
            head_end = body.find(b"\r\n\r\n", at, at + MAX_PART_HEAD)
            if head_end < 0:
                raise FormError(f"A part's headers do not end within {MAX_PART_HEAD} bytes")
            head, start = body[at:head_end], head_end + 4
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise FormError("The multipart body ends inside a part")
        found.append(_part(head, body[start:end]))
        if len(found) > MAX_PARTS:
            raise FormError(f"The multipart body has more than {MAX_PARTS} parts")
        at = end + 2 + len(delimiter)
    return found


def _part(head: bytes, data: bytes) -> Part:
    disposition = None
    for line in head.decode("utf-8", "replace").split("\r\n"):
        field, colon, value = line.partition(":")
        if colon and field.strip().lower() == "content-disposition":
            disposition = value.strip()
    if disposition is None:
        raise FormError("A part has no Content-Disposition")
    header = Message()
    header["Content-Disposition"] = disposition
    name = header.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name or len(name) > 100:
        raise FormError("A part has no name (Content-Disposition: form-data; name=...)")
    return Part(name, header.get_filename(), data)


def edit_body(form: list[Part]) -> dict[str, Any]:
    """The JSON body of an edit that FORM's parts make."""
    body: dict[str, Any] = {}
    images: list[str] = []
    references: list[str] = []
    for part in form:
        field = IMAGE_FIELDS.get(part.name)
        if field is not None:
            text = _image_text(part)
            if field == "mask":
                body["mask"] = text
            else:
                (images if field == "image" else references).append(text)
            continue
        if len(part.data) > MAX_TEXT_FIELD:
            raise FormError(f"The field {part.name[:40]!r} is over {MAX_TEXT_FIELD} bytes")
        try:
            value = part.data.decode("utf-8")
        except UnicodeDecodeError:
            raise FormError(f"The field {part.name[:40]!r} is not UTF-8 text") from None
        body[part.name] = _typed(part.name, value)
    if images:
        body["image"] = images[0]
        references[:0] = images[1:]
    if references:
        body["reference_images"] = references
    return body


def _image_text(part: Part) -> str:
    """A file part as bare base64; a text part (a data URL, say) as its text."""
    if part.filename is None:
        try:
            return part.data.decode("ascii").strip()
        except UnicodeDecodeError:
            pass  # bytes sent without a filename: still an image
    return base64.b64encode(part.data).decode("ascii")


def _typed(name: str, value: str) -> Any:
    text = value.strip()
    if name in WHOLE and _WHOLE.match(text):
        return int(text)
    if name in NUMBER and _NUMBER.match(text):
        return float(text)
    if name in BOOLEAN and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if name == "mesh_local":  # the backend's own controls, as JSON
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    return value


MAX_FILENAME = 255


@dataclass(frozen=True)
class Upload:
    """A `POST /v1/files` form: its `purpose` field and its `file` part (None if absent)."""

    purpose: str | None
    filename: str
    data: bytes | None

    def summary(self) -> dict[str, Any]:
        """What the request log keeps of it: never the file's bytes."""
        file = None if self.data is None else {"filename": self.filename, "bytes": len(self.data)}
        return {"purpose": self.purpose, "file": file}


def upload_of(form: list[Part]) -> Upload:
    """The upload FORM's parts make; other text fields are left unread."""
    purpose: str | None = None
    file: Part | None = None
    for part in form:
        if part.name == "file":
            file = part
        elif part.name == "purpose":
            if len(part.data) > MAX_TEXT_FIELD:
                raise FormError(f"The field 'purpose' is over {MAX_TEXT_FIELD} bytes")
            purpose = part.data.decode("utf-8", "replace").strip()
    if file is None:
        return Upload(purpose, "", None)
    filename = (file.filename or "upload.jsonl")[:MAX_FILENAME]
    return Upload(purpose, filename, file.data)
