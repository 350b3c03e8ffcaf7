"""Sweeps: every combination of prompts and swept values is one run, and the runs share
the engine's loop, at most `concurrency` in flight per API host (no thread per run).

A 429 pauses every run to its host (`http/hosts.py`). The runs are `Generation`s, so each
is stored, replayed and cancelled like a single cell's run; a sweep is their sum:

    runs = plan(prompts, swept)                  # [(prompt, {"model": ..., "seed": ...}), ...]
    sweep = run_sweep_blocking(sweep, plan, view)   # blocking, like run_blocking

A sweep of thousands of runs costs what a few do: its `SweepPlan` makes each run's
`Generation` only as the run starts (a dry run makes none), `SweepFeed` keeps at most a
window of them started and not ended, and a run that has ended leaves only its outcome on
its `SweepRun` (its result reads its images from the store, `Generation.keep_bytes`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import GenerationCancelled, RunInterrupted
from ..events import StreamEvent
from ..schema import SWEEPABLE
from ..wording import plural
from .loop import engine
from .wait import POLL_SECONDS, UNWIND_SECONDS

if TYPE_CHECKING:
    from ..results.image_sweep import ImageSweep, SweepRun
    from ..settings import ClientSettings
    from ..views.sweep_progress import SweepView
    from .generation import Generation

log = logging.getLogger("mesh_magics")


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


def _nothing() -> None:
    pass


@dataclass
class SweepPlan:
    """A sweep ready to run, with every run checked and nothing made: `make(i)` makes run
    i's `Generation` when it starts. What a dry run and the image guard read is here."""

    make: Callable[[int], Generation]
    settings: ClientSettings  # where every run goes
    images: int  # every run's -n, summed
    images_by_model: dict[str, int]  # the same, per model (a dry run's estimated cost)
    window: int  # runs started and not ended at once, at most (a few past --concurrency)
    images_of: Callable[[SweepRun], int]  # one run's -n
    finish: Callable[[], object] = _nothing  # once every run has ended: the pool closes
    note: Callable[[str], object] | None = None  # how a run's warning is said (else warned)

    def made(self, count: int) -> list[Generation]:
        """The first `count` runs' `Generation`s, made now: a batch sends every request at
        once (a batch's dry run shows the first few)."""
        return [self.make(index) for index in range(count)]


class SweepFeed:
    """Runs a sweep's plan: starts its runs in order, at most `plan.window` started and
    not yet ended, and settles each on its `SweepRun` as it ends, so only those few hold
    a `Generation`. It is the sweep's `runner` (`done`, `wait`, `cancel`).

    `prepare(i, run)` readies run i before it starts (its watchers, where its output
    goes); `ended(i)` is told on the engine's thread once run i has ended and is settled,
    also for a run cancelled before it started. The first runs start on the caller's
    thread (`start()`), each later one on the engine's as an earlier one ends."""

    def __init__(
        self,
        sweep: ImageSweep,
        plan: SweepPlan,
        *,
        prepare: Callable[[int, Generation], object] | None = None,
        ended: Callable[[int], object] | None = None,
    ) -> None:
        self._sweep = sweep
        self._plan: SweepPlan | None = plan  # each let go once every run has ended
        self._prepare = prepare
        self._ended = ended
        self._lock = threading.Lock()  # runs start on the caller's thread and the engine's
        self._next = 0  # the next run to start
        self._left = len(sweep)  # runs not ended yet
        self._live: dict[int, Generation] = {}
        self._cancelled = False
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.future.set_running_or_notify_cancel()  # settled by the feed alone
        sweep.runner = self

    def start(self, *, after: float = 0.0) -> SweepFeed:
        """Start the first runs (`after` seconds of grace first, as `Generation.start`)."""
        window = self._plan.window if self._plan is not None else 0
        if not self._left:
            self._finish()
        for _ in range(window):
            if not self._start_next(after):
                break
        return self

    def done(self) -> bool:
        return self.future.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every run has ended; True if they have."""
        done, _ = concurrent.futures.wait([self.future], timeout)
        return bool(done)

    def cancel(self) -> bool:
        """Stop the runs that are going and start no other; False if all had ended."""
        with self._lock:
            if self.done():
                return False
            self._cancelled = True
            unstarted = list(range(self._next, len(self._sweep)))
            self._next = len(self._sweep)
            # Made but not started (an interrupt between the two): it ends as one not made.
            pending = [i for i, run in self._live.items() if run.status == "pending"]
            for index in pending:
                del self._live[index]
            unstarted += pending
            live = list(self._live.values())
        for run in live:
            run.cancel()
        if unstarted:
            engine().call_soon(self._cancel_unstarted, unstarted)
        return True

    def running(self) -> list[Generation]:
        """The runs started and not ended yet."""
        with self._lock:
            return list(self._live.values())

    def _start_next(self, after: float = 0.0) -> bool:
        """Make and start the next run; False when there is none to start."""
        with self._lock:
            plan = self._plan
            if self._cancelled or self._next >= len(self._sweep) or plan is None:
                return False
            index = self._next
            self._next += 1
        try:
            run = plan.make(index)
            if plan.note is not None:
                run.note = plan.note
            if self._prepare is not None:
                self._prepare(index, run)
            run.watch(_Settles(self, index))
            run.say_ignored()  # may wait for the model list: never under the lock
        except BaseException as exc:  # it fails alone; an interrupt goes on up
            engine().call_soon(self._end_unstarted, index, exc)
            if not isinstance(exc, Exception):
                raise
            return True
        with self._lock:
            if not self._cancelled:
                self._live[index] = run
                self._sweep.runs[index].run = run
                run.start(after=after, say_ignored=False)
                return True
        engine().call_soon(self._end_unstarted, index, _not_started())
        return False

    def _run_ended(self, index: int, run: Generation) -> None:
        """On the engine's thread: run `index` has settled."""
        with self._lock:
            self._live.pop(index, None)
        settle_run(self._sweep.runs[index], run)
        self._count_end(index)

    def _cancel_unstarted(self, indexes: list[int]) -> None:
        for index in indexes:
            self._end_unstarted(index, _not_started())

    def _end_unstarted(self, index: int, error: BaseException) -> None:
        """On the engine's thread: run `index` ends without having run."""
        sweep_run = self._sweep.runs[index]
        sweep_run.run, sweep_run.error = None, error
        self._count_end(index)

    def _count_end(self, index: int) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish()  # before `ended` hears of the last run: the sweep is done then
        ended = self._ended
        if ended is not None:
            try:
                ended(index)
            except Exception:  # a display failing must not stop the sweep
                log.exception("mesh_magics: showing the end of a sweep's run failed")
        if last:  # the sweep keeps its runs; what ran them (views, pool) can go
            self._prepare = self._ended = None
        else:
            self._start_next()

    def _finish(self) -> None:
        with self._lock:
            plan, self._plan = self._plan, None
        try:
            if plan is not None:
                plan.finish()
        finally:
            if not self.future.done():
                self.future.set_result(None)


