"""The Batch API on the wire: the routes of ``/v1/files`` and ``/v1/batches``, each a
request in, a ``Reply`` out, over a ``BatchService`` (``batches.py``).

``/files/`` is shared with the published images (``/files/TOKEN.png``): a path whose
next part is a file id (``file-`` and no dot, ``uploads.is_file_id``) is this API's,
any other is a published image's.

| route | methods |
|---|---|
| ``/files`` | POST: upload a batch input (multipart ``purpose=batch``, ``file``) |
| ``/files/{id}`` | GET: the file object |
| ``/files/{id}/content`` | GET: its bytes |
| ``/batches`` | POST: create; GET: list, newest first (``?limit=``, ``?after=``) |
| ``/batches/{id}`` | GET: the batch |
| ``/batches/{id}/cancel`` | POST: cancel it |
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .answers import Refused, invalid, validation_refusal
from .batches import LIST_LIMIT, MAX_LIST_LIMIT, BatchService
from .forms import Upload
from .uploads import is_file_id

FORM_ROUTE = "/files"  # the one route here that takes multipart/form-data


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json(obj: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(obj).encode())


def _parts(route: str) -> list[str]:
    return route.strip("/").split("/")


def methods_for(route: str) -> tuple[str, ...] | None:
    """The methods ROUTE answers if it is this API's, else None."""
    parts = _parts(route)
    if parts == ["files"]:
        return ("POST",)
    if parts[0] == "files" and len(parts) in (2, 3) and is_file_id(parts[1]):
        return ("GET",) if len(parts) == 2 or parts[2] == "content" else None
    if parts == ["batches"]:
        return ("GET", "POST")
    if parts[0] == "batches" and len(parts) == 2:
        return ("GET",)
    if parts[0] == "batches" and len(parts) == 3 and parts[2] == "cancel":
        return ("POST",)
    return None


def answer(
    service: BatchService,
    method: str,
    route: str,
    query: dict[str, list[str]],
    body: Any,
    upload: Upload | None,
    base_url: str,
) -> Reply:
    """The reply to a request of this API (its route and method already matched).

    BODY is the parsed JSON, UPLOAD the form of ``POST /files``; BASE_URL is where the
    client reached the server. Raises Refused for an error answer.
    """
    parts = _parts(route)
    if parts[0] == "files":
        if method == "POST":
            return _json(_upload(service, upload))
        stored = service.file(parts[1])
        if len(parts) == 3:
            return Reply(200, stored.data, "application/jsonl")
        return _json(stored.as_object())
    if len(parts) == 1:
        if method == "POST":
            return _json(service.create(body, base_url))
        return _json(service.page(_limit(query), _last(query, "after")))
    if len(parts) == 3:
        return _json(service.cancel(parts[1]))
    return _json(service.get(parts[1]))


def _upload(service: BatchService, upload: Upload | None) -> dict[str, Any]:
    if upload is None:
        raise invalid("POST /v1/files takes multipart/form-data: purpose=batch and a JSONL file")
    if upload.data is None:
        raise invalid("The form has no file part (name=file)")
    return service.upload(upload.purpose, upload.filename, upload.data)


def _last(query: dict[str, list[str]], name: str) -> str | None:
    return query.get(name, [""])[-1] or None


def _limit(query: dict[str, list[str]]) -> int:
    text = _last(query, "limit")
    if text is None:
        return LIST_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST_LIMIT:
        message = f"Input should be a whole number from 1 to {MAX_LIST_LIMIT}"
        details = [
            {"loc": ["query", "limit"], "msg": message, "type": "int_parsing", "input": text[:100]}
        ]
        raise Refused(validation_refusal(details))
    return int(text)
