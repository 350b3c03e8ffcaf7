"""Batches: a sweep's runs sent through the provider's Batch API, at half the price, done at
the server within 24 hours, and kept track of across kernel restarts.

    b = mm.batch(["A fox", "An owl"], seed=[1, 2])     # or: %%meshimage --batch -o b
    b.id, b.status                                     # "batch_...", "in_progress"
    sweep = b.result()                                 # waits; an ImageSweep, as mm.sweep gives

The runs are planned exactly as a sweep's (`plan_sweep`, the cell's `prepare_sweep`), so
their bodies and store keys are a sweep's. Then, in `open_batch`:

1. the key of the batch (`store.batch_key` of its runs' keys) is looked up in the store:
   a batch of the same requests that has not failed, expired or been cancelled is
   *attached to*, and nothing is sent (the same cell, run again after a restart);
2. else the runs go up as one JSONL (`/v1/files`), a batch is made of it (`/v1/batches`),
   and its id is kept in the store at once, before anything else can fail.

`result()` waits (polling, less often as time goes by), then reads the output and error
files line by line (each line capped, as a response is), and every run's images go to the
store as they are read, with the provenance of any run (its body, model, request id).
A batch collected once is read back from the store, not downloaded again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    BatchError,
    GenerationCancelled,
    MeshError,
    NotFoundError,
    OptionError,
    StoreError,
    WaitInterrupted,
)
from ..redact import clip, one_line, redact
from ..results.row_table import RowTable
from ..wording import plural

if TYPE_CHECKING:
    from ..engine.generation import Generation
    from ..http.batches import BatchInfo
    from ..http.client import MeshClient
    from ..results.image_sweep import ImageSweep
    from ..settings import ClientSettings
    from ..store import BatchRecord, Store

T = TypeVar("T")

FIRST_POLL = 0.1  # seconds between the first status checks; each wait is 1.5x the last
LONGEST_POLL = 15.0
_GONE = ("failed", "expired", "cancelled")  # a batch of these is not attached to again
_ENDED = ("completed", *_GONE)
_NOT_RUN = {
    "cancelled": "not run: the batch was cancelled first",
    "expired": "not run: the batch expired first",
    "failed": "not run: the batch failed",
}
_DELIVERY = ("stream", "partial_images")  # a batch's lines are plain requests


class ImageBatch:
    """A batch at the server: its `id`, its `status` (asked afresh until it has ended),
    `wait()`, `cancel()`, and `result()`, the `ImageSweep` of its runs.

    `attached`: this handle found the batch in the store (the same requests, sent
    before) rather than submitting it."""

    def __init__(
        self,
        sweep: ImageSweep,
        generations: list[Generation],
        info: BatchInfo,
        record: BatchRecord | None,
        *,
        attached: bool,
    ) -> None:
        self._sweep = sweep
        self._runs = generations
        self._info = info
        self._record = record  # None: the store is off, nothing outlives the kernel
        self.attached = attached
        self._collected: ImageSweep | None = None

    # -- what the server says ------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._info.id

    @property
    def status(self) -> str:
        """`validating`, `in_progress`, `finalizing`, `cancelling`, or once ended
        `completed`, `failed`, `expired`, `cancelled`; asked of the server until then."""
        if not self._info.ended:
            self.refresh()
        return self._info.status

    @property
    def counts(self) -> tuple[int, int, int]:
        """(completed, failed, total) runs, as last seen."""
        info = self._info
        return info.completed, info.failed, info.total or len(self._runs)

    def done(self) -> bool:
        """Whether the batch has ended (completed, failed, expired or cancelled)."""
        return self.status in _ENDED

    def refresh(self) -> ImageBatch:
        """Ask the server for the batch's status now."""
        self._seen(self._call(_retriever(self.id), "checking"))
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the batch has ended, at most `timeout` seconds; True if it has. An
        interrupt stops the wait, not the batch (`WaitInterrupted`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = FIRST_POLL
        try:
            while not self.done():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                time.sleep(pause if left is None else min(pause, left))
                pause = min(pause * 1.5, LONGEST_POLL)
        except (KeyboardInterrupt, GenerationCancelled):  # in a pause, or while asking
            raise WaitInterrupted(
                f"stopped waiting; batch {self.id} goes on at the server ({self._progress()}): "
                ".wait() again, or run the same cell again to attach to it"
            ) from None
        return True

    def cancel(self) -> bool:
        """Ask the server to cancel the batch; False if it had already ended. Runs that
        finished before it stopped are still in `result()`."""
        from ..http import batches

        if self.done():
            return False
        self._seen(self._call(lambda client: batches.cancel(client, self.id), "cancelling"))
        return True

    def result(self, timeout: float | None = None) -> ImageSweep:
        """The batch's runs as an `ImageSweep`, once it has ended (waiting up to `timeout`
        seconds): every image stored, as a sweep's are. Raises `SweepError` when some runs
        failed (the sweep is its `.sweep`), `BatchError` when no run could finish (the
        batch failed, expired or was cancelled first), `TimeoutError` when it is still
        going."""
        from ..results.image_sweep import sweep_error

        if self._collected is None:
            if not self.wait(timeout):
                raise TimeoutError(
                    f"batch {self.id} is still {self._info.status} after {timeout:g} s "
                    f"({self._progress()}); wait longer, or .cancel() it"
                )
            self._collected = self._collect()
        sweep = self._collected
        if not sweep.results and self._info.status in _GONE:
            raise BatchError(self._why_nothing())
        if sweep.failed:
            raise sweep_error(sweep)
        return sweep

    # -- collecting ------------------------------------------------------------------------

    def _collect(self) -> ImageSweep:
        """Fill the sweep: from the store when this batch was collected before and its
        runs are all still there, else from the server's output and error files."""
        record = self._record
        if record is not None and record.collected and self._from_store():
            return self._sweep
        if self._info.output_file_id is None and self._info.error_file_id is None:
            self.refresh()  # attached from the store, whose runs have gone since: ask anew
        self._call(self._read_files, "reading the results of")
        why = _NOT_RUN.get(self._info.status, "not run: the batch's output has no line for it")
        for run in self._sweep.runs:
            if run.result is None and run.error is None:
                run.error = GenerationCancelled(why)
        if record is not None:
            record.collected = True
            self._keep()
        return self._sweep

    def _from_store(self) -> bool:
        store = self._store
        if store is None:
            return False
        found = [
            store.get(run.store_key, preview_max_px=run.preview_max_px, keep_bytes=False)
            for run in self._runs
        ]
        if any(result is None for result in found):
            return False  # evicted since: read the files again
        for sweep_run, result in zip(self._sweep.runs, found, strict=True):
            sweep_run.result = result
        return True

    async def _read_files(self, client: MeshClient) -> None:
        from ..http import batches
        from ..http.limits import Cap, response_cap

        caps = [response_cap(run.request, run.settings.max_response_mb) for run in self._runs]
        line_cap = Cap(max(cap.limit for cap in caps), caps[0].basis)
        total = Cap(sum(cap.limit for cap in caps), f"the answers of {plural(len(caps), 'run')}")
        by_id = {custom_id(i): i for i in range(len(self._runs))}
        for file_id in (self._info.output_file_id, self._info.error_file_id):
            if file_id is None:
                continue
            async for line in batches.lines(client, file_id, line_cap=line_cap, cap=total):
                await self._take(client, line, by_id, line_cap)

    async def _take(
        self, client: MeshClient, line: bytes, by_id: Mapping[str, int], cap: Any
    ) -> None:
        """One line of an output or error file: its run's result or error."""
        from ..http.envelopes import error_from_envelope

        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            return  # not a line of ours; the runs it leaves out end as not run
        named = item.get("custom_id") if isinstance(item, dict) else None
        index = by_id.get(named) if isinstance(named, str) else None
        if index is None:
            return
        sweep_run, run = self._sweep.runs[index], self._runs[index]
        response = item.get("response")
        response = response if isinstance(response, dict) else {}
        status = response.get("status_code")
        request_id = response.get("request_id")
        request_id = (
            clip(redact(request_id), 100) if isinstance(request_id, str) else custom_id(index)
        )
        body = response.get("body")
        if status != 200 or not isinstance(body, dict) or "error" in body:
            error_body = body if isinstance(body, dict) else {"error": item.get("error")}
            code = status if isinstance(status, int) and status >= 400 else 500
            sweep_run.error = error_from_envelope(error_body, code, request_id, None)
            return
        try:
            completed = await client.completed_from(body, run.request, request_id, cap)
        except MeshError as exc:  # this run's answer is unreadable: it alone fails
            sweep_run.error = exc
            return
        sweep_run.result = await asyncio.to_thread(self._stored, run, completed)

    def _stored(self, run: Generation, completed: Any) -> Any:
        from ..engine.usage import session_usage
        from ..results.result import ImageResult

        result = ImageResult(
            completed.images,
            request=body_of(run),  # as its line carried it
            model=completed.model or run.request.model,
            request_id=completed.request_id,
            usage=completed.usage,
            elapsed=0.0,
            preview_max_px=run.preview_max_px,
            created=_number(completed.extra.get("created")),
            lineage=run.store,
        )
        if run.store is not None:  # billed images are kept before anything shows them
            # Once on disk, the result reads its images from the store (flat memory).
            run.store.put(result, api_host=run.api_host, cell=run.cell, keep_bytes=False)
        session_usage().record(result, run.api_host, replayed=False)  # %mesh usage counts it
        return result

    # -- plumbing --------------------------------------------------------------------------

    @property
    def _store(self) -> Store | None:
        return self._runs[0].store

    @property
    def _settings(self) -> ClientSettings:
        return self._runs[0].settings

    def _call(self, job: Callable[[MeshClient], Awaitable[T]], doing: str) -> T:
        """Run `job` with a client of its own, on the engine; wait for it."""
        return run_with_client(self._settings, job, f"{doing} batch {self.id}")

    def _seen(self, info: BatchInfo) -> None:
        self._info = info
        self._keep()

    def _keep(self) -> None:
        record, store = self._record, self._store
        if record is None or store is None:
            return
        record.status = self._info.status
        record.completed, record.failed = self._info.completed, self._info.failed
        store.update_batch(record)

    def _progress(self) -> str:
        done, failed, total = self.counts
        failed_part = f", {failed} failed" if failed else ""
        return f"{done} of {plural(total, 'run')} done{failed_part}"

    def _why_nothing(self) -> str:
        said = "; ".join(self._info.errors) or "the server gave no reason"
        return f"batch {self.id} {self._info.status} before any run finished ({said})"

    def summary(self) -> str:
        host = self._runs[0].api_host
        how = "attached to" if self.attached else "submitted"
        return (
            f"batch {self.id} · {plural(len(self._runs), 'run')} · {self._info.status} · "
            f"{self._progress()} · {how} at {host}"
        )

    def __repr__(self) -> str:
        return f"<ImageBatch {self.summary()}>"

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]:
        if self._collected is not None:
            return self._collected._repr_mimebundle_(include, exclude)
        import html

        hint = ".wait(), .result() (waits), .cancel(); %mesh batches lists them"
        text = f"{self.summary()}\n{hint}"
        return {
            "text/plain": text,
            "text/html": f"<div><b>{html.escape(self.summary())}</b><br>"
            f"<small>{html.escape(hint)}</small></div>",
        }


