"""What VS Code and Colab need of every widget output, checked statically.

- Core ipywidgets only: Colab renders the core widgets of ipywidgets 8, and custom or
  anywidget widgets there need `enable_custom_widget_manager()` and often fail; the
  `Output` widget is fragile in Colab and VS Code. So each view and the form is built and
  its widget tree walked (children, layouts, styles): every model must be a core one,
  and no module of the Jupyter paths may use `widgets.Output` or anywidget.
- A fallback in every bundle: VS Code saves no widget state, and a reopened file shows
  what else the output carries. The progress views' and the form's bundles carry
  `text/plain` that reads well (not `VBox(children=...)`), and the form's an image too
  once it has one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import ipywidgets as widgets
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import mesh_magics
import mesh_magics as mm
from mesh_magics.events import PartialImage, StatusChanged
from mesh_magics.forms.state import FormState
from mesh_magics.local import LocalServer
from mesh_magics.views.sweep_progress import WidgetSweepView
from mesh_magics.views.widget import WidgetProgressView

from .servers import png_bytes

PACKAGE = Path(mesh_magics.__file__).parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CORE_MODULES = {"@jupyter-widgets/controls", "@jupyter-widgets/base"}
CORE_VIEWS = {
    "VBoxView", "HBoxView", "HTMLView", "LabelView", "ImageView", "ButtonView",
    "TextareaView", "ComboboxView", "DropdownView", "ProgressView", "IntTextView",
    "TextView", "AccordionView", "CheckboxView", "LayoutView", "StyleView",
}  # fmt: skip


def tree(widget: widgets.Widget) -> Iterator[widgets.Widget]:
    """`widget` and every widget it holds: children, layout, style, any widget trait."""
    yield widget
    for name in widget.keys:
        value = getattr(widget, name)
        for item in value if isinstance(value, tuple | list) else [value]:
            if isinstance(item, widgets.Widget):
                yield from tree(item)


def not_core(root: widgets.Widget) -> list[str]:
    return [
        f"{type(w).__name__} ({w._model_module}:{w._model_name}, {w._view_name})"
        for w in tree(root)
        if w._model_module not in CORE_MODULES
        or w._model_name == "OutputModel"
        or (w._view_name is not None and w._view_name not in CORE_VIEWS)
    ]


def test_the_progress_views_use_core_widgets_and_carry_text(ip: InteractiveShell) -> None:
    for on_cancel in (None, lambda: None):  # a blocking cell's view, a background one's
        view = WidgetProgressView("openai/gpt-image-1 · 64x64 · 1 image", on_cancel)
        with capture_output() as shown:
            view.start()
            view.update(StatusChanged("processing"))
            view.update(PartialImage(0, png_bytes()))
        assert not_core(view._box) == []
        assert isinstance(view._previews.children[0], widgets.Image)
        (bundle,) = [o.data for o in shown.outputs]
        assert WIDGET_VIEW in bundle
        assert bundle["text/plain"] == "meshimage: openai/gpt-image-1 · 64x64 · 1 image (running)"
        view.finish("✓ 1 image")


def test_the_sweep_view_uses_core_widgets_and_carries_text(ip: InteractiveShell) -> None:
    for on_cancel in (None, lambda: None):
        view = WidgetSweepView("sweep · 2 runs", ["a · fox", "b · fox"], on_cancel)
        with capture_output() as shown:
            view.start()
        assert not_core(view._box) == []
        (bundle,) = [o.data for o in shown.outputs]
        assert (
            WIDGET_VIEW in bundle and bundle["text/plain"] == "meshimage: sweep · 2 runs (running)"
        )
        view.finish("✓ 2 runs")


def test_the_form_uses_core_widgets_and_carries_the_code_then_the_image(
    ip: InteractiveShell, server: LocalServer
) -> None:
    form = mm.form("A cat", size="64x64", base_url=server.url)
    form.more.selected_index = 0  # every field shown
    assert not_core(form.box) == []
    bundle = form._bundle()
    assert WIDGET_VIEW in bundle and bundle["text/plain"] == form.code

    result = mm.generate("A cat", size="64x64", base_url=server.url, progress="none")
    form.results.insert(0, result)
    form._latest_code = form.code
    form.gallery.add(result, FormState(prompt="A cat", fields={"size": "64x64"}), form.load)
    assert not_core(form.box) == []
    bundle = form._bundle()
    assert bundle["text/plain"] == form.code
    assert {"image/png", "image/jpeg", "image/webp"} & set(bundle)
    form.close()


def test_no_output_widget_and_no_custom_widgets_in_the_jupyter_paths() -> None:
    """The Jupyter paths: every module but marimo's own (marimo has no ipywidgets; its
    form may be an anywidget)."""
    forbidden = re.compile(r"widgets\.Output\b|\bOutput\(|\banywidget\b|_model_module\s*=")
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "marimo" not in path.relative_to(PACKAGE).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if forbidden.search(line)
    ]
    assert found == []
