"""Provenance inside every saved image, without touching its pixels, and reading it back.

What is stored, for each image (`provenance`): the prompt, the revised prompt, the model
that answered, the request body as JSON, the request id, when it was made (`created`,
ISO 8601 UTC), the mesh-magics version, the SHA-256 of the image as it was made (`sha256`,
hex: its bytes before any metadata or conversion, as the store names it) and, for an edit,
its input images (`inputs`, a JSON list: role, SHA-256, variable name, format, size and
byte count of each image sent). An edit's input that was saved too is found by hash:
`read_metadata(edit)["inputs"][0]["sha256"] == read_metadata(original)["sha256"]`. Where
it lives:

- PNG: one uncompressed `iTXt` chunk (UTF-8) per field, keyword = field name, after IHDR.
- JPEG: XMP in an APP1 segment (`http://ns.adobe.com/xap/1.0/\\0`), after JFIF/Exif. A
  packet too big for one segment (64 KB) keeps the short fields there and moves the long
  ones to ExtendedXMP segments (`http://ns.adobe.com/xmp/extension/\\0`), as Adobe's XMP
  spec part 3 lays out; exiftool reads both.
- WebP: the extended format's `XMP ` chunk, with the VP8X XMP flag set; a simple VP8/VP8L
  file gets a VP8X header (canvas size and alpha bit from its bitstream header), the
  bitstream chunk itself is copied as is.
- GIF: a `.json` file beside the image (the same dict `read_metadata` returns); GIF is
  only ever a conversion target, and its XMP convention is a hack few tools read.

XMP properties are in the `meshmagics` namespace (`NAMESPACE`), named like the PNG
keywords, plus `xmp:CreatorTool` and `xmp:CreateDate`. A value that XML 1.0 cannot hold
(control characters, U+FFFE/U+FFFF, lone surrogates) is stored, in every format, under
`<field>_json` as a JSON string, so every text round-trips exactly; XML's own specials
(`&`, `<`, `>`, carriage returns) are escaped as usual.

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
import zlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from .._version import __version__
from ..images import GeneratedImage, sniff_format
from ..redact import redact

NAMESPACE = "urn:mesh-magics:xmp:1.0/"
PREFIX = "meshmagics"
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

# Characters XML 1.0 cannot carry even as references, and lone surrogates (no UTF-8).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# What json.dumps(ensure_ascii=False) leaves raw but must not be: not XML, not UTF-8, or a
# line break to str.splitlines() (a JSON Lines reader may split there).
_ESCAPE_IN_JSON = re.compile("[\x85\u2028\u2029\ud800-\udfff\ufffe\uffff]")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_EXTENDED_HEADER = b"http://ns.adobe.com/xmp/extension/\x00"
_APP1_MAX = 0xFFFF - 2  # a segment's length field counts itself
_STANDARD_XMP_MAX = _APP1_MAX - len(_XMP_HEADER)
_EXTENDED_CHUNK = _APP1_MAX - len(_EXTENDED_HEADER) - 32 - 4 - 4  # GUID, full length, offset
_SHORT_FIELD_BYTES = 2048  # longer fields go to ExtendedXMP when one segment is too small
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length
_VP8X_XMP = 0x04
_VP8X_ALPHA = 0x10


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


def _entries(fields: Mapping[str, str | None]) -> list[tuple[str, str]]:
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
        return _png_with(image.data, entries)
    if image.format == "jpeg":
        return _jpeg_with(image.data, entries, fields)
    if image.format == "webp":
        return _webp_with(image.data, _xmp(entries, fields))
    return image.data


# PNG


def _png_chunks(data: bytes) -> Iterable[tuple[bytes, bytes, bytes]]:
    """(type, data, the whole chunk) from the signature to IEND."""
    position = len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        yield kind, data[position + 8 : end - 4], data[position:end]
        position = end
        if kind == b"IEND":
            return


def _png_with(data: bytes, entries: list[tuple[str, str]]) -> bytes:
    ours = {name for name in FIELDS} | {name + _JSON_SUFFIX for name in FIELDS}
    kept = [_PNG_SIGNATURE]
    read = len(_PNG_SIGNATURE)
    for kind, body, whole in _png_chunks(data):
        read += len(whole)
        if kind in (b"tEXt", b"zTXt", b"iTXt") and _png_keyword(body) in ours:
            continue  # an older value of one of our fields: ours replaces it
        kept.append(whole)
        if kind == b"IHDR":
            kept.extend(_png_itxt(name, text) for name, text in entries)
    return b"".join(kept) + data[read:]  # anything after IEND stays too


def _png_keyword(body: bytes) -> str:
    return body.partition(b"\0")[0].decode("latin-1")


def _png_itxt(key: str, value: str) -> bytes:
    body = key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")
    return (
        len(body).to_bytes(4, "big")
        + b"iTXt"
        + body
        + zlib.crc32(b"iTXt" + body).to_bytes(4, "big")
    )


# XMP


def _xmp(
    entries: list[tuple[str, str]],
    fields: Mapping[str, str | None] | None,
    *,
    extended_guid: str | None = None,
    wrapper: bool = True,
) -> bytes:
    """An XMP packet of `entries`; `fields` (the standard packet) adds CreatorTool and
    CreateDate, `extended_guid` the pointer to an ExtendedXMP."""
    properties = []
    if fields is not None:
        properties.append(
            f"   <xmp:CreatorTool>mesh-magics {_escape(__version__)}</xmp:CreatorTool>"
        )
        if fields.get("created"):
            properties.append(
                f"   <xmp:CreateDate>{_escape(fields['created'] or '')}</xmp:CreateDate>"
            )
    if extended_guid is not None:
        properties.append(f"   <xmpNote:HasExtendedXMP>{extended_guid}</xmpNote:HasExtendedXMP>")
    properties += [
        f"   <{PREFIX}:{name}>{_escape(text)}</{PREFIX}:{name}>" for name, text in entries
    ]
    lines = [
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">',
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">',
        '  <rdf:Description rdf:about=""',
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"',
        '    xmlns:xmpNote="http://ns.adobe.com/xmp/note/"',
        f'    xmlns:{PREFIX}="{NAMESPACE}">',
        *properties,
        "  </rdf:Description>",
        " </rdf:RDF>",
        "</x:xmpmeta>",
    ]
    if wrapper:
        lines = [
            '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>',
            *lines,
            '<?xpacket end="w"?>',
        ]
    return "\n".join(lines).encode("utf-8")


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\r", "&#13;")  # a raw CR would be read back as LF
    )


# JPEG


def _jpeg_segments(data: bytes) -> tuple[list[bytes], int] | None:
    """The marker segments after SOI up to the first SOS, and where SOS starts; None if
    the structure is not what a JPEG's is."""
    segments: list[bytes] = []
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xDA:
            return segments, position
        if marker in _JPEG_STANDALONE:
            segments.append(data[position : position + 2])
            position += 2
            continue
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        segments.append(data[position:end])
        position = end
    return None