# -- submitting, or attaching ---------------------------------------------------------------


def open_batch(
    sweep: ImageSweep,
    generations: list[Generation],
    *,
    note: Callable[[str], object],
    metadata: Mapping[str, str] | None = None,
) -> ImageBatch:
    """The batch of these runs: the one in the store if the same requests went up before
    and it has not failed, expired or been cancelled (`note` says so), else a new one."""
    from ..store import BatchRecord, batch_key

    _check_batchable(generations)
    store = generations[0].store
    key = batch_key([run.store_key for run in generations])
    record = store.batch_of_key(key) if store is not None else None
    if record is not None and record.status not in _GONE:
        attached = _attach(sweep, generations, record, note)
        if attached is not None:
            return attached
    info = _submit(generations, metadata or {})
    made = None
    if store is not None:  # its id, kept at once: the batch outlives this kernel
        made = BatchRecord(
            id=info.id,
            key=key,
            api_host=generations[0].api_host,
            created=time.time(),
            runs=len(generations),
            images=sum(run.request.n for run in generations),
            prompt=clip(generations[0].request.body.get("prompt", ""), 200),
            cell=generations[0].cell,
            status=info.status,
        )
        try:
            store.add_batch(made)
        except StoreError as exc:  # the batch is made (and paid for): its handle still comes
            note(f"batch {info.id} is not remembered by the store ({exc}); keep its id")
            made = None
    return ImageBatch(sweep, generations, info, made, attached=False)


