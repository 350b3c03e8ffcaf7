"""Background runs in a notebook: `%%meshimage --bg`, `mm.start(...)` and
background sweeps.

The cell returns at once. The run's progress view, and then its summary and images, stay
in the output of the cell that started it, whatever cell runs meanwhile. How
(docs/design.md, "Background runs"):

- everything that is displayed is displayed here, in the cell, on the main thread: a
  place for the progress view, and an empty slot that will receive the images;
- the run pins the cell's parent header on its own task with
  `shell.set_thread_parent` (a per-task ContextVar in ipykernel 7; `set_parent` would
  also move a global fallback that other threads' output follows), and from then on only
  updates: widget traits and `update_display_data` for the two display ids;
- the Cancel button works: the kernel is idle, so the click arrives;
- at its end the run follows the lifecycle (`run/lifecycle.py`): its images are stored,
  then shown in the slot, then its side effects (`--save`) run; a failure is one line in
  its own view, never a traceback in whatever cell runs then.

Where nothing could show a later update (nbclient, papermill, nbconvert, a terminal),
the runs still run concurrently, but the cell that started them waits for them at its
end (`HeldRuns`, on IPython's `post_run_cell`), so their outputs land in it and a
failure fails it: the executed notebook holds what an interactive run would show.

On Colab, which shows no output sent from another thread (colabtools#3373), a
background run says so in one line and runs in the foreground instead: the cell waits
for it, with its progress and images shown from the cell's own thread, as a cell without
`--bg` would.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..engine.jobs import jobs
from ..engine.lifecycle import Delivery, deliver, describe_failure
from ..engine.sweeps import SweepFeed, run_sweep_blocking
from ..engine.wait import UNWIND_SECONDS, run_blocking
from ..errors import GenerationCancelled, IncompleteResultError, RunInterrupted
from ..events import StreamEvent
from ..results.image_sweep import sweep_error
from ..wording import plural
from . import in_kernel, interactive_frontend, make_view, on_colab, sweep_view

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

    from ..engine.generation import Generation
    from ..engine.sweeps import SweepPlan
    from ..results.image_sweep import ImageSweep
    from .base import ProgressView
    from .sweep_progress import SweepView

CELL_GRACE = 0.02  # seconds a background run waits, so that its cell returns first
ON_COLAB = (
    "meshimage: Colab can't show a background run's progress (it drops output from other "
    "threads): running it in the foreground"
)

Effects = Sequence[Callable[[Any], object]]


def can_update_later(shell: Any) -> bool:
    """Whether the frontend that ran this cell will show updates after it ends."""
    return interactive_frontend(shell) and hasattr(shell, "set_thread_parent")


def start_in_cell(run: Generation, shell: Any, progress: str, effects: Effects = ()) -> Generation:
    """Start `run` in the background, showing it in the running cell; the handle, at once.
    `effects` run after its images are shown (`--save`). On Colab: in the foreground."""
    if on_colab():
        return _in_foreground(run, shell, progress, effects)
    live = can_update_later(shell)
    view = make_view(run.heading, progress, shell, on_cancel=run.cancel if live else None)
    place, slot = _places(shell, f"⏳ {run.heading} · starting")
    end = _RunEnd(view, slot, effects, held=None if live else held_runs(shell))
    run.scope = _scope(shell, lambda: view.start(place))
    run.watch(_CellWatcher(view, end))
    if end.held is not None:
        end.held.hold(run.cancel, end.delivered.wait)
    run.start(after=CELL_GRACE)
    jobs().add(run)
    return run


def start_sweep_in_cell(
    sweep: ImageSweep,
    plan: SweepPlan,
    shell: Any,
    progress: str,
    effects: Effects = (),
) -> ImageSweep:
    """A sweep in the background: one view for all its runs in the running cell, then
    the labelled grid in the slot below it; the sweep at once, as its handle (`status`,
    `cancel()`, `wait()`, `result()`), its runs filling in. On Colab: in the foreground."""
    if on_colab():
        return _sweep_in_foreground(sweep, plan, shell, progress, effects)
    live = can_update_later(shell)
    on_cancel = sweep.cancel if live else None
    view = sweep_view(sweep, progress, shell, plan.images, on_cancel=on_cancel)
    place, slot = _places(shell, f"⏳ sweep · {plural(len(sweep), 'run')} · starting")
    end = _SweepEnd(sweep, view, slot, effects)
    scope = _scope(shell, _Once(lambda: view.start(place)))  # the cell's, read here, once

    def prepare(index: int, run: Generation) -> None:  # as each run starts
        run.scope = scope
        run.watch(_SweepRunWatcher(index, view))
        jobs().add(run)

    feed = SweepFeed(sweep, plan, prepare=prepare, ended=end.run_ended)
    if not live:
        end.held = held_runs(shell)
        end.held.hold(sweep.cancel, end.delivered.wait)
    feed.start(after=CELL_GRACE)
    return sweep


def _in_foreground(run: Generation, shell: Any, progress: str, effects: Effects) -> Generation:
    """A background run where nothing from another thread would show (Colab): one line
    says so, then the cell waits for it, as a blocking cell does; its handle, done."""
    print(ON_COLAB, file=sys.stderr)
    show = _show_in(None)
    jobs().add(run)
    try:
        result = run_blocking(run, make_view(run.heading, progress, shell))
    except IncompleteResultError as exc:  # billed images: kept and shown, then it fails
        deliver(exc.result, Delivery(show=show, effects=effects), failure=exc)
        raise  # not reached: deliver raised `exc`
    deliver(result, Delivery(show=show, effects=effects, note=_note))
    return run


def _sweep_in_foreground(
    sweep: ImageSweep, plan: SweepPlan, shell: Any, progress: str, effects: Effects
) -> ImageSweep:
    """A background sweep where nothing from another thread would show (Colab): as
    `_in_foreground`, for every run; the sweep, done."""
    print(ON_COLAB, file=sys.stderr)
    show = _show_in(None)
    try:
        run_sweep_blocking(sweep, plan, sweep_view(sweep, progress, shell, plan.images))
    except RunInterrupted as exc:  # the runs that finished were billed: kept and shown
        kept = sweep if sweep.results else None
        deliver(kept, Delivery(show=show, effects=effects, note=_note), failure=exc)
        raise  # not reached: deliver raised `exc`
    failure = sweep_error(sweep) if sweep.failed else None
    deliver(sweep, Delivery(show=show, effects=effects, note=_note), failure=failure)
    return sweep


def _note(text: str) -> None:
    print(f"meshimage: {text}")


# -- where a run shows ----------------------------------------------------------------------


def _places(shell: Any, starting: str) -> tuple[DisplayHandle | None, DisplayHandle | None]:
    """Two outputs of the running cell, for the view and the images; in a terminal, none
    (the view prints lines, the images are shown when they come)."""
    if not in_kernel(shell):
        return None, None
    from IPython.display import display

    # Plain outputs now; the view's widgets are built by the run, in their place, so the
    # cell returns at once (a widget view costs ~20 comm messages to open).
    place = display({"text/plain": starting}, raw=True, display_id=True)
    slot = display({"text/plain": ""}, raw=True, display_id=True)
    return place, slot


def _scope(shell: Any, then: Callable[[], object]) -> Callable[[], Any]:
    """What a run enters first on the engine: the cell's output, then `then()`."""
    if not hasattr(shell, "set_thread_parent"):  # a terminal: output goes to the terminal
        return lambda: _then(then)
    parent = shell.get_parent()
    return lambda: _cell_output(shell, parent, then)


