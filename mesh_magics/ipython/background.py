"""Background runs in a notebook: `%%meshimage --bg` and `generate(background=True)`.

The cell returns at once. The run's progress view, and then its summary and images, stay
in the output of the cell that started it, whatever cell runs meanwhile. How
(docs/design.md, "Background runs"):

- everything that is displayed is displayed here, in the cell, on the main thread: the
  progress view, and an empty slot that will receive the images;
- the run pins the cell's parent header on its own task with
  `shell.set_thread_parent` (a per-task ContextVar in ipykernel 7; `set_parent` would
  also move a global fallback that other threads' output follows), and from then on only
  updates: widget traits and `update_display_data` for the two display ids;
- the Cancel button works: the kernel is idle, so the click arrives.

Where nothing could show a later update (nbclient, papermill, nbconvert, a terminal), the
run waits before returning, so a saved notebook holds its images.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..events import StreamEvent, plural
from ..run.jobs import jobs
from ..run.wait import run_blocking
from ..views import interactive_frontend, make_view

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

    from ..results.sweep import ImageSweep
    from ..run.generation import Generation
    from ..views.base import ProgressView
    from ..views.sweep import SweepView


CELL_GRACE = 0.02  # seconds a background run waits, so that its cell returns first


def _say_foreground() -> None:
    print(
        "meshimage: running in the foreground (this frontend cannot show later updates)",
        file=sys.stderr,
    )


def can_update_later(shell: Any) -> bool:
    """Whether the frontend that ran this cell will show updates after it ends."""
    return interactive_frontend(shell) and hasattr(shell, "set_thread_parent")


def start_in_cell(run: Generation, shell: Any, progress: str) -> Generation:
    """Start `run` in the background, showing it in the running cell; the handle, at once.
    Where no later update could be shown, run it to its end first."""
    if not can_update_later(shell):
        _say_foreground()
        view = make_view(run.heading, progress, shell)
        run_blocking(run, view)
        return run
    from IPython.display import display

    parent = shell.get_parent()
    view = make_view(run.heading, progress, shell, on_cancel=run.cancel)
    # Two plain outputs now; the view's widgets are built by the run, in their place, so
    # the cell returns at once (a widget view costs ~20 comm messages to open).
    place = display({"text/plain": f"⏳ {run.heading} · starting"}, raw=True, display_id=True)
    slot = display({"text/plain": ""}, raw=True, display_id=True)
    run.scope = lambda: _cell_output(shell, parent, lambda: view.start(place))
    run.watch(_CellWatcher(view, slot))
    run.start(after=CELL_GRACE)
    jobs().add(run)
    return run


@contextlib.contextmanager
def _cell_output(shell: Any, parent: dict[str, Any], then: Callable[[], object]) -> Iterator[None]:
    """In this task only: outputs answer the cell's request. Widget messages take their
    parent from the kernel's own ContextVar, which `set_thread_parent` leaves alone; set it
    too where the kernel has one (ipykernel 7), for this task's context only. Then `then()`,
    the first thing shown from the run (its view, built in place)."""
    tokens = shell.set_thread_parent(parent)
    widget_parent = getattr(getattr(shell, "kernel", None), "_shell_parent", None)
    widget_token = widget_parent.set(parent) if isinstance(widget_parent, ContextVar) else None
    try:
        then()
        yield
    finally:
        if widget_token is not None:
            widget_parent.reset(widget_token)  # type: ignore[union-attr]
        shell.reset_thread_parent(tokens)


class _CellWatcher:
    """Shows a run in the cell that started it, from the engine's thread."""

    def __init__(self, view: ProgressView, slot: DisplayHandle | None) -> None:
        self._view = view
        self._slot = slot

    def event(self, event: StreamEvent) -> None:
        self._view.update(event)

    def tick(self, elapsed: float) -> None:
        self._view.tick(elapsed)

    def ended(self, run: Generation) -> None:
        if run.status != "done":
            error = run.exception()
            self._view.fail(f"{type(error).__name__}: {error}")
            return
        result = run.result()
        self._view.finish(result.summary())
        if self._slot is not None:
            data, metadata = result._repr_mimebundle_()
            self._slot.update(data, metadata=metadata, raw=True)


def start_sweep_in_cell(
    sweep: ImageSweep, generations: list[Generation], shell: Any, progress: str
) -> ImageSweep:
    """A sweep in the background: one view for all its runs in the running cell, then
    the labelled grid in the slot below it; the sweep at once (its runs fill in)."""
    from ..research import sweep_view
    from ..run.sweep import run_sweep_blocking, settle_run, short_error

    if not can_update_later(shell):
        _say_foreground()
        return run_sweep_blocking(
            sweep, generations, sweep_view(sweep, progress, shell, generations)
        )
    from IPython.display import display

    parent = shell.get_parent()
    view = sweep_view(
        sweep, progress, shell, generations, on_cancel=lambda: [g.cancel() for g in generations]
    )
    starting = f"⏳ sweep · {plural(len(generations), 'run')} · starting"
    place = display({"text/plain": starting}, raw=True, display_id=True)
    slot = display({"text/plain": ""}, raw=True, display_id=True)
    started = _Once(lambda: view.start(place))
    ended = _SweepEnd(sweep, generations, view, slot, settle_run, short_error)
    for index, run in enumerate(generations):
        sweep.runs[index].run = run
        run.scope = lambda: _cell_output(shell, parent, started)
        run.watch(_SweepRunWatcher(index, view, ended))
    for run in generations:
        run.start(after=CELL_GRACE)
        jobs().add(run)
    return sweep


class _Once:
    def __init__(self, action: Callable[[], object]) -> None:
        self._action: Callable[[], object] | None = action

    def __call__(self) -> None:
        action, self._action = self._action, None
        if action is not None:
            action()


class _SweepEnd:
    """Counts the sweep's runs as they end; after the last, the summary and the grid."""

    def __init__(self, sweep: ImageSweep, runs: list[Generation], view: SweepView,
                 slot: DisplayHandle | None, settle: Any, short: Any) -> None:  # fmt: skip
        self._sweep, self._runs, self._view, self._slot = sweep, runs, view, slot
        self._settle, self._short = settle, short
        self._left = len(runs)

    def run_ended(self, index: int) -> None:  # on the engine's thread: no lock needed
        run = self._runs[index]
        self._settle(self._sweep.runs[index], run)
        error = self._short(self._sweep.runs[index].error)
        self._view.run_ended(index, run.status, error, elapsed=run.elapsed)
        self._left -= 1
        if self._left == 0:
            self._view.finish(self._sweep.summary())
            if self._slot is not None:
                data, metadata = self._sweep._repr_mimebundle_()
                self._slot.update(data, metadata=metadata, raw=True)


class _SweepRunWatcher:
    def __init__(self, index: int, view: SweepView, end: _SweepEnd) -> None:
        self._index, self._view, self._end = index, view, end

    def event(self, event: StreamEvent) -> None:
        self._view.update(self._index, event)

    def tick(self, elapsed: float) -> None:
        self._view.tick(elapsed)

    def ended(self, run: Generation) -> None:
        self._end.run_ended(self._index)
