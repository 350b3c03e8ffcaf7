"""The form (`%mesh form`) in a browser, in JupyterLab and in Notebook 7.

A person types a prompt, picks a size and clicks Generate; cancels a slow run; copies the
cell the form shows and runs it with `--replay`; saves the notebook and reopens it with a
new kernel (no widget state), where the form shows its image. Every step leaves a
screenshot in `test-artifacts/browser/`.
"""

from __future__ import annotations

import re
import time
from typing import Any

import nbformat
import pytest
from playwright.sync_api import Locator, Page, expect

from ..support import wait_for
from .conftest import (
    FAKE_KEY,
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

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
IMAGE_MIMES = {"image/png", "image/jpeg"}
PROMPT = "A fox in the snow"
SIZE = "256x256"
GENERATIONS = (
    "from mesh_magics.local import ensure_local_server\n"
    "sent = [r for r in ensure_local_server().requests"
    ' if r.path.rstrip("/").endswith("/images/generations")]\n'
)


def the_form(page: Page, index: int) -> Locator:
    """The form shown by cell `index`, once its prompt box is there."""
    form = cell(page, index).locator(".jp-OutputArea-output .widget-vbox").first
    expect(form.locator("textarea")).to_be_visible()
    return form


def field(form: Locator, label: str) -> Locator:
    """The input of the form's field labelled `label` (a Text or Combobox)."""
    row = form.locator(".widget-inline-hbox").filter(
        has=form.page.locator("label", has_text=re.compile(f"^{re.escape(label)}$"))
    )
    return row.locator("input").first


def loaded(images: Locator) -> list[int]:
    """Wait until the first of `images` has decoded; the natural widths of all."""
    expect(images.first).to_be_visible()
    images.first.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=images.first.element_handle()
    )
    widths: list[int] = images.evaluate_all("imgs => imgs.map(img => img.naturalWidth)")
    return widths


def shot(page: Page, frontend: Lab, step: str) -> None:
    screenshot(page, f"form_{frontend.app}_{step}")


