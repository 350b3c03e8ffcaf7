"""Run one async job on a worker thread with its own event loop, from synchronous code.

Why a thread (docs/design.md): inside ipykernel an asyncio loop is already running, so the cell
cannot `asyncio.run` anything; `nest_asyncio` re-enters the running loop, which broke on
widget clicks and left requests running after an interrupt. Instead the job gets a fresh
loop on a worker thread and hands its events over a queue; the calling (main) thread does
all display work, so outputs land in the cell that ran it, and it alone sees the
`KeyboardInterrupt` of a kernel interrupt, which cancels the job's task: the `async with`
blocks unwind and the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Generic, TypeVar

from ..errors import GenerationCancelled, GenerationTimeout

T = TypeVar("T")
E = TypeVar("E")

_POLL_SECONDS = 0.1
_JOIN_SECONDS = 2.0


class Job(Generic[E]):
    """Drive `make_events()` (an async generator factory) to its end on a worker thread.

    `run()` blocks the calling thread, calling `on_event` for every event and `on_tick`
    about ten times a second, and returns the list of events; it raises what the job
    raised, `GenerationCancelled` on interrupt or when `cancel_requested` is set, and
    `GenerationTimeout` past `timeout` seconds.
    """

    def __init__(
        self,
        make_events: Callable[[], AsyncGenerator[E, None]],
        *,
        timeout: float | None = None,
        name: str = "meshimage",
    ) -> None:
        self._make_events = make_events
        self._timeout = timeout
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self.started_at = 0.0

    def run(
        self,
        on_event: Callable[[E], None],
        on_tick: Callable[[float], None] | None = None,
        cancel_requested: threading.Event | None = None,
    ) -> list[E]:
        self.started_at = time.monotonic()
        self._thread.start()
        events: list[E] = []
        try:
            while True:
                try:
                    kind, item = self._queue.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if cancel_requested is not None and cancel_requested.is_set():
                        raise GenerationCancelled(
                            self._cancel_message("by the Cancel button")
                        ) from None
                    if on_tick is not None:
                        on_tick(self.elapsed)
                    continue
                if kind == "event":
                    events.append(item)  # type: ignore[arg-type]
                    on_event(item)  # type: ignore[arg-type]
                elif kind == "error":
                    assert isinstance(item, BaseException)
                    raise item
                elif kind == "cancelled":
                    raise GenerationCancelled(self._cancel_message("by the worker"))
                else:
                    return events
        except KeyboardInterrupt:
            self.cancel()
            raise GenerationCancelled(self._cancel_message("by a kernel interrupt")) from None
        except BaseException:  # cancelled by the button, or a display error: stop the job
            self.cancel()
            raise
        finally:
            self._thread.join(_JOIN_SECONDS)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def cancel(self) -> None:
        """Cancel the job's task from any thread; its connection closes as it unwinds."""
        self._started.wait(_JOIN_SECONDS)
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join(_JOIN_SECONDS)

    def _cancel_message(self, how: str) -> str:
        return (
            f"cancelled {how} after {self.elapsed:.1f} s; the request was closed, nothing was bound"
        )

    def _work(self) -> None:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            # Only `cancel()` cancels, and the caller has raised GenerationCancelled already;
            # passing the error on would keep the unwound frames alive with its traceback.
            self._queue.put(("cancelled", None))
        except BaseException as exc:  # reaches the main thread, which re-raises it
            self._queue.put(("error", exc))
        else:
            self._queue.put(("done", None))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._started.set()
        try:
            if self._timeout is None:
                await self._drain()
            else:
                await asyncio.wait_for(self._drain(), self._timeout)
        except asyncio.TimeoutError:
            raise GenerationTimeout(
                f"gave up after --timeout {self._timeout:g} s; "
                "the request was closed, nothing was bound"
            ) from None
        finally:
            _abort_leftover_transports(self._loop)
            self._loop = self._task = None  # IPython keeps the last error, and so this job

    async def _drain(self) -> None:
        async with aclosing(self._make_events()) as events:
            async for event in events:
                self._queue.put(("event", event))


def _abort_leftover_transports(loop: asyncio.AbstractEventLoop | None) -> None:
    """Close every connection the job's own loop still has open as the job ends.

    httpcore closes its socket on `Exception` only, so a cancel in the middle of a TLS
    handshake leaves it open until the garbage collector finds it. Each job has a loop of
    its own: nothing it opened may outlive it. (`_transports` is the selector loop's
    registry of open transports; a loop without one has nothing to do here.)
    """
    registry = getattr(loop, "_transports", None) or {}
    for transport in list(registry.values()):
        if transport is not None and not transport.is_closing():
            transport.abort()
