"""The embedded backend's HTTP server: MeshAPI's endpoints on loopback.

Real HTTP over loopback sockets (stdlib ``http.server``), one daemon thread per
connection; the wire work is in ``handler.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any

from .faults import RequestControls, parse_fault
from .handler import Handler

log = logging.getLogger(__name__)

KEPT_FILES = 256  # remote-URL images kept in memory, oldest dropped first


@dataclass
class RecordedRequest:
    """A request as the server received it (``body`` is the parsed JSON, or None)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class LocalServer:
    """A MeshAPI-compatible image server on loopback, serving from a daemon thread.

    ``latency``, ``ping_interval`` and ``fault`` are read on every request, so a
    test may change them while the server runs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        ping_interval: float = 1.0,
        fault: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.ping_interval = ping_interval
        self.fault = fault
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self._lock = threading.Lock()
        self._disconnected = threading.Event()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._attempts: dict[str, int] = {}
        self._files: OrderedDict[str, tuple[bytes, str]] = OrderedDict()

    @property
    def fault(self) -> str | None:
        return self._fault.spec if self._fault else None

    @fault.setter
    def fault(self, spec: str | None) -> None:
        self._fault = parse_fault(spec)  # a bad spec fails here, not on a later request

    @property
    def url(self) -> str:
        """The base URL, without ``/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> LocalServer:
        """Bind and serve from a daemon thread; a no-op when already running."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), self)
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

    # -- used by the handler ------------------------------------------------------

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, body))

    def _note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self._disconnected.set()

    def _attempt(self, request_id: str | None) -> int:
        """Which attempt this is among requests carrying the same client X-Request-Id."""
        if request_id is None:
            return 1
        with self._lock:
            count = self._attempts.pop(request_id, 0) + 1
            self._attempts[request_id] = count
            if len(self._attempts) > 4096:
                del self._attempts[next(iter(self._attempts))]
        return count

    def _publish(self, data: bytes, fmt: str) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._files[f"{token}.{fmt}"] = (data, fmt)
            while len(self._files) > KEPT_FILES:
                self._files.popitem(last=False)
        return f"{self.url}/files/{token}.{fmt}"

    def _file(self, name: str) -> tuple[bytes, str] | None:
        with self._lock:
            return self._files.get(name)

    def _track(self, connection: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections[connection] = threading.current_thread()
            else:
                self._connections.pop(connection, None)

    def _defaults(self) -> RequestControls:
        return RequestControls(self.latency, self.ping_interval, self._fault)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    block_on_close = False  # stop() joins the handlers itself, with a time limit

    def __init__(self, address: tuple[str, int], owner: LocalServer) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

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


def ensure_local_server() -> LocalServer:
    """The process-wide embedded backend, started on a free port on first use.

    Its settings come from the environment, so a demo or a browser test can make the
    kernel's backend slow or faulty: `MESH_LOCAL_LATENCY` (seconds),
    `MESH_LOCAL_PING_INTERVAL` (seconds) and `MESH_LOCAL_FAULT` (a fault spec).
    """
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = LocalServer(
                latency=float(os.environ.get("MESH_LOCAL_LATENCY") or 0),
                ping_interval=float(os.environ.get("MESH_LOCAL_PING_INTERVAL") or 1),
                fault=os.environ.get("MESH_LOCAL_FAULT") or None,
            ).start()
        return _shared
