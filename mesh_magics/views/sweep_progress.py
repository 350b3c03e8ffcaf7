"""One progress view for a whole sweep: a line per run (its label, status, elapsed) and
the total (done / failed / running of N).

The contract is `ProgressView`'s (views/base.py), keyed by run: `update(index, event)` and
`run_ended(index, status, detail)`; whoever runs it calls it from one thread.

Many runs report at once, and the limit on comm messages (the server's iopub rate limit)
is per kernel, not per run: so a view redraws from its state at most every
`min_interval` seconds (a clock, not the caller, decides), and then only what changed.
The widget view puts every run's line in one `HTML` widget: a redraw is one message for
the lines, one for the totals, and one for the bar when a run has ended, however many
runs there are. At the end it closes its widgets, then replaces its output by the summary
line, so a saved notebook keeps text and no widget state (as views/widget.py does).
"""

from __future__ import annotations

import html
import sys
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from ..events import RateLimited, Retrying, StreamEvent
from ..redact import one_line
from ..wording import plural
from . import in_kernel, view_mode
from .base import describe, failure_line

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

    from ..engine.generation import Generation
    from ..results.image_sweep import ImageSweep

MARKS = {"pending": "·", "running": "…", "done": "✓", "failed": "✗", "cancelled": "⊘"}
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
        parts = [f"{counts['done']} of {len(self.labels)} done"]
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


class DisplayTextSweepView(SweepView):
    """One text output, updated in place about once a second (kernels without widgets)."""

    def _text(self) -> str:
        lines = [f"⏳ {self.heading} · {self.totals()}"]
        lines += [f"  {self.run_line(i)}" for i in range(len(self.labels))]
        return "\n".join(lines)

    def _show(self, place: DisplayHandle | None) -> None:
        from IPython.display import DisplayHandle, display

        self._shown = self._text()
        bundle = {"text/plain": self._shown}
        if place is not None:
            self._handle = place
            place.update(bundle, raw=True)
            return
        handle = display(bundle, raw=True, display_id=True)
        assert isinstance(handle, DisplayHandle)
        self._handle = handle

    def _draw(self) -> None:
        text = self._text()
        if text != self._shown:
            self._shown = text
            self._handle.update({"text/plain": text}, raw=True)

    def _end(self, text: str) -> None:
        self._handle.update({"text/plain": text}, raw=True)


_REWRITE = "\r\x1b[K"  # back to the start of the terminal line, and clear it


class StreamTextSweepView(SweepView):
    """Printed lines (terminal IPython, scripts): the start, each run's end, any retry, the
    summary. On a terminal the totals are one line rewritten in place."""

    def __init__(self, heading: str, labels: list[str], stream: TextIO | None = None) -> None:
        super().__init__(heading, labels)  # no Cancel control: Ctrl-C cancels
        self._stream = stream or sys.stdout
        self._live = bool(getattr(self._stream, "isatty", lambda: False)())
        self._live_text = ""

    def _show(self, place: DisplayHandle | None) -> None:
        self._write(f"⏳ {self.heading} · started")

    def update(self, index: int, event: StreamEvent) -> None:
        super().update(index, event)
        if isinstance(event, Retrying | RateLimited):  # worth a line of its own; others not
            self._write(f"   {self.run_line(index)}")

    def run_ended(
        self, index: int, status: str, detail: str = "", *, elapsed: float | None = None
    ) -> None:
        super().run_ended(index, status, detail, elapsed=elapsed)
        self._write(f"   {self.run_line(index)}")

    def _draw(self) -> None:
        if not self._live:
            return
        text = f"   {self.totals()}"
        if text != self._live_text:
            self._live_text = text
            self._stream.write(f"{_REWRITE}{text}")
            self._stream.flush()

    def _end(self, text: str) -> None:
        self._write(text)

    def _write(self, text: str) -> None:
        prefix = _REWRITE if self._live else ""
        self._live_text = ""
        self._stream.write(f"{prefix}{text}\n")
        self._stream.flush()


