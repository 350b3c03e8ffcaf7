"""Where requests go and with what: the base URL, the key, timeouts and retry limits.

Cheap to import (no httpx), so the magic can check its configuration before loading the
HTTP stack.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import warnings
from collections.abc import Mapping
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
    max_response_mb: float | None = None  # None: each response's cap follows its request
    idle_timeout: float = 60.0  # between complete SSE events (a ping counts)
    total_timeout: float = 600.0  # one request, from sending it to its last byte
    allow_insecure_http: bool = False
    verify: ssl.SSLContext | bool = True
    name: str | None = None  # "local": the embedded backend, whatever port it has today

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


# -- the settings in force ---------------------------------------------------------------

KEY_VARIABLES = ("MESHAPI_API_KEY", "MESH_API_KEY")


def configured() -> dict[str, Any]:
    """The `MeshImageMagics` settings in force: the loaded magic's (`%config`, a profile)
    when IPython runs with the extension, else the defaults. Does not import IPython."""
    from .schema import SETTINGS

    values = {name: option.default for name, option in SETTINGS.items()}
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    magics = getattr(getattr(shell, "magics_manager", None), "registry", {}).get("MeshImageMagics")
    if magics is not None:
        values.update({name: getattr(magics, name) for name in SETTINGS})
    return values


def client_settings(config: Mapping[str, Any], base_url: str | None = None) -> ClientSettings:
    """Where requests go and with what key: `base_url` (an option), else the configured
    one, else `$MESHAPI_BASE_URL`, else the public API; `local` starts the embedded
    backend, which takes no key. A bad base URL names where it came from."""
    base, source = next(
        (value, source)
        for value, source in (
            (base_url, "--base-url"),
            (config.get("base_url"), "MeshImageMagics.base_url"),
            (os.environ.get("MESHAPI_BASE_URL"), "$MESHAPI_BASE_URL"),
            (DEFAULT_BASE_URL, "the default base URL"),
        )
        if value
    )
    key = None
    insecure = bool(config.get("allow_insecure_http"))
    name = "local" if base.strip() == "local" else None
    if name == "local":
        from .local import ensure_local_server

        base = ensure_local_server().url  # the embedded backend needs no key: send none
    else:
        try:
            base = normalize_base_url(base, allow_insecure_http=insecure)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        key = next((os.environ[k] for k in KEY_VARIABLES if os.environ.get(k)), None)
        if key is None and not is_loopback(urlsplit(base).hostname or ""):
            raise ConfigError(
                f"no API key for {display_url(base)}: set MESHAPI_API_KEY in the environment "
                "that starts Jupyter (or os.environ['MESHAPI_API_KEY'] = getpass.getpass() in "
                "a cell), or use --base-url local to try the embedded backend without one"
            )
    return ClientSettings(
        base_url=base,
        api_key=Secret(key) if key else None,
        read_timeout=config.get("read_timeout", 120.0),
        max_retries=config.get("max_retries", 2),
        max_retry_wait=config.get("max_retry_wait", 60.0),
        max_image_bytes=config.get("max_image_bytes", 64 * 1024 * 1024),
        max_response_mb=config.get("max_response_mb"),
        idle_timeout=config.get("idle_timeout", 60.0),
        total_timeout=config.get("total_timeout", 600.0),
        allow_insecure_http=insecure,
        name=name,
    )
