"""An edit in JupyterLab, as a person sees it in Chromium: a cell draws `fox`, the next
one edits `fox[0]` into `night`; its progress says what it edits, ends, and leaves an
image that is not the fox's. Each step leaves a screenshot in `test-artifacts/browser/`.
"""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image, ImageChops
from playwright.sync_api import Locator, Page, expect

from .conftest import Lab, open_notebook, outputs, run_cell, screenshot, write_notebook

pytestmark = pytest.mark.browser

LOAD = "%load_ext mesh_magics"
MADE = re.compile(r"^✓ 1 image · openai/gpt-image-1 · 256x256 png · ")
EDITED = re.compile(r"^✓ 1 image · edit of fox\[0\] · openai/gpt-image-1 · 256x256 png · ")
PROMPT_NUMBER = re.compile(r"^\[\d+\]:$")  # the cell has finished executing ("[*]:" runs)


def shown_image(cell: Locator) -> Image.Image:
    """The one image in the cell's output, once decoded by the page, read from its src."""
    image = cell.locator(".jp-OutputArea-output img")
    expect(image).to_have_count(1)
    image.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    src = image.get_attribute("src") or ""
    header, _, data = src.partition(",")
    assert re.fullmatch(r"data:image/(png|jpeg);base64", header), src[:80]
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_an_edit_shows_its_progress_then_an_image_unlike_its_source(
    page: Page, lab: Lab, request: pytest.FixtureRequest
) -> None:
    path = write_notebook(
        lab,
        "edit.ipynb",
        LOAD,
        "%%meshimage -o fox --size 256x256\nA red fox asleep in fresh snow",
        "%%meshimage --edit fox[0] -o night\nThe same fox under a starry night sky",
        "import hashlib\n"
        "[source] = night.inputs\n"
        "print(night.is_edit, source['name'], source['role'],\n"
        "      source['sha256'] == hashlib.sha256(fox.data[0]).hexdigest(),\n"
        "      night.parents[0].request_id == fox.request_id)",
    )
    open_notebook(page, lab, path)
    run_cell(page, 0)

    fox_cell = run_cell(page, 1)
    expect(fox_cell.locator(".widget-vbox")).to_contain_text("openai/gpt-image-1 · 256x256")
    expect(fox_cell.locator(".jp-OutputArea-output").first).to_have_text(MADE)
    fox = shown_image(fox_cell)
    expect(fox_cell.locator(".jp-InputPrompt")).to_have_text(PROMPT_NUMBER)
    screenshot(page, f"{request.node.name}_fox")

    night_cell = run_cell(page, 2)
    progress = night_cell.locator(".widget-vbox")
    # The progress says what is edited (the source as the cell names it), not a size.
    expect(progress).to_contain_text("edit of fox[0] · openai/gpt-image-1 · 1 image")
    expect(progress.locator(".widget-hprogress")).to_be_visible()
    expect(night_cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
    screenshot(page, f"{request.node.name}_editing")

    expect(night_cell.locator(".jp-OutputArea-output").first).to_have_text(EDITED, timeout=30_000)
    expect(progress).to_have_count(0)
    night = shown_image(night_cell)
    expect(night_cell.locator(".jp-InputPrompt")).to_have_text(PROMPT_NUMBER)
    night_cell.scroll_into_view_if_needed()
    screenshot(page, f"{request.node.name}_edited")

    # The edit's picture is the fox's size but not the fox's pixels.
    assert fox.size == night.size == (256, 256)
    assert ImageChops.difference(fox.convert("RGB"), night.convert("RGB")).getbbox() is not None
    expect(fox_cell.locator(".jp-OutputArea-output img")).to_have_count(1)  # the fox stays

    # The kernel agrees: night was made from fox's first image, found again in the store.
    run_cell(page, 3)
    expect(outputs(page, 3)).to_have_text("True fox[0] image True True")
