"""Text progress: one output line updated in place in a kernel without widgets, printed
lines in a terminal or a script."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ..events import StreamEvent
from .base import ProgressView


class DisplayTextView(ProgressView):
    """One text output line, updated in place about once a second (kernels without widgets)."""

    def start(self, handle: Any = None) -> None:
        from IPython.display import display

        self._shown_second = -1
        if handle is not None:
            self._handle = handle
            handle.update(self._bundle(self._line(0.0)), raw=True)
        else:
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

    def _end(self, text: str) -> None:
        self._handle.update(self._bundle(text), raw=True)


_REWRITE = "\r\x1b[K"  # back to the start of the terminal line, and clear it


class StreamTextView(ProgressView):
    """Printed lines (terminal IPython, scripts): the start, each status, the end."""

    def __init__(self, heading: str, stream: TextIO | None = None) -> None:
        super().__init__(heading)  # no Cancel control: Ctrl-C (a kernel interrupt) cancels
        self._stream = stream or sys.stdout
        self._live = bool(getattr(self._stream, "isatty", lambda: False)())
        self._elapsed = 0.0

    def start(self, handle: Any = None) -> None:
        self._write(f"⏳ {self.heading} · started")

    def _show_status(self, event: StreamEvent) -> None:
        self._write(f"   {self.status} · {self._elapsed:.0f} s")

    def tick(self, elapsed: float) -> None:
        if self._live and int(elapsed) != int(self._elapsed):
            self._stream.write(f"{_REWRITE}   {self.status} · {elapsed:.0f} s")
            self._stream.flush()
        self._elapsed = elapsed

    def _end(self, text: str) -> None:
        self._write(text)

    def _write(self, text: str) -> None:
        prefix = _REWRITE if self._live else ""
        self._stream.write(f"{prefix}{text}\n")
        self._stream.flush()
