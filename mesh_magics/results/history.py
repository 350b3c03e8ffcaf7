"""`History`: what `%mesh history` shows and `mm.history()` returns, the latest
stored generations (newest first) as `ImageResult`s whose bytes load when touched."""

from __future__ import annotations

import html
import time

from ..redact import one_line
from .result import ImageResult

THUMB_PX = 96  # a thumbnail per generation: its first image


class History(list[ImageResult]):
    """A list of stored results that shows itself as a table with thumbnails."""

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

    def __repr__(self) -> str:
        if not self:
            return "no stored generations"
        return "\n".join(" · ".join(row) for row in self.rows())

    def _repr_html_(self) -> str:
        if not self:
            return "<p>no stored generations</p>"
        cells = []
        for result, (when, prompt, model, count, request_id) in zip(self, self.rows(), strict=True):
            thumb = result.preview(0, THUMB_PX) if len(result) else None
            image = f'<img src="{thumb.data_uri()}" width="{thumb.width}" alt="">' if thumb else ""
            cells.append(
                f"<tr><td>{image}</td><td>{html.escape(prompt)}</td>"
                f"<td><code>{html.escape(model)}</code></td><td>{count}</td>"
                f"<td>{html.escape(when)}</td><td><code>{html.escape(request_id)}</code></td></tr>"
            )
        head = (
            "<tr><th></th><th>prompt</th><th>model</th><th>images</th><th>made</th>"
            "<th>request</th></tr>"
        )
        return f"<table>{head}{''.join(cells)}</table>"


def _when(created: float | None) -> str:
    return "" if created is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
