"""The Jupyter server extension: a pre-save hook that lets a reopened notebook show images.

JupyterLab and Notebook 7 render an output that has a widget view with the widget
renderer, which has no fallback: once the kernel is gone, a reopened notebook shows
"Error displaying widget: model not found" where the form was, though the output holds
its image too (jupyterlab_widgets `renderer.ts`). Before every save through the server,
the hook takes the widget view out of each output that mesh-magics marked (`marks.py`)
and that has an image or HTML beside it. The frontend keeps its live widget; the file
keeps the fallback. It is enabled on install by
`jupyter-config/jupyter_server_config.d/mesh_magics.json`, and must be installed where
the server runs (README).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .marks import WIDGET_VIEW, is_marked


def strip_widget_views(nb: Mapping[str, Any]) -> int:
    """Remove the widget view of every marked output of notebook `nb` (a dict, edited in
    place) that has an image or HTML fallback; return how many were removed."""
    removed = 0
    for cell in nb.get("cells", ()):
        for output in cell.get("outputs", ()) if isinstance(cell, Mapping) else ():
            data = output.get("data") if isinstance(output, Mapping) else None
            if (
                isinstance(data, dict)
                and WIDGET_VIEW in data
                and is_marked(output.get("metadata"))
                and _has_fallback(data)
            ):
                del data[WIDGET_VIEW]
                removed += 1
    return removed


def _has_fallback(data: Mapping[str, Any]) -> bool:
    return any(mime.startswith("image/") or mime == "text/html" for mime in data)


def pre_save_hook(model: dict[str, Any], **_kwargs: Any) -> None:
    """`ContentsManager.register_pre_save_hook`'s hook: edits a notebook's content in place."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), Mapping):
        strip_widget_views(model["content"])


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Called by the server for the extension `mesh_magics` (its points are in the
    package's `__init__.py`, so that `import mesh_magics` finds them)."""
    serverapp.contents_manager.register_pre_save_hook(pre_save_hook)
    serverapp.log.info("mesh_magics: saved notebooks keep images, not widget views")
