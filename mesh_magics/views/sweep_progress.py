"""What every progress view of a whole sweep holds and says: `SweepView`, a line per run
(its label, status, elapsed) and the total (done / failed / running of N), and when to
redraw. How it is drawn is its subclasses': `NullSweepView` here, the text views in
views/sweep_text.py, the widget view in views/sweep_widget.py; `views.make_sweep_view`
picks one.

The contract is `ProgressView`'s (views/base.py), keyed by run: `update(index, event)` and
`run_ended(index, status, detail)`; whoever runs it calls it from one thread.

Many runs report at once, and the limit on comm messages (the server's iopub rate limit)
is per kernel, not per run: so a view redraws from its state at most every
`min_interval` seconds (a clock, not the caller, decides), and then only what changed.
A sweep of thousands of runs shows `LINES` of them (`shown_runs`: those running, those
that failed, the latest to end) and counts the rest, so a redraw stays a few kilobytes.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..events import StreamEvent
from ..redact import one_line
from .base import describe, failure_line

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

MARKS = {"pending": "·", "running": "…", "done": "✓", "failed": "✗", "cancelled": "⊘"}
LINES = 40  # runs a view lists; a bigger sweep's others are counted
DETAIL_CHARS = 100  # a run's status or error, on its line
LABEL_CHARS = 80


class SweepView(ABC):
    """The runs of one sweep on screen."""

    min_interval = 1.0  # seconds between redraws, however many runs report

    def __init__(
        self, heading: str, labels: list[str], on_cancel: Callable[[], object] | None = None
    ) -> None:
        self.heading = heading
        self.labels = list(labels)
        self.on_cancel = on_cancel
        count = len(self.labels)
        self.statuses = ["pending"] * count  # pending, running, done, failed, cancelled
        self.details = [""] * count  # what a run last said, or why it failed
        self._began: list[float | None] = [None] * count  # the view's elapsed then
        self._ended: list[float | None] = [None] * count
        self._latest: deque[int] = deque(maxlen=LINES)  # the runs that ended last
        self._elapsed = 0.0
        self._clock: Callable[[], float] = time.monotonic
        self._t0: float | None = None
        self._drawn_at: float | None = None

    # -- the contract --------------------------------------------------------------------

    def start(self, place: DisplayHandle | None = None) -> None:
        """Show the view (in `place`, an output displayed earlier, when given)."""
        self._t0 = self._clock()
        self._show(place)
        self._drawn_at = self._clock()

    def update(self, index: int, event: StreamEvent) -> None:
        """Run `index` reported `event`."""
        if self.statuses[index] == "pending":
            self.statuses[index] = "running"
            self._began[index] = self.elapsed
        if self.statuses[index] == "running":
            self.details[index] = describe(event)
        self._redraw_soon()

    def run_ended(
        self, index: int, status: str, detail: str = "", *, elapsed: float | None = None
    ) -> None:
        """Run `index` ended: `done`, `failed` (`detail`: the short error) or `cancelled`;
        `elapsed`, when given, is its own time (else the view's since its first event)."""
        self.statuses[index] = status
        self.details[index] = detail
        now = self.elapsed
        if elapsed is not None:
            self._began[index] = now - elapsed
        self._ended[index] = now  # a run that ended before it said anything shows no time
        self._latest.append(index)
        self._redraw_soon()

    def tick(self, elapsed: float) -> None:
        self._elapsed = max(self._elapsed, elapsed)
        self._redraw_soon()

    def finish(self, summary: str) -> None:
        """Replace the view by the one-line `summary`."""
        self._end(summary)

    def fail(self, message: str) -> None:
        """Replace the view by a failure line."""
        self._end(failure_line(self.heading, message))

    @abstractmethod
    def _end(self, text: str) -> None:
        """Replace the view by the line `text`, for good."""

    # -- what every view shows -------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        """Seconds since start: the latest tick, or the clock if it is ahead."""
        since = self._clock() - self._t0 if self._t0 is not None else 0.0
        return max(self._elapsed, since)

    def totals(self) -> str:
        """`3 of 6 done · 1 failed · 2 running · 12 s`."""
        counts = Counter(self.statuses)
        parts = [f"{counts['done']:,} of {len(self.labels):,} done"]
        parts += [f"{counts[s]} {s}" for s in ("failed", "cancelled", "running") if counts[s]]
        return " · ".join([*parts, f"{self.elapsed:.0f} s"])

    def run_parts(self, index: int) -> tuple[str, str, str, str]:
        """A run's mark, label, status and seconds, for its line."""
        status = self.statuses[index]
        detail = one_line(self.details[index], DETAIL_CHARS)
        if status == "pending":
            said = "waiting"
        elif status == "running":
            said = detail or "started"
        elif status in ("done", "cancelled"):
            said = status  # a cancelled run's error only says it was cancelled
        else:
            said = f"{status}: {detail}" if detail else status
        began, ended = self._began[index], self._ended[index]
        if began is None:
            seconds = ""
        elif ended is None:
            seconds = f"{self.elapsed - began:.0f} s"  # whole seconds: a redraw a second
        else:
            seconds = f"{ended - began:.1f} s"
        label = one_line(self.labels[index], LABEL_CHARS)
        return MARKS.get(status, "?"), label, said, seconds

    def shown_runs(self) -> tuple[list[int], str]:
        """The runs to list, in order, and a line for the others ("" when all are listed):
        every run while there are at most `LINES`; else those running, those that failed,
        then the latest to end, `LINES` in all."""
        count = len(self.labels)
        if count <= LINES:
            return list(range(count)), ""
        running = [i for i, status in enumerate(self.statuses) if status == "running"]
        failed = [i for i, s in enumerate(self.statuses) if s in ("failed", "cancelled")]
        chosen = dict.fromkeys(running[:LINES])
        for index in [*reversed(failed), *reversed(self._latest)]:
            if len(chosen) >= LINES:
                break
            chosen.setdefault(index)
        shown = sorted(chosen)
        counts = Counter(self.statuses[i] for i in range(count) if i not in chosen)
        rest = [f"{counts[s]} {s}" for s in ("done", "failed", "cancelled", "running") if counts[s]]
        rest += [f"{counts['pending']} waiting"] if counts["pending"] else []
        return shown, f"… and {count - len(shown):,} more runs ({', '.join(rest)})"

    def run_line(self, index: int) -> str:
        mark, label, said, seconds = self.run_parts(index)
        return " · ".join(part for part in (f"{mark} {label}", said, seconds) if part)

    # -- drawing -------------------------------------------------------------------------

    def _redraw_soon(self) -> None:
        """Redraw if `min_interval` has passed since the last redraw (else a later call
        will): a burst of events costs one redraw, not one per event."""
        if self._t0 is None:
            return  # not shown yet
        now = self._clock()
        if self._drawn_at is not None and now - self._drawn_at < self.min_interval:
            return
        self._drawn_at = now
        self._draw()

    @abstractmethod
    def _show(self, place: DisplayHandle | None) -> None: ...

    @abstractmethod
    def _draw(self) -> None: ...


class NullSweepView(SweepView):
    """No progress at all (`progress="none"`)."""

    def _show(self, place: DisplayHandle | None) -> None:
        pass

    def _draw(self) -> None:
        pass

    def _end(self, text: str) -> None:
        pass


__all__ = ["NullSweepView", "SweepView"]
