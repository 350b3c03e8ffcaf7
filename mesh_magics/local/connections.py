"""The backend's connections: a bounded number, and none waiting forever for a request.

One thread serves each connection, so an unbounded number of connections is an
unbounded number of threads, and a client that opens many and never finishes a request
(slowloris) would hold them all. So:

- every read has a timeout (the server's ``read_timeout``), after which the connection is
  closed;
- at most ``limit`` connections are open. When a new one arrives at the limit, the one
  that has waited longest for its request (its head or body not yet in) is closed to
  make room, so idle and half-sent connections cannot starve a working client;
- when every open connection is busy with a request, the new one is answered 503 and
  closed at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any

from .handler import envelope, new_request_id

log = logging.getLogger("mesh_magics.local.server")  # the logger redact.py guards

MAX_CONNECTIONS = 64
READ_TIMEOUT = 30.0  # seconds a read may wait for the client's next bytes


class Connections:
    """The open connections, the thread serving each, and which wait for a request."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[socket.socket, threading.Thread | None] = {}
        self._waiting: dict[socket.socket, float] = {}  # since when each awaits its request
        self._closing: set[socket.socket] = set()  # made room for a newer one, not yet gone
        self.accepted = 0
        self.refused = 0
        self.evicted = 0

    def admit(self, connection: socket.socket) -> bool:
        """Take a new CONNECTION, closing the longest-waiting one at the limit; False if
        every open connection is busy (the caller refuses it)."""
        with self._lock:
            if len(self._open) - len(self._closing) >= self.limit:
                if not self._waiting:
                    self.refused += 1
                    return False
                oldest = min(self._waiting, key=self._waiting.__getitem__)
                del self._waiting[oldest]
                self._closing.add(oldest)
                self.evicted += 1
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)  # its blocked read ends; its thread exits
            self._open[connection] = None
            self._waiting[connection] = time.monotonic()
            self.accepted += 1
            return True

    def serving(self, connection: socket.socket) -> None:
        """The current thread serves CONNECTION (``stop()`` joins it)."""
        with self._lock:
            if connection in self._open:
                self._open[connection] = threading.current_thread()

    def waiting(self, connection: socket.socket, waiting: bool) -> None:
        """CONNECTION now waits for a request (True), or has one in hand (False)."""
        with self._lock:
            if not waiting:
                self._waiting.pop(connection, None)
            elif connection in self._open and connection not in self._closing:
                self._waiting.setdefault(connection, time.monotonic())

    def closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._open.pop(connection, None)
            self._waiting.pop(connection, None)
            self._closing.discard(connection)

    @property
    def open(self) -> int:
        with self._lock:
            return len(self._open)

    def snapshot(self) -> dict[socket.socket, threading.Thread | None]:
        with self._lock:
            return dict(self._open)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, and at most ``Connections.limit`` connections."""

    daemon_threads = True
    request_queue_size = 64
    block_on_close = False  # stop() joins the handlers itself, with a time limit

    def __init__(self, address: tuple[str, int], handler: Any, connections: Connections) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.connections = connections
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.connections.admit(request):
            super().process_request(request, client_address)
            return
        # Every connection is busy: say so at once, and take nothing more from this one.
        with contextlib.suppress(OSError):
            request.settimeout(1.0)
            request.sendall(busy_answer(self.connections.limit))
        self.shutdown_request(request)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can take seconds.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away is no error of the server's
        log.exception("mesh local: error while serving %s", client_address)


def busy_answer(limit: int) -> bytes:
    """A whole 503 answer, in the error envelope, for a connection over the limit."""
    message = f"Too many connections: the embedded backend serves {limit} at once"
    body = json.dumps(envelope("unavailable", message, new_request_id())).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Retry-After: 1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
