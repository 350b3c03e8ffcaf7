"""What makes two requests the same: the key a stored generation is found by.

Two bodies that differ only in how the answer travels (`stream`, `partial_images`,
`response_format`) ask for the same images, so those fields are left out; the API host is
in, since another server's images are not an answer to this one's request, and so is the
endpoint of an edit, since an edit's body may read like a generation's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..hosts import host_of

DELIVERY_FIELDS = frozenset({"stream", "partial_images", "response_format"})


def request_key(body: Mapping[str, Any], api_host: str, endpoint: str = "generations") -> str:
    """SHA-256 hex of the canonical JSON (sorted keys, no spaces) of `body` without its
    delivery fields, plus the API host (`scheme://host:port`, no credentials), plus the
    endpoint unless it is `generations` (so the keys stored before edits existed stay)."""
    asked = {name: value for name, value in body.items() if name not in DELIVERY_FIELDS}
    canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8"))
    digest.update(b"\n" + host_of(api_host).encode("utf-8"))
    if endpoint != "generations":
        digest.update(b"\n" + endpoint.encode("utf-8"))
    return digest.hexdigest()


def batch_key(run_keys: list[str]) -> str:
    """What identifies a batch: the `request_key`s of its runs, in order. The same cell run
    again (after a kernel restart, say) has the same key, and attaches to its batch."""
    return hashlib.sha256(("batch\n" + "\n".join(run_keys)).encode("ascii")).hexdigest()


__all__ = ["DELIVERY_FIELDS", "batch_key", "host_of", "request_key"]
