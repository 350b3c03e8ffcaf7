"""The embedded backend's HTTP server: MeshAPI's endpoints on loopback.

Real HTTP over loopback sockets (stdlib ``http.server``), one daemon thread per
connection; the wire work is in ``handler.py``. Everything kept per request is
bounded: the request log, the attempt counts and the published files.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ..hosts import is_loopback
from . import numbers, registry
from .addresses import base_url, is_wildcard, reachable_host
from .attempts import AttemptCounter
from .batch_input import BATCH_LINES
from .batch_records import BATCH_ENDPOINTS, TERMINAL, endpoints_text
from .batches import KEEP_BATCHES, BatchService
from .bodies import MAX_BODY_BYTES
from .connections import MAX_CONNECTIONS, READ_TIMEOUT, BoundedHTTPServer, Connections
from .faults import RequestControls, parse_fault, retry_after_value
from .handler import Handler
from .published import FileStore
from .recording import KEEP_REQUESTS, RecordedRequest, RequestLog
from .traffic import MAX_GENERATIONS, Slots, Traffic
from .uploads import KEEP_FILE_BYTES, KEEP_FILES, MAX_FILE_BYTES
from .validation import MAX_REQUEST_PIXELS

log = logging.getLogger(__name__)

__all__ = ["MAX_BODY_BYTES", "LocalServer", "RecordedRequest", "ensure_local_server"]


class LocalServer:
    """A MeshAPI-compatible image server on loopback, serving from a daemon thread.

    ``latency``, ``model_latency``, ``ping_interval``, ``fault`` and ``max_body_bytes``
    are read on every request, so a test may change them while the server runs; a bad
    value (negative, NaN, infinite, an unknown fault or model) raises ValueError when
    set. ``keep_requests`` bounds ``requests``, the log of the latest requests.

    Generation requests are counted (``in_flight``, ``max_in_flight``,
    ``generation_count``, ``reset_counts()``), and ``rate_limit_on(n)`` makes the Nth
    one from now a 429. All of it is safe to use from any thread.

    Its work is bounded: ``max_pixels`` per request (n × width × height), at most
    ``max_generations`` working at once (``working``, ``max_working``; the rest wait),
    ``max_connections`` open (``connections.py``), and ``read_timeout`` seconds for any
    read from a client.

    The Batch API (``/v1/files``, ``/v1/batches``) runs its batches on one worker thread:
    ``batch_latency`` seconds a line, for the endpoints in ``batch_endpoints``. Tests
    read ``batches`` and ``batch_files``, and wait with ``wait_for_batch()`` and
    ``wait_until_batches_done()``. Kept: ``keep_batches`` batches, ``keep_files`` files
    of ``keep_file_bytes`` bytes in all, each at most ``max_file_bytes``, and at most
    ``max_batch_lines`` requests a batch.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        model_latency: Mapping[str, float] | None = None,
        ping_interval: float = 1.0,
        fault: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        keep_requests: int = KEEP_REQUESTS,
        max_pixels: int = MAX_REQUEST_PIXELS,
        max_generations: int = MAX_GENERATIONS,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout: float = READ_TIMEOUT,
        batch_latency: float = 0.0,
        batch_endpoints: Iterable[str] = BATCH_ENDPOINTS,
        keep_batches: int = KEEP_BATCHES,
        max_batch_lines: int = BATCH_LINES,
        keep_files: int = KEEP_FILES,
        keep_file_bytes: int = KEEP_FILE_BYTES,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.host = host
        self.port = numbers.port(port)
        self.latency = latency
        self.model_latency = model_latency or {}
        self.ping_interval = ping_interval
        self.fault = fault
        self.max_body_bytes = max_body_bytes
        self.disconnects = 0
        self._slots = Slots(numbers.count(max_generations, "max_generations", lo=1))
        self._connections = Connections(numbers.count(max_connections, "max_connections", lo=1))
        self.max_pixels = max_pixels
        self.read_timeout = read_timeout
        self._log = RequestLog(numbers.count(keep_requests, "keep_requests"))
        self._attempts = AttemptCounter()
        self._traffic = Traffic()
        self._files = FileStore()
        self._batches = BatchService(
            self,
            latency=batch_latency,
            endpoints=batch_endpoints,
            keep_batches=keep_batches,
            max_lines=max_batch_lines,
            keep_files=keep_files,
            keep_file_bytes=keep_file_bytes,
            max_file_bytes=max_file_bytes,
        )
        self._lock = threading.Lock()
        self._disconnected = threading.Event()
        self._stopping = threading.Event()
        self._httpd: BoundedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- settings, checked when set -----------------------------------------------------

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._latency = numbers.seconds(value, "latency")

    @property
    def model_latency(self) -> Mapping[str, float]:
        """Seconds a generation takes per model, over ``latency``; read-only, set it whole.

        ``server.model_latency = {"openai/dall-e-3": 2.0}`` makes DALL·E 3 take 2 s and
        every other model ``latency``; ``{}`` clears it. A request's own
        ``mesh_local.latency`` still wins.
        """
        return self._model_latency

    @model_latency.setter
    def model_latency(self, value: Mapping[str, float]) -> None:
        checked = numbers.model_seconds(value, "model_latency")
        self._model_latency: Mapping[str, float] = MappingProxyType(checked)

    @property
    def ping_interval(self) -> float:
        return self._ping_interval

    @ping_interval.setter
    def ping_interval(self, value: float) -> None:
        self._ping_interval = numbers.seconds(value, "ping_interval")

    @property
    def fault(self) -> str | None:
        return self._fault.spec if self._fault else None

    @fault.setter
    def fault(self, spec: str | None) -> None:
        self._fault = parse_fault(spec)  # a bad spec fails here, not on a later request

    @property
    def max_body_bytes(self) -> int:
        """The largest request body taken; a larger one is read, dropped and answered 413."""
        return self._max_body_bytes

    @max_body_bytes.setter
    def max_body_bytes(self, value: int) -> None:
        self._max_body_bytes = numbers.count(value, "max_body_bytes")

    @property
    def max_pixels(self) -> int:
        """The most pixels one request may ask for, n × width × height; more is a 422."""
        return self._max_pixels

    @max_pixels.setter
    def max_pixels(self, value: int) -> None:
        self._max_pixels = numbers.count(value, "max_pixels", lo=1)

    @property
    def max_generations(self) -> int:
        """Generations that work at once; the others wait for a free slot."""
        return self._slots.limit

    @max_generations.setter
    def max_generations(self, value: int) -> None:
        self._slots.limit = numbers.count(value, "max_generations", lo=1)

    @property
    def max_connections(self) -> int:
        """Connections open at once (one thread each); see ``connections.py``."""
        return self._connections.limit

    @max_connections.setter
    def max_connections(self, value: int) -> None:
        self._connections.limit = numbers.count(value, "max_connections", lo=1)

    @property
    def read_timeout(self) -> float:
        """Seconds any read from a client may wait; new connections take a new value."""
        return self._read_timeout

    @read_timeout.setter
    def read_timeout(self, value: float) -> None:
        seconds = numbers.seconds(value, "read_timeout")
        if seconds == 0:
            raise ValueError("read_timeout must be more than 0 seconds, not 0")
        self._read_timeout = seconds

    # -- the Batch API's settings (checked when set) ---------------------------------------

    @property
    def batch_latency(self) -> float:
        """Seconds each line of a batch takes (a line's own ``mesh_local.latency`` wins)."""
        return self._batches.latency

    @batch_latency.setter
    def batch_latency(self, value: float) -> None:
        self._batches.latency = value

    @property
    def batch_endpoints(self) -> tuple[str, ...]:
        """The endpoints a batch may be made for; a batch for another is a 400.

        ``("/v1/chat/completions",)`` plays the real gateway, whose docs batch chat only.
        """
        return self._batches.endpoints

    @batch_endpoints.setter
    def batch_endpoints(self, value: Iterable[str]) -> None:
        self._batches.endpoints = value

    @property
    def keep_batches(self) -> int:
        return self._batches.keep_batches

    @keep_batches.setter
    def keep_batches(self, value: int) -> None:
        self._batches.keep_batches = value

    @property
    def max_batch_lines(self) -> int:
        """Requests one batch may hold (at most 50,000, OpenAI's limit)."""
        return self._batches.max_lines

    @max_batch_lines.setter
    def max_batch_lines(self, value: int) -> None:
        self._batches.max_lines = value

    @property
    def keep_files(self) -> int:
        return self._batches.keep_files

    @keep_files.setter
    def keep_files(self, value: int) -> None:
        self._batches.keep_files = value

    @property
    def keep_file_bytes(self) -> int:
        return self._batches.keep_file_bytes

    @keep_file_bytes.setter
    def keep_file_bytes(self, value: int) -> None:
        self._batches.keep_file_bytes = value

    @property
    def max_file_bytes(self) -> int:
        """The largest file: an upload over it is a 413; a batch's output stops there."""
        return self._batches.max_file_bytes

    @max_file_bytes.setter
    def max_file_bytes(self, value: int) -> None:
        self._batches.max_file_bytes = value

    # -- batches: what a test reads and waits for ------------------------------------------

    @property
    def batches(self) -> list[dict[str, Any]]:
        """Every batch kept, newest first, as ``GET /v1/batches/{id}`` answers it."""
        return self._batches.objects()

    @property
    def batch_files(self) -> list[dict[str, Any]]:
        """Every file of the Batch API kept (inputs and outputs), oldest first."""
        return self._batches.file_objects()

    def wait_for_batch(
        self,
        batch_id: str,
        timeout: float,
        until: str | Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any] | None:
        """The batch once it reaches UNTIL, else None after TIMEOUT seconds.

        UNTIL is a status (``"in_progress"``), a test of the batch object (``lambda b:
        b["request_counts"]["completed"] >= 2``), or by default any final status
        (``completed``, ``failed``, ``cancelled``, ``expired``).
        """
        if until is None:
            return self._batches.wait(batch_id, lambda b: b["status"] in TERMINAL, timeout)
        if isinstance(until, str):
            status = until
            return self._batches.wait(batch_id, lambda b: b["status"] == status, timeout)
        return self._batches.wait(batch_id, until, timeout)

    def wait_until_batches_done(self, timeout: float) -> bool:
        """True once every batch kept has a final status (within TIMEOUT seconds)."""
        return self._batches.wait_idle(timeout)

    # -- state ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The latest requests (``keep_requests`` at most), oldest first; long strings cut."""
        return self._log.snapshot()

    @property
    def request_count(self) -> int:
        """Requests received since the server was made; ``len(requests)`` stops growing."""
        return self._log.total

    # -- generations: how many at once, and scheduled 429s --------------------------------

    @property
    def in_flight(self) -> int:
        """Generation requests being answered now: from their body read until the last
        part of their answer starts going out, the client hangs up or the server stops."""
        return self._traffic.in_flight

    @property
    def max_in_flight(self) -> int:
        """The most generation requests in flight at once since the start or ``reset_counts()``."""
        return self._traffic.max_in_flight

    @property
    def generation_count(self) -> int:
        """Generation requests received since the start or ``reset_counts()``."""
        return self._traffic.count

    def reset_counts(self) -> None:
        """``max_in_flight`` becomes ``in_flight`` (0 when idle), ``generation_count`` 0,
        ``max_working`` ``working``.

        Scheduled 429s are kept, still counted from when they were scheduled.
        """
        self._traffic.reset()
        self._slots.reset()

    @property
    def working(self) -> int:
        """Generations holding a work slot now (at most ``max_generations``)."""
        return self._slots.working

    @property
    def max_working(self) -> int:
        """The most generations that held a work slot at once."""
        return self._slots.max_working

    @property
    def open_connections(self) -> int:
        return self._connections.open

    @property
    def connections_accepted(self) -> int:
        """TCP connections taken since the start."""
        return self._connections.accepted

    @property
    def connections_refused(self) -> int:
        """Connections answered 503 and closed: every open one was busy."""
        return self._connections.refused

    @property
    def connections_evicted(self) -> int:
        """Connections closed, still waiting for their request, to make room for a new one."""
        return self._connections.evicted

    def wait_for_in_flight(self, n: int, timeout: float) -> bool:
        """True once exactly N generations are in flight (within TIMEOUT seconds)."""
        return self._traffic.wait(in_flight=numbers.count(n, "n"), timeout=timeout)

    def wait_until_idle(self, timeout: float) -> bool:
        """True once no generation is in flight (within TIMEOUT seconds)."""
        return self._traffic.wait(in_flight=0, timeout=timeout)

    def rate_limit_on(self, n: int, retry_after: str | int = "1") -> int:
        """Make the Nth generation request from now (1: the next) answer 429, once.

        It answers ``rate_limit_exceeded`` with ``Retry-After: RETRY_AFTER`` (whole
        seconds, or an HTTP date) and ``retry_after_seconds`` in the envelope, whatever
        its body; the requests before and after it are answered as usual. Calls add up:
        ``rate_limit_on(1); rate_limit_on(3)`` limits the next and the third. Returns
        the number that request will have in ``generation_count``.
        """
        number = numbers.count(n, "n", lo=1)
        value = retry_after_value(retry_after, "retry_after")
        return self._traffic.rate_limit_on(number, value)

    @property
    def pending_rate_limits(self) -> list[int]:
        """The scheduled 429s not yet answered, as generations from now (1: the next)."""
        return self._traffic.pending_rate_limits()

    def clear_rate_limits(self) -> None:
        """Forget every scheduled 429 not yet answered."""
        self._traffic.clear_rate_limits()

    @property
    def loopback_only(self) -> bool:
        return not is_wildcard(self.host) and is_loopback(self.host)

    @property
    def url(self) -> str:
        """The base URL, without ``/v1``; loopback when bound to all interfaces."""
        return base_url(self.host, self.port)

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> LocalServer:
        """Bind and serve from a daemon thread; a no-op when already running."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = BoundedHTTPServer(
            (self.host, self.port), functools.partial(Handler, backend=self), self._connections
        )
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"mesh-local-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._batches.start(f"mesh-local-batches-{self.port}")
        if is_loopback(reachable_host(self.host)):
            registry.serving(self.port)  # this process's clients send it no key
        return self

    def stop(self) -> None:
        """Stop serving: wake waiting handlers, close every socket, join the threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        self._batches.stop()
        if is_loopback(reachable_host(self.host)):
            registry.stopped(self.port)
        httpd.shutdown()
        connections = self._connections.snapshot()
        for connection in connections:
            # Wakes handlers blocked reading a kept-alive connection.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        deadline = time.monotonic() + 2
        for handler in connections.values():
            if handler is not None:
                handler.join(timeout=max(0.0, deadline - time.monotonic()))
        self._httpd = self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalServer {self.url} {state}>"

    def wait_for_disconnect(self, timeout: float) -> bool:
        """True once a client has hung up on an unfinished answer (within TIMEOUT seconds)."""
        return self._disconnected.wait(timeout)

    # -- the Backend protocol: what the handler calls ---------------------------------------

    @property
    def stopping(self) -> threading.Event:
        return self._stopping

    @property
    def batch_service(self) -> BatchService:
        return self._batches

    def defaults(self) -> RequestControls:
        return RequestControls(
            self.latency, self.ping_interval, self._fault, model_latency=self._model_latency
        )

    def record(
        self, method: str, path: str, headers: dict[str, str], body: Any, at: float
    ) -> RecordedRequest:
        return self._log.add(method, path, headers, body, at)

    def begin_generation(self) -> str | None:
        return self._traffic.begin()

    def end_generation(self) -> None:
        self._traffic.end()

    def next_attempt(self, key: bytes) -> int:
        return self._attempts.next(key)

    def attempt_succeeded(self, key: bytes) -> None:
        self._attempts.forget(key)

    def publish(self, data: bytes, fmt: str) -> str:
        return self._files.publish(data, fmt)

    def published(self, name: str) -> tuple[bytes, str] | None:
        return self._files.get(name)

    def track(self, connection: socket.socket, alive: bool) -> None:
        if alive:
            self._connections.serving(connection)
        else:
            self._connections.closed(connection)

    def waiting_for_request(self, connection: socket.socket, waiting: bool) -> None:
        self._connections.waiting(connection, waiting)

    def take_slot(self) -> bool:
        return self._slots.take()

    def give_back_slot(self) -> None:
        self._slots.give_back()

    def note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self._disconnected.set()