def test_generate_copy_replay_save_and_reopen(page: Page, frontend: Lab) -> None:
    path = write_notebook(
        frontend,
        f"form_{frontend.app}.ipynb",
        "%load_ext mesh_magics",
        "form = %mesh form\nform",
        "",  # the copied cell goes here
        GENERATIONS + 'print("same", again.data == form.result.data, "sent", len(sent),'
        ' "replayed", again.replayed)',
    )
    open_notebook(page, frontend, path)
    run_cell(page, 0)
    run_cell(page, 1)
    form = the_form(page, 1)
    shot(page, frontend, "1_empty")

    # Type a prompt, choose a size, Generate: progress, then the image in the gallery.
    form.locator("textarea").fill(PROMPT)
    size = field(form, "size")
    size.fill(SIZE)
    size.press("Tab")
    code_view = form.locator("pre")
    expect(code_view).to_contain_text(f"--size {SIZE}")
    expect(code_view).to_contain_text(PROMPT)
    wait_for_idle_kernel(page)
    form.locator("button", has_text="Generate").click()
    status = form.locator(".widget-html", has_text="⏳")
    expect(status).to_be_visible()
    expect(form.locator(".widget-hprogress")).to_be_visible()
    shot(page, frontend, "2_generating")
    expect(form).to_contain_text("✓ 1 image", timeout=20_000)
    assert loaded(form.locator("img")) == [256]
    expect(form.locator("button", has_text="Generate")).to_be_enabled()
    shot(page, frontend, "3_generated")

    # Copy the cell the form shows; run it with --replay: the same image, no request.
    code = code_view.inner_text().strip()
    magic, _, rest = code.partition("\n")  # the options may be on lines of their own
    assert magic.startswith("%%meshimage") and f"--size {SIZE}" in code, code
    assert rest.strip().splitlines()[-1] == PROMPT, code
    replay = magic.replace("%%meshimage", "%%meshimage --replay -o again", 1) + "\n" + rest
    cell(page, 2).locator(".cm-content").click()
    page.keyboard.insert_text(replay)  # no key events: the editor adds no brackets
    copied = run_cell(page, 2)
    expect(outputs(page, 2).first).to_contain_text("↺ replayed", timeout=15_000)
    assert loaded(copied.locator(".jp-OutputArea-output img")) == [256]
    run_cell(page, 3)
    expect(outputs(page, 3)).to_have_text("same True sent 1 replayed True")
    copied.scroll_into_view_if_needed()
    shot(page, frontend, "4_replayed")

    # Save: the form's output keeps the image and the code, and no key.
    cell(page, 3).locator(".jp-InputPrompt").click()  # command mode: Ctrl+S is the app's
    page.keyboard.press("Control+s")

    def form_output() -> dict[str, Any] | None:
        nb = nbformat.read(path, as_version=4)
        for out in nb.cells[1].get("outputs", []):
            if IMAGE_MIMES & set(out.get("data", {})):
                return dict(out["data"])
        return None

    data = wait_for(form_output, "the saved form output with its image", timeout=15.0, every=0.2)
    assert data["text/plain"] == code
    assert WIDGET_VIEW not in data  # the server extension took it out: the image shows
    text = path.read_text()
    assert FAKE_KEY not in text
    assert "rsk_" not in text

    # Reopen with a new kernel: the saved form shows its image and code.
    relative = path.relative_to(frontend.root).as_posix()

    def kernels() -> set[str]:  # of this notebook: other tests' notebooks may be open
        found = page.request.get(f"{frontend.url}/api/sessions").json()
        return {s["kernel"]["id"] for s in found if s["path"] == relative}

    before = kernels()
    shut_down_kernel(page, frontend, path)
    page.goto("about:blank")  # the old page would keep the old kernel's widget models
    open_notebook(page, frontend, path)
    assert before and kernels().isdisjoint(before)
    reopened = outputs(page, 1)
    expect(reopened.first).to_be_attached()
    assert loaded(cell(page, 1).locator(".jp-OutputArea img")) == [256]
    cell(page, 1).scroll_into_view_if_needed()
    shot(page, frontend, "5_reopened")
    shown = cell(page, 1).locator(".jp-OutputArea").inner_text()
    for broken in ("Loading widget", "Error displaying widget", "model not found"):
        assert broken not in shown, shown


def test_cancel_a_slow_run(page: Page, frontend: Lab) -> None:
    path = write_notebook(
        frontend,
        f"form_cancel_{frontend.app}.ipynb",
        "%env MESH_LOCAL_LATENCY=30\n%load_ext mesh_magics",  # this kernel's backend: slow
        "%mesh form",
        GENERATIONS + 'print("sent", len(sent), ensure_local_server().wait_for_disconnect(5))',
    )
    open_notebook(page, frontend, path)
    run_cell(page, 0)
    run_cell(page, 1)
    form = the_form(page, 1)
    form.locator("textarea").fill("A very slow fox")
    expect(form.locator("pre")).to_contain_text("A very slow fox")
    wait_for_idle_kernel(page)
    form.locator("button", has_text="Generate").click()
    cancel = form.locator("button", has_text="Cancel")
    expect(cancel).to_be_enabled()
    expect(form.locator(".widget-html", has_text="⏳")).to_be_visible()
    shot(page, frontend, "6_slow_running")

    wait_for_idle_kernel(page)  # the run is in the background: the kernel takes the click
    clicked = time.monotonic()
    cancel.click()
    expect(form).to_contain_text(re.compile(r"✗ GenerationCancelled: cancelled"), timeout=10_000)
    took = time.monotonic() - clicked
    assert took < 5, f"the form said cancelled {took:.1f} s after the click"
    expect(form.locator("button", has_text="Generate")).to_be_enabled()
    expect(cancel).to_be_disabled()
    expect(form.locator("img")).to_have_count(0)
    shot(page, frontend, "7_cancelled")

    run_cell(page, 2)  # the kernel still runs cells; the server saw the client hang up
    expect(outputs(page, 2)).to_have_text("sent 1 True")
