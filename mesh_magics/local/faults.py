"""Fault specs: the ways the embedded backend can misbehave on purpose.

A spec is a short string, set on the server or per request:

- ``status:CODE``: answer CODE with the protocol's JSON error envelope;
- ``html:CODE`` / ``text:CODE``: answer CODE with an HTML / plain-text page, like a proxy;
- stream faults: ``error_frame``, ``drop``, ``cut``, ``stall``, ``malformed``;
- image faults: ``not_image``, ``truncated_png``, ``one_corrupt`` (the last of n images is
  a truncated PNG), ``bomb``, ``fewer``;
- ``noise``: nothing fails, but every picture is random noise, which no encoder shrinks:
  files as big as real photographs (a 256x256 PNG is ~197 KB), for measuring memory and
  the size of saved notebooks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from . import numbers

STREAM_FAULTS = frozenset({"error_frame", "drop", "cut", "stall", "malformed"})
IMAGE_FAULTS = frozenset({"not_image", "truncated_png", "one_corrupt", "bomb", "fewer", "noise"})
PAGE_FAULTS = frozenset({"status", "html", "text"})

# status -> (error code, message) as the error table of docs/protocol.md gives them.
STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request could not be understood"),
    401: ("unauthorized", "Invalid or missing API key"),
    402: ("spend_limit_exceeded", "Spend limit reached: add credits or raise the cap"),
    403: ("forbidden", "This API key has been deactivated"),
    404: ("model_not_found", "The requested model was not found"),
    413: ("request_too_large", "The request is too large"),
    422: ("validation_error", "The request failed validation"),
    429: ("rate_limit_exceeded", "Rate limit exceeded, slow down and retry"),
    500: ("internal_error", "Internal server error"),
    501: ("not_implemented", "Not implemented"),
    502: ("unavailable", "The upstream provider is unavailable"),
    503: ("unavailable", "The service is temporarily unavailable"),
    504: ("gateway_timeout", "The upstream provider timed out"),
}

# Statuses that carry a Retry-After header.
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Fault:
    """A parsed fault spec: its kind and, for page faults, the HTTP status."""

    kind: str
    status: int | None = None

    @property
    def spec(self) -> str:
        return self.kind if self.status is None else f"{self.kind}:{self.status}"


def parse_fault(spec: str | None) -> Fault | None:
    """Parse a fault spec; None or "" means no fault. Raises ValueError on a bad spec."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        raise ValueError(f"a fault spec must be a string, not {type(spec).__name__}")
    text = spec.strip()
    if not text or text == "none":
        return None
    kind, sep, arg = text.partition(":")
    if kind in PAGE_FAULTS:
        if not sep or not arg.isdigit() or not 400 <= int(arg) <= 599:
            raise ValueError(f"fault {spec!r}: {kind}:CODE needs a status code 400..599")
        return Fault(kind, int(arg))
    if kind in STREAM_FAULTS | IMAGE_FAULTS and not sep:
        return Fault(kind)
    allowed = ", ".join(
        ["status:CODE", "html:CODE", "text:CODE", *sorted(STREAM_FAULTS | IMAGE_FAULTS)]
    )
    raise ValueError(f"unknown fault {spec!r}; allowed: {allowed}")


def status_error(status: int) -> tuple[str, str]:
    """The (code, message) a fault answers for STATUS; unknown statuses get a generic one."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return ("bad_request" if status < 500 else "upstream_error", phrase)


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def html_page(status: int) -> bytes:
    """An nginx-like error page, what a proxy in front of the API would send."""
    title = f"{status} {status_phrase(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def text_page(status: int) -> bytes:
    return f"{status} {status_phrase(status)}\n".encode()


def retry_after_seconds(value: str) -> int | None:
    """Seconds a Retry-After value (delta seconds or an HTTP date) asks to wait."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0, math.ceil((when - datetime.now(timezone.utc)).total_seconds()))


@dataclass(frozen=True)
class RequestControls:
    """The settings one request runs with: the server's, overridden by ``mesh_local``.

    ``model_latency`` overrides ``latency`` for the models it names; a request's own
    ``mesh_local.latency`` overrides both.
    """

    latency: float
    ping_interval: float
    fault: Fault | None
    times: int | None = None
    retry_after: str = "1"
    model_latency: Mapping[str, float] = field(default_factory=dict)

    def latency_for(self, model: str) -> float:
        return self.model_latency.get(model, self.latency)


CONTROL_KEYS = ("latency", "ping_interval", "fault", "times", "retry_after")


_HEADER_VALUE = re.compile(r"^[\x20-\x7e]{1,64}$")  # printable ASCII: no header injection


def retry_after_value(value: Any, what: str) -> str:
    """A Retry-After header value: whole seconds (an int or text) or an HTTP date."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _HEADER_VALUE.match(value):
        return value
    raise ValueError(
        f"{what} must be whole seconds >= 0 or an HTTP date "
        f"(printable, at most 64 characters), not {value!r}"
    )


def parse_controls(raw: Any, defaults: RequestControls) -> RequestControls:
    """Read a request's ``mesh_local`` object over DEFAULTS. Raises ValueError if it is bad."""
    if raw is None:
        return defaults
    if not isinstance(raw, dict):
        raise ValueError("mesh_local must be an object")
    unknown = sorted(set(raw) - set(CONTROL_KEYS))
    if unknown:
        raise ValueError(f"mesh_local: unknown key(s) {unknown}; allowed: {list(CONTROL_KEYS)}")
    times = raw.get("times")
    own_latency = "latency" in raw
    return RequestControls(
        latency=numbers.seconds(raw.get("latency", defaults.latency), "mesh_local.latency"),
        ping_interval=numbers.seconds(
            raw.get("ping_interval", defaults.ping_interval), "mesh_local.ping_interval"
        ),
        fault=parse_fault(raw["fault"]) if "fault" in raw else defaults.fault,
        times=None if times is None else numbers.count(times, "mesh_local.times"),
        retry_after=retry_after_value(
            raw.get("retry_after", defaults.retry_after), "mesh_local.retry_after"
        ),
        model_latency={} if own_latency else defaults.model_latency,
    )