@contextlib.contextmanager
def _then(then: Callable[[], object]) -> Iterator[None]:
    then()
    yield


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


def _show_in(slot: DisplayHandle | None) -> Callable[[Any], None]:
    def show(value: Any) -> None:
        data, metadata = value._repr_mimebundle_()
        if slot is not None:
            slot.update(data, metadata=metadata, raw=True)
        else:
            from IPython.display import display

            display(data, metadata=metadata, raw=True)

    return show


# -- the end of a run -----------------------------------------------------------------------


class _RunEnd:
    """A background run's lifecycle once it has ended, on the engine's thread: its images
    shown in the slot, then its side effects; the view ends on the summary, or on one
    line saying what failed."""

    def __init__(self, view: ProgressView, slot: DisplayHandle | None, effects: Effects,
                 held: HeldRuns | None) -> None:  # fmt: skip
        self.view, self.slot, self.effects, self.held = view, slot, effects, held
        self.delivered = threading.Event()  # what a cell that waits for the run waits for

    def __call__(self, run: Generation) -> None:
        error = run.exception() if run.status != "done" else None
        value = run.result() if error is None else getattr(error, "result", None)
        try:
            deliver(value, Delivery(show=_show_in(self.slot), effects=self.effects,
                                    note=self._note), failure=error)  # fmt: skip
        except BaseException as exc:
            self.view.fail(describe_failure(exc))
            if self.held is not None:
                self.held.failed(exc)
        else:
            assert value is not None  # deliver raised the run's error otherwise
            self.view.finish(value.summary())
        finally:
            self.delivered.set()

    def _note(self, text: str) -> None:
        _note(text)


