"""The history as core ipywidgets, where clicks can arrive (an interactive Jupyter
frontend): a row per run with its thumbnail, five star buttons (a click rates the run in
the store; clicking its rating again clears it), its tags as toggle buttons (a click
shows only the runs with that tag, again shows all) and a box that adds a tag ("-tag"
takes it off). Its bundle keeps the static table beside it (results/history.py), which is
what a saved notebook and nbconvert show. ipywidgets is imported when it is shown.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ..errors import MeshError
from ..results.marks import STARS

if TYPE_CHECKING:
    from ..results.history import History
    from ..results.result import ImageResult

THUMB_PX = 96


class HistoryRow:
    """One run: thumbnail, what it is, stars, tags, a box to tag it."""

    def __init__(self, result: ImageResult, on_tag_click: Any) -> None:
        import ipywidgets as widgets

        self.result = result
        self._on_tag_click = on_tag_click
        self.stars = [
            widgets.Button(description="☆", tooltip=f"{n} stars", layout=_box("32px"))
            for n in STARS
        ]
        for n, button in zip(STARS, self.stars, strict=True):
            button.on_click(lambda _button, n=n: self.rate(n))
        self.tags = widgets.HBox([])
        self.new_tag = widgets.Text(
            placeholder="+ tag (-tag removes)", continuous_update=False, layout=_box("150px")
        )
        self.new_tag.observe(lambda change: self.add_tag(change["new"]), names="value")
        self.note = widgets.HTML("")
        caption = widgets.HTML(_caption(result), layout=_box("360px"))
        self.box = widgets.HBox(
            [_thumb(result), caption, widgets.HBox(self.stars), self.tags, self.new_tag, self.note]
        )
        self.refresh()

    def rate(self, stars: int) -> None:
        """A star's click: rate the run that many stars; its rating again clears it."""
        self._marking(lambda: self.result.rate(None if self.result.rating == stars else stars))

    def add_tag(self, text: str) -> None:
        text = text.strip()
        if text.startswith("-"):
            self._marking(lambda: self.result.untag(text[1:]))
        elif text:
            self._marking(lambda: self.result.tag(text))
        else:
            return
        self.new_tag.value = ""  # (observed again, with nothing to add)

    def _marking(self, change: Any) -> None:
        try:
            change()
            self.note.value = ""
        except MeshError as exc:  # a one-line reason beside the row, never a traceback
            self.note.value = f"<small>{html.escape(str(exc))}</small>"
        self.refresh()

    def refresh(self, shown_tag: str | None = None) -> None:
        import ipywidgets as widgets

        rating = self.result.rating or 0
        for n, button in zip(STARS, self.stars, strict=True):
            button.description = "★" if n <= rating else "☆"
        buttons = []
        for tag in self.result.tags:
            button = widgets.ToggleButton(
                value=tag == shown_tag, description=tag, tooltip="show only these"
            )
            button.observe(lambda _change, tag=tag: self._on_tag_click(tag), names="value")
            buttons.append(button)
        self.tags.children = buttons


class HistoryWidget:
    """The rows, and which tag they are narrowed to (None: every row shows)."""

    def __init__(self, history: History) -> None:
        import ipywidgets as widgets

        self.shown_tag: str | None = None
        self.rows = [HistoryRow(result, self.show_tag) for result in history]
        self.box = widgets.VBox([row.box for row in self.rows])

    def show_tag(self, tag: str) -> None:
        """A tag's click: only the runs with it; the same tag again: every run."""
        self.shown_tag = None if self.shown_tag == tag else tag
        for row in self.rows:
            row.box.layout.display = (
                None if self.shown_tag is None or self.shown_tag in row.result.tags else "none"
            )
            row.refresh(self.shown_tag)


def history_widget(history: History) -> Any:
    """The widget (a VBox) for `history`: what `History` shows in a widget frontend."""
    return HistoryWidget(history).box


def _box(width: str) -> Any:
    import ipywidgets as widgets

    return widgets.Layout(width=width)


def _thumb(result: ImageResult) -> Any:
    import ipywidgets as widgets

    thumb = result.preview(0, THUMB_PX) if len(result) else None
    image = f'<img src="{thumb.data_uri()}" width="{thumb.width}" alt="">' if thumb else ""
    return widgets.HTML(image, layout=_box(f"{THUMB_PX + 8}px"))


def _caption(result: ImageResult) -> str:
    from ..results.history import History

    (when, prompt, model, count, _request_id) = History([result]).rows()[0]
    return (
        f"{html.escape(prompt)}<br><small><code>{html.escape(model)}</code> · "
        f"{count} · {html.escape(when)}</small>"
    )


__all__ = ["HistoryRow", "HistoryWidget", "history_widget"]
