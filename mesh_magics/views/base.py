"""The progress view's contract: it starts, follows `events`, ticks with the elapsed
time, and ends by replacing itself with a one-line summary (`finish`) or a failure line
(`fail`). It knows nothing of HTTP or threads: whoever runs it calls it from one thread.

`on_cancel`, when given, is what a Cancel control calls; a view shows such a control only
when it has one (a blocking cell cannot receive a click: docs/design.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from ..events import (
    Completed,
    PartialImage,
    RateLimited,
    Retrying,
    StatusChanged,
    StreamEvent,
)
from ..wording import plural


def describe(event: StreamEvent) -> str:
    """The status line for an event, as a person would say it."""
    if isinstance(event, StatusChanged):
        return event.status
    if isinstance(event, Retrying):
        return f"{event.reason}; retrying in {event.delay:.1f} s (attempt {event.attempt})"
    if isinstance(event, RateLimited):
        return f"rate limited by {event.host}, retrying in {event.delay:.0f} s"
    if isinstance(event, PartialImage):
        return f"preview {event.index + 1} received"
    if isinstance(event, Completed):
        return f"received {plural(len(event.images), 'image')}"
    return ""


def failure_line(heading: str, message: str) -> str:
    """What a view of a run that failed ends as."""
    return f"✗ {heading} · {message}"


class ProgressView(ABC):
    """One running generation on screen."""

    # False: it shows no event, so a blocking run need not pass it any (engine/wait.py).
    follows_events = True

    def __init__(self, heading: str, on_cancel: Callable[[], object] | None = None) -> None:
        self.heading = heading
        self.status = "connecting"
        self.on_cancel = on_cancel

    @abstractmethod
    def start(self, handle: Any = None) -> None:
        """Show the view: as a new output, or in place of `handle`'s output (a display
        handle shown earlier, e.g. by a cell that has since ended)."""

    def update(self, event: StreamEvent) -> None:
        self.status = describe(event)
        self._show_status(event)

    @abstractmethod
    def _show_status(self, event: StreamEvent) -> None: ...

    @abstractmethod
    def tick(self, elapsed: float) -> None: ...

    def finish(self, summary: str) -> None:
        """Replace the view by the one-line `summary`."""
        self._end(summary)

    def fail(self, message: str) -> None:
        """Replace the view by a failure line."""
        self._end(failure_line(self.heading, message))

    @abstractmethod
    def _end(self, text: str) -> None:
        """Replace the view by the line `text`, for good."""


class NullView(ProgressView):
    """No progress at all (`progress="none"`)."""

    follows_events = False

    def start(self, handle: Any = None) -> None:
        pass

    def _show_status(self, event: StreamEvent) -> None:
        pass

    def tick(self, elapsed: float) -> None:
        pass

    def _end(self, text: str) -> None:
        pass
