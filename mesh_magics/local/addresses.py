"""Where the backend can be reached: usable URLs for a bound address and a request's Host.

Bound to a wildcard address (0.0.0.0, ::) the server listens on every interface, but
``http://0.0.0.0:PORT`` is no address a browser or another machine can use.
"""

from __future__ import annotations

import ipaddress
import re

WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "::0": "::1"}

# host[:port], a bracketed IPv6 literal [:port]: anything else is not echoed into a URL.
_HOST_HEADER = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$"
)


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_wildcard(host: str) -> bool:
    return host in WILDCARDS


def reachable_host(host: str) -> str:
    """HOST, or the loopback address of its family when HOST is a wildcard."""
    return WILDCARDS.get(host, host)


def base_url(host: str, port: int) -> str:
    """``http://HOST:PORT`` for a bound address, brackets around IPv6, no wildcard."""
    host = reachable_host(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def base_url_from_host_header(header: str | None, fallback: str) -> str:
    """The base URL the client used to reach us (its Host header), else FALLBACK."""
    value = (header or "").strip()
    if not value or not _HOST_HEADER.match(value):
        return fallback
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = value.partition(":")
    if port and not 0 < int(port) <= 65535:
        return fallback
    if is_wildcard(host):
        return fallback
    return f"http://{value}"
