"""The widget progress view: model, size, count, a moving bar, elapsed seconds, status,
partial previews, and a Cancel button where a click can arrive (else how to cancel).

Widget updates are throttled (comm messages count against the server's iopub rate limit),
and at the end the widgets are closed before the display is replaced by the summary, so a
saved notebook holds the summary text and no widget-view output (docs/design.md).
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
from IPython.display import DisplayHandle, display

from ..events import PartialImage, StreamEvent
from ..images import sniff_format
from ..marks import widget_mark
from .base import ProgressView

_BAR_STEPS_PER_SECOND = 5  # the indeterminate bar moves this often


class _ProgressBox(widgets.VBox):
    """A VBox whose text form reads well where widgets don't render (a saved file)."""

    heading = ""

    def __repr__(self) -> str:
        return f"meshimage: {self.heading} (running)"


class WidgetProgressView(ProgressView):
    def start(self, handle: Any = None) -> None:
        self._label = widgets.HTML(f"<b>{html.escape(self.heading)}</b>")
        self._bar = widgets.IntProgress(
            value=0, min=0, max=100, bar_style="info", layout=widgets.Layout(width="160px")
        )
        self._elapsed = widgets.Label("0 s")
        self._status = widgets.Label(self.status)
        self._previews = widgets.HBox([])
        self._box = _ProgressBox(
            [
                widgets.HBox([self._label, self._bar, self._elapsed, self._cancel_control()]),
                self._status,
                self._previews,
            ]
        )
        self._box.heading = self.heading
        self._shown_second = 0
        self._bar_step = -1
        if handle is None:
            handle = display(self._box, display_id=True, metadata=widget_mark())
        else:
            handle.update(self._box, metadata=widget_mark())
        assert isinstance(handle, DisplayHandle)
        self._handle = handle

    def _cancel_control(self) -> widgets.Widget:
        """A Cancel button where a click can arrive (the kernel is idle: a background run);
        else how to cancel, since a blocking cell receives no click (docs/design.md)."""
        if self.on_cancel is None:
            return widgets.HTML("<small>■ interrupt the kernel to cancel</small>")
        self._cancel = widgets.Button(
            description="Cancel", button_style="", layout=widgets.Layout(width="80px")
        )
        self._cancel.on_click(self._on_cancel)
        return self._cancel

    def _on_cancel(self, _button: widgets.Button) -> None:
        # The kernel's main thread, while the run goes on in the engine's: cancel() is safe.
        self._cancel.description = "Cancelling…"
        self._cancel.disabled = True
        if self.on_cancel is not None:
            self.on_cancel()

    def _show_status(self, event: StreamEvent) -> None:
        self._status.value = self.status
        if isinstance(event, PartialImage):
            self._show_preview(event)

    def _show_preview(self, event: PartialImage) -> None:
        fmt = sniff_format(event.data)
        if fmt is None:
            return  # a broken preview is not worth failing the generation for
        image = widgets.Image(value=event.data, format=fmt, width=128)
        children = list(self._previews.children)
        while len(children) <= event.index:
            children.append(widgets.Image(width=128))
        children[event.index] = image
        self._previews.children = tuple(children)

    def tick(self, elapsed: float) -> None:
        step = int(elapsed * _BAR_STEPS_PER_SECOND)
        if step != self._bar_step:
            self._bar_step = step
            phase = step % 20
            self._bar.value = (phase if phase <= 10 else 20 - phase) * 10
        if int(elapsed) != self._shown_second:
            self._shown_second = int(elapsed)
            self._elapsed.value = f"{int(elapsed)} s"

    def _end(self, text: str) -> None:
        close_tree(self._box)
        self._handle.update({"text/plain": text}, raw=True)


def close_tree(widget: widgets.Widget) -> None:
    """Close a widget, its children and their layout/style models (else they linger)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, widgets.Widget):
            part.close()
    widget.close()
