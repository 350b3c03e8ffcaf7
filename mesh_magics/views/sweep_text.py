"""A sweep's progress as text: one output updated in place in a kernel without widgets
(`DisplayTextSweepView`), or printed lines in a terminal or a script
(`StreamTextSweepView`: the start, each run's end, any retry, the summary; on a terminal
the totals are one line rewritten in place). What the lines say is `SweepView`'s.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from ..events import RateLimited, Retrying, StreamEvent
from .sweep_progress import SweepView

if TYPE_CHECKING:
    from IPython.display import DisplayHandle


class DisplayTextSweepView(SweepView):
    """One text output, updated in place about once a second (kernels without widgets)."""

    def _text(self) -> str:
        shown, others = self.shown_runs()
        lines = [f"⏳ {self.heading} · {self.totals()}"]
        lines += [f"  {self.run_line(i)}" for i in shown]
        lines += [f"  {others}"] if others else []
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


__all__ = ["DisplayTextSweepView", "StreamTextSweepView"]