class _CellWatcher:
    """Shows a run in the cell that started it, from the engine's thread."""

    def __init__(self, view: ProgressView, end: _RunEnd) -> None:
        self._view = view
        self._end = end

    def event(self, event: StreamEvent) -> None:
        self._view.update(event)

    def tick(self, elapsed: float) -> None:
        self._view.tick(elapsed)

    def ended(self, run: Generation) -> None:
        self._end(run)


class _Once:
    def __init__(self, action: Callable[[], object]) -> None:
        self._action: Callable[[], object] | None = action

    def __call__(self) -> None:
        action, self._action = self._action, None
        if action is not None:
            action()


class _SweepEnd:
    """Counts the sweep's runs as they end (each settled by the sweep's feed); after the
    last, the sweep's lifecycle: the grid in the slot, then the side effects, then the
    summary or the failure line."""

    def __init__(self, sweep: ImageSweep, view: SweepView, slot: DisplayHandle | None,
                 effects: Effects) -> None:  # fmt: skip
        self._sweep, self._view, self._slot = sweep, view, slot
        self._effects = effects
        self._left = len(sweep)
        self.held: HeldRuns | None = None
        self.delivered = threading.Event()  # set once the sweep's lifecycle has run

    def run_ended(self, index: int) -> None:  # on the engine's thread: no lock needed
        from ..engine.sweeps import short_error

        ended = self._sweep.runs[index]
        error = short_error(ended.error)
        self._view.run_ended(index, ended.status, error, elapsed=ended.ran_for)
        self._left -= 1
        if self._left:
            return
        sweep = self._sweep
        failure = sweep_error(sweep) if sweep.failed else None
        try:
            deliver(sweep, Delivery(show=_show_in(self._slot), effects=self._effects,
                                    note=print), failure=failure)  # fmt: skip
        except BaseException as exc:
            self._view.fail(describe_failure(exc))
            if self.held is not None:
                self.held.failed(exc)
        else:
            self._view.finish(sweep.summary())
        finally:
            self.delivered.set()


class _SweepRunWatcher:
    def __init__(self, index: int, view: SweepView) -> None:
        self._index, self._view = index, view

    def event(self, event: StreamEvent) -> None:
        self._view.update(self._index, event)

    def tick(self, elapsed: float) -> None:
        self._view.tick(elapsed)

    def ended(self, run: Generation) -> None:
        pass  # the sweep's feed settles it, then tells `_SweepEnd`


# -- a cell that waits for its runs (headless) ------------------------------------------------


class HeldRuns:
    """The background runs a cell started where nothing could show them after it ends.
    At the cell's end (`post_run_cell`, still inside the execution, so outputs go to it)
    the cell waits for them; an interrupt cancels them; a run's failure fails the cell,
    as a blocking run's would."""

    def __init__(self, shell: Any) -> None:
        self._shell = shell
        self._held: list[tuple[Callable[[], object], Callable[[float | None], bool]]] = []
        self._failures: list[BaseException] = []
        shell.events.register("post_run_cell", self.at_cell_end)

    def hold(self, cancel: Callable[[], object], wait: Callable[[float | None], bool]) -> None:
        self._held.append((cancel, wait))

    def failed(self, error: BaseException) -> None:
        self._failures.append(error)  # from the engine's thread; list.append is atomic

    def at_cell_end(self, result: Any = None) -> None:
        held, self._held = self._held, []
        try:
            for _, wait in held:
                wait(None)
        except KeyboardInterrupt:
            for cancel, _ in held:
                cancel()
            for _, wait in held:
                wait(UNWIND_SECONDS)
            self._failures.insert(0, GenerationCancelled("cancelled by an interrupt"))
        failures, self._failures = self._failures, []
        if failures and result is not None and result.success:
            error = failures[0]
            result.error_in_exec = error  # the cell fails, so "Run All" stops
            self._shell.showtraceback((type(error), error, None))


_held: dict[int, HeldRuns] = {}


def held_runs(shell: Any) -> HeldRuns:
    """This shell's `HeldRuns`, made (and hooked to its cells' end) on first use."""
    if id(shell) not in _held:
        _held[id(shell)] = HeldRuns(shell)
    return _held[id(shell)]
