"""Where requests go and with what: the base URL, the key, timeouts and retry limits.

Cheap to import (no httpx), so the magic can check its configuration before loading the
HTTP stack.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .redact import display_url, register_secret, strip_userinfo

if TYPE_CHECKING:
    import ssl

DEFAULT_BASE_URL = "https://api.meshapi.ai"


class Secret:
    """The API key. Its repr and str never show it; only `reveal()` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)  # masked in every text shown from now on, even if echoed

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

    def __post_init__(self) -> None:
        # URL credentials are never sent nor shown (see `normalize_base_url`), nor in a repr.
        object.__setattr__(self, "base_url", _without_credentials(self.base_url))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """`https://host[/v1][/]` -> `https://host`; refuse plain http to a remote host.

    Credentials in the URL (`https://user:pw@host`) are dropped, with a warning: MeshAPI
    authenticates with the API key alone, sent as `Authorization: Bearer`, and HTTP Basic
    from the URL would replace it. They are registered as secrets, so no error, repr or log
    shows them, even when a server echoes them.
    """
    url = _without_credentials(url.strip())
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed `[` of an IPv6 address
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"base URL {display_url(url)!r} is not an http(s) URL, e.g. {DEFAULT_BASE_URL}"
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure_http:
        raise ConfigError(
            f"refusing plain http to {parts.hostname}: the API key would travel unencrypted. "
            "Use https, or set MeshImageMagics.allow_insecure_http = True if you must."
        )
    path = re.sub(r"/v1/?$", "", parts.path.rstrip("/"))
    return f"{parts.scheme}://{parts.netloc}{path}"


def _without_credentials(url: str) -> str:
    """URL without its `user:pw@` (now secrets), warning that they will not be sent."""
    stripped = strip_userinfo(url)
    if stripped != url:
        warnings.warn(
            "the user:password in the base URL is not sent: MeshAPI takes only the API key "
            "(MESHAPI_API_KEY)",
            stacklevel=3,
        )
    return stripped