def _is_xmp_segment(segment: bytes) -> bool:
    return segment[1] == 0xE1 and (
        segment[4:].startswith(_XMP_HEADER) or segment[4:].startswith(_EXTENDED_HEADER)
    )


def _jpeg_with(
    data: bytes, entries: list[tuple[str, str]], fields: Mapping[str, str | None]
) -> bytes:
    ours = [_app1(payload) for payload in _jpeg_xmp_payloads(entries, fields)]
    parsed = _jpeg_segments(data)
    if parsed is None:
        return data[:2] + b"".join(ours) + data[2:]
    segments, scan = parsed
    segments = [segment for segment in segments if not _is_xmp_segment(segment)]
    at = 0  # after JFIF (APP0) and Exif (APP1), which readers expect first
    while at < len(segments) and (
        segments[at][1] == 0xE0 or (segments[at][1] == 0xE1 and segments[at][4:10] == b"Exif\0\0")
    ):
        at += 1
    segments[at:at] = ours
    return data[:2] + b"".join(segments) + data[scan:]


def _jpeg_xmp_payloads(
    entries: list[tuple[str, str]], fields: Mapping[str, str | None]
) -> list[bytes]:
    packet = _xmp(entries, fields)
    if len(packet) <= _STANDARD_XMP_MAX:
        return [_XMP_HEADER + packet]
    short = [(n, t) for n, t in entries if len(_escape(t).encode()) <= _SHORT_FIELD_BYTES]
    extended = _xmp([e for e in entries if e not in short], None, wrapper=False)
    guid = hashlib.md5(extended).hexdigest().upper()  # what the spec names it by
    payloads = [_XMP_HEADER + _xmp(short, fields, extended_guid=guid)]
    for offset in range(0, len(extended), _EXTENDED_CHUNK):
        payloads.append(
            _EXTENDED_HEADER
            + guid.encode("ascii")
            + len(extended).to_bytes(4, "big")
            + offset.to_bytes(4, "big")
            + extended[offset : offset + _EXTENDED_CHUNK]
        )
    return payloads


def _app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


# WebP


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    end = min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    chunks = []
    position = 12
    while position + 8 <= end:
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        chunks.append((data[position : position + 4], data[position + 8 : position + 8 + size]))
        position += 8 + size + (size & 1)
    return chunks


