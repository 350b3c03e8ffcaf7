"""`History`: what `%mesh history` shows and `mm.history()` returns, the latest
stored generations (newest first) as `ImageResult`s whose bytes load when touched.

It shows itself as a static table (stars and tags as text), which is what a saved
notebook keeps; where clicks can arrive, the function that made it hands in `widget_view`
(views/history_widget.py, above this module), and the widget shows beside the table."""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..redact import one_line
from .result import ImageResult

THUMB_PX = 96  # a thumbnail per generation: its first image


class History(list[ImageResult]):
    """A list of stored results that shows itself as a table with thumbnails."""

    def __init__(
        self,
        results: Iterable[ImageResult] = (),
        *,
        widget_view: Callable[[History], Any] | None = None,
    ) -> None:
        super().__init__(results)
        self.widget_view = widget_view  # where clicks can arrive: its widget

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        return [
            (
                _when(result.created),
                one_line(result.prompt, 80),
                one_line(result.model, 40),
                str(len(result)),
                result.request_id or "",
            )
            for result in self
        ]

    def marks(self) -> list[str]:
        """Each run's stars and tags as text ("★★★★☆ #hero"), empty where it has none."""
        shown = []
        for result in self:
            rating = result.rating if result.stored is not None else None
            tags = result.tags if result.stored is not None else ()
            stars = "" if rating is None else "★" * rating + "☆" * (5 - rating)
            shown.append(" ".join([stars, *(f"#{tag}" for tag in tags)]).strip())
        return shown

    def __repr__(self) -> str:
        if not self:
            return "no stored generations"
        lines = []
        for row, marks in zip(self.rows(), self.marks(), strict=True):
            lines.append(" · ".join([*row, marks] if marks else row))
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The widget's bundle where one is handed in (`text/html`: `_repr_html_`)."""
        if self.widget_view is None or not self:
            return {}
        bundle = self.widget_view(self)._repr_mimebundle_(include=include, exclude=exclude)
        return {key: value for key, value in bundle.items() if key != "text/plain"}

    def _repr_html_(self) -> str:
        if not self:
            return "<p>no stored generations</p>"
        cells = []
        for result, (when, prompt, model, count, request_id), marks in zip(
            self, self.rows(), self.marks(), strict=True
        ):
            thumb = result.preview(0, THUMB_PX) if len(result) else None
            image = f'<img src="{thumb.data_uri()}" width="{thumb.width}" alt="">' if thumb else ""
            cells.append(
                f"<tr><td>{image}</td><td>{html.escape(prompt)}</td>"
                f"<td><code>{html.escape(model)}</code></td><td>{count}</td>"
                f"<td>{html.escape(when)}</td><td><code>{html.escape(request_id)}</code></td>"
                f"<td>{html.escape(marks)}</td></tr>"
            )
        head = (
            "<tr><th></th><th>prompt</th><th>model</th><th>images</th><th>made</th>"
            "<th>request</th><th>marks</th></tr>"
        )
        return f"<table>{head}{''.join(cells)}</table>"


def _when(created: float | None) -> str:
    return "" if created is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
