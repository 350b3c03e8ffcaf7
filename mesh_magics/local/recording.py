"""The server's log of recent requests: bounded in count, and in size per request.

A kernel can live for days and a request can carry a 10 MB data URL (or a batch of
thousands of requests), so the log keeps only the last few requests, replaces every long
string in a body by a summary that still says what it was (its head, its length and a
short hash), and keeps the first `LONG_LIST` items of a long list.

Tests and users print these records, so no credential is kept: the `Authorization`
header (and the other headers that carry one) is dropped, and ``credential`` says only
what kind it was.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from .registry import LOCAL_TOKEN

KEEP_REQUESTS = 100  # requests remembered, oldest dropped first
LONG_STRING = 1024  # characters: a longer string in a body is kept as a summary
LONG_LIST = 100  # items: a longer list keeps its first ones and says how many more it had
HEAD_CHARS = 40
# Headers that carry a credential: never kept in a record.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


@dataclass
class RecordedRequest:
    """A request as the server received it (``body`` is the parsed JSON, or None).

    Strings longer than ``LONG_STRING`` in the body are summaries, e.g.
    ``"<data:image/png;base64 13,981,234 chars sha256=ab12cd34ef56>"``.

    ``at`` is when its request line and headers had arrived, on the ``time.monotonic()``
    clock of the server's process. ``status`` and ``answered_at`` (the same clock) are set
    when the answer's status line goes out: None before that, and for a request never
    answered.

    ``headers`` (lower-case names) hold no credential. ``credential`` says what the
    ``Authorization`` header was: None (absent), ``"local token"`` (what mesh-magics sends
    the embedded backend) or ``"other"`` (an API key, say, from another client).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = 0.0
    status: int | None = None
    answered_at: float | None = None
    credential: str | None = None


def summary(text: str) -> str:
    """A short stand-in for a long string: what it starts with, its length, a hash."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    head, comma, _ = text[:256].partition(",")
    if not (text.startswith("data:") and comma):
        head = text[:HEAD_CHARS] + "…"  # not a data URL: its first words say what it is
    return f"<{head} {len(text):,} chars sha256={digest}>"


def credential_kind(headers: dict[str, str]) -> str | None:
    """What the ``Authorization`` header in HEADERS (lower-case names) was, never its value."""
    value = headers.get("authorization")
    if value is None:
        return None
    return "local token" if value.strip() == f"Bearer {LOCAL_TOKEN}" else "other"


def without_credentials(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in CREDENTIAL_HEADERS}


def summarised(value: Any) -> Any:
    """A copy of a parsed JSON VALUE with every long string replaced by its summary."""
    if isinstance(value, str):
        return summary(value) if len(value) > LONG_STRING else value
    if isinstance(value, dict):
        return {key: summarised(item) for key, item in value.items()}
    if isinstance(value, list):
        kept = [summarised(item) for item in value[:LONG_LIST]]
        if len(value) > LONG_LIST:
            kept.append(f"<{len(value) - LONG_LIST:,} more items>")
        return kept
    return value


class RequestLog:
    """The last KEEP requests, safe to append to from many handler threads."""

    def __init__(self, keep: int = KEEP_REQUESTS) -> None:
        self._entries: deque[RecordedRequest] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.total = 0  # requests ever added: grows when the log is full, unlike its length

    @property
    def keep(self) -> int:
        return self._entries.maxlen or 0

    def add(
        self, method: str, path: str, headers: dict[str, str], body: Any, at: float
    ) -> RecordedRequest:
        entry = RecordedRequest(
            method,
            path,
            without_credentials(headers),
            summarised(body),
            at,
            credential=credential_kind(headers),
        )
        with self._lock:
            self._entries.append(entry)
            self.total += 1
        return entry

    def snapshot(self) -> list[RecordedRequest]:
        """The kept requests, oldest first, as a list of the caller's own."""
        with self._lock:
            return list(self._entries)
