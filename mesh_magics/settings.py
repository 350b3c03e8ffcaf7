"""Where requests go and with what: the base URL, the key, timeouts and retry limits.

Cheap to import (no httpx), so the magic can check its configuration before loading the
HTTP stack.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigError, warn_caller
from .frontends import in_marimo
from .hosts import host_of, is_loopback
from .local import LOCAL_TOKEN, is_serving  # the embedded backend's one narrow entry
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


class LocalToken(Secret):
    """What the embedded backend gets in place of the API key: a word, not a secret."""

    __slots__ = ()

    def __init__(self) -> None:
        self._value = LOCAL_TOKEN  # not registered: masking it would guard nothing

    def __repr__(self) -> str:
        return "LocalToken()"

    __str__ = __repr__


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

    @property
    def api_host(self) -> str:
        """The API these settings ask: `scheme://host:port`, or `local` (the embedded
        backend, whose port changes from one kernel to the next): what the store keys and
        the batches it remembers are kept under."""
        return self.name or host_of(self.base_url)


def is_embedded_backend(url: str) -> bool:
    """True if URL is a loopback port on which this process serves the embedded backend."""
    try:
        parts = urlsplit(url)
        return is_loopback(parts.hostname or "") and is_serving(parts.port)
    except ValueError:  # a port out of range: no server of ours
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
        warn_caller(
            "the user:password in the base URL is not sent: MeshAPI takes only the API key "
            "(MESHAPI_API_KEY)"
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


MARIMO_REPLAY_NOTE = (
    "marimo reruns cells: replay is on, a rerun with the same request costs nothing "
    "(it answers from the store); replay=False (--fresh in mm.cell) asks anew"
)
_replay_note_said = False


def replay_by_default(config: Mapping[str, Any]) -> bool:
    """Whether a run that says nothing of replay answers from the store: the setting
    (`MeshImageMagics.replay`) or `MESHAPI_REPLAY=1` turns it on. In marimo it is on unless
    `MESHAPI_REPLAY=0`: marimo reruns a cell by itself when a value above it changes, and a
    rerun must not bill again; the first run there says so, once."""
    global _replay_note_said
    chosen = os.environ.get("MESHAPI_REPLAY")
    if config.get("replay") or chosen == "1":
        return True
    if chosen == "0" or not in_marimo():
        return False
    if not _replay_note_said:
        _replay_note_said = True
        warn_caller(MARIMO_REPLAY_NOTE)
    return True


def client_settings(config: Mapping[str, Any], base_url: str | None = None) -> ClientSettings:
    """Where requests go and with what key: `base_url` (an option), else the configured
    one, else `$MESHAPI_BASE_URL`, else the public API; `local` starts the embedded
    backend. The embedded backend (`local`, or the URL of a LocalServer this process
    started) gets the local token, never the key. A bad base URL names where it came
    from."""
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
    insecure = bool(config.get("allow_insecure_http"))
    name = "local" if base.strip() == "local" else None
    if name == "local":
        from .local import ensure_local_server

        base = ensure_local_server().url
    else:
        try:
            base = normalize_base_url(base, allow_insecure_http=insecure)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if name == "local" or is_embedded_backend(base):
        api_key: Secret | None = LocalToken()  # the key is not even read: it cannot leak
    else:
        key = next((os.environ[k] for k in KEY_VARIABLES if os.environ.get(k)), None)
        if key is None and not is_loopback(urlsplit(base).hostname or ""):
            raise ConfigError(
                f"no API key for {display_url(base)}: set MESHAPI_API_KEY in the environment "
                "that starts Jupyter (or os.environ['MESHAPI_API_KEY'] = getpass.getpass() in "
                "a cell), or use --base-url local to try the embedded backend without one"
            )
        api_key = Secret(key) if key else None
    return ClientSettings(
        base_url=base,
        api_key=api_key,
        read_timeout=config.get("read_timeout", 120.0),
        max_retries=config.get("max_retries", 2),
        max_retry_wait=config.get("max_retry_wait", 60.0),
        backoff_base=config.get("retry_backoff", 0.5),
        max_image_bytes=config.get("max_image_bytes", 64 * 1024 * 1024),
        max_response_mb=config.get("max_response_mb"),
        idle_timeout=config.get("idle_timeout", 60.0),
        total_timeout=config.get("total_timeout", 600.0),
        allow_insecure_http=insecure,
        name=name,
    )


def store_dir(config: Mapping[str, Any]) -> Path:
    """The store's folder: `MeshImageMagics.store_dir`, else `$MESH_MAGICS_STORE`, else
    `$XDG_CACHE_HOME/mesh-magics`, else `~/.cache/mesh-magics`."""
    for chosen in (config.get("store_dir"), os.environ.get("MESH_MAGICS_STORE")):
        if chosen:
            return Path(chosen).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    if cache and Path(cache).is_absolute():  # the XDG spec: a relative one is ignored
        return Path(cache) / "mesh-magics"
    return Path.home() / ".cache" / "mesh-magics"
