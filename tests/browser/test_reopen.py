"""A notebook saved, closed and reopened shows its images, in JupyterLab and Notebook 7.

A person runs a cell, a `--bg` cell, a sweep and the form; saves with the frontend's own
save (Ctrl+S); closes the notebook (and its kernel); opens it again. The server extension
(mesh_magics/serverext.py) took the widget views of mesh-magics' outputs out of the file
as it was saved, so each shows its image, not "model not found". Another library's widget
output, unmarked, is saved as it was: it shows "model not found", as it always did.
"""

from __future__ import annotations

import re
from typing import Any

import nbformat
import pytest
from playwright.sync_api import Locator, Page, expect

from mesh_magics.marks import WIDGET_VIEW, is_marked

from ..support import wait_for
from .conftest import (
    NOTEBOOK,
    Lab,
    cell,
    open_notebook,
    outputs,
    run_cell,
    screenshot,
    shut_down_kernel,
    wait_for_idle_kernel,
    write_notebook,
)

pytestmark = pytest.mark.browser

BROKEN = ("Loading widget", "Error displaying widget", "model not found")
PROMPT_NUMBER = re.compile(r"^\[\d+\]:$")  # the cell has finished executing
ANOTHER_LIBRARY = (  # a widget view with an image beside it, and no mark
    "import ipywidgets\nfrom IPython.display import display\n"
    "slider = ipywidgets.IntSlider(description='other')\npreview = fox.preview(0)\n"
    f"display({{{WIDGET_VIEW!r}: {{'version_major': 2, 'version_minor': 0,"
    " 'model_id': slider.model_id}, 'text/plain': 'another library', preview.mime:"
    " preview.base64()}, raw=True)"
)
CELLS = {  # index: (source, the images it shows)
    1: ("%%meshimage -o fox --size 64x64\nA fox", 1),
    2: ("%%meshimage --bg -o later --size 64x64\nA fox, later", 1),
    3: ("%%meshimage -o foxes --size 64x64 --seed 1,2\nTwo foxes", 2),
    4: ("form = %mesh form --size 64x64 A fox in the form\nform", 1),
}
OTHER = 5
WAIT = 60_000  # ms, for what a generation or a kernel must do first


def loaded(images: Locator, count: int) -> None:
    """Wait for `count` images, all decoded and 64 px wide (a run takes a few seconds, more
    on a loaded machine: generous bounds)."""
    expect(images).to_have_count(count, timeout=WAIT)
    images.first.page.wait_for_function(
        "imgs => imgs.every(img => img.complete && img.naturalWidth === 64)",
        arg=images.element_handles(),
        timeout=WAIT,
    )


def images_of(page: Page, index: int) -> Locator:
    return cell(page, index).locator(".jp-OutputArea-output img")


def run_everything(page: Page) -> None:
    run_cell(page, 0)
    run_cell(page, 1)
    loaded(images_of(page, 1), 1)
    background = run_cell(page, 2)
    expect(background.locator(".jp-InputPrompt")).to_have_text(PROMPT_NUMBER, timeout=WAIT)
    loaded(images_of(page, 2), 1)  # arrived after the cell had returned
    run_cell(page, 3)
    loaded(images_of(page, 3), 2)
    run_cell(page, 4)
    form = cell(page, 4).locator(".jp-OutputArea-output .widget-vbox").first
    expect(form.locator("textarea")).to_have_value("A fox in the form")
    wait_for_idle_kernel(page)
    form.locator("button", has_text="Generate").click()
    expect(form).to_contain_text("✓ 1 image", timeout=WAIT)
    loaded(form.locator("img"), 1)
    run_cell(page, OTHER)
    expect(outputs(page, OTHER).locator(".widget-slider")).to_be_visible()  # live: a slider


def saved_outputs(path: Any) -> list[list[dict[str, Any]]]:
    return [c.get("outputs", []) for c in nbformat.read(path, as_version=4).cells]


def test_a_reopened_notebook_shows_every_image(page: Page, frontend: Lab) -> None:
    sources = ["%load_ext mesh_magics", *(source for source, _ in CELLS.values())]
    path = write_notebook(frontend, f"reopen_{frontend.app}.ipynb", *sources, ANOTHER_LIBRARY)
    open_notebook(page, frontend, path)
    run_everything(page)
    screenshot(page, f"reopen_{frontend.app}_1_ran")

    # The frontend's own save, from command mode; the file on disk, once it has the form.
    cell(page, OTHER).locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+s")

    def form_saved() -> bool:
        return any(
            {"image/png", "image/jpeg"} & set(out.get("data", {})) for out in saved_outputs(path)[4]
        )

    wait_for(form_saved, "the saved form with its image", timeout=20.0, every=0.2)
    saved = saved_outputs(path)
    for index in CELLS:
        assert saved[index], index
        assert not [out for out in saved[index] if WIDGET_VIEW in out.get("data", {})], index
    [form] = [out for out in saved[4] if out.get("output_type") == "display_data"]
    assert is_marked(form["metadata"])  # mesh-magics' mark: the hook removed its view
    [other] = saved[OTHER]
    assert WIDGET_VIEW in other["data"] and not is_marked(other["metadata"])  # untouched

    # Close the notebook and its kernel, as a person ending the day; then open it again.
    if frontend.app == "lab":
        page.locator(".lm-TabBar-tab.jp-mod-current .lm-TabBar-tabCloseIcon").click()
        expect(page.locator(NOTEBOOK)).to_have_count(0)
    shut_down_kernel(page, frontend, path)
    page.goto("about:blank")  # a page keeps the widget models of the kernel it knew
    open_notebook(page, frontend, path)

    for index, (_, count) in CELLS.items():
        cell(page, index).scroll_into_view_if_needed()
        loaded(images_of(page, index), count)
        shown = cell(page, index).locator(".jp-OutputArea").inner_text()
        for broken in BROKEN:
            assert broken not in shown, (index, shown)
    screenshot(page, f"reopen_{frontend.app}_2_reopened")
    # The control: the unmarked widget shows what every widget did before the extension.
    expect(outputs(page, OTHER)).to_contain_text("model not found", timeout=WAIT)
    cell(page, OTHER).scroll_into_view_if_needed()
    assert "mesh_magics: saved notebooks keep images" in frontend.log.read_text()
