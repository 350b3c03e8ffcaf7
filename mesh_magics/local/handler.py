"""The request handler: routing, answers, and the bytes on the wire.

Chunked transfer encoding is written by hand so that faults can be made at the
byte level: a stream cut in the middle of a chunk, a stream that ends cleanly
without a result, and so on. The handler knows its server only as a ``Backend``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from . import answers, batch_routes, edits, forms, generation, guards
from .addresses import base_url_from_host_header
from .answers import Refusal, Refused, envelope, new_request_id
from .attempts import attempt_key
from .backend import Backend
from .bodies import BodyError, read_body
from .catalogue import (
    MAX_SEARCH_LIMIT,
    MODEL_TYPES,
    SEARCH_LIMIT,
    SEARCH_SORTS,
    find_model,
    image_model_ids,
    search_models,
    select_models,
)
from .faults import (
    RETRY_AFTER_STATUSES,
    Fault,
    RequestControls,
    html_page,
    status_error,
    text_page,
)
from .recording import RecordedRequest
from .validation import ImageParams, summarize

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
API_VERSIONS = frozenset({"2026-08"})
FRAME_PIECE_BYTES = 64 * 1024  # the big final frame goes out in pieces: many client reads
WAIT_SLICE = 0.1  # how often a wait looks for a hung-up client or a stopping server
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")

# Route -> the methods it answers; any other method gets a 405 naming them. The Batch
# API's routes (``/files``, ``/files/file-…``, ``/batches…``) are in ``batch_routes``.
_METHODS = {
    "/images/generations": ("POST",),
    "/images/edits": ("POST",),
    "/models": ("GET",),
    "/models/": ("GET",),
    "/files/": ("GET",),  # a published image
}
FORM_ROUTES = frozenset({"/images/edits", batch_routes.FORM_ROUTE})  # also take multipart
RATE_LIMIT_FAULT = Fault("status", 429)


def _methods_for(route: str) -> tuple[str, ...] | None:
    """The methods ROUTE answers, or None if no such endpoint exists."""
    batch_methods = batch_routes.methods_for(route)
    if batch_methods is not None:
        return batch_methods
    if route in _METHODS:
        return _METHODS[route]
    return next(
        (m for prefix, m in _METHODS.items() if prefix[-1] == "/" and route.startswith(prefix)),
        None,
    )


class _Hangup(Exception):
    """The client closed the connection while the server was still working."""


class _Abort(Exception):
    """Stop handling: the server is stopping, or a fault closed the connection."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mesh-local/0.1"

    _request_id: str | None = None
    _in_flight = False  # an answer has started and is not finished
    _responded = False
    _counted = False  # a generation counted in the backend's in-flight gauge
    _slot = False  # a generation holding one of the backend's work slots
    _arrived = 0.0  # time.monotonic() when the request line and headers were read
    _entry: RecordedRequest | None = None
    _form_error: str | None = None  # why a multipart body could not be read
    _upload: forms.Upload | None = None  # the form of a file upload

    def __init__(self, request: Any, client_address: Any, server: Any, *, backend: Backend) -> None:
        self.backend = backend  # before super().__init__, which handles the connection
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        # Every read (and write) of this connection gives up in time: no slowloris.
        self.connection.settimeout(self.backend.read_timeout)
        # Without this, Nagle + delayed ACK hold every small write (a ping, a body) ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.backend.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.backend.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("mesh local: " + format, *args)

    def handle_one_request(self) -> None:
        self._request_id, self._in_flight, self._responded = None, False, False
        self._counted, self._entry, self._slot = False, None, False
        self._form_error, self._upload = None, None
        self.backend.waiting_for_request(self.connection, True)
        try:
            super().handle_one_request()
        except _Abort:
            self.close_connection = True
        except (OSError, _Hangup):
            self.close_connection = True
            if self._in_flight and not self.backend.stopping.is_set():
                self.backend.note_disconnect()

    # -- routing --------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        self._arrived = time.monotonic()
        self._request_id = self._client_request_id() or new_request_id()
        try:
            self._handle()
        except Refused as exc:
            self._refuse(exc.refusal, exc.headers)
        except (OSError, _Hangup, _Abort):
            raise
        except Exception:
            log.exception("mesh local: bug while answering %s %s", self.command, self.path)
            if not self._responded:
                self._send_error(500, "internal_error", "The embedded backend failed")
            self.close_connection = True

    def _handle(self) -> None:
        try:
            raw = read_body(self.rfile, self.headers, self.backend.max_body_bytes)
        except BodyError as exc:
            self._record(None)
            # Unless read to its end, the rest of the body must not be taken for a request.
            self.close_connection = self.close_connection or not exc.drained
            return self._send_error(exc.status, exc.code, exc.message)
        finally:
            self.backend.waiting_for_request(self.connection, False)  # the request is in
        route, query = self._route()
        takes_forms = route in FORM_ROUTES  # as the openai SDK sends an edit, or a file
        parsed: Any = None
        invalid_json = False
        if takes_forms and guards.media_type(self.headers) == guards.MULTIPART:
            parsed = self._form(raw, route)
        else:
            try:
                parsed = json.loads(raw) if raw or self.command == "POST" else None
            except ValueError:
                invalid_json = True
        self._record(parsed)
        refused = guards.refusal(
            self.headers,
            self.command,
            loopback_only=self.backend.loopback_only,
            takes_forms=takes_forms,
        )
        if refused is not None:
            self.close_connection = True  # nothing more is taken from a refused client
            return self._send_error(refused.status, refused.code, refused.message)
        methods = _methods_for(route)
        if methods is None:
            return self._send_error(404, "not_found", f"No such endpoint: {self.command} {route}")
        if self.command not in methods:
            message = f"{route} answers {' or '.join(methods)}, not {self.command}"
            allow = {"Allow": ", ".join(methods)}
            return self._send_error(405, "method_not_allowed", message, headers=allow)
        if batch_routes.methods_for(route) is not None:
            return self._batch_api(route, query, parsed, invalid_json)
        if route.startswith("/files/"):
            return self._send_file(route.removeprefix("/files/"))
        if route.startswith("/models"):
            return self._models(route, query)
        # A generation: counted in flight from here until its answer's last part goes out.
        retry_after = self.backend.begin_generation()
        self._counted = True
        try:
            if retry_after is not None:  # a 429 scheduled for this one, whatever it asks
                rate_limited = RequestControls(0.0, 0.0, RATE_LIMIT_FAULT, retry_after=retry_after)
                self._page_fault(rate_limited, None)
                return None
            if route == "/images/edits":
                return self._edit(raw, parsed, invalid_json)
            return self._generate(raw, parsed, invalid_json)
        finally:
            self._settle()

    def _form(self, raw: bytes, route: str) -> dict[str, Any] | None:
        """A multipart body as the JSON body it stands for (an upload: what the log keeps
        of it); None (and the reason kept for the answer) when it cannot be read."""
        try:
            boundary = forms.boundary_of(self.headers.get("Content-Type", ""))
            parts = forms.parts(raw, boundary)
            if route == batch_routes.FORM_ROUTE:
                self._upload = forms.upload_of(parts)
                return self._upload.summary()
            return forms.edit_body(parts)
        except forms.FormError as exc:
            self._form_error = str(exc)
            return None

    def _route(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        route = parts.path.rstrip("/") or "/"
        if route == "/v1" or route.startswith("/v1/"):
            route = route[3:] or "/"
        return route, parse_qs(parts.query)

    def _record(self, body: Any) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._entry = self.backend.record(self.command, self.path, headers, body, self._arrived)

    def _settle(self) -> None:
        """The last part of a generation's answer is about to go out: it stops counting.

        Before the write, not after: a client holding its whole answer may at once send
        the next request, which must not find this one still counted.
        """
        if self._slot:
            self._slot = False
            self.backend.give_back_slot()
        if self._counted:
            self._counted = False
            self.backend.end_generation()

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

    # -- models ---------------------------------------------------------------------

    def _models(self, route: str, query: dict[str, list[str]]) -> None:
        """``/models`` (filtered), ``/models/free``, ``/models/paid``, ``/models/{id}``."""
        if not self._check_version() or self._page_fault(self.backend.defaults(), None):
            return None
        if route == "/models/search":
            return self._search(query)
        if route not in ("/models", "/models/free", "/models/paid"):
            # Ids hold a slash (openai/gpt-image-1), sent as is or percent-encoded.
            model_id = unquote(route.removeprefix("/models/"))
            model = find_model(model_id)
            if model is None:
                return self._send_error(404, "model_not_found", f"Model '{model_id}' not found")
            return self._send_json(200, model)
        details: list[dict[str, Any]] = []
        kind = query.get("type", [""])[-1] or None
        if kind is not None and kind not in MODEL_TYPES:
            allowed = ", ".join(repr(t) for t in MODEL_TYPES)
            details.append(
                _query_detail("type", f"Input should be {allowed}", "literal_error", kind)
            )
        free_text = query.get("free", [""])[-1].lower()
        free = True if free_text in _TRUE else False if free_text in _FALSE else None
        if free_text and free is None:
            message = "Input should be a valid boolean, unable to interpret input"
            details.append(_query_detail("free", message, "bool_parsing", free_text))
        if details:
            return self._send_error(422, "validation_error", summarize(details), details=details)
        if route != "/models":
            free = route == "/models/free"
        provider = query.get("provider", [""])[-1] or None
        return self._send_json(200, select_models(kind, free=free, provider=provider))

    def _search(self, query: dict[str, list[str]]) -> None:
        """``/models/search``: the SDK's ``ModelSearchParams`` in, a ``ModelsPage`` out."""
        details: list[dict[str, Any]] = []

        def last(name: str) -> str | None:
            return query.get(name, [""])[-1] or None

        def flag(name: str) -> bool | None:
            text = (last(name) or "").lower()
            value = True if text in _TRUE else False if text in _FALSE else None
            if text and value is None:
                message = "Input should be a valid boolean, unable to interpret input"
                details.append(_query_detail(name, message, "bool_parsing", text))
            return value

        def whole(name: str, default: int, lo: int, hi: int) -> int:
            text = last(name)
            if text is None:
                return default
            if not text.isdigit() or not lo <= int(text) <= hi:
                message = f"Input should be a whole number from {lo} to {hi}"
                details.append(_query_detail(name, message, "int_parsing", text[:100]))
                return default
            return int(text)

        def choice(name: str, allowed: tuple[str, ...]) -> str | None:
            text = last(name)
            if text is not None and text not in allowed:
                message = f"Input should be {', '.join(repr(a) for a in allowed)}"
                details.append(_query_detail(name, message, "literal_error", text[:100]))
                return None
            return text

        q, free, discounted = last("q"), flag("free"), flag("discounted")
        sort, order = choice("sort", SEARCH_SORTS), choice("order", ("asc", "desc"))
        limit = whole("limit", SEARCH_LIMIT, 1, MAX_SEARCH_LIMIT)
        offset = whole("offset", 0, 0, 1_000_000)
        if details:
            return self._send_error(422, "validation_error", summarize(details), details=details)
        page = search_models(
            q,
            free=free,
            discounted=discounted,
            input_modalities=query.get("input_modality"),
            output_modalities=query.get("output_modality"),
            brands=query.get("brand"),
            sort=sort,
            descending=order == "desc",
            limit=limit,
            offset=offset,
        )
        return self._send_json(200, page)

    # -- the Batch API --------------------------------------------------------------

    def _batch_api(
        self, route: str, query: dict[str, list[str]], parsed: Any, invalid_json: bool
    ) -> None:
        """``/files`` and ``/batches``: checked as the models are, answered by batch_routes."""
        if not self._check_version() or self._page_fault(self.backend.defaults(), None):
            return None
        if self._form_error is not None:
            return self._send_error(400, "invalid_request", self._form_error)
        if invalid_json and (route, self.command) == ("/batches", "POST"):  # the one body read
            return self._send_error(400, "invalid_request", "The request body is not valid JSON")
        base = base_url_from_host_header(self.headers.get("Host"), self.backend.url)
        reply = batch_routes.answer(
            self.backend.batch_service, self.command, route, query, parsed, self._upload, base
        )
        return self._send(reply.status, reply.body, reply.content_type, reply.headers)

    # -- generations ----------------------------------------------------------------

    def _controls(
        self, raw: bytes, parsed: Any, invalid_json: bool
    ) -> tuple[dict[str, Any], RequestControls] | None:
        """The body and its controls, or None once an error or a page fault has answered."""
        if not self._check_version():
            return None
        if self._form_error is not None:
            self._send_error(400, "invalid_request", self._form_error)
            return None
        if invalid_json:
            self._send_error(400, "invalid_request", "The request body is not valid JSON")
            return None
        body, controls = answers.controls_of(parsed, self.backend.defaults())
        if controls.times is not None:
            key = attempt_key(raw, self._client_request_id())
            if self.backend.next_attempt(key) > controls.times:
                controls = replace(controls, fault=None)
                self.backend.attempt_succeeded(key)
        if self._page_fault(controls, body.get("model")):
            return None
        return body, controls

    def _generate(self, raw: bytes, parsed: Any, invalid_json: bool) -> None:
        checked = self._controls(raw, parsed, invalid_json)
        if checked is None:
            return None
        body, controls = checked
        params = answers.check_generation(body, self.backend.max_pixels)
        controls = replace(controls, latency=controls.latency_for(params.model))
        if params.stream:
            return self._stream(params, controls)
        return self._answer(params, controls)

    def _edit(self, raw: bytes, parsed: Any, invalid_json: bool) -> None:
        """``/images/edits``: checked like a generation, answered in the same JSON shape."""
        checked = self._controls(raw, parsed, invalid_json)
        if checked is None:
            return None
        body, controls = checked
        params, details = edits.validate_edit(body)
        if params is None:
            raise Refused(answers.validation_refusal(details))
        model = find_model(params.model)
        if model is None or params.model not in image_model_ids():
            message = f"Model '{params.model}' not found or does not generate images"
            return self._send_error(404, "model_not_found", message)
        if not model.get("supports_image_edit"):
            message = f"Model '{params.model}' does not support image edits"
            details = [
                {
                    "loc": ["body", "model"],
                    "msg": message,
                    "type": "value_error",
                    "input": params.model,
                }
            ]
            raise Refused(answers.validation_refusal(details))
        controls = replace(controls, latency=controls.latency_for(params.model))
        shape = params.as_image_params()
        over = answers.pixel_refusal(shape, self.backend.max_pixels)
        if over is not None:
            raise Refused(over)
        return self._answer(
            shape,
            controls,
            lambda fault: [
                generation.image_entry(shape, data, fmt, self._publish)
                for data, fmt in edits.make_images(params, fault)
            ],
        )

    def _take_slot(self, ping_interval: float | None) -> None:
        """Wait for a work slot; a stream waiting its turn is kept alive with pings."""
        last = time.monotonic()
        while not self.backend.take_slot():
            self._wait(WAIT_SLICE)  # a client that hangs up while queued frees nothing
            if ping_interval and time.monotonic() - last >= ping_interval:
                self._chunk(b": ping\n\n")
                last = time.monotonic()
        self._slot = True

    def _send_file(self, name: str) -> None:
        stored = self.backend.published(name)
        if stored is None:
            return self._send_error(404, "not_found", "This file does not exist or has expired")
        data, fmt = stored
        self._send(200, data, f"image/{fmt}", {"Cache-Control": "private, max-age=3600"})

    def _publish(self, data: bytes, fmt: str) -> str:
        """Keep DATA and return its URL, on the host and port the client used to reach us."""
        base = base_url_from_host_header(self.headers.get("Host"), self.backend.url)
        return f"{base}/files/{self.backend.publish(data, fmt)}"

    # -- answers ----------------------------------------------------------------------

    def _page_fault(self, controls: RequestControls, model: Any) -> bool:
        """Answer a status/html/text fault, if one applies; True if it did."""
        fault = controls.fault
        if fault is None or fault.status is None:
            return False
        status = fault.status
        headers: dict[str, str] = {}
        if status in RETRY_AFTER_STATUSES:
            headers["Retry-After"] = controls.retry_after
        if fault.kind == "html":
            self._send(status, html_page(status), "text/html; charset=utf-8", headers)
        elif fault.kind == "text":
            self._send(status, text_page(status), "text/plain; charset=utf-8", headers)
        else:
            self._refuse(answers.fault_refusal(fault, controls.retry_after, model), headers)
        return True

    def _images(self, params: ImageParams, fault: Fault | None) -> list[dict[str, Any]]:
        return answers.image_entries(params, fault, self._publish)

    def _answer(
        self,
        params: ImageParams,
        controls: RequestControls,
        make: Callable[[Fault | None], list[dict[str, Any]]] | None = None,
    ) -> None:
        """A plain JSON answer, after the latency; stream faults get their plain twins.

        MAKE makes the ``data`` entries (by default: the generation's pictures).
        """
        kind = controls.fault.kind if controls.fault else None
        self._in_flight = True
        if kind != "stall":  # a stall does no work: it needs no slot
            self._take_slot(None)
        self._wait(None if kind == "stall" else controls.latency)
        if kind == "error_frame":
            self._in_flight = False
            message = "The provider failed to generate the image"
            return self._send_error(500, "provider_job_failed", message)
        response = answers.images_response(params, controls.fault, self._publish, make)
        raw = json.dumps(response).encode()
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
        self._take_slot(controls.ping_interval)
        self._timeline(params, controls, stream_id, created)
        if kind == "error_frame":
            self._chunk(b": ping\n\n")
            message = "The provider failed to generate the image"
            failure = envelope("provider_job_failed", message, self._rid())
            self._settle()
            self._event(generation.error_chunk(stream_id, params, created, failure))
            return self._done()
        if kind == "cut":
            self._settle()
            self._chunk(b"")
            self._in_flight = False
            return None
        if kind == "malformed":
            self._settle()
            self._chunk(b'data: {"object": "image.chunk", "data": [\n\n')
            return self._done()
        entries = self._images(params, controls.fault)
        final = generation.final_chunk(stream_id, params, created, entries)
        frame = b"data: " + json.dumps(final).encode() + b"\n\n"
        if kind == "drop":
            frame = frame[: len(frame) // 2]
        self._settle()
        for start in range(0, len(frame), FRAME_PIECE_BYTES):
            self._chunk(frame[start : start + FRAME_PIECE_BYTES])
        if kind == "drop":
            self._drop()
        return self._done()

    def _timeline(
        self, params: ImageParams, controls: RequestControls, stream_id: str, created: int
    ) -> None:
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
                self._event(generation.partial_chunk(stream_id, params, created, index))
        self._wait(began + latency - time.monotonic())

    # -- the wire ---------------------------------------------------------------------

    def _rid(self) -> str:
        if self._request_id is None:
            self._request_id = new_request_id()
        return self._request_id

    def _start(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self._responded = True
        if self._entry is not None:
            self._entry.answered_at = time.monotonic()
            self._entry.status = status  # last: a reader seeing the status sees the time
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", self._rid())
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self._settle()  # a whole answer: its last part
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

    def _refuse(self, refusal: Refusal, headers: dict[str, str] | None = None) -> None:
        self._send_json(refusal.status, refusal.envelope(self._rid()), headers)

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
        self._settle()
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")
        self._in_flight = False

    def _drop(self) -> NoReturn:
        """Close the TCP connection abruptly, mid-body."""
        self._settle()
        self._in_flight = False
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Abort

    def _wait(self, seconds: float | None) -> None:
        """Sleep SECONDS (None: until interrupted); raise if the client hangs up or we stop."""
        stopping = self.backend.stopping
        deadline = None if seconds is None else time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(self.connection, selectors.EVENT_READ)
            while True:
                if stopping.is_set():
                    raise _Abort
                remaining = WAIT_SLICE if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return
                if selector.select(min(remaining, WAIT_SLICE)) and self._client_gone():
                    if stopping.is_set():
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
            self.backend.stopping.wait(WAIT_SLICE)
        return gone


def _query_detail(name: str, msg: str, kind: str, value: str) -> dict[str, Any]:
    return {"loc": ["query", name], "msg": msg, "type": kind, "input": value}
