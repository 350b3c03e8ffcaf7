"""MeshAPI's error envelopes, and what proxies send instead, turned into `errors`.

`{"error": {"code", "message", "details", "retry_after_seconds"}, "request_id"}` is the
envelope; some 404s send `{"detail": ...}`, some gateways `{"message": ...}` or
`{"error": "text"}`; a proxy may send an HTML page or plain text, of which the message
keeps the title or the first words. Any field may have the wrong type: a server's error
must still become a readable error, never a crash.

Every text taken from the server is redacted on arrival (a server may echo the key or URL
credentials it was sent), and clipped, so one error is one short line.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from typing import Any

import httpx

from ..errors import APIError, api_error_class
from ..redact import clip, redact, redact_value
from .limits import read_capped

MAX_ERROR_BODY = 64 * 1024  # an error page is read this far, whatever it says its length is
MAX_RETRY_AFTER = 24 * 3600.0  # longer is nonsense; `max_retry_wait` caps it further anyway
MESSAGE_LIMIT = 300
REQUEST_ID_LIMIT = 100


async def error_from_response(response: httpx.Response) -> APIError:
    raw = await read_capped(response, MAX_ERROR_BODY)
    request_id = request_id_of(response)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):  # a UnicodeDecodeError; `[[[[...` nested too deep
        payload = None
    status = response.status_code
    if isinstance(payload, dict) and payload.get("error"):
        error = error_from_envelope(payload, status, request_id, None)
        if error.retry_after is None:
            error.retry_after = retry_after
        return error
    details: list[Any] | None = None
    if isinstance(payload, dict) and isinstance(payload.get("detail"), list):
        message = response.reason_phrase or "the request was refused"
        details = payload["detail"]
    elif isinstance(payload, dict) and payload.get("detail"):
        message = _text(payload["detail"])
    elif isinstance(payload, dict) and payload.get("message"):
        message = _text(payload["message"])
    else:
        message = text_summary(raw) or response.reason_phrase or "error"
    cls = api_error_class(status)
    return cls(
        clip(message, MESSAGE_LIMIT),
        status=status,
        request_id=request_id,
        retry_after=retry_after,
        details=_details(details),
    )


def error_from_envelope(
    payload: dict[str, Any],
    status: int | None,
    request_id: str | None,
    cls: type[APIError] | None,
) -> APIError:
    envelope = payload.get("error")
    if not isinstance(envelope, dict):  # `"error": "text"`, or the fields at the top level
        envelope = {"message": envelope or payload.get("message"), "code": payload.get("code")}
    code = envelope.get("code") if isinstance(envelope.get("code"), str | int) else None
    code_text = clip(str(code), 60) if code not in (None, "") else None
    message = clip(_text(envelope.get("message")) or code_text or "unknown error", MESSAGE_LIMIT)
    if status == 401:
        message += " (check MESHAPI_API_KEY)"
    error_class = cls or api_error_class(status or 500)
    return error_class(
        message,
        status=status,
        code=code_text,
        request_id=_request_id(payload.get("request_id")) or request_id,
        retry_after=seconds(envelope.get("retry_after_seconds")),
        details=_details(envelope.get("details")),
    )


def request_id_of(response: httpx.Response) -> str | None:
    """The server's id of the request, from `x-request-id`, safe to show."""
    return _request_id(response.headers.get("x-request-id"))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date.

    None when it says nothing usable (absent, negative, `nan`, garbage): then the client's
    own backoff decides. A date in the past means now (0); a huge wait is capped."""
    if not value:
        return None
    value = value.strip()
    try:
        return seconds(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        remaining = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return seconds(max(0.0, remaining))


def seconds(value: Any) -> float | None:
    """A wait the server asked for, as a usable number of seconds, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an int too large for a float
        return None
    if math.isnan(number) or number < 0:
        return None
    return min(number, MAX_RETRY_AFTER)


def _request_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return clip(str(value), REQUEST_ID_LIMIT)


def _text(value: Any) -> str:
    """A message field as text, whatever its type: a nested object becomes compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return redact(value)
    try:
        return redact(json.dumps(value, separators=(",", ":"), default=str))
    except ValueError:  # a circular structure cannot come from JSON, but be safe
        return redact(str(value))


def _details(value: Any) -> list[Any] | None:
    """Validation details as a list (one item if a single one came), redacted."""
    if value is None or value == "" or value == []:
        return None
    items = value if isinstance(value, list) else [value]
    return [_shorten(redact_value(item)) for item in items[:20]]


def _shorten(value: Any) -> Any:
    """Every string in a JSON-like value clipped, so a detail stays a line."""
    if isinstance(value, str):
        return clip(value, 200)
    if isinstance(value, dict):
        return {clip(str(k), 60): _shorten(v) for k, v in list(value.items())[:20]}
    if isinstance(value, list):
        return [_shorten(v) for v in value[:20]]
    return value


def text_summary(raw: bytes) -> str:
    """An HTML page's title, or the first words of a text, as one short line."""
    text = raw.decode("utf-8", "replace")
    title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
    if title:
        text = title.group(1)
    text = re.sub(r"<[^>]+>", " ", text)
    return clip(" ".join(text.split()), 200)


__all__ = [
    "MAX_ERROR_BODY",
    "clip",
    "error_from_envelope",
    "error_from_response",
    "parse_retry_after",
    "read_capped",
    "request_id_of",
    "seconds",
    "text_summary",
]