def _attach(
    sweep: ImageSweep,
    generations: list[Generation],
    record: BatchRecord,
    note: Callable[[str], object],
) -> ImageBatch | None:
    """A handle on the stored batch, asked of the server; None when the server no longer
    knows it (then a new one is submitted)."""
    from ..http.batches import BatchInfo

    if record.collected:  # its runs are in the store: nothing to ask the server
        counts = (record.runs, record.completed, record.failed)
        info = BatchInfo(record.id, record.status, *counts, None, None, record.created, ())
        note(f"attached to batch {record.id}: its results are in the store")
        return ImageBatch(sweep, generations, info, record, attached=True)
    try:
        info = run_with_client(
            generations[0].settings, _retriever(record.id), f"checking batch {record.id}"
        )
    except NotFoundError:
        note(f"batch {record.id} is no longer known to {record.api_host}; submitting anew")
        return None
    when = datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M")
    note(
        f"attached to batch {record.id} (submitted {when}, {info.status}): the same "
        "requests, so nothing new was sent"
    )
    handle = ImageBatch(sweep, generations, info, record, attached=True)
    handle._seen(info)
    return handle


def _submit(generations: list[Generation], metadata: Mapping[str, str]) -> BatchInfo:
    from ..http import batches

    lines = batches.jsonl([(custom_id(i), body_of(run)) for i, run in enumerate(generations)])

    async def submit(client: MeshClient) -> BatchInfo:
        file_id = await batches.upload(client, lines, "meshimage-batch.jsonl")
        return await batches.create(client, file_id, batches.IMAGES_ENDPOINT, metadata)

    return run_with_client(generations[0].settings, submit, "submitting the batch")


