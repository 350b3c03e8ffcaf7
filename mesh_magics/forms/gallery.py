"""The form's gallery: one entry per finished run, newest first, each a thumbnail, its
settings in a line, and a button that loads those settings back into the form."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING

import ipywidgets as widgets

if TYPE_CHECKING:
    from ..results.result import ImageResult
    from .state import FormState

THUMBNAIL_PX = 256


def settings_line(state: FormState) -> str:
    """The settings of a run, short: the prompt's start, then each field."""
    prompt = state.prompt if len(state.prompt) <= 60 else state.prompt[:59] + "…"
    fields = " · ".join(f"{name}={value}" for name, value in state.fields.items())
    return f"{prompt!r}" + (f" · {fields}" if fields else "")


class Gallery:
    """The entries, in a VBox (`.box`), newest on top."""

    def __init__(self) -> None:
        self.box = widgets.VBox([])

    def add(
        self, result: ImageResult, state: FormState, load: Callable[[FormState], object]
    ) -> None:
        preview = result.preview(0, THUMBNAIL_PX)
        image = widgets.Image(value=preview.data, format=preview.mime.split("/")[1], width=128)
        line = html.escape(settings_line(state), quote=False)
        summary = html.escape(result.summary(), quote=False)
        text = widgets.HTML(f"<small>{line}<br>{summary}</small>")
        button = widgets.Button(description="Load settings", layout=widgets.Layout(width="120px"))
        button.on_click(lambda _button: load(state))
        entry = widgets.HBox([image, widgets.VBox([text, button])])
        self.box.children = (entry, *self.box.children)

    def __len__(self) -> int:
        return len(self.box.children)
