"""Waiting on a run from a thread that shows its progress: a blocking cell, `generate()`.

The run's events cross a queue to the waiting thread, which alone touches the view, so
outputs land in the cell that is running. A `KeyboardInterrupt` (a kernel interrupt)
while waiting cancels the run, waits for it to close its connection, and raises
`RunInterrupted`, still a `KeyboardInterrupt` (the magic turns it into a one-line
`GenerationCancelled`): nothing is left running.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import BlockingOnTheEngine, GenerationCancelled, RunInterrupted
from ..events import StreamEvent
from .loop import engine

if TYPE_CHECKING:
    from ..results.result import ImageResult
    from ..views.base import ProgressView
    from .generation import Generation

T = TypeVar("T")

POLL_SECONDS = 0.1
UNWIND_SECONDS = 2.0  # a cancelled run closes its connection well within this


class QueueWatcher:
    """Passes a run's events to the thread that waits on it."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[StreamEvent | None] = queue.SimpleQueue()

    def event(self, event: StreamEvent) -> None:
        self.queue.put(event)

    def tick(self, elapsed: float) -> None:
        pass  # the waiting thread keeps its own time

    def ended(self, run: Generation) -> None:
        self.queue.put(None)


def run_blocking(run: Generation, view: ProgressView) -> ImageResult:
    """Start `run` and follow it on `view` until it settles; its result, or its error."""
    _not_on_the_engine()
    watcher = QueueWatcher() if view.follows_events else None
    if watcher is not None:
        run.watch(watcher)
    view.start()
    try:
        run.start()
        if watcher is None:  # nothing to show: no event crosses to this thread, no ticker
            while not run.wait(POLL_SECONDS):
                pass
        else:
            _follow(run, watcher, view)
        result = run.result()
    except KeyboardInterrupt:
        run.cancel()
        run.wait(UNWIND_SECONDS)
        view.fail(f"cancelled after {run.elapsed:.1f} s")
        raise RunInterrupted(
            f"cancelled by an interrupt after {run.elapsed:.1f} s; the request was closed, "
            "nothing was bound"
        ) from None
    except BaseException as exc:
        run.cancel()  # a display error in this thread: the run must not go on alone
        how = "cancelled" if isinstance(exc, GenerationCancelled) else "failed"
        view.fail(f"{how} after {run.elapsed:.1f} s")
        raise
    view.finish(result.summary())
    return result


def _follow(run: Generation, watcher: QueueWatcher, view: ProgressView) -> None:
    """Show each event of `run` on `view`, ticking it between them, until the run ends."""
    while True:
        try:
            event = watcher.queue.get(timeout=POLL_SECONDS)
        except queue.Empty:
            view.tick(run.elapsed)
            continue
        if event is None:
            return
        view.update(event)


def call(coroutine: Coroutine[Any, Any, T], what: str) -> T:
    """Run `coroutine` on the engine and wait for its value; an interrupt cancels it."""
    _not_on_the_engine()
    future = engine().submit(coroutine)
    try:
        while True:
            try:
                return future.result(POLL_SECONDS)
            except concurrent.futures.TimeoutError:  # not the builtin before 3.11
                continue
    except KeyboardInterrupt:
        future.cancel()
        raise GenerationCancelled(f"{what} cancelled by an interrupt") from None


def _not_on_the_engine() -> None:
    """Waiting for a run on the engine's own thread (in a run's done-callback) would wait
    for the loop it is blocking: refuse, saying what to do instead."""
    if threading.current_thread() is engine().thread:
        raise BlockingOnTheEngine(
            "a run's callback cannot wait for another run (it would freeze every run): "
            "start it with mm.start(...), or wait for it outside the callback"
        )