def _not_started() -> GenerationCancelled:
    return GenerationCancelled("cancelled before it was sent; no images")


class _Settles:
    """The feed's watcher of one run: at its end, settle it and start the next."""

    hears_time = False

    def __init__(self, feed: SweepFeed, index: int) -> None:
        self._feed = feed
        self._index = index

    def event(self, event: StreamEvent) -> None:
        pass

    def tick(self, elapsed: float) -> None:
        pass

    def ended(self, run: Generation) -> None:
        self._feed._run_ended(self._index, run)


class _IndexedWatcher:
    """Passes one run's events, tagged with its index, to the thread that waits."""

    hears_time = False  # that thread keeps its own time

    def __init__(self, index: int, events: queue.SimpleQueue[tuple[int, StreamEvent | None]]):
        self._index = index
        self._events = events

    def event(self, event: StreamEvent) -> None:
        self._events.put((self._index, event))

    def tick(self, elapsed: float) -> None:
        pass

    def ended(self, run: Generation) -> None:
        pass  # the feed says so, once the run is settled


def settle_run(sweep_run: SweepRun, generation: Generation) -> None:
    """Copy a finished generation's outcome onto its place in the sweep, and let the
    generation go: what the sweep keeps of a run is its result, its error and its span."""
    error = generation.exception(0)
    sweep_run.error = error
    if error is None:
        sweep_run.result = generation.result(0)
    else:
        sweep_run.result = getattr(error, "result", None)  # images of an incomplete run
        if sweep_run.result is None:
            sweep_run.sent = generation.request.body
    if generation.started_at is not None:
        sweep_run.span = (generation.started_at, generation.ended_at or time.monotonic())
    sweep_run.run = None


def short_error(error: BaseException | None) -> str:
    from ..results.image_sweep import short_error as shortened

    return "" if error is None else shortened(error)


def run_sweep_blocking(sweep: ImageSweep, plan: SweepPlan, view: SweepView) -> ImageSweep:
    """Run the sweep's `plan` and follow its runs on `view` from this thread until all
    have ended.

    Failed runs do not raise here: the caller delivers the sweep, then raises `SweepError`
    (`lifecycle.py`). An interrupt cancels every run that is left, waits for them to close
    their connections, and raises `RunInterrupted` (still a `KeyboardInterrupt`) carrying
    the sweep as `.partial`: the runs that had finished keep their results (they are in
    the store), the others are marked cancelled."""
    events: queue.SimpleQueue[tuple[int, StreamEvent | None]] = queue.SimpleQueue()
    feed = SweepFeed(
        sweep,
        plan,
        prepare=lambda index, run: run.watch(_IndexedWatcher(index, events)),
        ended=lambda index: events.put((index, None)),
    )
    started = time.monotonic()
    view.start()
    left = len(sweep)
    try:
        feed.start()
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
            ended = sweep.runs[index]
            view.run_ended(index, ended.status, short_error(ended.error), elapsed=ended.ran_for)
    except KeyboardInterrupt:
        elapsed = time.monotonic() - started
        feed.cancel()
        feed.wait(UNWIND_SECONDS)
        finished = len(sweep.results)
        view.fail(f"cancelled after {elapsed:.1f} s")
        raise RunInterrupted(
            f"cancelled by an interrupt after {elapsed:.1f} s; {finished} of "
            f"{plural(len(sweep), 'run')} had finished and are kept, the others were "
            "closed",
            partial=sweep,
        ) from None
    except BaseException:
        feed.cancel()
        view.fail(f"failed after {time.monotonic() - started:.1f} s")
        raise
    view.finish(sweep.summary())
    return sweep
