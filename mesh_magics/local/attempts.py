"""Counting attempts of the same request, so a fault with ``times`` lets a retry through.

A retry resends the identical body, so attempts are keyed on a hash of the raw body
bytes (and of the client's X-Request-Id when it sends one: two runs of the same cell
are then two requests). Any client can be counted, not only one that sends an id. Once
an attempt gets through, its count starts again, so re-running a request fails again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

KEPT_KEYS = 4096  # requests whose attempts are remembered, least recent dropped first


def attempt_key(body: bytes, request_id: str | None) -> bytes:
    """The key under which attempts of one request are counted."""
    digest = hashlib.sha256()
    digest.update((request_id or "").encode() + b"\x00")
    digest.update(body)
    return digest.digest()


class AttemptCounter:
    """How many times each request has been tried, for at most KEPT_KEYS requests."""

    def __init__(self, keep: int = KEPT_KEYS) -> None:
        self._counts: OrderedDict[bytes, int] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)

    def next(self, key: bytes) -> int:
        """Count one more attempt of KEY and return its number (the first is 1)."""
        with self._lock:
            count = self._counts.pop(key, 0) + 1
            self._counts[key] = count
            while len(self._counts) > self._keep:
                self._counts.popitem(last=False)
        return count

    def forget(self, key: bytes) -> None:
        """KEY got through: its next attempt is a first attempt again."""
        with self._lock:
            self._counts.pop(key, None)
