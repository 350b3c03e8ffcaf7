"""Sweeps: every combination of prompts and swept values is one run, and the runs share
the engine's loop, at most `concurrency` in flight per API host (no thread per run).

A 429 pauses every run to its host (`http/hosts.py`). The runs are `Generation`s, so each
is stored, replayed and cancelled like a single cell's run; a sweep is their sum:

    runs = plan(prompts, swept)                  # [(prompt, {"model": ..., "seed": ...}), ...]
    sweep = run_sweep_blocking(sweep, generations, view)   # blocking, like run_blocking
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import RunInterrupted
from ..events import StreamEvent
from ..schema import SWEEPABLE
from ..wording import plural
from .wait import POLL_SECONDS, UNWIND_SECONDS

if TYPE_CHECKING:
    from ..results.image_sweep import ImageSweep, SweepRun
    from ..views.sweep_progress import SweepView
    from .generation import Generation


def plan(prompts: Sequence[str], swept: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every (prompt, values) combination: prompt by prompt, then the swept values in
    `SWEEPABLE`, each list in the order given."""
    names = [name for name in SWEEPABLE if name in swept]
    combinations = list(itertools.product(*(swept[name] for name in names)))
    return [
        (prompt, dict(zip(names, combo, strict=True)))
        for prompt in prompts
        for combo in combinations
    ]


def in_flight_limit(limit: int) -> Callable[[], contextlib.AbstractAsyncContextManager[object]]:
    """What a sweep's runs hold while their request is in flight: at most `limit` at once
    (`--concurrency`; a sweep's runs all go to one API host)."""
    semaphore = asyncio.Semaphore(limit)
    return lambda: semaphore


class _IndexedWatcher:
    """Passes one run's events, tagged with its index, to the thread that waits."""

    def __init__(self, index: int, events: queue.SimpleQueue[tuple[int, StreamEvent | None]]):
        self._index = index
        self._events = events

    def event(self, event: StreamEvent) -> None:
        self._events.put((self._index, event))

    def tick(self, elapsed: float) -> None:
        pass

    def ended(self, run: Generation) -> None:
        self._events.put((self._index, None))


def settle_run(sweep_run: SweepRun, generation: Generation) -> None:
    """Copy a finished generation's outcome onto its place in the sweep."""
    error = generation.exception(0)
    sweep_run.error = error
    if error is None:
        sweep_run.result = generation.result(0)
    else:
        sweep_run.result = getattr(error, "result", None)  # images of an incomplete run


def short_error(error: BaseException | None) -> str:
    from ..results.image_sweep import short_error as shortened

    return "" if error is None else shortened(error)


def run_sweep_blocking(
    sweep: ImageSweep, generations: list[Generation], view: SweepView
) -> ImageSweep:
    """Start every run and follow them on `view` from this thread until all have ended.

    Failed runs do not raise here: the caller delivers the sweep, then raises `SweepError`
    (`lifecycle.py`). An interrupt cancels every run that is left, waits for them to close
    their connections, and raises `RunInterrupted` (still a `KeyboardInterrupt`) carrying
    the sweep as `.partial`: the runs that had finished keep their results (they are in
    the store), the others are marked cancelled."""
    events: queue.SimpleQueue[tuple[int, StreamEvent | None]] = queue.SimpleQueue()
    for index, generation in enumerate(generations):
        generation.watch(_IndexedWatcher(index, events))
        sweep.runs[index].run = generation
    started = time.monotonic()
    view.start()
    left = len(generations)
    try:
        for generation in generations:
            generation.start()
        while left:
            try:
                index, event = events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                view.tick(time.monotonic() - started)
                continue
            if event is not None:
                view.update(index, event)
                continue
            left -= 1
            generation = generations[index]
            settle_run(sweep.runs[index], generation)
            view.run_ended(
                index,
                generation.status,
                short_error(sweep.runs[index].error),
                elapsed=generation.elapsed,
            )
    except KeyboardInterrupt:
        elapsed = time.monotonic() - started
        for generation in generations:
            generation.cancel()
        for generation in generations:
            generation.wait(UNWIND_SECONDS)
        for sweep_run, generation in zip(sweep.runs, generations, strict=True):
            if generation.done():
                settle_run(sweep_run, generation)
        finished = len(sweep.results)
        view.fail(f"cancelled after {elapsed:.1f} s")
        raise RunInterrupted(
            f"cancelled by an interrupt after {elapsed:.1f} s; {finished} of "
            f"{plural(len(generations), 'run')} had finished and are kept, the others were "
            "closed",
            partial=sweep,
        ) from None
    except BaseException:
        for generation in generations:
            generation.cancel()
        view.fail(f"failed after {time.monotonic() - started:.1f} s")
        raise
    view.finish(sweep.summary())
    return sweep
