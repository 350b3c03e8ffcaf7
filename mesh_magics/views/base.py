"""What the user sees while a generation runs: a widget view, or plain text.

The magic calls a view from the main thread only (outputs then land in the running cell).
A view starts, follows `events`, ticks with the elapsed time, and ends by replacing itself
with a one-line summary (`finish`) or a failure line (`fail`). It knows nothing of HTTP.

Which view: `MeshImageMagics.progress` = `auto` picks widgets in a Jupyter kernel when
ipywidgets imports and the running execution allows stdin, else text; `widget` and `text`
force one. There is no reliable kernel-side test for a widget frontend (docs/design.md): the
interactive frontends (JupyterLab, Notebook, VS Code) send `allow_stdin: true`, while
nbclient, nbconvert and papermill send `false` and would store the closed widgets' state
in the saved file. Text in a kernel is one output line
updated in place (so nbconvert/papermill files keep only the summary); in a terminal it is
printed lines.
"""

from __future__ import annotations

import sys
import threading
from abc import ABC, abstractmethod
from typing import Any, TextIO

from ..events import Completed, PartialImage, Retrying, StatusChanged, StreamEvent, count_images


def describe(event: StreamEvent) -> str:
    """The status line for an event, as a person would say it."""
    if isinstance(event, StatusChanged):
        return event.status
    if isinstance(event, Retrying):
        return f"{event.reason}; retrying in {event.delay:.1f} s (attempt {event.attempt})"
    if isinstance(event, PartialImage):
        return f"preview {event.index + 1} received"
    if isinstance(event, Completed):
        return f"received {count_images(len(event.images))}"
    return ""


class ProgressView(ABC):
    """One running generation on screen."""

    def __init__(self, heading: str) -> None:
        self.heading = heading
        self.status = "connecting"
        self.cancel_requested = threading.Event()

    @abstractmethod
    def start(self) -> None: ...

    def update(self, event: StreamEvent) -> None:
        self.status = describe(event)
        self._show_status(event)

    @abstractmethod
    def _show_status(self, event: StreamEvent) -> None: ...

    @abstractmethod
    def tick(self, elapsed: float) -> None: ...

    @abstractmethod
    def finish(self, summary: str) -> None: ...

    @abstractmethod
    def fail(self, message: str) -> None: ...


class DisplayTextView(ProgressView):
    """One text output line, updated in place about once a second (kernels without widgets)."""

    def start(self) -> None:
        from IPython.display import display

        self._shown_second = -1
        self._handle = display(self._bundle(self._line(0.0)), raw=True, display_id=True)

    def _line(self, elapsed: float) -> str:
        return f"⏳ {self.heading} · {self.status} · {elapsed:.0f} s"

    def _bundle(self, text: str) -> dict[str, str]:
        return {"text/plain": text}

    def _show_status(self, event: StreamEvent) -> None:
        self._shown_second = -1

    def tick(self, elapsed: float) -> None:
        if int(elapsed) != self._shown_second:
            self._shown_second = int(elapsed)
            self._handle.update(self._bundle(self._line(elapsed)), raw=True)

    def finish(self, summary: str) -> None:
        self._handle.update(self._bundle(summary), raw=True)

    def fail(self, message: str) -> None:
        self._handle.update(self._bundle(f"✗ {self.heading} · {message}"), raw=True)


_REWRITE = "\r\x1b[K"  # back to the start of the terminal line, and clear it


class StreamTextView(ProgressView):
    """Printed lines (terminal IPython, scripts): the start, each status, the end."""

    def __init__(self, heading: str, stream: TextIO | None = None) -> None:
        super().__init__(heading)
        self._stream = stream or sys.stdout
        self._live = bool(getattr(self._stream, "isatty", lambda: False)())
        self._elapsed = 0.0

    def start(self) -> None:
        self._write(f"⏳ {self.heading} · started")

    def _show_status(self, event: StreamEvent) -> None:
        self._write(f"   {self.status} · {self._elapsed:.0f} s")

    def tick(self, elapsed: float) -> None:
        if self._live and int(elapsed) != int(self._elapsed):
            self._stream.write(f"{_REWRITE}   {self.status} · {elapsed:.0f} s")
            self._stream.flush()
        self._elapsed = elapsed

    def finish(self, summary: str) -> None:
        self._write(summary)

    def fail(self, message: str) -> None:
        self._write(f"✗ {self.heading} · {message}")

    def _write(self, text: str) -> None:
        prefix = _REWRITE if self._live else ""
        self._stream.write(f"{prefix}{text}\n")
        self._stream.flush()


def make_view(heading: str, mode: str = "auto", shell: Any = None) -> ProgressView:
    in_kernel = type(shell).__name__ == "ZMQInteractiveShell"
    if mode == "auto":
        interactive = in_kernel and bool(getattr(shell.kernel, "_allow_stdin", False))
        mode = "widget" if interactive and _ipywidgets_importable() else "text"
    if mode == "widget":
        from .widget import WidgetProgressView

        return WidgetProgressView(heading)
    return DisplayTextView(heading) if in_kernel else StreamTextView(heading)


def _ipywidgets_importable() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True
