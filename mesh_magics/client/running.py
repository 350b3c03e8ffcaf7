"""How a client waits for what it started: blocking with a progress view (`Client`),
awaiting on the caller's loop (`AsyncClient`), or not at all (`start`). Every way ends in
the run lifecycle (`engine/lifecycle.py`): what was paid for is kept and shown before an
error is raised.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..engine.lifecycle import Delivery, deliver
from ..engine.sweeps import SweepFeed, run_sweep_blocking, short_error
from ..engine.wait import UNWIND_SECONDS, run_blocking
from ..errors import IncompleteResultError
from ..results.image_sweep import sweep_error
from ..views import sweep_view
from .prepare import progress_view, running_shell, show_in_notebook

if TYPE_CHECKING:
    from ..engine.generation import Generation
    from ..engine.sweeps import SweepPlan
    from ..events import StreamEvent
    from ..results.image_sweep import ImageSweep
    from ..results.result import ImageResult


# -- one run -----------------------------------------------------------------------------------


def run_in_foreground(run: Generation, progress: str) -> ImageResult:
    """Run it with a progress view and return its result; an incomplete result is kept
    and shown, then raised."""
    try:
        return run_blocking(run, progress_view(run, progress, running_shell()))
    except IncompleteResultError as exc:
        deliver(exc.result, Delivery(show=show_in_notebook), failure=exc, returns=True)
        raise


def start_run(run: Generation, progress: str) -> Generation:
    """Start it; the handle, at once. In a notebook its progress and images land in the
    running cell's output."""
    shell = running_shell()
    if shell is not None:
        from ..views.in_cell import start_in_cell

        return start_in_cell(run, shell, progress)
    return run.start()


async def await_run(run: Generation, progress: str) -> ImageResult:
    """Start it and await its result on the caller's loop, which stays free; cancelling
    the awaiting task cancels the run."""
    view = progress_view(run, progress, running_shell())
    run.watch(_LoopWatcher(asyncio.get_running_loop(), view.update, view.tick))
    view.start()
    run.start()
    try:
        result = await asyncio.wrap_future(run.future)
    except asyncio.CancelledError:
        run.cancel()
        view.fail(f"cancelled after {run.elapsed:.1f} s")
        raise
    except IncompleteResultError as exc:
        view.fail(f"failed after {run.elapsed:.1f} s")
        deliver(exc.result, Delivery(show=show_in_notebook), failure=exc, returns=True)
        raise
    except BaseException:
        view.fail(f"failed after {run.elapsed:.1f} s")
        raise
    view.finish(result.summary())
    return result


# -- a sweep -----------------------------------------------------------------------------------


def run_sweep(
    sweep: ImageSweep, plan: SweepPlan, progress: str, *, raise_errors: bool
) -> ImageSweep:
    """Run every run of it with one progress view; the sweep, shown before `SweepError`
    is raised for its failed runs (unless not `raise_errors`)."""
    shell = running_shell()
    run_sweep_blocking(sweep, plan, sweep_view(sweep, progress, shell, plan.images))
    return _delivered(sweep, raise_errors)


def start_sweep(sweep: ImageSweep, plan: SweepPlan, progress: str) -> ImageSweep:
    """Start its runs; the sweep at once, as a handle. In a notebook its progress and
    grid land in the running cell."""
    shell = running_shell()
    if shell is not None:
        from ..views.in_cell import start_sweep_in_cell

        return start_sweep_in_cell(sweep, plan, shell, progress)
    SweepFeed(sweep, plan).start()
    return sweep


async def await_sweep(
    sweep: ImageSweep, plan: SweepPlan, progress: str, *, raise_errors: bool
) -> ImageSweep:
    """Run every run of it, awaited on the caller's loop with one progress view;
    cancelling the awaiting task cancels every run."""
    loop = asyncio.get_running_loop()
    view = sweep_view(sweep, progress, running_shell(), plan.images)
    ends = _LoopWatcher(loop, lambda event: None, lambda elapsed: None)
    left = len(sweep)
    all_ended = asyncio.Event()

    def on_loop(index: int, status: str, error: str, ran_for: float | None) -> None:
        nonlocal left
        view.run_ended(index, status, error, elapsed=ran_for)
        left -= 1
        if not left:
            all_ended.set()

    def ended(index: int) -> None:  # on the engine's thread: the view is the loop's
        run = sweep.runs[index]
        ends.call(on_loop, index, run.status, short_error(run.error), run.ran_for)

    feed = SweepFeed(
        sweep,
        plan,
        prepare=lambda index, run: run.watch(
            _LoopWatcher(loop, functools.partial(view.update, index), view.tick)
        ),
        ended=ended,
    )
    view.start()
    feed.start()
    try:
        await all_ended.wait()
    except asyncio.CancelledError:
        feed.cancel()
        await asyncio.to_thread(feed.wait, UNWIND_SECONDS)
        view.fail("cancelled")
        raise
    view.finish(sweep.summary())
    return _delivered(sweep, raise_errors)


def _delivered(sweep: ImageSweep, raise_errors: bool) -> ImageSweep:
    failure = sweep_error(sweep) if sweep.failed and raise_errors else None
    deliver(sweep, Delivery(show=show_in_notebook), failure=failure, returns=True)
    return sweep


class _LoopWatcher:
    """Hands a run's events to the awaiting loop, in the awaiting code's context (so a
    notebook cell's view updates land in that cell)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        event: Callable[[StreamEvent], object],
        tick: Callable[[float], object],
    ) -> None:
        self._loop = loop
        self._event = event
        self._tick = tick
        self._context = contextvars.copy_context()

    def call(self, callback: Callable[..., object], *args: Any) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args, context=self._context)

    def event(self, event: StreamEvent) -> None:
        self.call(self._event, event)

    def tick(self, elapsed: float) -> None:
        self.call(self._tick, elapsed)

    def ended(self, run: Generation) -> None:
        pass  # the awaiting code ends the view itself, on its own loop
