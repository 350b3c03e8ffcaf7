"""MeshAPI's OpenAI-shaped Batch API, as the client speaks it (docs/protocol.md, "Batches"):

    file_id = await upload(client, jsonl, "meshimage-batch.jsonl")   # POST /v1/files
    batch = await create(client, file_id, "/v1/images/generations")  # POST /v1/batches
    batch = await retrieve(client, batch.id)                         # GET  /v1/batches/{id}
    batch = await cancel(client, batch.id)                           # POST .../cancel
    async for line in lines(client, batch.output_file_id, ...):       # GET  /v1/files/{id}/content

A batch's answers are not trusted more than a generation's: every read has a cap, a
batch object is read field by field into a `BatchInfo` (wrong types become "unknown",
ids that could not go in a URL path are refused), and every text is redacted and clipped.
Nothing here is retried: a POST that may have reached the server could have made a batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..errors import APIError, BatchError, MeshError, StreamError
from ..redact import clip, display_url, redact
from .client import MeshClient
from .limits import MIB, Cap

FILES_PATH = "/v1/files"
BATCHES_PATH = "/v1/batches"
IMAGES_ENDPOINT = "/v1/images/generations"
COMPLETION_WINDOW = "24h"  # the only one OpenAI's Batch API takes
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
STATUSES = frozenset({"validating", "in_progress", "finalizing", "cancelling"}) | TERMINAL
OBJECT_CAP = Cap(4 * MIB, "a batch object", setting=None)
LIST_CAP = Cap(16 * MIB, "a list of batches", setting=None)
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
# Statuses with which a server says it has no Batch API, or none for image bodies.
_REFUSALS = frozenset({400, 404, 405, 422, 501})


@dataclass(frozen=True)
class BatchInfo:
    """What the client reads of a batch object."""

    id: str
    status: str  # one of STATUSES, or "unknown"
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    created_at: float | None
    errors: tuple[str, ...]  # the batch's own errors (an invalid input file ...)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL


async def upload(client: MeshClient, content: bytes, filename: str) -> str:
    """Upload a batch's JSONL; the file's id."""
    try:
        answer = await client.call_json(
            "POST",
            FILES_PATH,
            what="the uploaded file",
            doing="uploading the batch's requests",
            cap=OBJECT_CAP,
            data={"purpose": "batch"},
            files={"file": (filename, content, "application/jsonl")},
        )
    except APIError as exc:
        raise _refused(client, exc, "took no batch file") from None
    file_id = _id_in(answer, "id")
    if file_id is None:
        raise StreamError("the server's answer to the upload has no usable file id")
    return file_id


async def create(
    client: MeshClient, input_file_id: str, endpoint: str, metadata: Mapping[str, str]
) -> BatchInfo:
    """Make a batch of the uploaded file's requests."""
    body = {
        "input_file_id": input_file_id,
        "endpoint": endpoint,
        "completion_window": COMPLETION_WINDOW,
        "metadata": dict(metadata),
    }
    try:
        answer = await client.call_json(
            "POST",
            BATCHES_PATH,
            what="the new batch",
            doing="creating the batch",
            cap=OBJECT_CAP,
            json=body,
        )
    except APIError as exc:
        raise _refused(client, exc, "refused an image batch") from None
    return batch_info(answer)


async def retrieve(client: MeshClient, batch_id: str) -> BatchInfo:
    answer = await client.call_json(
        "GET", _batch_path(batch_id), what="the batch", doing="asking for the batch",
        cap=OBJECT_CAP,
    )  # fmt: skip
    return batch_info(answer)


async def cancel(client: MeshClient, batch_id: str) -> BatchInfo:
    answer = await client.call_json(
        "POST", f"{_batch_path(batch_id)}/cancel", what="the cancelled batch",
        doing="cancelling the batch", cap=OBJECT_CAP,
    )  # fmt: skip
    return batch_info(answer)


async def listed(client: MeshClient, limit: int) -> list[BatchInfo]:
    """The server's latest batches, newest first (its first page of `limit`)."""
    answer = await client.call_json(
        "GET", BATCHES_PATH, what="the list of batches", doing="listing batches",
        cap=LIST_CAP, params={"limit": str(limit)},
    )  # fmt: skip
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise StreamError("the server's list of batches has no data list")
    infos = []
    for item in data:
        try:
            infos.append(batch_info(item))
        except StreamError:
            continue  # one unreadable entry does not hide the others
    return infos


def lines(
    client: MeshClient, file_id: str, *, line_cap: Cap, cap: Cap
) -> AsyncGenerator[bytes, None]:
    """The lines of a batch's output or error file, as they arrive."""
    return client.call_lines(
        f"{FILES_PATH}/{quote(file_id, safe='')}/content",
        what="the batch's results",
        doing="reading the batch's results",
        line_cap=line_cap,
        cap=cap,
    )


def batch_info(answer: Any) -> BatchInfo:
    """A batch object, read field by field: wrong types read as unknown or absent."""
    if not isinstance(answer, dict):
        raise StreamError("the server's batch object is not an object")
    batch_id = _id_in(answer, "id")
    if batch_id is None:
        raise StreamError("the server's batch object has no usable id")
    status = answer.get("status")
    counts = answer.get("request_counts")
    counts = counts if isinstance(counts, dict) else {}
    created = answer.get("created_at")
    return BatchInfo(
        id=batch_id,
        status=status if status in STATUSES else "unknown",
        total=_count(counts.get("total")),
        completed=_count(counts.get("completed")),
        failed=_count(counts.get("failed")),
        output_file_id=_id_in(answer, "output_file_id"),
        error_file_id=_id_in(answer, "error_file_id"),
        created_at=float(created) if isinstance(created, int | float) and created >= 0 else None,
        errors=_errors_of(answer.get("errors")),
    )


def jsonl(requests: list[tuple[str, dict[str, Any]]], endpoint: str = IMAGES_ENDPOINT) -> bytes:
    """The batch input file: one `{"custom_id", "method", "url", "body"}` line a request."""
    return b"".join(
        json.dumps(
            {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        + b"\n"
        for custom_id, body in requests
    )


# -- helpers ------------------------------------------------------------------------------


def _refused(client: MeshClient, error: APIError, what: str) -> MeshError:
    """A server without a Batch API (or one that batches chat only) says so in one line."""
    if error.status not in _REFUSALS:
        return error
    return BatchError(
        f"{display_url(client.base_url)} {what} (HTTP {error.status}: {error.message}); "
        "MeshAPI may batch chat requests only: drop --batch to run the same runs as a sweep"
    )


def _batch_path(batch_id: str) -> str:
    return f"{BATCHES_PATH}/{quote(batch_id, safe='')}"


def _id_in(answer: Any, name: str) -> str | None:
    value = answer.get(name) if isinstance(answer, dict) else None
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _errors_of(value: Any) -> tuple[str, ...]:
    """`errors: {"data": [{"message", "line"}...]}` as short lines (at most five)."""
    data = value.get("data") if isinstance(value, dict) else None
    if not isinstance(data, list):
        return ()
    said = []
    for item in data[:5]:
        if isinstance(item, dict) and isinstance(item.get("message"), str):
            line = item.get("line")
            where = f"line {line}: " if isinstance(line, int) else ""
            said.append(clip(redact(where + item["message"]), 200))
    return tuple(said)


__all__ = [
    "BATCHES_PATH",
    "FILES_PATH",
    "IMAGES_ENDPOINT",
    "TERMINAL",
    "BatchInfo",
    "batch_info",
    "cancel",
    "create",
    "jsonl",
    "lines",
    "listed",
    "retrieve",
    "upload",
]
