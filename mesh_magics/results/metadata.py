"""Provenance inside every saved image, without touching its pixels, and reading it back.

What is stored, for each image (`provenance`): the prompt, the revised prompt, the model
that answered, the request body as JSON, the request id, when it was made (`created`,
ISO 8601 UTC), the mesh-magics version, the SHA-256 of the image as it was made (`sha256`,
hex: its bytes before any metadata or conversion, as the store names it) and, for an edit,
its input images (`inputs`, a JSON list: role, SHA-256, variable name, format, size and
byte count of each image sent). An edit's input that was saved too is found by hash:
`read_metadata(edit)["inputs"][0]["sha256"] == read_metadata(original)["sha256"]`.

This module holds what the record is: its fields, built (`provenance`), written as
(name, text) entries and read back (`read_metadata`). How the entries ride inside a PNG
(iTXt chunks), a JPEG or a WebP (XMP, in the `NAMESPACE` namespace) is
`metadata_formats.py`'s. A GIF gets a `.json` file beside it instead (the same dict
`read_metadata` returns); GIF is only ever a conversion target, and its XMP convention
is a hack few tools read.

A value that XML 1.0 cannot hold (control characters, U+FFFE/U+FFFF, lone surrogates) is
stored, in every format, under `<field>_json` as a JSON string, so every text
round-trips exactly.

The request body is stored as sent, except that input images (`data:` URLs of megabytes)
become `sha256:<hex>` of their bytes, and with `embed_prompt=False` its `prompt` is
dropped along with the `prompt` and `revised_prompt` fields; `sha256` and `inputs` stay,
since they hold no prompt.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._version import __version__
from ..images import GeneratedImage, sniff_format
from ..redact import redact
from .metadata_formats import (
    NAMESPACE,
    Entries,
    jpeg_found,
    jpeg_with,
    png_found,
    png_with,
    webp_found,
    webp_with,
)

# Every field is a string or None; `request` (the body) and `inputs` are JSON text.
FIELDS = (
    "prompt",
    "revised_prompt",
    "model",
    "request",
    "request_id",
    "created",
    "mesh_magics_version",
    "sha256",
    "inputs",
)
PROVENANCE = tuple(field for field in FIELDS if field != "request")  # keys read_metadata adds
_JSON_SUFFIX = "_json"
_KEYWORDS = frozenset(FIELDS) | {name + _JSON_SUFFIX for name in FIELDS}  # names a file holds

# Characters XML 1.0 cannot carry even as references, and lone surrogates (no UTF-8).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# What json.dumps(ensure_ascii=False) leaves raw but must not be: not XML, not UTF-8, or a
# line break to str.splitlines() (a JSON Lines reader may split there).
_ESCAPE_IN_JSON = re.compile("[\x85\u2028\u2029\ud800-\udfff\ufffe\uffff]")


# -- what is stored ---------------------------------------------------------------------------


def provenance(
    request: Mapping[str, Any],
    *,
    model: str | None,
    revised_prompt: str | None,
    request_id: str | None,
    created: datetime,
    embed_prompt: bool = True,
    sha256: str | None = None,
    inputs: list[dict[str, Any]] | None = None,
) -> dict[str, str | None]:
    """The fields stored in one image's file (see `FIELDS`), as text or None. `sha256` is
    the image's own, `inputs` an edit's input images (none for a generation)."""
    body = {key: _digest_images(value) for key, value in request.items()}
    prompt = body.get("prompt")
    if not embed_prompt:
        body.pop("prompt", None)
    return {
        "prompt": _text(prompt) if embed_prompt else None,
        "revised_prompt": _text(revised_prompt) if embed_prompt else None,
        "model": _text(model),
        "request": dumps(body),
        "request_id": _text(request_id),
        "created": created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mesh_magics_version": __version__,
        "sha256": sha256,
        "inputs": dumps([_named(entry) for entry in inputs]) if inputs else None,
    }


def _named(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An input's record with its name redacted: a path or variable name is the user's
    text, which could hold a secret."""
    name = entry.get("name")
    return {**entry, "name": redact(name) if isinstance(name, str) else name}


def flatten(fields: Mapping[str, str | None]) -> dict[str, Any]:
    """What `read_metadata` returns: the request body's fields, with the prompt, revised
    prompt, model (the one that answered), request id, time, version, the image's SHA-256
    and an edit's inputs (a list; None for a generation) over them."""
    body = _loaded(fields.get("request"), dict) or {}
    known: dict[str, Any] = {key: fields.get(key) for key in PROVENANCE}
    known["inputs"] = _loaded(fields.get("inputs"), list)
    return {**known, **_without(body, PROVENANCE)}


