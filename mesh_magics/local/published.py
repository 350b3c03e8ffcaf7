"""The images answered as remote URLs, kept in memory and served from ``/files/``.

Bounded twice: by count and by total bytes, the oldest dropped first, so a kernel that
generates many large DALL·E pictures does not keep them all.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

KEPT_FILES = 256
KEPT_BYTES = 256 * 1024 * 1024


class FileStore:
    """Published images by name (``TOKEN.FORMAT``); the newest one is always kept."""

    def __init__(self, max_files: int = KEPT_FILES, max_bytes: int = KEPT_BYTES) -> None:
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._files: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def publish(self, data: bytes, fmt: str) -> str:
        """Keep DATA and return its new, unguessable name."""
        name = f"{secrets.token_urlsafe(18)}.{fmt}"
        with self._lock:
            self._files[name] = (data, fmt)
            self._bytes += len(data)
            while len(self._files) > 1 and (
                len(self._files) > self.max_files or self._bytes > self.max_bytes
            ):
                _, (old, _) = self._files.popitem(last=False)
                self._bytes -= len(old)
        return name

    def get(self, name: str) -> tuple[bytes, str] | None:
        with self._lock:
            return self._files.get(name)
