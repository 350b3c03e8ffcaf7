"""Reading a request body, with a size limit that still lets the client see the 413.

A server that answers before reading the body, then closes, makes the kernel reset the
connection over the unread bytes: the client gets a broken pipe or a ``ReadError``
instead of the answer. So an oversized body is read to its end and thrown away, in
small pieces, up to ``DRAIN_LIMIT`` bytes; only a body larger than that is cut off.
Bodies may come with a Content-Length or chunked.
"""

from __future__ import annotations

from email.message import Message
from io import BufferedIOBase

MAX_BODY_BYTES = 32 * 1024 * 1024
DRAIN_LIMIT = 256 * 1024 * 1024  # bytes read and dropped to answer a 413 cleanly
PIECE = 64 * 1024
MAX_LINE = 4096  # a chunk-size or trailer line


class BodyError(Exception):
    """The body cannot be taken; answer STATUS with CODE. ``drained``: the stream is in sync."""

    def __init__(self, status: int, code: str, message: str, *, drained: bool) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.drained = status, code, message, drained


def _size(limit: int) -> str:
    mib = 1024 * 1024
    return f"{limit // mib} MB" if limit >= mib and limit % mib == 0 else f"{limit:,} bytes"


def too_large(limit: int, *, drained: bool) -> BodyError:
    return BodyError(
        413, "request_too_large", f"The request body exceeds {_size(limit)}", drained=drained
    )


def _read_exactly(rfile: BufferedIOBase, size: int, keep: bool) -> bytes:
    """SIZE bytes (kept or dropped piece by piece); a client that stops early has gone."""
    pieces = []
    while size > 0:
        piece = rfile.read(min(size, PIECE))
        if not piece:
            raise ConnectionResetError("the client closed the connection mid-body")
        size -= len(piece)
        if keep:
            pieces.append(piece)
    return b"".join(pieces)


def read_body(
    rfile: BufferedIOBase, headers: Message, limit: int, drain_limit: int = DRAIN_LIMIT
) -> bytes:
    """The body of a request whose head has been read; raises BodyError if it is refused."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return _read_chunked(rfile, limit, drain_limit)
    try:
        length = int(headers.get("Content-Length") or 0)
    except ValueError:
        length = -1
    if length < 0:
        raise BodyError(400, "bad_request", "Bad Content-Length header", drained=False)
    if length > limit:
        if length > drain_limit:
            raise too_large(limit, drained=False)
        _read_exactly(rfile, length, keep=False)
        raise too_large(limit, drained=True)
    return _read_exactly(rfile, length, keep=True)


def _read_chunked(rfile: BufferedIOBase, limit: int, drain_limit: int) -> bytes:
    pieces: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(MAX_LINE)
        if not line:
            raise ConnectionResetError("the client closed the connection mid-body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            size = -1
        if size < 0:
            raise BodyError(400, "bad_request", "Bad chunk size in the body", drained=False)
        if size == 0:
            break
        total += size
        if total > drain_limit:
            raise too_large(limit, drained=False)
        data = _read_exactly(rfile, size, keep=total <= limit)
        if total <= limit:
            pieces.append(data)
        else:
            pieces.clear()  # refused anyway: keep nothing while draining the rest
        if rfile.readline(MAX_LINE) not in (b"\r\n", b"\n"):
            raise BodyError(400, "bad_request", "A chunk does not end with CRLF", drained=False)
    while rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
        pass  # trailer fields: nothing here reads them
    if total > limit:
        raise too_large(limit, drained=True)
    return b"".join(pieces)