def _loaded(text: str | None, kind: type) -> Any:
    """`text` as JSON when it is a `kind`, else None (missing or damaged: the rest stands)."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, kind) else None


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON text that is valid UTF-8, valid XML text and one line (unless `indent`)."""
    text = json.dumps(value, ensure_ascii=False, indent=indent, default=str)
    return _ESCAPE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _digest_images(value: Any) -> Any:
    """`data:` URLs (input images) as `sha256:<hex>` of their bytes, anywhere in `value`."""
    if isinstance(value, str) and value.startswith("data:") and ";base64," in value[:100]:
        payload = value.partition(",")[2]
        try:
            data = binascii.a2b_base64(payload)
        except (binascii.Error, ValueError):
            data = value.encode("utf-8", "surrogatepass")
        return f"sha256:{hashlib.sha256(data).hexdigest()}"
    if isinstance(value, list):
        return [_digest_images(item) for item in value]
    if isinstance(value, dict):
        return {key: _digest_images(item) for key, item in value.items()}
    return value


def _without(mapping: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    skip = set(keys)
    return {key: value for key, value in mapping.items() if key not in skip}


def _entries(fields: Mapping[str, str | None]) -> Entries:
    """(name, text) to write: None left out, text XML cannot hold as `<name>_json`."""
    entries = []
    for name in FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        if _NOT_XML.search(value):
            entries.append((name + _JSON_SUFFIX, dumps(value)))
        else:
            entries.append((name, value))
    return entries


def _fields(found: Mapping[str, str]) -> dict[str, str | None] | None:
    """The fields from what a file holds, or None when it holds none of ours."""
    fields: dict[str, str | None] = {}
    for name in FIELDS:
        if name in found:
            fields[name] = found[name]
        elif name + _JSON_SUFFIX in found:
            try:
                value = json.loads(found[name + _JSON_SUFFIX])
            except ValueError:
                value = None
            fields[name] = value if isinstance(value, str) else None
        else:
            fields[name] = None
    return fields if fields["mesh_magics_version"] is not None else None


# -- writing ----------------------------------------------------------------------------------


def needs_sidecar(fmt: str) -> bool:
    return fmt == "gif"


def sidecar(fields: Mapping[str, str | None]) -> bytes:
    return dumps(flatten(fields), indent=2).encode("utf-8")


def with_metadata(image: GeneratedImage, fields: Mapping[str, str | None]) -> bytes:
    """The image's bytes with `fields` embedded; the pixel data is copied untouched."""
    entries = _entries(fields)
    if image.format == "png":
        return png_with(image.data, entries, replacing=_KEYWORDS)
    if image.format == "jpeg":
        return jpeg_with(image.data, entries, created=fields.get("created"))
    if image.format == "webp":
        return webp_with(image.data, entries, created=fields.get("created"))
    return image.data


# -- reading ----------------------------------------------------------------------------------


def read_metadata(path: str | Path) -> dict[str, Any]:
    """What `ImageResult.save` stored in the file at `path`: the request body's fields
    (`prompt`, `model`, `size`, `quality`, `n`, `seed`, ...) with `prompt`,
    `revised_prompt`, `model` (the one that answered), `request_id`, `created`,
    `mesh_magics_version`, `sha256` (hex, of the image as it was made) and `inputs` (an
    edit's input images, a list) over them (None where unknown or left out). `{}` for an
    image without mesh-magics metadata; a `ValueError` for a file that is not an image."""
    path = Path(path).expanduser()
    data = path.read_bytes()
    fmt = sniff_format(data)
    if fmt == "gif":
        beside = path.with_name(path.name + ".json")
        loaded = json.loads(beside.read_text("utf-8")) if beside.is_file() else {}
        if not isinstance(loaded, dict) or "mesh_magics_version" not in loaded:
            return {}
        return {**dict.fromkeys(PROVENANCE), **loaded}  # an older sidecar lacks the newer keys
    if fmt == "png":
        found = png_found(data)
    elif fmt == "jpeg":
        found = jpeg_found(data)
    elif fmt == "webp":
        found = webp_found(data)
    else:
        raise ValueError(f"{path} is not a PNG, JPEG, WebP or GIF image")
    fields = _fields(found)
    return {} if fields is None else flatten(fields)


__all__ = [
    "FIELDS",
    "NAMESPACE",
    "dumps",
    "flatten",
    "needs_sidecar",
    "provenance",
    "read_metadata",
    "sidecar",
    "with_metadata",
]
