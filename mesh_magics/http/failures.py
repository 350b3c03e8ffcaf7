"""What a failed HTTP exchange means: how far the request got, whether it may be sent
again, and what to tell the user.

Generation is billed per job, so a request is repeated only when it provably never
reached the server (docs/protocol.md, "The retry policy"). "Provably" is decided from
httpcore's trace events for the attempt (`Progress`), and from the exception's type:

- `ConnectError`, `ConnectTimeout`, `PoolTimeout` happen only while a connection is being
  made (TCP, TLS, a proxy's tunnel) or waited for;
- any other error while the trace shows no request headers started yet;

are never sent, and may be retried when they can pass (not a TLS certificate, not a bad
proxy or URL). Anything later may have been received, even in part, and is never retried,
not even a server closing the connection in the middle of an upload (often a 413 for a
body too big, whose answer the reset destroys): what it did with the part it read is
unknown, and a repeat could bill twice.
"""

from __future__ import annotations

import enum
import ssl
from typing import Any

import httpx

from ..errors import MeshError, StreamError, TransportError
from ..redact import clip

NOT_RETRIED = "not retried, because a repeat could bill twice"


class Stage(enum.Enum):
    """How far an attempt got before it failed."""

    NOT_SENT = "no byte of the request was sent"
    SENDING = "the request was being sent"
    UPLOAD_CUT = "the server closed the connection during the upload"
    SENT = "the request was sent"  # or may have been: what cannot be proven is "sent"
    ANSWERED = "the response had begun"


class Progress:
    """httpcore's `trace` extension for one attempt: records what reached the wire."""

    def __init__(self) -> None:
        self.traced = False  # any event at all: the transport reports progress
        self.sending = False
        self.body_sent = False
        self.body_failed = False
        self.answered = False  # set by the client once the response has begun

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        self.traced = True
        if name.endswith("send_request_headers.started"):
            self.sending = True
        elif name.endswith("send_request_body.complete"):
            self.body_sent = True
        elif name.endswith("send_request_body.failed"):
            self.body_failed = True

    def stage(self, exc: BaseException) -> Stage:
        if self.answered:
            return Stage.ANSWERED
        if isinstance(exc, _BEFORE_ANY_CONNECTION) or (self.traced and not self.sending):
            return Stage.NOT_SENT  # (a proxy's CONNECT may have been sent: not our request)
        if self.body_failed:
            return Stage.UPLOAD_CUT
        if self.sending and not self.body_sent:
            return Stage.SENDING
        return Stage.SENT


# Raised only while a connection is being made (TCP, TLS, a proxy tunnel) or waited for:
# whatever the trace says, nothing of this request can have been sent.
_BEFORE_ANY_CONNECTION = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Never sent, but repeating cannot help: the same URL, proxy or request fails the same way.
_PERMANENT = (httpx.ProxyError, httpx.UnsupportedProtocol, httpx.LocalProtocolError)


class Retryable(Exception):
    """An attempt failed in a way that is safe to repeat; `error` is what to report if the
    retries run out."""

    def __init__(self, error: MeshError) -> None:
        self.error = error


def request_failure(
    exc: httpx.HTTPError,
    progress: Progress,
    *,
    where: str,
    body_size: int,
    read_timeout: float,
    write_timeout: float,
    streaming: bool,
) -> MeshError | Retryable:
    """The error to raise (or to retry) for `exc`, raised by one generation attempt."""
    stage = progress.stage(exc)
    cause = describe(exc)
    if stage is Stage.ANSWERED:
        return response_failure(exc, read_timeout=read_timeout, streaming=streaming)
    if isinstance(exc, _PERMANENT):  # refused before the wire: the same would fail again
        return TransportError(f"the request to {where} could not be sent ({cause})")
    if stage is Stage.NOT_SENT:
        tls = ssl_error_in(exc)
        if tls is not None:
            reason = getattr(tls, "verify_message", None) or tls.reason or str(tls)
            return TransportError(f"TLS handshake with {where} failed: {clip(str(reason), 160)}")
        if isinstance(exc, httpx.ConnectTimeout):
            cause = "timed out"
        elif isinstance(exc, httpx.PoolTimeout):
            cause = "no free connection in time"
        return Retryable(TransportError(f"could not connect to {where} ({cause})"))
    size = megabytes(body_size)
    if isinstance(exc, httpx.WriteTimeout):
        return TransportError(
            f"sending the request ({size}) stalled for {write_timeout:g} s (write timeout); "
            + NOT_RETRIED
        )
    if stage is Stage.UPLOAD_CUT:
        return TransportError(
            f"the server closed the connection while the request ({size}) was still being "
            f"sent ({cause}): it may be too large for the server (a big --image or --edit input?); "
            + NOT_RETRIED
        )
    if isinstance(exc, httpx.ReadTimeout):
        return TransportError(
            f"the server sent nothing for {read_timeout:g} s (read timeout): no response yet; "
            + NOT_RETRIED
        )
    when = (
        "while the request was being sent"
        if stage is Stage.SENDING
        else "after the request was sent"
    )
    return TransportError(f"the connection failed {when} ({cause}); {NOT_RETRIED}")


def response_failure(exc: httpx.HTTPError, *, read_timeout: float, streaming: bool) -> MeshError:
    """The error for `exc` raised while a response body was being read (never retried)."""
    if isinstance(exc, httpx.TimeoutException):
        stalled = "the stream stalled" if streaming else "the response stalled"
        return TransportError(
            f"the server sent nothing for {read_timeout:g} s (read timeout): {stalled}"
        )
    if isinstance(exc, httpx.DecodingError):
        return StreamError(f"the response could not be decoded ({describe(exc)})")
    return StreamError(f"the connection dropped before the response was complete ({describe(exc)})")


def describe(exc: BaseException) -> str:
    """An exception in a few words, safe to show."""
    return clip(str(exc) or type(exc).__name__, 160)


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size:,} bytes"


def ssl_error_in(exc: BaseException | None) -> ssl.SSLError | None:
    """The `ssl.SSLError` behind an httpx error, if a TLS failure is what it is."""
    while exc is not None:
        if isinstance(exc, ssl.SSLError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
