"""Progress in marimo, its own way: a `mo.status.spinner` for a run (a sweep's bar of
runs ended, `mo.status.progress_bar`, is `MarimoSweepView` below). marimo has no
ipywidgets; its status elements are outputs of the running cell, updated in place.

marimo keeps a cell's output context per thread, so every call here must come from the
cell's own thread: a blocking run's view is driven there (`engine/wait.py`). At the end
the element goes, and the run's one-line summary stays in its place; a value the cell
returns (the result) then shows below it, or replaces it as the cell's output.

Imported only when `frontends.in_marimo()` said so: marimo is already loaded then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..events import StreamEvent
from .base import ProgressView
from .sweep_progress import SweepView

if TYPE_CHECKING:
    from IPython.display import DisplayHandle


class MarimoProgressView(ProgressView):
    """One run: a spinner titled with the run's heading; its status and seconds below."""

    def start(self, handle: Any = None) -> None:
        import marimo as mo

        self._shown_second = -1
        self._elapsed = 0.0
        self._spinner = mo.status.spinner(title=self.heading, subtitle=self._subtitle())
        self._spinner.__enter__()  # shows it: appended to the cell's output

    def _subtitle(self) -> str:
        return f"{self.status} · {self._elapsed:.0f} s"

    def _show_status(self, event: StreamEvent) -> None:
        self._spinner.spinner.update(subtitle=self._subtitle())

    def tick(self, elapsed: float) -> None:
        self._elapsed = elapsed
        if int(elapsed) != self._shown_second:  # a redraw a second is enough
            self._shown_second = int(elapsed)
            self._spinner.spinner.update(subtitle=self._subtitle())

    def _end(self, text: str) -> None:
        import marimo as mo

        self._spinner.__exit__(None, None, None)  # removes it
        mo.output.append(mo.plain_text(text))


def show_in_marimo(value: Any) -> None:
    """Show `value` in the running cell's output now (before an error is raised)."""
    import marimo as mo

    mo.output.append(value)


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
