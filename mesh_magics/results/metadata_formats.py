"""How text fields ride inside an image file without touching its pixels, per format.

This module knows containers, not provenance: it writes a list of (name, text) entries
into a PNG, JPEG or WebP file and reads them back as a dict, and nothing else (what the
fields are, and which text needs `_json`, is `metadata.py`'s).

- PNG: one uncompressed `iTXt` chunk (UTF-8) per entry, keyword = name, after IHDR; an
  older `tEXt`/`zTXt`/`iTXt` chunk of a name being replaced is dropped.
- JPEG: XMP in an APP1 segment (`http://ns.adobe.com/xap/1.0/\\0`), after JFIF/Exif. A
  packet too big for one segment (64 KB) keeps the short entries there and moves the long
  ones to ExtendedXMP segments (`http://ns.adobe.com/xmp/extension/\\0`), as Adobe's XMP
  spec part 3 lays out; exiftool reads both.
- WebP: the extended format's `XMP ` chunk, with the VP8X XMP flag set; a simple VP8/VP8L
  file gets a VP8X header (canvas size and alpha bit from its bitstream header), the
  bitstream chunk itself is copied as is.

XMP properties are in the `meshmagics` namespace (`NAMESPACE`), plus `xmp:CreatorTool`
and `xmp:CreateDate`; XML's specials (`&`, `<`, `>`, carriage returns) are escaped.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Collection, Iterable
from xml.etree import ElementTree

from .._version import __version__

NAMESPACE = "urn:mesh-magics:xmp:1.0/"
PREFIX = "meshmagics"
Entries = list[tuple[str, str]]  # (name, text), in the order they are written

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


def png_with(data: bytes, entries: Entries, *, replacing: Collection[str]) -> bytes:
    """The PNG with `entries` as iTXt chunks after IHDR, and without the text chunks
    already there whose keyword is in `replacing`."""
    kept = [_PNG_SIGNATURE]
    read = len(_PNG_SIGNATURE)
    for kind, body, whole in _png_chunks(data):
        read += len(whole)
        if kind in (b"tEXt", b"zTXt", b"iTXt") and _png_keyword(body) in replacing:
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


def png_found(data: bytes) -> dict[str, str]:
    """Every text chunk's keyword and text (iTXt over tEXt/zTXt of the same keyword)."""
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


# XMP


def _xmp(
    entries: Entries,
    *,
    standard: bool = True,
    created: str | None = None,
    extended_guid: str | None = None,
    wrapper: bool = True,
) -> bytes:
    """An XMP packet of `entries`; the `standard` packet adds CreatorTool and CreateDate
    (`created`), `extended_guid` the pointer to an ExtendedXMP."""
    properties = []
    if standard:
        properties.append(
            f"   <xmp:CreatorTool>mesh-magics {_escape(__version__)}</xmp:CreatorTool>"
        )
        if created:
            properties.append(f"   <xmp:CreateDate>{_escape(created)}</xmp:CreateDate>")
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


def jpeg_with(data: bytes, entries: Entries, *, created: str | None) -> bytes:
    """The JPEG with `entries` in XMP (ExtendedXMP too when they need it) after JFIF and
    Exif, in place of any XMP it had."""
    ours = [_app1(payload) for payload in _jpeg_xmp_payloads(entries, created)]
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


def _jpeg_xmp_payloads(entries: Entries, created: str | None) -> list[bytes]:
    packet = _xmp(entries, created=created)
    if len(packet) <= _STANDARD_XMP_MAX:
        return [_XMP_HEADER + packet]
    short = [(n, t) for n, t in entries if len(_escape(t).encode()) <= _SHORT_FIELD_BYTES]
    extended = _xmp([e for e in entries if e not in short], standard=False, wrapper=False)
    guid = hashlib.md5(extended).hexdigest().upper()  # what the spec names it by
    payloads = [_XMP_HEADER + _xmp(short, created=created, extended_guid=guid)]
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


def jpeg_found(data: bytes) -> dict[str, str]:
    """The properties of the file's XMP, joined with its ExtendedXMP."""
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


def webp_with(data: bytes, entries: Entries, *, created: str | None) -> bytes:
    """The WebP with `entries` in its `XMP ` chunk, made an extended file if it was not."""
    packet = _xmp(entries, created=created)
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


def webp_found(data: bytes) -> dict[str, str]:
    """The properties of the file's `XMP ` chunk."""
    return next((_xmp_found(p) for k, p in _riff_chunks(data) if k == b"XMP "), {})


__all__ = [
    "NAMESPACE",
    "Entries",
    "jpeg_found",
    "jpeg_with",
    "png_found",
    "png_with",
    "webp_found",
    "webp_with",
]
