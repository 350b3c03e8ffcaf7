"""`Generation`: the handle of one run, shaped like `concurrent.futures.Future`.

A run is a task on the engine's loop (`engine.py`). It streams the request, tells its
watchers each event and the elapsed time, builds the `ImageResult`, and settles: done,
failed or cancelled. The handle settles only once the task has unwound, so when
`cancel()` has taken effect the connection is closed.

Watchers are called on the engine's thread, inside the run's task, so a watcher that
shows output (a background cell's view) does so in the run's own context. A blocking
caller watches through a queue and does its display work on its own thread (`wait.py`).

    run = Generation(request, settings).start()
    run.done(); run.status; run.cancel(); run.result(timeout=None)
    run.add_done_callback(lambda run: ...)

Once it has finished, the handle behaves as its `ImageResult` (`len`, indexing, `save`,
display); before that, touching the images is a short error saying it is still running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import (
    GenerationCancelled,
    GenerationTimeout,
    IncompleteResultError,
    OptionError,
    StillRunning,
)
from ..events import Completed, StreamEvent
from ..wording import plural
from .lifecycle import describe
from .loop import Engine, engine
from .usage import session_usage

if TYPE_CHECKING:
    from ..http.client import SharedClient
    from ..request import ImageRequest
    from ..results.result import ImageResult
    from ..settings import ClientSettings
    from ..store import Store

TICK_SECONDS = 0.2  # how often watchers hear the elapsed time

log = logging.getLogger("mesh_magics")


class Watcher(Protocol):
    """What a run tells as it goes; every call comes from the engine's thread. A run
    whose watchers all have `hears_time = False` runs no ticker (a blocking sweep's runs:
    the thread that waits keeps its own time)."""

    def event(self, event: StreamEvent) -> None: ...

    def tick(self, elapsed: float) -> None: ...

    def ended(self, run: Generation) -> None: ...


EventSource = Callable[[], AsyncGenerator[StreamEvent, None]]


class Generation:
    """One run of one request. Start it with `start()`; watch it before that."""

    def __init__(
        self,
        request: ImageRequest,
        settings: ClientSettings,
        *,
        timeout: float | None = None,
        preview_max_px: int = 1024,
        events: EventSource | None = None,
        scope: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
        store: Store | None = None,
        replay: bool = False,
        cell: str | None = None,
        slot: Callable[[], contextlib.AbstractAsyncContextManager[object]] | None = None,
    ) -> None:
        self.request = request
        self.settings = settings
        self.timeout = timeout
        self.preview_max_px = preview_max_px
        self.status = "pending"
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._events = events or self._stream
        self.scope = scope  # entered first in the task: e.g. where a cell's output goes
        self.store = store  # every finished result is written here before it is shown
        self.replay = replay  # an identical stored request answers without the network
        self.cell = cell  # the source of the cell that asked, kept in the store
        self.slot = slot  # held while the request runs: a sweep's --concurrency
        self.client: SharedClient | None = None  # a sweep's pool; else a client of its own
        self.replayed = False
        self.note: Callable[[str], object] | None = None  # a warning's line; else warn_caller
        # False (a sweep's run): once stored, the result reads its images from the store,
        # and holds none of their bytes; with no store, or a failed write, it keeps them.
        self.keep_bytes = True
        self._watchers: list[Watcher] = []
        self._future: concurrent.futures.Future[ImageResult] = concurrent.futures.Future()
        self._future.set_running_or_notify_cancel()  # settled by the task alone
        self._task: asyncio.Task[None] | None = None
        self._engine: Engine | None = None
        self._cancel_asked = threading.Event()

    # -- running -------------------------------------------------------------------------

    def watch(self, watcher: Watcher) -> Generation:
        if self.status != "pending":
            raise RuntimeError("watch a Generation before starting it")
        self._watchers.append(watcher)
        return self

    def start(
        self, on: Engine | None = None, *, after: float = 0.0, say_ignored: bool = True
    ) -> Generation:
        """Run it on the engine's loop; returns at once. `after` seconds of grace first: a
        background cell returns meanwhile, without the run's start competing with it for
        the interpreter. `say_ignored=False`: the caller has called `say_ignored()`."""
        if self.status != "pending":
            raise RuntimeError("a Generation runs once")
        if say_ignored:
            self.say_ignored()
        self.status = "running"
        self.started_at = time.monotonic()
        self._engine = on or engine()
        self._engine.submit(self._main(after))
        return self

    def say_ignored(self) -> None:
        """A line for each field this run sets that /v1/models says its model ignores
        (`model_check.py`): said by the caller's thread, before anything is sent (on the
        engine's thread, only from a list already at hand: that thread never waits)."""
        from ..errors import warn_caller
        from .model_check import ignored_in

        if self.replay and self.store is not None and self.store.holds(self.store_key):
            return  # answered from the store: nothing is sent, so nothing is asked
        for text in ignored_in(self.settings, self.api_host, self.request, self.client):
            (self.note or warn_caller)(text)

    async def _main(self, after: float = 0.0) -> None:
        self._task = asyncio.current_task()
        if after:
            try:
                await asyncio.sleep(after)
            except asyncio.CancelledError:
                self._settle("cancelled", GenerationCancelled(self._cancel_message()))
                return
        try:
            with self.scope() if self.scope is not None else contextlib.nullcontext():
                await self._watched()
        except BaseException as exc:  # the scope itself failed (showing the view, say)
            if not self.done():
                self._settle("failed", exc)
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("mesh_magics: a run's scope failed")

    async def _watched(self) -> None:
        ticks = any(getattr(watcher, "hears_time", True) for watcher in self._watchers)
        ticker = asyncio.create_task(self._tick()) if ticks else None
        try:
            if self._cancel_asked.is_set():
                raise asyncio.CancelledError
            result = await self._run()
        except asyncio.CancelledError:
            self._settle("cancelled", GenerationCancelled(self._cancel_message()))
        except BaseException as exc:  # the run's error, for whoever waits on it
            self._settle("failed", exc)
        else:
            self._settle("done", result)
        finally:
            if ticker is not None:
                ticker.cancel()
            for watcher in self._watchers:
                try:
                    watcher.ended(self)
                except Exception:  # a display failing must not hide the others
                    log.exception("mesh_magics: showing the end of a run failed")

    async def _run(self) -> ImageResult:
        if self.store is not None and self.replay:
            stored = await asyncio.to_thread(
                self.store.get,
                self.store_key,
                preview_max_px=self.preview_max_px,
                keep_bytes=self.keep_bytes,
            )
            if stored is not None and len(stored) >= self.request.n:  # else: ask again
                self.replayed = True
                return stored
        if self.request.inputs:  # refused before an upload of megabytes, where the list says
            from .model_check import check_edit_model

            await check_edit_model(self.settings, self.api_host, self.request, self.client)
        async with self.slot() if self.slot is not None else contextlib.nullcontext():
            # Waiting for a sweep's slot is not generating: the clock and --timeout start now.
            self.started_at = time.monotonic()
            if self.timeout is None:
                return await self._generate()
            try:
                return await asyncio.wait_for(self._generate(), self.timeout)
            except asyncio.TimeoutError:
                raise GenerationTimeout(
                    f"gave up after --timeout {self.timeout:g} s; the request was closed, "
                    "nothing was bound"
                ) from None

    @property
    def api_host(self) -> str:
        """The API this run asks (`ClientSettings.api_host`)."""
        return self.settings.api_host

    @property
    def store_key(self) -> str:
        """What identifies this request in the store: its body and the API's host."""
        from ..store import request_key

        return request_key(self.request.body, self.api_host, endpoint=self.request.endpoint)

    async def _generate(self) -> ImageResult:
        from ..results.result import ImageResult

        completed: Completed | None = None
        async with aclosing(self._events()) as events:
            async for event in events:
                if isinstance(event, Completed):
                    completed = event
                for watcher in self._watchers:
                    watcher.event(event)
        if completed is None:
            raise RuntimeError("the stream ended without a Completed event")  # a bug
        result = ImageResult(
            completed.images,
            request=self.request.body,
            model=completed.model or self.request.model,
            request_id=completed.request_id,
            usage=completed.usage,
            elapsed=self.elapsed,
            preview_max_px=self.preview_max_px,
            created=_epoch(completed.extra.get("created")),
            inputs=[image.record() for image in self.request.inputs],
            lineage=self.store,
        )
        if self.store is not None:  # billed images are kept, before anything shows them
            put = asyncio.ensure_future(
                asyncio.to_thread(
                    self.store.put,
                    result,
                    api_host=self.api_host,
                    cell=self.cell,
                    keep_bytes=self.keep_bytes,
                )
            )
            try:
                await asyncio.shield(put)
            except asyncio.CancelledError:
                # The images are here and paid for: a cancel that comes now (an interrupt,
                # a sweep's Cancel) lets the write finish and the run end as done.
                await put
        if completed.undecoded:
            raise IncompleteResultError(
                f"{completed.undecoded[0]} (request {result.request_id}); the "
                f"{plural(len(result), 'image')} that decoded are kept (stored, bound and shown; "
                "also the error's .result)",
                result,
            )
        if len(result) < self.request.n:
            raise IncompleteResultError(
                f"asked for {plural(self.request.n, 'image')}, the server returned {len(result)} "
                f"(request {result.request_id}); the images that came are kept (stored, "
                "bound and shown; also the error's .result)",
                result,
            )
        return result

    def _stream(self) -> AsyncGenerator[StreamEvent, None]:
        from ..http.client import stream_generation

        if self.client is not None:
            return self.client.stream(self.request)
        return stream_generation(self.settings, self.request)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            for watcher in self._watchers:
                watcher.tick(self.elapsed)

    def _settle(self, status: str, outcome: Any) -> None:
        self.ended_at = time.monotonic()
        self.status = status
        billed = getattr(outcome, "result", None) if isinstance(outcome, BaseException) else outcome
        if billed is not None:  # an incomplete result was billed too: it counts
            session_usage().record(billed, self.api_host, replayed=self.replayed)
        if isinstance(outcome, BaseException):
            self._future.set_exception(outcome)
        else:
            self._future.set_result(outcome)

    # -- the future's face ---------------------------------------------------------------

    @property
    def future(self) -> concurrent.futures.Future[ImageResult]:
        """The `concurrent.futures.Future` that settles with the run (wrap it for asyncio)."""
        return self._future

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> bool:
        """Ask the run to stop, from any thread; False if it has already ended.

        It stops at its next await, closes its connection, then settles as cancelled."""
        if self.done():
            return False
        self._cancel_asked.set()
        if self.status == "pending":  # never started: nothing to unwind
            self.started_at = self.started_at or time.monotonic()
            self._settle("cancelled", GenerationCancelled(self._cancel_message()))
            return True
        task, eng = self._task, self._engine
        if task is not None and eng is not None:
            eng.call_soon(task.cancel)
        return True

    def cancelled(self) -> bool:
        return self.status == "cancelled"

    def result(self, timeout: float | None = None) -> ImageResult:
        """The `ImageResult`, waiting up to `timeout` seconds (None: as long as it takes);
        raises the run's error, or `TimeoutError` when it is still running."""
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:  # raised empty: say what timed out
            raise concurrent.futures.TimeoutError(
                f"the generation is still running after {timeout:g} s ({self.heading}); "
                "wait longer, or .cancel() it"
            ) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._future.exception(timeout)

    def add_done_callback(self, callback: Callable[[Generation], object]) -> None:
        """Call `callback(self)` once the run has settled (at once if it has). A callback
        that raises is said in one log line, never as a traceback in whatever cell runs
        then."""

        def call(_: object) -> None:
            try:
                callback(self)
            except Exception as exc:
                log.warning("mesh_magics: a run's done-callback failed: %s", describe(exc))

        self._future.add_done_callback(call)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run settles; True if it has."""
        done, _ = concurrent.futures.wait([self._future], timeout)
        return bool(done)

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    @property
    def heading(self) -> str:
        request = self.request
        if request.inputs:
            operation = request.body.get("operation", "edit")
            return f"{operation} of {request.inputs[0].label} · {request.model} · " + (
                plural(request.n, "image")
            )
        return f"{request.model} · {request.size} · {plural(request.n, 'image')}"

    def _cancel_message(self) -> str:
        return f"cancelled after {self.elapsed:.1f} s; the request was closed, no images"

    # -- once done, the ImageResult --------------------------------------------------------

    def _finished(self) -> ImageResult:
        if not self.done():
            raise StillRunning(
                f"this generation is still running ({self.elapsed:.0f} s); wait with "
                ".result(), or check .done()"
            )
        return self._future.result()

    def _mesh_images_(self) -> tuple[list[bytes], str | None]:
        """Its images for an edit (`inputs.ImageSource`), once it is done."""
        if not self.done():
            raise OptionError("that run is still running; wait for it (.result())")
        if self.status != "done":
            raise OptionError(f"that run {self.status}; it has no images")
        return self.result()._mesh_images_()

    def __len__(self) -> int:
        return len(self._finished())

    def __getitem__(self, index: Any) -> Any:
        return self._finished()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._finished())

    def __bool__(self) -> bool:
        return True  # a handle is a handle, even before it has images

    def __getattr__(self, name: str) -> Any:
        from ..results.result import ImageResult

        known = hasattr(ImageResult, name) or name in ImageResult.__annotations__
        if name.startswith("_") or not known:
            raise AttributeError(f"'Generation' object has no attribute {name!r}")
        return getattr(self._finished(), name)

    def __repr__(self) -> str:
        if self.status == "done":
            return repr(self._future.result())
        return f"<Generation {self.heading} · {self.status} · {self.elapsed:.1f} s>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        if self.status == "done":
            return self._future.result()._repr_mimebundle_(include, exclude)
        return {"text/plain": repr(self)}, {}


def _epoch(value: Any) -> float | None:
    """The API's `created` (epoch seconds), when it sent a plausible one."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
