"""The engine: one asyncio event loop on one daemon thread, shared by every run of the
process (blocking cells, background cells, `generate()`, `agenerate()`).

Why a thread of our own (docs/design.md): inside ipykernel an event loop already runs, and
on ipykernel 7 tasks scheduled on it stop once the cell ends; `nest_asyncio` re-enters the
running loop and broke on widget clicks. Our loop runs whatever the caller does, so a
background run keeps going while the kernel is idle, and a cell can block on a run
without blocking the run.

The thread is a daemon, so it never holds up interpreter exit, and an `atexit` hook
cancels what still runs and closes its connections first (a kernel shutdown or restart
runs atexit hooks; a non-daemon thread would be killed by SIGTERM before them).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_CLOSE_SECONDS = 2.0


class Engine:
    """The loop thread. `submit()` runs a coroutine on it and returns a future."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, started on first use (and again after `close()`)."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._start()
            assert self._loop is not None
            return self._loop

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name="mesh-magics-engine", daemon=True)
        self._loop = loop
        self._thread.start()
        ready.wait()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coroutine` as a task on the loop. It starts in an empty context: nothing of
        the calling thread (such as the running cell's output target) leaks into it."""
        loop = self.loop
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coroutine, loop)

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Call `callback(*args)` on the loop thread, from any thread."""
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to do
            self.loop.call_soon_threadsafe(callback, *args)

    def running_tasks(self) -> int:
        """How many tasks the loop has that have not finished."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return 0
        done = concurrent.futures.Future[int]()

        def count() -> None:
            done.set_result(sum(not task.done() for task in asyncio.all_tasks(loop)))

        loop.call_soon_threadsafe(count)
        return done.result(_CLOSE_SECONDS)

    def close(self) -> None:
        """Cancel every task, let them unwind (closing their connections), stop the loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or loop.is_closed() or thread is None:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=_CLOSE_SECONDS)

        with contextlib.suppress(Exception):  # closing at exit must not raise
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(_CLOSE_SECONDS + 1)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(_CLOSE_SECONDS)


_engine = Engine()


def engine() -> Engine:
    """The process-wide engine."""
    return _engine


atexit.register(_engine.close)