def _check_batchable(generations: Sequence[Generation]) -> None:
    if any(run.request.inputs for run in generations):
        raise OptionError(
            "--batch sends generations; an edit (--edit) cannot go in a batch (its images "
            "would ride in the JSONL): drop --batch to run it as a sweep"
        )


def body_of(run: Generation) -> dict[str, Any]:
    """A run's body as a batch line carries it: a plain request (no stream)."""
    return {name: value for name, value in run.request.body.items() if name not in _DELIVERY}


def custom_id(index: int) -> str:
    return f"run-{index + 1}"


def run_with_client(
    settings: ClientSettings, job: Callable[[MeshClient], Awaitable[T]], doing: str
) -> T:
    """`job` with a `MeshClient` of its own, on the engine; an interrupt cancels it."""
    from ..engine.wait import call
    from ..http.client import MeshClient

    async def with_client() -> T:
        async with MeshClient(settings) as client:
            return await job(client)

    return call(with_client(), doing)


def plan_text(sweep: ImageSweep, first: list[Generation], images: int) -> str:
    """What a dry run of a batch says: where it would go and its first lines (`first`:
    the first runs, made; `images`: every run's)."""
    from ..http.batches import jsonl
    from ..redact import display_url

    target = display_url(first[0].settings.base_url)
    head = (
        f"dry run, nothing sent: a batch of {plural(len(sweep), 'run')}, "
        f"{plural(images, 'image')}, to {target}/v1/files then /v1/batches; its JSONL:"
    )
    lines = jsonl([(custom_id(i), body_of(run)) for i, run in enumerate(first)])
    shown = lines.decode().splitlines()
    if len(sweep) > len(first):
        shown.append(f"… and {len(sweep) - len(first):,} more")
    return "\n".join([head, *(one_line(line, 400) for line in shown)])


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# -- the list ---------------------------------------------------------------------------------


class BatchList(RowTable["BatchRecord"]):
    """Batches the store remembers, newest first: id, status (as last seen), runs, when
    and where they went, and their first prompt."""

    columns = ("batch", "status", "runs", "submitted", "at", "prompt")
    empty = "no batches in the store"

    def rows(self) -> list[tuple[str, ...]]:
        return [
            (
                record.id,
                record.status,
                f"{record.completed}/{record.runs} done"
                + (f", {record.failed} failed" if record.failed else ""),
                datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M"),
                record.api_host,
                one_line(record.prompt, 50),
            )
            for record in self
        ]


def _retriever(batch_id: str) -> Callable[[MeshClient], Awaitable[BatchInfo]]:
    from ..http import batches as api

    return lambda client: api.retrieve(client, batch_id)


def batches(
    limit: int = 20, *, refresh: bool = False, config: Mapping[str, Any] | None = None
) -> BatchList:
    """The batches the store remembers, newest first, with their status as last seen;
    `refresh=True` asks the API for those still going (those sent to the API the settings
    name), and keeps what it says."""
    from ..settings import client_settings, configured
    from ..store import open_store

    config = configured() if config is None else config
    store = open_store(config)
    if store is None:
        return BatchList()
    found = BatchList(store.batches(limit))
    going = [record for record in found if record.status not in _ENDED]
    if refresh and going:
        settings = client_settings(config, None)
        for record in going:
            if record.api_host != settings.api_host:
                continue
            info = run_with_client(settings, _retriever(record.id), f"checking batch {record.id}")
            record.status, record.completed, record.failed = (
                info.status, info.completed, info.failed
            )  # fmt: skip
            store.update_batch(record)
    return found


__all__ = ["BatchList", "ImageBatch", "batches", "body_of", "custom_id", "open_batch", "plan_text"]
