"""What the backend keeps of a batch: its state, its OpenAI ``Batch`` object, and the
output and error files it writes line by line, within a cap.

Checks of what a client may set on a batch (``metadata``) and on the server
(``batch_endpoints``) are here too. No request header is kept.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .answers import Refusal, envelope, invalid
from .batch_input import BatchLine

IMAGE_ENDPOINT = "/v1/images/generations"  # the one endpoint whose lines this backend answers
BATCH_ENDPOINTS = (IMAGE_ENDPOINT,)
MAX_ENDPOINTS = 16
COMPLETION_WINDOWS = ("24h",)
WINDOW_SECONDS = 24 * 3600
MAX_METADATA, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512  # OpenAI's
TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})
_STAMPS = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
           "cancelling_at", "cancelled_at")  # fmt: skip


@dataclass
class Batch:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: int
    total: int
    base_url: str  # where its remote image URLs point: the server the client reached
    status: str = "validating"
    stamps: dict[str, int] = field(default_factory=dict)
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    done: int = 0  # lines answered, so a stopped server resumes at the next
    output: bytearray = field(default_factory=bytearray)
    failures: bytearray = field(default_factory=bytearray)

    def as_object(self) -> dict[str, Any]:
        """The OpenAI ``Batch``, which the meshapi SDK's ``BatchObject`` reads too."""
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.created_at + WINDOW_SECONDS,
            **{stamp: self.stamps.get(stamp) for stamp in _STAMPS},
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": None if self.metadata is None else dict(self.metadata),
        }

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def enter(self, status: str) -> None:
        self.status = status
        self.stamps[f"{status}_at"] = int(time.time())

    def record(
        self, line: BatchLine, status: int, request_id: str, body: dict[str, Any], cap: int
    ) -> None:
        """Write a line's answer into the output file (a 200) or the error file.

        The output stops at CAP bytes: a success past it is written as a 413. An error
        past it keeps its code and the start of its message, so the error file exceeds
        the cap by short lines only (a custom id and an envelope each).
        """
        text = result_line(line, status, request_id, body)
        self.done += 1
        if status == 200 and len(self.output) + len(text) <= cap:
            self.output += text
            self.completed += 1
            return
        if status == 200:
            message = f"The batch's output file would exceed {cap:,} bytes"
            text = result_line(
                line,
                413,
                request_id,
                Refusal(413, "request_too_large", message).envelope(request_id),
            )
        elif len(self.failures) + len(text) > cap:
            error = body.get("error", {})
            code, message = str(error.get("code")), str(error.get("message"))[:200]
            text = result_line(line, status, request_id, envelope(code, message, request_id))
        self.failures += text
        self.failed += 1


def result_line(line: BatchLine, status: int, request_id: str, body: dict[str, Any]) -> bytes:
    """A line of an output or error file, as OpenAI writes them."""
    entry = {
        "id": "batch_req_" + secrets.token_hex(12),
        "custom_id": line.custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": None,
    }
    return json.dumps(entry).encode() + b"\n"


def checked_endpoints(value: Any, what: str = "batch_endpoints") -> tuple[str, ...]:
    """The endpoints batches may be made for: a list of ``/v1/...`` paths (may be empty)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{what} must be a list of paths such as {IMAGE_ENDPOINT!r}")
    paths = tuple(value)
    if len(paths) > MAX_ENDPOINTS:
        raise ValueError(f"{what} holds at most {MAX_ENDPOINTS} paths")
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/v1/") or len(path) > 100:
            raise ValueError(f"{what}: {path!r} is not a path such as {IMAGE_ENDPOINT!r}")
    return paths


def endpoints_text(text: str, what: str) -> tuple[str, ...]:
    """Endpoints written as text (a flag, an environment variable): comma-separated paths,
    e.g. ``/v1/chat/completions,/v1/images/generations``."""
    return checked_endpoints([path.strip() for path in text.split(",") if path.strip()], what)


def checked_metadata(value: Any) -> dict[str, str] | None:
    """A batch's ``metadata``: at most 16 string values, keys of 64 and values of 512
    characters at most. Raises Refused (400)."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_METADATA:
        raise invalid(f"metadata must be an object of at most {MAX_METADATA} strings")
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY or not isinstance(item, str):
            raise invalid(
                f"metadata: {key[:80]!r} must be a key of at most {MAX_METADATA_KEY} characters "
                f"with a string value"
            )
        if len(item) > MAX_METADATA_VALUE:
            raise invalid(f"metadata: {key!r} is over {MAX_METADATA_VALUE} characters")
    return dict(value)
