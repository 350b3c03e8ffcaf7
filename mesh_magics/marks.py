"""The mark in an output's metadata that says mesh-magics showed it with a widget view.

The server extension (`serverext.py`) removes the widget view of a marked output before a
save, where an image or HTML fallback is beside it, so a reopened notebook shows the
fallback and not "model not found". Outputs of other libraries carry no mark and are left
as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MARK = "mesh_magics"  # the key in an output's metadata
WIDGET_FALLBACK = "widget_fallback"  # inside it: the widget view may give way to a fallback


def widget_mark() -> dict[str, Any]:
    """The metadata to display a widget view with (a new dict each time)."""
    return {MARK: {WIDGET_FALLBACK: True}}


def is_marked(metadata: object) -> bool:
    """Whether an output's metadata carries the mark."""
    mark = metadata.get(MARK) if isinstance(metadata, Mapping) else None
    return isinstance(mark, Mapping) and mark.get(WIDGET_FALLBACK) is True
