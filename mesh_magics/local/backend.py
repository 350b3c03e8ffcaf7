"""What a request handler needs from the server that runs it.

The handler depends on this protocol, not on ``LocalServer``, so ``handler.py`` and
``server.py`` do not import each other.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Protocol

from .batches import BatchService
from .faults import RequestControls
from .recording import RecordedRequest


class Backend(Protocol):
    @property
    def url(self) -> str:
        """A usable base URL of the server (no wildcard address)."""
        ...

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def max_pixels(self) -> int:
        """The most pixels (n × width × height) one request may ask for."""
        ...

    @property
    def read_timeout(self) -> float:
        """Seconds a read from a client may wait (a new connection takes the value)."""
        ...

    @property
    def loopback_only(self) -> bool:
        """Bound to a loopback address only: a Host must then name loopback."""
        ...

    @property
    def stopping(self) -> threading.Event:
        """Set while the server stops: every wait must end."""
        ...

    @property
    def batch_service(self) -> BatchService:
        """The files and batches of the Batch API (``/v1/files``, ``/v1/batches``)."""
        ...

    def defaults(self) -> RequestControls:
        """The server's settings, read afresh for each request."""
        ...

    def record(
        self, method: str, path: str, headers: dict[str, str], body: Any, at: float
    ) -> RecordedRequest:
        """Log a request that arrived AT (``time.monotonic()``); the handler sets its status."""
        ...

    def begin_generation(self) -> str | None:
        """A generation is in flight; the Retry-After of a 429 scheduled for it, or None."""
        ...

    def end_generation(self) -> None:
        """The generation begun last on this thread no longer counts as in flight."""
        ...

    def next_attempt(self, key: bytes) -> int:
        """Count an attempt of the request with KEY; return its number, 1 for the first."""
        ...

    def attempt_succeeded(self, key: bytes) -> None: ...

    def publish(self, data: bytes, fmt: str) -> str:
        """Keep an image to serve from ``/files/NAME``; return NAME."""
        ...

    def published(self, name: str) -> tuple[bytes, str] | None: ...

    def track(self, connection: socket.socket, alive: bool) -> None: ...

    def waiting_for_request(self, connection: socket.socket, waiting: bool) -> None:
        """CONNECTION waits for its next request (True), or has it in hand (False)."""
        ...

    def take_slot(self) -> bool:
        """Take one of the slots of generation work, if one is free."""
        ...

    def give_back_slot(self) -> None: ...

    def note_disconnect(self) -> None:
        """A client hung up on an unfinished answer."""
        ...
