"""What makes two requests the same: the key a stored generation is found by.

Two bodies that differ only in how the answer travels (`stream`, `partial_images`,
`response_format`) ask for the same images, so those fields are left out; the API host is
in, since another server's images are not an answer to this one's request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

DELIVERY_FIELDS = frozenset({"stream", "partial_images", "response_format"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def request_key(body: Mapping[str, Any], api_host: str) -> str:
    """SHA-256 hex of the canonical JSON (sorted keys, no spaces) of `body` without its
    delivery fields, plus the API host (`scheme://host:port`, no credentials)."""
    asked = {name: value for name, value in body.items() if name not in DELIVERY_FIELDS}
    canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8"))
    digest.update(b"\n" + host_of(api_host).encode("utf-8"))
    return digest.hexdigest()


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


__all__ = ["DELIVERY_FIELDS", "host_of", "request_key"]