_shared: LocalServer | None = None
_shared_lock = threading.Lock()

ENV_LATENCY = "MESH_LOCAL_LATENCY"
ENV_PING_INTERVAL = "MESH_LOCAL_PING_INTERVAL"
ENV_FAULT = "MESH_LOCAL_FAULT"
ENV_MODEL_LATENCY = "MESH_LOCAL_MODEL_LATENCY"
ENV_BATCH_LATENCY = "MESH_LOCAL_BATCH_LATENCY"
ENV_BATCH_ENDPOINTS = "MESH_LOCAL_BATCH_ENDPOINTS"


def _fault_text(text: str, what: str) -> str | None:
    try:
        fault = parse_fault(text)
    except ValueError as exc:
        raise ValueError(f"{what}={text!r}: {exc}") from None
    return None if fault is None else fault.spec


def _from_environment() -> dict[str, Any]:
    """The per-kernel server's settings from the environment; ConfigError names a bad one."""
    from ..errors import ConfigError  # here: serving does not need the magic's errors

    checks = [
        (ENV_LATENCY, "latency", numbers.seconds_text),
        (ENV_PING_INTERVAL, "ping_interval", numbers.seconds_text),
        (ENV_FAULT, "fault", _fault_text),
        (ENV_MODEL_LATENCY, "model_latency", numbers.model_seconds_text),
        (ENV_BATCH_LATENCY, "batch_latency", numbers.seconds_text),
        (ENV_BATCH_ENDPOINTS, "batch_endpoints", endpoints_text),
    ]
    settings: dict[str, Any] = {}
    for variable, name, check in checks:
        text = os.environ.get(variable, "").strip()
        if text:
            try:
                settings[name] = check(text, variable)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    return settings


def ensure_local_server() -> LocalServer:
    """The process-wide embedded backend, started on a free port on first use.

    Its settings come from the environment, so a demo or a browser test can make the
    kernel's backend slow or faulty: `MESH_LOCAL_LATENCY` (seconds),
    `MESH_LOCAL_MODEL_LATENCY` (a JSON object of model id to seconds),
    `MESH_LOCAL_PING_INTERVAL` (seconds), `MESH_LOCAL_FAULT` (a fault spec),
    `MESH_LOCAL_BATCH_LATENCY` (seconds a batch line) and `MESH_LOCAL_BATCH_ENDPOINTS`
    (comma-separated paths). A bad
    value raises ConfigError (one line in a notebook) naming the variable.
    """
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = LocalServer(**_from_environment()).start()
        return _shared
