"""MeshAPI's error envelopes, and what proxies send instead, turned into `errors`.

`{"error": {"code", "message", "details", "retry_after_seconds"}, "request_id"}` is the
envelope; some 404s send `{"detail": ...}`; a proxy may send an HTML page or plain text,
of which the message keeps the title or the first words.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from typing import Any

import httpx

from .errors import APIError, api_error_class


async def error_from_response(response: httpx.Response) -> APIError:
    raw = await response.aread()
    request_id = response.headers.get("x-request-id")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = error_from_envelope(payload, response.status_code, request_id, None)
        if error.retry_after is None:
            error.retry_after = retry_after
        return error
    if isinstance(payload, dict) and "detail" in payload:
        message = str(payload["detail"])
    else:
        message = _text_summary(raw) or response.reason_phrase or "error"
    cls = api_error_class(response.status_code)
    return cls(message, status=response.status_code, request_id=request_id, retry_after=retry_after)


def error_from_envelope(
    payload: dict[str, Any],
    status: int | None,
    request_id: str | None,
    cls: type[APIError] | None,
) -> APIError:
    envelope = payload.get("error")
    if not isinstance(envelope, dict):
        envelope = {"message": str(envelope)}
    message = str(envelope.get("message") or envelope.get("code") or "unknown error")
    if status == 401:
        message += " (check MESHAPI_API_KEY)"
    retry_after = envelope.get("retry_after_seconds")
    details = envelope.get("details")
    error_class = cls or api_error_class(status or 500)
    return error_class(
        message,
        status=status,
        code=str(envelope["code"]) if envelope.get("code") else None,
        request_id=str(payload.get("request_id") or request_id or "") or None,
        retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
        details=details if isinstance(details, list) else None,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _text_summary(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
    if title:
        text = title.group(1)
    text = re.sub(r"<[^>]+>", " ", text)
    return clip(" ".join(text.split()), 200)


def clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
