"""Batches (``/v1/batches``): OpenAI's Batch API, worked through on one background thread.

A batch goes ``validating`` (queued, or its lines being checked against its endpoint),
``in_progress`` (one line at a time), ``finalizing`` (its files being written) and
``completed``; or ``failed`` when a line is for another endpoint; or, when cancelled,
``cancelling`` (the line at work is dropped) and ``cancelled``. The lines done so far land
in the output file (what succeeded) and the error file (what did not), as OpenAI does.
Each line is answered as the same body posted to ``/v1/images/generations`` would be
(``batch_lines.py``). A server that stops leaves its batch at work where it was, and goes
on with it when started again.

Bounded: at most ``keep_batches`` batches are kept (the oldest finished dropped first; a
new one is refused with a 429 while as many are unfinished), at most ``max_lines``
requests a batch, and the files on a ``FileShelf`` (``uploads.py``), each at most
``max_file_bytes`` (``batch_records.py`` says how an output stops at that cap).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from . import numbers
from .answers import Refusal, Refused, invalid, not_found
from .batch_input import (
    BATCH_LINES,
    MAX_BATCH_LINES,
    BatchLine,
    InputError,
    jsonl,
    read_lines,
)
from .batch_lines import Interrupted, Worksite, answer_line
from .batch_records import (
    BATCH_ENDPOINTS,
    COMPLETION_WINDOWS,
    IMAGE_ENDPOINT,
    Batch,
    checked_endpoints,
    checked_metadata,
)
from .uploads import KEEP_FILE_BYTES, KEEP_FILES, MAX_FILE_BYTES, FileShelf, NoRoom, StoredFile

log = logging.getLogger(__name__)

KEEP_BATCHES = 100
LIST_LIMIT, MAX_LIST_LIMIT = 20, 100
MAX_ERRORS = 100  # entries of a failed batch's ``errors`` kept


class BatchService:
    """The files and batches of one server, and the thread that works through them.

    Every method may be called from any thread; ``start()`` and ``stop()`` run the worker.
    """

    def __init__(
        self,
        site: Worksite,
        *,
        latency: float = 0.0,
        endpoints: Iterable[str] = BATCH_ENDPOINTS,
        keep_batches: int = KEEP_BATCHES,
        max_lines: int = BATCH_LINES,
        keep_files: int = KEEP_FILES,
        keep_file_bytes: int = KEEP_FILE_BYTES,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self._site = site
        self._changed = threading.Condition(threading.Lock())
        self._batches: OrderedDict[str, Batch] = OrderedDict()  # oldest first
        self._shelf = FileShelf()
        self._running: Batch | None = None
        self._halt = True
        self._thread: threading.Thread | None = None
        self.latency = latency
        self.endpoints = endpoints  # kept as a tuple
        self.keep_batches = keep_batches
        self.max_lines = max_lines
        self.keep_files = keep_files
        self.keep_file_bytes = keep_file_bytes
        self.max_file_bytes = max_file_bytes

    # -- settings, checked when set ---------------------------------------------------------

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._latency = numbers.seconds(value, "batch_latency")

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self._endpoints

    @endpoints.setter
    def endpoints(self, value: Iterable[str]) -> None:
        self._endpoints = checked_endpoints(value)

    @property
    def keep_batches(self) -> int:
        return self._keep_batches

    @keep_batches.setter
    def keep_batches(self, value: int) -> None:
        self._keep_batches = numbers.count(value, "keep_batches", lo=1)

    @property
    def max_lines(self) -> int:
        return self._max_lines

    @max_lines.setter
    def max_lines(self, value: int) -> None:
        self._max_lines = numbers.count(value, "max_batch_lines", lo=1, hi=MAX_BATCH_LINES)

    @property
    def keep_files(self) -> int:
        return self._shelf.keep_files

    @keep_files.setter
    def keep_files(self, value: int) -> None:
        with self._changed:
            self._shelf.keep_files = numbers.count(value, "keep_files", lo=1)

    @property
    def keep_file_bytes(self) -> int:
        return self._shelf.keep_bytes

    @keep_file_bytes.setter
    def keep_file_bytes(self, value: int) -> None:
        with self._changed:
            self._shelf.keep_bytes = numbers.count(value, "keep_file_bytes", lo=1)

    @property
    def max_file_bytes(self) -> int:
        return self._max_file_bytes

    @max_file_bytes.setter
    def max_file_bytes(self, value: int) -> None:
        self._max_file_bytes = numbers.count(value, "max_file_bytes", lo=1)

    # -- what tests and the server read ----------------------------------------------------

    def objects(self) -> list[dict[str, Any]]:
        """Every batch kept, newest first."""
        with self._changed:
            return [batch.as_object() for batch in reversed(self._batches.values())]

    def file_objects(self) -> list[dict[str, Any]]:
        """Every file kept, oldest first."""
        with self._changed:
            return [stored.as_object() for stored in self._shelf.files()]

    def wait(
        self, batch_id: str, until: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any] | None:
        """The batch's object once UNTIL holds for it; None after TIMEOUT seconds."""
        found: dict[str, Any] | None = None

        def reached() -> bool:
            nonlocal found
            batch = self._batches.get(batch_id)
            found = None if batch is None else batch.as_object()
            return found is not None and until(found)

        with self._changed:
            return found if self._changed.wait_for(reached, timeout) else None

    def wait_idle(self, timeout: float) -> bool:
        """True once every batch kept has a final status (within TIMEOUT seconds)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: all(b.finished for b in self._batches.values()), timeout
            )

    # -- the API ----------------------------------------------------------------------

    def upload(self, purpose: Any, filename: str, data: bytes) -> dict[str, Any]:
        """``POST /v1/files``: keep a batch input, checked line by line."""
        if purpose is None:
            raise invalid("purpose is missing: 'batch' is the one kind of file this backend keeps")
        if purpose != "batch":
            shown = str(purpose)[:40]
            raise invalid(
                f"purpose must be 'batch' (the one kind this backend keeps), not {shown!r}"
            )
        self._check_size(len(data))
        try:
            requests = len(read_lines(data, self.max_lines))
        except InputError as exc:
            raise _input_refused(exc, filename) from None
        with self._changed:
            return self._keep_input(filename, data, requests).as_object()

    def file(self, file_id: str) -> StoredFile:
        with self._changed:
            stored = self._shelf.get(file_id)
        if stored is None:
            raise not_found(f"No such file: {file_id[:80]}")
        return stored

    def create(self, body: Any, base_url: str) -> dict[str, Any]:
        """``POST /v1/batches``: OpenAI's ``input_file_id`` + ``endpoint``, or the meshapi
        SDK's inline ``requests`` (each line's ``url`` then names the endpoint)."""
        if not isinstance(body, dict):
            raise invalid("The request body must be an object")
        window = body.get("completion_window") or "24h"  # the meshapi SDK may send none
        if window not in COMPLETION_WINDOWS:
            allowed = ", ".join(repr(w) for w in COMPLETION_WINDOWS)
            raise invalid(f"completion_window must be {allowed}, not {str(window)[:40]!r}")
        metadata = checked_metadata(body.get("metadata"))
        requests, file_id = body.get("requests"), body.get("input_file_id")
        if (requests is None) == (file_id is None):
            raise invalid("Give input_file_id (a file uploaded for purpose 'batch') or requests")
        endpoint = body.get("endpoint")
        if requests is not None:
            if not isinstance(requests, list) or not requests:
                raise invalid("requests must be a list of at least one request")
            if len(requests) > self.max_lines:
                raise invalid(
                    f"{len(requests):,} requests; this backend batches at most {self.max_lines:,}"
                )
            first = requests[0]
            if endpoint is None and isinstance(first, dict):
                endpoint = first.get("url")
        if not isinstance(endpoint, str):
            raise invalid(f"endpoint is required, e.g. {IMAGE_ENDPOINT!r}")
        if endpoint not in self.endpoints:
            batched = ", ".join(self.endpoints) or "nothing"
            raise invalid(
                f"Batches are not available for {endpoint[:100]}; this server batches: {batched}"
            )
        inline: tuple[bytes, int] | None = None
        if requests is not None:
            data = jsonl(requests)
            self._check_size(len(data))
            try:
                inline = data, len(read_lines(data, self.max_lines))
            except InputError as exc:
                raise _input_refused(exc, "requests") from None
        with self._changed:
            if inline is None:
                stored = self._input_file(file_id)
                self._make_room()
            else:
                self._make_room()
                stored = self._keep_input("requests.jsonl", *inline)
            batch = Batch(
                id="batch_" + secrets.token_hex(12),
                endpoint=endpoint,
                input_file_id=stored.id,
                completion_window=window,
                metadata=metadata,
                created_at=int(time.time()),
                total=stored.requests,
                base_url=base_url,
            )
            self._batches[batch.id] = batch
            self._changed.notify_all()
            return batch.as_object()

    def get(self, batch_id: str) -> dict[str, Any]:
        with self._changed:
            return self._batch(batch_id).as_object()

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Stop a batch. A queued one is cancelled at once; the one at work turns
        ``cancelling``, and ``cancelled`` once its line at work is dropped."""
        with self._changed:
            batch = self._batch(batch_id)
            if batch.finished:
                message = (
                    f"Batch {batch.id} is {batch.status}: only an unfinished one can be cancelled"
                )
                raise Refused(Refusal(409, "bad_request", message))
            if batch.status != "cancelling":
                batch.enter("cancelling")
                if batch is not self._running:
                    self._finish(batch, "cancelled")
                self._changed.notify_all()
            return batch.as_object()

    def page(self, limit: int, after: str | None) -> dict[str, Any]:
        """``GET /v1/batches``: newest first, LIMIT of them after the batch AFTER."""
        with self._changed:
            newest = list(reversed(self._batches.values()))
            ids = [batch.id for batch in newest]
            if after is not None and after not in ids:
                raise not_found(f"No such batch to list after: {after[:80]}")
            start = 0 if after is None else ids.index(after) + 1
            data = [batch.as_object() for batch in newest[start : start + limit]]
            return {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": start + limit < len(newest),
            }

    # -- the worker -------------------------------------------------------------------

    def start(self, name: str = "mesh-local-batches") -> None:
        """Run the worker on a daemon thread called NAME; a no-op when it runs."""
        with self._changed:
            if self._thread is not None:
                return
            self._halt = False
            self._thread = threading.Thread(target=self._work, name=name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker: the line at work is dropped, and done again on the next start."""
        with self._changed:
            self._halt = True
            self._changed.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._halt or self._next() is not None)
                if self._halt:
                    return
                batch = self._next()
                assert batch is not None
                self._running = batch
            try:
                self._run(batch)
            except Interrupted:
                pass
            except Exception:
                log.exception("mesh local: bug while running batch %s", batch.id)
                with self._changed:
                    batch.errors = [{"code": "internal_error", "message": "The batch failed"}]
                    self._finish(batch, "failed")
            finally:
                with self._changed:
                    self._running = None

    def _next(self) -> Batch | None:
        """The oldest batch still to be worked on."""
        unfinished = ("validating", "in_progress", "cancelling")
        return next((b for b in self._batches.values() if b.status in unfinished), None)

    def _run(self, batch: Batch) -> None:
        with self._changed:
            stored = self._shelf.get(batch.input_file_id)  # pinned while the batch is unfinished
            assert stored is not None
        lines = read_lines(stored.data, MAX_BATCH_LINES)  # known good: it was read on upload
        with self._changed:
            if batch.status == "validating":
                self._validate(batch, lines)
        for line in lines[batch.done :]:
            with self._changed:
                if self._halt:
                    raise Interrupted
                if batch.status != "in_progress":
                    break
            try:
                status, request_id, body = answer_line(
                    line, self._site, self.latency, batch.base_url, lambda s: self._spend(batch, s)
                )
            except Interrupted:
                if self._halt:
                    raise
                break  # cancelled: the line at work is dropped
            with self._changed:
                batch.record(line, status, request_id, body, self.max_file_bytes)
                self._changed.notify_all()
        with self._changed:
            if batch.status == "in_progress":
                batch.enter("finalizing")
                self._changed.notify_all()
        with self._changed:
            if batch.status in ("finalizing", "cancelling"):
                self._finish(batch, "completed" if batch.status == "finalizing" else "cancelled")

    def _validate(self, batch: Batch, lines: list[BatchLine]) -> None:
        """Every line must be for the batch's endpoint (and the file within the line cap)."""
        errors = [
            {
                "code": "invalid_url",
                "line": line.number,
                "message": f"url {line.url!r} is not the batch's endpoint {batch.endpoint}",
                "param": "url",
            }
            for line in lines
            if line.url != batch.endpoint
        ]
        if len(lines) > self.max_lines:
            message = f"{len(lines):,} requests; this backend batches at most {self.max_lines:,}"
            errors.insert(0, {"code": "too_many_requests", "line": None, "message": message})
        if errors:
            batch.errors = errors[:MAX_ERRORS]
            self._finish(batch, "failed")
        else:
            batch.enter("in_progress")
        self._changed.notify_all()

    def _spend(self, batch: Batch, seconds: float | None) -> None:
        """Wait SECONDS (None: until interrupted); raise Interrupted on a cancel or a stop."""
        with self._changed:
            if self._changed.wait_for(lambda: self._halt or batch.status != "in_progress", seconds):
                raise Interrupted

    def _finish(self, batch: Batch, status: str) -> None:
        """Write the batch's files (what it has done) and give it its final STATUS."""
        for attr, data, kind in (
            ("output_file_id", batch.output, "output"),
            ("error_file_id", batch.failures, "error"),
        ):
            if data:
                name = f"{batch.id}_{kind}.jsonl"
                stored = self._shelf.put(
                    "batch_output", name, bytes(data), self._pinned(), force=True
                )
                setattr(batch, attr, stored.id)
        batch.output, batch.failures = bytearray(), bytearray()
        batch.enter(status)
        self._changed.notify_all()

    # -- bounds -------------------------------------------------------------------------

    def _batch(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise not_found(f"No such batch: {batch_id[:80]}")
        return batch

    def _pinned(self) -> set[str]:
        """The input files that unfinished batches have still to read."""
        return {b.input_file_id for b in self._batches.values() if not b.finished}

    def _input_file(self, file_id: Any) -> StoredFile:
        stored = self._shelf.get(str(file_id))
        if stored is None:
            raise not_found(f"No such file: {str(file_id)[:80]}")
        if stored.purpose != "batch":
            raise invalid(f"File {stored.id} is a {stored.purpose} file, not a batch input")
        return stored

    def _check_size(self, size: int) -> None:
        cap = min(self.max_file_bytes, self.keep_file_bytes)
        if size > cap:
            message = f"The file is {size:,} bytes; this backend takes files of at most {cap:,}"
            raise Refused(Refusal(413, "request_too_large", message))

    def _keep_input(self, filename: str, data: bytes, requests: int) -> StoredFile:
        try:
            return self._shelf.put(
                "batch", filename, data, self._pinned(), force=False, requests=requests
            )
        except NoRoom:
            raise _no_room(
                f"The files of unfinished batches fill the {self.keep_files} files or "
                f"{self.keep_file_bytes:,} bytes this backend keeps; wait for them to finish"
            ) from None

    def _make_room(self) -> None:
        """Drop the oldest finished batches so that a new one fits; refuse it if none is."""
        finished = [b for b in self._batches.values() if b.finished]
        excess = len(self._batches) + 1 - self.keep_batches
        if excess > len(finished):
            raise _no_room(
                f"{len(self._batches) - len(finished)} batches are unfinished; this backend "
                f"keeps at most {self.keep_batches}: wait for one to finish"
            )
        for batch in finished[: max(0, excess)]:
            del self._batches[batch.id]


def _input_refused(exc: InputError, what: str) -> Refused:
    extra = {} if exc.line is None else {"line": exc.line}
    return Refused(Refusal(400, "invalid_request", f"{what[:100]}: {exc}", extra))


def _no_room(message: str) -> Refused:
    """Full of unfinished work: a 429, to be tried again once some of it has finished."""
    return Refused(Refusal(429, "rate_limit_exceeded", message, {"retry_after_seconds": 1}),
                   {"Retry-After": "1"})  # fmt: skip
