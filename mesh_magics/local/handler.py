"""The request handler: routing, answers, and the bytes on the wire.

Chunked transfer encoding is written by hand so that faults can be made at the
byte level: a stream cut in the middle of a chunk, a stream that ends cleanly
without a result, and so on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import selectors
import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs, urlsplit

from . import generation
from .faults import (
    RETRY_AFTER_STATUSES,
    Fault,
    RequestControls,
    html_page,
    parse_controls,
    retry_after_seconds,
    status_error,
    text_page,
)
from .models import image_model_ids, models_of_type
from .validation import ImageParams, summarize, validate_generation

if TYPE_CHECKING:
    from .server import LocalServer, _HTTPServer

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
API_VERSIONS = frozenset({"2026-08"})
MAX_BODY_BYTES = 32 * 1024 * 1024
FRAME_PIECE_BYTES = 64 * 1024  # the big final frame goes out in pieces: many client reads
WAIT_SLICE = 0.1  # how often a wait looks for a hung-up client or a stopping server
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_request_id() -> str:
    """``req_`` and a ULID: 48 bits of milliseconds and 80 random bits, in Crockford base32."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = [_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26))]
    return "req_" + "".join(chars)


def envelope(code: str, message: str, request_id: str, **extra: Any) -> dict[str, Any]:
    """The error envelope of docs/protocol.md."""
    return {"error": {"code": code, "message": message, **extra}, "request_id": request_id}


class _Hangup(Exception):
    """The client closed the connection while the server was still working."""


