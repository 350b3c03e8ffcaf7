"""A batch's input: JSONL, one request a line, as OpenAI's Batch API takes it.

    {"custom_id": "fox-1", "method": "POST", "url": "/v1/images/generations", "body": {...}}

Read whole when a file is uploaded (or a batch's inline ``requests`` arrive), so a bad
line is a 400 that names it at once; read again, already known good, when the batch runs.
Bounded: the bytes are within the file cap, at most ``max_lines`` lines are read (a file
with more is refused), and a ``custom_id`` is at most ``MAX_CUSTOM_ID`` characters.
Blank lines are skipped, but still counted, so a line number is the one an editor shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_BATCH_LINES = 50_000  # OpenAI's limit of requests per batch
BATCH_LINES = 1_000  # the default here: a loopback server works one line at a time
MAX_CUSTOM_ID = 512
MAX_URL = 200
METHODS = ("POST",)


@dataclass(frozen=True)
class BatchLine:
    """One request of a batch; NUMBER is its line in the file, from 1."""

    number: int
    custom_id: str
    method: str
    url: str
    body: dict[str, Any]


class InputError(ValueError):
    """The input cannot be batched; LINE is the line at fault (None: the whole file)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"Line {line}: {message}")
        self.line = line


def read_lines(data: bytes, max_lines: int) -> list[BatchLine]:
    """The requests of a JSONL batch input. Raises InputError naming the first bad line."""
    lines: list[BatchLine] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(lines) == max_lines:
            raise InputError(
                f"The file has more than {max_lines:,} requests; this backend batches at "
                f"most {max_lines:,}"
            )
        line = _line(number, raw)
        first = seen.setdefault(line.custom_id, number)
        if first != number:
            shown = line.custom_id[:100]
            raise InputError(f"custom_id {shown!r} is already used on line {first}", number)
        lines.append(line)
    if not lines:
        raise InputError("The file holds no request: one JSON object a line is expected")
    return lines


def _line(number: int, raw: bytes) -> BatchLine:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", number) from None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InputError("not valid JSON", number) from None
    if not isinstance(value, dict):
        raise InputError(f"a JSON object is expected, not {type(value).__name__}", number)
    custom_id = value.get("custom_id")
    if custom_id is None:
        raise InputError("custom_id is missing", number)
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        raise InputError(f"custom_id must be a string of 1 to {MAX_CUSTOM_ID} characters", number)
    method = value.get("method", "POST")
    if method not in METHODS:
        raise InputError(f"method must be POST, not {str(method)[:20]!r}", number)
    url = value.get("url")
    if not isinstance(url, str) or not url.startswith("/") or len(url) > MAX_URL:
        raise InputError("url must be an endpoint path such as /v1/images/generations", number)
    body = value.get("body")
    if not isinstance(body, dict):
        raise InputError("body must be a JSON object", number)
    return BatchLine(number, custom_id, method, url, body)


def jsonl(requests: list[Any]) -> bytes:
    """Inline ``requests`` (the official SDK's ``CreateBatchParams``) as a JSONL input."""
    return b"".join(json.dumps(request).encode() + b"\n" for request in requests)
