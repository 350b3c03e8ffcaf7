"""A bound on every read: how many bytes a response may bring, and how long it may take.

A response's cap follows from what was asked: n images of w x h are at most n*w*h*4
bytes of raw RGBA, 4/3 of that in base64, and a stream may add a preview of the same size
per `partial_images`. The cap is twice that, plus 16 MiB for the JSON around the images,
status frames and pings; a size the client cannot know (`auto`, a provider's
`resolution`, an edit's upscale) counts as the largest image the client accepts
(`images.MAX_PIXELS`). `max_response_mb` replaces the derived cap. A body that is not
images (an error page, the model list) has a small fixed cap. Compressed bodies are
inflated here, a piece at a time, so the cap counts inflated bytes, not wire bytes.

Two deadlines bound the time: `idle_timeout` between complete SSE events (a `: ping`
counts; a trickle of bytes that never completes one does not), and `total_timeout` on one
request, from sending it to its last byte. httpx's read timeout alone resets on every
byte, so it cannot see a server that sends one a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import (
    GenerationTimeout,
    MeshError,
    ResponseTooLargeError,
    StreamError,
    TransportError,
)
from ..images import MAX_PIXELS
from ..redact import clip
from ..request import ImageRequest

MIB = 1024 * 1024
CAP_MARGIN = 2  # over the raw-RGBA bound: a provider may send more than it was asked
CAP_OVERHEAD = 16 * MIB  # JSON around the images, status frames, pings, revised prompts
MODELS_CAP = 8 * MIB  # a /v1/models list (OpenRouter's, the largest seen, is ~0.5 MiB)
INFLATE_PIECE = MIB  # most bytes one step of inflating makes: a bomb never lands whole
MAX_N = 10  # what the protocol allows; an n the client cannot read counts as this
MAX_PREVIEWS = 3
_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")
# Fields with which the server, not `size`, decides how large the images are.
_SIZE_DECIDERS = ("resolution", "aspect_ratio", "upscale_factor", "expand_factor")
_RESIZING_OPERATIONS = frozenset({"upscale", "outpaint", "reframe"})


@dataclass(frozen=True)
class Cap:
    """At most `limit` bytes; `basis` says where the number came from, `setting` which
    `MeshImageMagics` setting raises it (None: a fixed cap)."""

    limit: int
    basis: str
    setting: str | None = "max_response_mb"

    def error(self, what: str) -> ResponseTooLargeError:
        size = _mib(self.limit)
        if self.setting is None:
            hint = "a fixed cap: the server is broken or hostile"
        elif self.setting == "max_image_bytes":
            hint = f"raise it with %config MeshImageMagics.max_image_bytes = {self.limit * 2}"
        else:
            hint = f"raise it with %config MeshImageMagics.{self.setting} = {_suggest(self.limit)}"
        return ResponseTooLargeError(f"{what} passed its {size} cap ({self.basis}); {hint}")


def response_cap(request: ImageRequest, max_response_mb: float | None) -> Cap:
    """The cap on the response to `request`: derived from it, unless the setting is set."""
    if max_response_mb is not None:
        return Cap(int(max_response_mb * MIB), f"max_response_mb = {max_response_mb:g}")
    body = request.body
    n = body.get("n", 1)
    n = n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_N else MAX_N
    previews = 0
    if request.stream:
        asked = body.get("partial_images", 0)
        ok = isinstance(asked, int) and not isinstance(asked, bool) and asked >= 0
        previews = min(asked, MAX_PREVIEWS) if ok else MAX_PREVIEWS
    pixels, size = _pixels(body)
    per_image = pixels * 4 * 4 // 3  # raw RGBA, as base64
    limit = n * (1 + previews) * per_image * CAP_MARGIN + CAP_OVERHEAD
    shown = "an image" if n == 1 else f"{n} images"
    basis = f"{shown} of {size}"
    if previews:
        basis += f", {previews} preview{'s' if previews > 1 else ''} each"
    return Cap(limit, basis)


def image_cap(response: Cap, max_image_bytes: int) -> Cap:
    """The cap on one image fetched from a URL: the response's, or `max_image_bytes` if
    lower."""
    if max_image_bytes < response.limit:
        return Cap(max_image_bytes, f"max_image_bytes = {max_image_bytes:,}", "max_image_bytes")
    return response


def _pixels(body: dict[str, Any]) -> tuple[int, str]:
    size = body.get("size")
    match = _SIZE.fullmatch(size.strip().lower()) if isinstance(size, str) else None
    decided_elsewhere = any(body.get(field) is not None for field in _SIZE_DECIDERS)
    if body.get("operation") in _RESIZING_OPERATIONS:
        decided_elsewhere = True
    if match and not decided_elsewhere:
        pixels = int(match[1]) * int(match[2])
        if 0 < pixels <= MAX_PIXELS:
            return pixels, f"{int(match[1])}x{int(match[2])}"
    return MAX_PIXELS, "unknown size (counted as the largest accepted, 8192x8192)"


def _mib(size: int) -> str:
    if size < MIB:
        return f"{size:,}-byte"
    return f"{size / MIB:.1f} MiB" if size < 10 * MIB else f"{size // MIB:,} MiB"


def _suggest(limit: int) -> str:
    """A round number of MB, about twice `limit`."""
    return str(max(1, round(2 * limit / MIB)))  # no thousands comma: it is pasted as Python


class Deadline:
    """The idle and total deadlines of one request, on the running loop's clock."""

    def __init__(self, *, total: float, idle: float | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.total, self.idle = total, idle
        self._total_at = now + total
        self._idle_at = float("inf")  # set by `alive()`: waiting for the headers is not idle

    def when(self) -> float:
        return min(self._total_at, self._idle_at)

    def alive(self) -> float:
        """A complete event arrived: the idle deadline starts again; the new `when()`."""
        if self.idle is not None:
            self._idle_at = self._loop.time() + self.idle
        return self.when()

    def error(self) -> MeshError:
        if self._loop.time() >= self._total_at:
            return GenerationTimeout(
                f"the request took longer than {self.total:g} s (total_timeout); the server may "
                f"be trickling its answer; raise it with %config MeshImageMagics.total_timeout = "
                f"{2 * self.total:g}"
            )
        return TransportError(
            f"the stream completed no event for {self.idle:g} s (idle_timeout): it sends bytes "
            f"but no event, not even a ping; raise it with %config MeshImageMagics.idle_timeout "
            f"= {2 * (self.idle or 0):g}"
        )

    def scope(self) -> DeadlineScope:
        """`async with deadline.scope():` runs the block within the deadlines; past one,
        it raises what `error()` says."""
        return DeadlineScope(self)


class DeadlineScope:
    """A cancel scope that ends at `Deadline.when()` (Python 3.10 has no
    `asyncio.timeout`); `reschedule` moves its end. Never hold it across a `yield`: it
    cancels the task, which may then be running the consumer's code."""

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False

    def reschedule(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._deadline._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._fired = True
        if self._task is not None:
            self._task.cancel()

    async def __aenter__(self) -> DeadlineScope:
        self._task = asyncio.current_task()
        self.reschedule(self._deadline.when())
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if not self._fired or kind not in (None, asyncio.CancelledError):
            return
        if sys.version_info >= (3, 11) and self._task is not None:
            self._task.uncancel()
        if kind is None:  # the block ended as the deadline passed: take back its cancel
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
        raise self._deadline.error() from None


# -- reading a body -------------------------------------------------------------------------


def decoded_chunks(response: httpx.Response) -> AsyncIterable[bytes]:
    """The body as it arrives, inflated here if it is compressed.

    An identity body is read straight from the transport: httpx's `aiter_bytes()` puts
    three generator layers over every chunk (bench/). A compressed one is inflated at most
    `INFLATE_PIECE` bytes a step, so what the reader counts is what exists: httpx's own
    decoder inflates a whole network read at once (up to ~1000x its size).
    """
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    stream = response.stream
    raw = stream if isinstance(stream, httpx.AsyncByteStream) else response.aiter_raw()
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "x-gzip"):
        return _inflated(raw, zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return _inflated(raw, zlib.MAX_WBITS)
    raise StreamError(
        f"the server sent its response in content-encoding {clip(encoding, 40)!r}, "
        "which was not asked for (only gzip and deflate are)"
    )


async def _inflated(chunks: AsyncIterable[bytes], wbits: int) -> AsyncIterator[bytes]:
    inflater = zlib.decompressobj(wbits)
    started = False
    try:
        async for data in chunks:
            if not started and data and wbits == zlib.MAX_WBITS and not _zlib_header(data):
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # a raw deflate stream
            started = started or bool(data)
            while True:
                piece = inflater.decompress(data, INFLATE_PIECE)
                data = inflater.unconsumed_tail
                if piece:
                    yield piece
                if not data and len(piece) < INFLATE_PIECE:
                    break
        rest = inflater.flush()
    except zlib.error as exc:
        raise StreamError(f"the response could not be decoded ({clip(str(exc), 120)})") from None
    if rest:
        yield rest


def _zlib_header(data: bytes) -> bool:
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] * 256 + data[1]) % 31 == 0


async def read_body(response: httpx.Response, cap: Cap, deadline: Deadline, what: str) -> bytes:
    """The whole body, or `cap`'s error as soon as it passes the cap (a `Content-Length`
    over the cap fails before the first byte)."""
    declared = response.headers.get("content-length", "").strip()
    plain = "content-encoding" not in response.headers
    if plain and declared.isascii() and declared.isdigit() and int(declared) > cap.limit:
        raise cap.error(f"{what} ({int(declared):,} bytes, says its Content-Length)")
    body = bytearray()
    async with deadline.scope():
        async for chunk in decoded_chunks(response):
            body += chunk
            if len(body) > cap.limit:
                raise cap.error(what)
    return bytes(body)


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Up to `limit` bytes of the body (inflated); what came before a broken connection,
    if it broke. An error page is worth showing even when cut short or its length lies."""
    body = bytearray()
    try:
        async for chunk in decoded_chunks(response):
            body += chunk
            if len(body) >= limit:
                break
    except (httpx.HTTPError, StreamError):
        pass
    return bytes(body[:limit])