class _Abort(Exception):
    """Stop handling: the server is stopping, or a fault closed the connection."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mesh-local/0.1"
    server: _HTTPServer

    _request_id: str | None = None
    _in_flight = False  # an answer has started and is not finished
    _responded = False

    @property
    def owner(self) -> LocalServer:
        return self.server.owner

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle + delayed ACK hold every small write (a ping, a body) ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.owner._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("mesh local: " + format, *args)

    def handle_one_request(self) -> None:
        self._request_id, self._in_flight, self._responded = None, False, False
        try:
            super().handle_one_request()
        except _Abort:
            self.close_connection = True
        except (OSError, _Hangup):
            self.close_connection = True
            if self._in_flight and not self.owner._stopping.is_set():
                self.owner._note_disconnect()

    # -- routing --------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def _dispatch(self, handle: Callable[[], None]) -> None:
        self._request_id = self._client_request_id() or new_request_id()
        try:
            handle()
        except (OSError, _Hangup, _Abort):
            raise
        except Exception:
            log.exception("mesh local: bug while answering %s %s", self.command, self.path)
            if not self._responded:
                self._send_error(500, "internal_error", "The embedded backend failed")
            self.close_connection = True

    def _route(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        route = parts.path.rstrip("/") or "/"
        if route == "/v1" or route.startswith("/v1/"):
            route = route[3:] or "/"
        return route, parse_qs(parts.query)

    def _record(self, body: Any) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.owner._record(self.command, self.path, headers, body)

    def _client_request_id(self) -> str | None:
        client_id = self.headers.get("X-Request-Id", "")
        return client_id if REQUEST_ID.match(client_id) else None

    def _check_version(self) -> bool:
        version = self.headers.get("X-Mesh-Version")
        if version is None or version in API_VERSIONS:
            return True
        known = ", ".join(sorted(API_VERSIONS))
        message = f"Unknown API version {version!r}; known versions: {known}"
        self._send_error(400, "invalid_api_version", message)
        return False

    def _get(self) -> None:
        self._record(None)
        route, query = self._route()
        if route.startswith("/files/"):
            self._send_file(route.removeprefix("/files/"))
        elif route == "/models":
            if not self._check_version() or self._page_fault(self.owner._defaults(), None):
                return
            kind = query.get("type", [None])[0]
            self._send_json(200, models_of_type(kind))
        else:
            self._not_found(route)

    def _post(self) -> None:
        length = self._content_length()
        if length is None:
            return
        raw = self.rfile.read(length)
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = None
            invalid_json = True
        else:
            invalid_json = False
        self._record(parsed)
        route, _ = self._route()
        if route != "/images/generations":
            return self._not_found(route)
        if not self._check_version():
            return None
        if invalid_json:
            return self._send_error(400, "invalid_request", "The request body is not valid JSON")
        if not isinstance(parsed, dict):
            return self._send_error(400, "invalid_request", "The request body must be an object")
        body = dict(parsed)
        try:
            controls = parse_controls(body.pop("mesh_local", None), self.owner._defaults())
        except ValueError as exc:
            return self._send_error(400, "invalid_request", str(exc))
        attempt = self.owner._attempt(self._client_request_id())
        if controls.times is not None and attempt > controls.times:
            controls = RequestControls(controls.latency, controls.ping_interval, None)
        if self._page_fault(controls, body.get("model")):
            return None
        params, details = validate_generation(body)
        if params is None:
            return self._send_error(422, "validation_error", summarize(details), details=details)
        if params.model not in image_model_ids():
            message = f"Model '{params.model}' not found or does not generate images"
            return self._send_error(404, "model_not_found", message)
        if params.stream:
            return self._stream(params, controls)
        return self._answer(params, controls)

    def _content_length(self) -> int | None:
        """The request body's length, or None once an error has been answered."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send_error(411, "bad_request", "Send the body with a Content-Length")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send_error(400, "bad_request", "Bad Content-Length header")
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body must not be taken for a request
            limit = MAX_BODY_BYTES // (1024 * 1024)
            self._send_error(413, "request_too_large", f"The request body exceeds {limit} MB")
            return None
        return length

    def _not_found(self, route: str) -> None:
        self._send_error(404, "not_found", f"No such endpoint: {self.command} {route}")

    def _send_file(self, name: str) -> None:
        stored = self.owner._file(name)
        if stored is None:
            return self._send_error(404, "not_found", "This file does not exist or has expired")
        data, fmt = stored
        self._send(200, data, f"image/{fmt}", {"Cache-Control": "private, max-age=3600"})

    # -- answers ----------------------------------------------------------------------

    def _page_fault(self, controls: RequestControls, model: Any) -> bool:
        """Answer a status/html/text fault, if one applies; True if it did."""
        fault = controls.fault
        if fault is None or fault.status is None:
            return False
        status = fault.status
        headers: dict[str, str] = {}
        extra: dict[str, Any] = {}
        if status in RETRY_AFTER_STATUSES:
            headers["Retry-After"] = controls.retry_after
            seconds = retry_after_seconds(controls.retry_after)
            if seconds is not None:
                extra["retry_after_seconds"] = seconds
        if fault.kind == "html":
            self._send(status, html_page(status), "text/html; charset=utf-8", headers)
        elif fault.kind == "text":
            self._send(status, text_page(status), "text/plain; charset=utf-8", headers)
        else:
            code, message = status_error(status)
            if status == 404 and isinstance(model, str):
                message = f"Model '{model}' not found"
            self._send_error(status, code, message, headers=headers, **extra)
        return True

    def _images(self, params: ImageParams, fault: Fault | None) -> list[dict[str, Any]]:
        return [
            generation.image_entry(params, data, fmt, self.owner._publish)
            for data, fmt in generation.make_images(params, fault)
        ]

    def _answer(self, params: ImageParams, controls: RequestControls) -> None:
        """A plain JSON answer, after the latency; stream faults get their plain twins."""
        kind = controls.fault.kind if controls.fault else None
        self._in_flight = True
        self._wait(None if kind == "stall" else controls.latency)
        if kind == "error_frame":
            self._in_flight = False
            message = "The provider failed to generate the image"
            return self._send_error(500, "provider_job_failed", message)
        entries = [] if kind == "cut" else self._images(params, controls.fault)
        raw = json.dumps(generation.response_body(params, entries, int(time.time()))).encode()
        if kind == "malformed":
            raw = raw[: len(raw) // 2]
        if kind == "drop":
            self._start(200, "application/json", {"Content-Length": str(len(raw))})
            self.wfile.write(raw[: len(raw) // 2])
            self._drop()
        self._send(200, raw, "application/json")
        self._in_flight = False
        return None

    def _stream(self, params: ImageParams, controls: RequestControls) -> None:
        """The SSE answer: processing, pings and previews, the result, ``[DONE]``."""
        kind = controls.fault.kind if controls.fault else None
        stream_id = "imgstream_" + secrets.token_hex(12)
        created = int(time.time())
        headers = {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"}
        self._start(200, "text/event-stream; charset=utf-8", headers)
        self._in_flight = True
        self._event(generation.processing_chunk(stream_id, params, created))
        if kind == "stall":
            self._wait(None)  # ends only by a hang-up or a stop, both raise
        if kind == "error_frame":
            self._timeline(params, controls)
            self._chunk(b": ping\n\n")
            message = "The provider failed to generate the image"
            self._event(envelope("provider_job_failed", message, self._rid()))
            return self._done()
        self._timeline(params, controls)
        if kind == "cut":
            self._chunk(b"")
            self._in_flight = False
            return None
        if kind == "malformed":
            self._chunk(b'data: {"object": "image.chunk", "data": [\n\n')
            return self._done()
        entries = self._images(params, controls.fault)
        final = generation.final_chunk(stream_id, params, created, entries)
        frame = b"data: " + json.dumps(final).encode() + b"\n\n"
        if kind == "drop":
            frame = frame[: len(frame) // 2]
        for start in range(0, len(frame), FRAME_PIECE_BYTES):
            self._chunk(frame[start : start + FRAME_PIECE_BYTES])
        if kind == "drop":
            self._drop()
        return self._done()

    def _timeline(self, params: ImageParams, controls: RequestControls) -> None:
        """Spend the latency: pings every ping_interval, partial previews spread evenly."""
        latency, interval, k = controls.latency, controls.ping_interval, params.partial_images
        events: list[tuple[float, int]] = [(latency * (i + 1) / (k + 1), i) for i in range(k)]
        if interval > 0:
            events += [(interval * j, -1) for j in range(1, int(latency / interval) + 1)]
        began = time.monotonic()
        for at, index in sorted(events):
            self._wait(began + at - time.monotonic())
            if index < 0:
                self._chunk(b": ping\n\n")
            else:
                self._event(generation.partial_frame(params, index))
        self._wait(began + latency - time.monotonic())

    # -- the wire ---------------------------------------------------------------------

    def _rid(self) -> str:
        if self._request_id is None:
            self._request_id = new_request_id()
        return self._request_id

    def _start(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self._responded = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", self._rid())
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self._start(status, content_type, {"Content-Length": str(len(body)), **(headers or {})})
        self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _send_error(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self._send_json(status, envelope(code, message, self._rid(), **extra), headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (a garbled request line, an unknown method) as envelopes.
        self.close_connection = True
        error_code, default = status_error(code)
        self._send_error(code, error_code, message or default)

    def _chunk(self, data: bytes) -> None:
        """One chunk of the chunked body; empty data is the terminating chunk."""
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _event(self, obj: Any) -> None:
        self._chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    def _done(self) -> None:
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")
        self._in_flight = False

    def _drop(self) -> NoReturn:
        """Close the TCP connection abruptly, mid-body."""
        self._in_flight = False
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Abort

    def _wait(self, seconds: float | None) -> None:
        """Sleep SECONDS (None: until interrupted); raise if the client hangs up or we stop."""
        deadline = None if seconds is None else time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ)
            while True:
                if self.owner._stopping.is_set():
                    raise _Abort
                remaining = WAIT_SLICE if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return
                if selector.select(min(remaining, WAIT_SLICE)) and self._client_gone():
                    if self.owner._stopping.is_set():
                        raise _Abort
                    raise _Hangup

    def _client_gone(self) -> bool:
        """The connection is readable: at EOF means the client hung up."""
        try:
            gone = not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        if not gone:
            # The client sent more (a pipelined request): leave it, just sleep.
            self.owner._stopping.wait(WAIT_SLICE)
        return gone