def _webp_with(data: bytes, packet: bytes) -> bytes:
    chunks = _riff_chunks(data)
    if not chunks:
        return data
    kind, payload = chunks[0]
    if kind == b"VP8X":
        chunks[0] = (kind, bytes([payload[0] | _VP8X_XMP]) + payload[1:])
    else:
        header = _vp8x_for(kind, payload)
        if header is None:
            return data  # not a bitstream we know: leave the file as it came
        chunks.insert(0, (b"VP8X", header))
    chunks = [chunk for chunk in chunks if chunk[0] != b"XMP "]
    chunks.append((b"XMP ", packet))
    body = b"".join(
        kind + len(payload).to_bytes(4, "little") + payload + b"\0" * (len(payload) & 1)
        for kind, payload in chunks
    )
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WEBP" + body


def _vp8x_for(kind: bytes, bitstream: bytes) -> bytes | None:
    """The VP8X payload for a simple file's bitstream: XMP flag, alpha as the bitstream
    says, and the canvas its header declares."""
    flags = _VP8X_XMP
    if kind == b"VP8L" and len(bitstream) >= 5 and bitstream[0] == 0x2F:
        bits = int.from_bytes(bitstream[1:5], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if bits >> 28 & 1:
            flags |= _VP8X_ALPHA
    elif kind == b"VP8 " and len(bitstream) >= 10 and bitstream[3:6] == b"\x9d\x01\x2a":
        width = int.from_bytes(bitstream[6:8], "little") & 0x3FFF
        height = int.from_bytes(bitstream[8:10], "little") & 0x3FFF
    else:
        return None
    return (
        bytes([flags, 0, 0, 0])
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )


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
        found = _png_found(data)
    elif fmt == "jpeg":
        found = _jpeg_found(data)
    elif fmt == "webp":
        found = next((_xmp_found(p) for k, p in _riff_chunks(data) if k == b"XMP "), {})
    else:
        raise ValueError(f"{path} is not a PNG, JPEG, WebP or GIF image")
    fields = _fields(found)
    return {} if fields is None else flatten(fields)


def _png_found(data: bytes) -> dict[str, str]:
    found = {}
    for kind, body, _ in _png_chunks(data):
        try:
            if kind == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, text = rest[0], rest[2:].split(b"\0", 2)[2]
                found[key.decode("latin-1")] = (
                    zlib.decompress(text) if compressed else text
                ).decode("utf-8")
            elif kind in (b"tEXt", b"zTXt"):
                key, _, text = body.partition(b"\0")
                text = zlib.decompress(text[1:]) if kind == b"zTXt" else text
                found.setdefault(key.decode("latin-1"), text.decode("latin-1"))
        except (IndexError, ValueError, zlib.error):
            continue  # a damaged chunk: skip it, like every PNG reader
    return found


def _jpeg_found(data: bytes) -> dict[str, str]:
    parsed = _jpeg_segments(data)
    found: dict[str, str] = {}
    extended: dict[str, dict[int, bytes]] = {}
    for segment in parsed[0] if parsed else []:
        payload = segment[4:]
        if segment[1] != 0xE1:
            continue
        if payload.startswith(_XMP_HEADER) and not found:
            found = _xmp_found(payload[len(_XMP_HEADER) :])
        elif payload.startswith(_EXTENDED_HEADER):
            rest = payload[len(_EXTENDED_HEADER) :]
            guid, offset = rest[:32].decode("ascii", "replace"), int.from_bytes(rest[36:40], "big")
            extended.setdefault(guid, {})[offset] = rest[40:]
    guid = found.pop("\0HasExtendedXMP", "")
    if guid in extended:
        joined = b"".join(part for _, part in sorted(extended[guid].items()))
        found = {**_xmp_found(joined), **found}
    return found


def _xmp_found(packet: bytes) -> dict[str, str]:
    """Our properties in an XMP packet (elements or attributes), and the ExtendedXMP GUID
    as `\\0HasExtendedXMP`. A packet with a DTD is refused: XMP has none, and entities are
    how XML bombs go off."""
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        return {}
    try:
        root = ElementTree.fromstring(packet)
    except ElementTree.ParseError:
        return {}
    ours = "{" + NAMESPACE + "}"
    note = "{http://ns.adobe.com/xmp/note/}HasExtendedXMP"
    found = {}
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.startswith(ours):
                found[name[len(ours) :]] = value
            elif name == note:
                found["\0HasExtendedXMP"] = value
        if element.tag.startswith(ours):
            found[element.tag[len(ours) :]] = element.text or ""
        elif element.tag == note:
            found["\0HasExtendedXMP"] = (element.text or "").strip()
    return found


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
