"""What a URL's host is: its normal spelling (`host_of`), and whether it is this machine
(`is_loopback`). One definition for the client, the store, the settings and the
embedded backend.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback(host: str) -> bool:
    """`localhost`, or an address of the loopback network (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(url: str) -> str:
    """`https://user:pw@API.example.com/v1` -> `https://api.example.com:443`: the server
    alone, so the same API reached by another spelling is the same host, and nothing
    secret (userinfo, a signed query) is ever part of what the store keeps.

    A name that is not a URL (`local`, for the embedded backend whatever its port) is
    kept as it is."""
    text = url.strip().rpartition("@")[2] if "://" not in url else url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:  # an unclosed `[`, a port that is not a number
        return text.lower()
    if not parts.scheme or not parts.hostname:
        return text.lower()
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower-cased, without userinfo or brackets
    if ":" in host:
        host = f"[{host}]"
    port = port if port is not None else _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")