class WidgetSweepView(SweepView):
    """Core ipywidgets: the heading, a bar of runs ended, the totals, a Cancel button
    where a click can arrive (else how to cancel), and the runs' lines in one HTML."""

    min_interval = 0.5

    def _show(self, place: DisplayHandle | None) -> None:
        import ipywidgets as widgets
        from IPython.display import DisplayHandle, display

        from .widget import _ProgressBox

        self._bar = widgets.IntProgress(
            value=0,
            min=0,
            max=max(1, len(self.labels)),
            bar_style="info",
            layout=widgets.Layout(width="160px"),
        )
        self._totals = widgets.Label(self.totals())
        self._lines = widgets.HTML(
            self._lines_html(), layout=widgets.Layout(max_height="24em", overflow="auto")
        )
        heading = widgets.HTML(f"<b>{html.escape(self.heading)}</b>")
        self._box = _ProgressBox(
            [
                widgets.HBox([heading, self._bar, self._totals, self._cancel_control()]),
                self._lines,
            ]
        )
        self._box.heading = self.heading
        if place is not None:
            self._handle = place
            place.update(self._box)
            return
        handle = display(self._box, display_id=True)
        assert isinstance(handle, DisplayHandle)
        self._handle = handle

    def _cancel_control(self) -> Any:
        """A Cancel button where a click can arrive (a background sweep); else how to
        cancel, since a blocking cell receives no click (docs/design.md)."""
        import ipywidgets as widgets

        if self.on_cancel is None:
            return widgets.HTML("<small>■ interrupt the kernel to cancel</small>")
        self._cancel = widgets.Button(description="Cancel", layout=widgets.Layout(width="80px"))
        self._cancel.on_click(self._on_cancel)
        return self._cancel

    def _on_cancel(self, _button: Any) -> None:
        # The kernel's main thread, while the runs go on in the engine's: cancel() is safe.
        self._cancel.description = "Cancelling…"
        self._cancel.disabled = True
        if self.on_cancel is not None:
            self.on_cancel()

    def _lines_html(self) -> str:
        cell = '<td style="padding:0 8px 0 0;text-align:left;vertical-align:top">'
        rows = "".join(
            "<tr>"
            + "".join(f"{cell}{html.escape(part)}</td>" for part in self.run_parts(i))
            + "</tr>"
            for i in range(len(self.labels))
        )
        return f'<table style="border-collapse:collapse;font-size:0.9em">{rows}</table>'

    def _draw(self) -> None:
        # A trait set to its current value sends nothing, so only what changed is sent.
        ended = sum(status not in ("pending", "running") for status in self.statuses)
        self._bar.value = ended
        if "failed" in self.statuses:
            self._bar.bar_style = "warning"
        self._totals.value = self.totals()
        self._lines.value = self._lines_html()

    def _end(self, text: str) -> None:
        from .widget import close_tree

        close_tree(self._box)
        self._handle.update({"text/plain": text}, raw=True)


class MarimoSweepView(SweepView):
    """marimo: a `mo.status.progress_bar` of runs ended, with the totals (`3 of 6 done · ...`)."""

    def _show(self, place: DisplayHandle | None) -> None:
        import marimo as mo

        self._ended_shown = 0
        self._bar: Any = mo.status.progress_bar(
            total=max(1, len(self.labels)),
            title=self.heading,
            subtitle=self.totals(),
            show_rate=False,
            show_eta=False,
            remove_on_exit=True,
        )  # shown as it is made

    def _draw(self) -> None:
        ended = sum(status not in ("pending", "running") for status in self.statuses)
        self._bar.progress.update(increment=ended - self._ended_shown, subtitle=self.totals())
        self._ended_shown = ended

    def _end(self, text: str) -> None:
        import marimo as mo

        self._bar.__exit__(None, None, None)  # removes it
        mo.output.append(mo.plain_text(text))


def make_sweep_view(
    heading: str,
    labels: list[str],
    mode: str = "auto",
    shell: Any = None,
    *,
    on_cancel: Callable[[], object] | None = None,
) -> SweepView:
    """The view a sweep gets, chosen as `views.make_view` chooses a run's."""
    mode = view_mode(mode, shell)
    if mode == "none":
        return NullSweepView(heading, labels)
    if mode == "widget":
        return WidgetSweepView(heading, labels, on_cancel)
    if mode == "marimo":
        return MarimoSweepView(heading, labels)
    if in_kernel(shell):
        return DisplayTextSweepView(heading, labels)
    return StreamTextSweepView(heading, labels, sys.stdout if shell is not None else sys.stderr)


__all__ = [
    "DisplayTextSweepView",
    "MarimoSweepView",
    "NullSweepView",
    "StreamTextSweepView",
    "SweepView",
    "WidgetSweepView",
    "make_sweep_view",
]


def sweep_view(
    sweep: ImageSweep,
    progress: str,
    shell: Any,
    generations: list[Generation] | None = None,
    on_cancel: Callable[[], object] | None = None,
) -> SweepView:
    images = sum(run.request.n for run in generations or [])
    heading = f"sweep · {plural(len(sweep.runs), 'run')}"
    heading += f" · {plural(images, 'image')}" if images else ""
    labels = [f"{r.label} · {r.prompt[:40]}" for r in sweep.runs]
    return make_sweep_view(heading, labels, progress, shell, on_cancel=on_cancel)
