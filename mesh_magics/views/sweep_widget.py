"""A sweep's progress as core ipywidgets, as views/widget.py is a run's: the heading, a
bar of runs ended, the totals, a Cancel button where a click can arrive, and every run's
line in one `HTML` widget, so a redraw is one message for the lines, one for the totals
and one for the bar, however many runs there are. At the end it closes its widgets, then
replaces its output by the summary line, so a saved notebook keeps text and no widget
state. ipywidgets is imported when the view is shown, not before.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from .sweep_progress import SweepView

if TYPE_CHECKING:
    from IPython.display import DisplayHandle


class WidgetSweepView(SweepView):
    """Core ipywidgets: the heading, a bar of runs ended, the totals, a Cancel button
    where a click can arrive (else how to cancel), and the runs' lines in one HTML."""

    min_interval = 0.5

    def _show(self, place: DisplayHandle | None) -> None:
        import ipywidgets as widgets
        from IPython.display import DisplayHandle, display

        from ..marks import widget_mark
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
            place.update(self._box, metadata=widget_mark())
            return
        handle = display(self._box, display_id=True, metadata=widget_mark())
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
        shown, others = self.shown_runs()
        rows = "".join(
            "<tr>"
            + "".join(f"{cell}{html.escape(part)}</td>" for part in self.run_parts(i))
            + "</tr>"
            for i in shown
        )
        if others:
            rows += f'<tr><td colspan="4" style="opacity:0.7">{html.escape(others)}</td></tr>'
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


__all__ = ["WidgetSweepView"]
