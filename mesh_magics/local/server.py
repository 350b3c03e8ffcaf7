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
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any

from . import numbers
from .addresses import base_url
from .attempts import AttemptCounter
from .bodies import MAX_BODY_BYTES
from .faults import RequestControls, parse_fault
from .files import FileStore
from .handler import Handler
from .recording import KEEP_REQUESTS, RecordedRequest, RequestLog

log = logging.getLogger(__name__)

__all__ = ["MAX_BODY_BYTES", "LocalServer", "RecordedRequest", "ensure_local_server"]


class LocalServer:
    """A MeshAPI-compatible image server on loopback, serving from a daemon thread.

    ``latency``, ``ping_interval``, ``fault`` and ``max_body_bytes`` are read on every
    request, so a test may change them while the server runs; a bad value (negative,
    NaN, infinite, an unknown fault) raises ValueError when set. ``keep_requests``
    bounds ``requests``, the log of the latest requests.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        ping_interval: float = 1.0,
        fault: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        keep_requests: int = KEEP_REQUESTS,
    ) -> None:
        self.host = host
        self.port = numbers.port(port)
        self.latency = latency
        self.ping_interval = ping_interval
        self.fault = fault
        self.max_body_bytes = max_body_bytes
        self.disconnects = 0
        self._log = RequestLog(numbers.count(keep_requests, "keep_requests"))
        self._attempts = AttemptCounter()
        self._files = FileStore()
        self._lock = threading.Lock()
        self._disconnected = threading.Event()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}

    # -- settings, checked when set -----------------------------------------------------

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._latency = numbers.seconds(value, "latency")

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

    # -- state ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """The latest requests (``keep_requests`` at most), oldest first; long strings cut."""
        return self._log.snapshot()

    @property
    def request_count(self) -> int:
        """Requests received since the server was made; ``len(requests)`` stops growing."""
        return self._log.total

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
        httpd = _HTTPServer((self.host, self.port), functools.partial(Handler, backend=self))
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"mesh-local-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: wake waiting handlers, close every socket, join the threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            # Wakes handlers blocked reading a kept-alive connection.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        deadline = time.monotonic() + 2
        for handler in connections.values():
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

    def defaults(self) -> RequestControls:
        return RequestControls(self.latency, self.ping_interval, self._fault)

    def record(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        self._log.add(method, path, headers, body)

    def next_attempt(self, key: bytes) -> int:
        return self._attempts.next(key)

    def attempt_succeeded(self, key: bytes) -> None:
        self._attempts.forget(key)

    def publish(self, data: bytes, fmt: str) -> str:
        return self._files.publish(data, fmt)

    def published(self, name: str) -> tuple[bytes, str] | None:
        return self._files.get(name)

    def track(self, connection: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections[connection] = threading.current_thread()
            else:
                self._connections.pop(connection, None)

    def note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self._disconnected.set()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    block_on_close = False  # stop() joins the handlers itself, with a time limit

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can take seconds.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away is no error of the server's
        log.exception("mesh local: error while serving %s", client_address)


_shared: LocalServer | None = None
_shared_lock = threading.Lock()

ENV_LATENCY = "MESH_LOCAL_LATENCY"
ENV_PING_INTERVAL = "MESH_LOCAL_PING_INTERVAL"
ENV_FAULT = "MESH_LOCAL_FAULT"


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
    `MESH_LOCAL_PING_INTERVAL` (seconds) and `MESH_LOCAL_FAULT` (a fault spec). A bad
    value raises ConfigError (one line in a notebook) naming the variable.
    """
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = LocalServer(**_from_environment()).start()
        return _shared
