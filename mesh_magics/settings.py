"""Where requests go and with what: the base URL, the key, timeouts and retry limits.

Cheap to import (no httpx), so the magic can check its configuration before loading the
HTTP stack.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigError

if TYPE_CHECKING:
    import ssl

DEFAULT_BASE_URL = "https://api.meshapi.ai"


class Secret:
    """The API key. Its repr and str never show it; only `reveal()` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("the API key cannot be pickled")


@dataclass(frozen=True)
class ClientSettings:
    base_url: str = DEFAULT_BASE_URL
    api_key: Secret | None = None
    read_timeout: float = 120.0
    connect_timeout: float = 15.0
    max_retries: int = 2
    max_retry_wait: float = 60.0
    backoff_base: float = 0.5
    max_image_bytes: int = 64 * 1024 * 1024
    allow_insecure_http: bool = False
    verify: ssl.SSLContext | bool = True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """`https://host[/v1][/]` -> `https://host`; refuse plain http to a remote host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base URL {url!r} is not an http(s) URL, e.g. {DEFAULT_BASE_URL}")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure_http:
        raise ConfigError(
            f"refusing plain http to {parts.hostname}: the API key would travel unencrypted. "
            "Use https, or set MeshImageMagics.allow_insecure_http = True if you must."
        )
    path = re.sub(r"/v1/?$", "", parts.path.rstrip("/"))
    return f"{parts.scheme}://{parts.netloc}{path}"
