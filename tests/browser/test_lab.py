"""`%%meshimage` in JupyterLab, as a person sees it in Chromium.

Each test opens its own notebook in a fresh page against the shared server, whose kernels
use the embedded backend with a few seconds of latency per generation.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Locator, Page, expect

from .conftest import (
    FAKE_KEY,
    NOTEBOOK,
    ROOT,
    Lab,
    cell_index,
    copy_quickstart,
    open_notebook,
    outputs,
    run_cell,
    screenshot,
    wait_for_idle_kernel,
    write_notebook,
)

pytestmark = pytest.mark.browser

LOAD = "%load_ext mesh_magics"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROMPT_NUMBER = re.compile(r"^\[\d+\]:$")  # the cell has finished executing ("[*]:" runs)


def slow(seconds: float) -> str:
    """The option that makes the embedded backend take `seconds` for this request alone."""
    return f"-p mesh_local='{{\"latency\": {seconds}}}'"


def wait_until_loaded(images: Locator, count: int) -> list[int]:
    """Wait for `count` images, all decoded; return their natural widths."""
    expect(images).to_have_count(count)
    images.first.page.wait_for_function(
        "imgs => imgs.every(img => img.complete && img.naturalWidth > 0)",
        arg=images.element_handles(),
    )
    widths: list[int] = images.evaluate_all("imgs => imgs.map(img => img.naturalWidth)")
    return widths


def error_text(cell: Locator) -> Locator:
    return cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")


def test_quickstart_shows_progress_then_the_image_and_binds_fox(page: Page, lab: Lab) -> None:
    path = copy_quickstart(lab)
    open_notebook(page, lab, path)
    run_cell(page, cell_index(path, LOAD))
    fox = run_cell(page, cell_index(path, "%%meshimage -o fox --size 512x512"))

    progress = fox.locator(".widget-vbox")
    expect(progress).to_contain_text("openai/gpt-image-1 · 512x512 · 1 image")
    expect(progress.locator(".widget-hprogress")).to_be_visible()
    elapsed = progress.locator("div.widget-label", has_text=re.compile(r"^\d+ s$"))
    first = int(elapsed.inner_text().split()[0])
    page.wait_for_function(
        "([label, first]) => parseInt(label.textContent) > first",
        arg=[elapsed.element_handle(), first],
        timeout=5_000,  # about two ticks; the generation takes a few seconds
    )

    summary = fox.locator(".jp-OutputArea-output[data-mime-type='text/plain']").first
    expect(summary).to_have_text(re.compile(r"^✓ 1 image · openai/gpt-image-1 · 512x512 png · "))
    expect(progress).to_have_count(0)
    assert wait_until_loaded(fox.locator(".jp-OutputArea-output img"), 1) == [512]

    after = cell_index(path, "# the result holds PIL images")
    run_cell(page, after)
    expect(outputs(page, after)).to_contain_text("(512, 512)")
    fox.scroll_into_view_if_needed()


def test_three_images_in_one_cell_fill_the_grid(page: Page, lab: Lab) -> None:
    path = write_notebook(
        lab, "three.ipynb", LOAD, "%%meshimage -o foxes -n 3 --size 384x384\nThree foxes"
    )
    open_notebook(page, lab, path)
    run_cell(page, 0)
    foxes = run_cell(page, 1)

    expect(foxes.locator(".widget-vbox")).to_contain_text("384x384 · 3 images")
    expect(foxes.locator(".jp-OutputArea-output").first).to_have_text(re.compile(r"^✓ 3 images"))
    widths = wait_until_loaded(foxes.locator("div.mesh-magics-grid figure img"), 3)
    assert widths == [384, 384, 384]


def test_a_misspelt_option_is_a_short_error(page: Page, lab: Lab) -> None:
    path = write_notebook(lab, "typo.ipynb", LOAD, "%%meshimage --qualty high\nA fox")
    open_notebook(page, lab, path)
    run_cell(page, 0)
    typo = run_cell(page, 1)

    error = error_text(typo)
    expect(error).to_contain_text("did you mean --quality")
    text = error.inner_text()
    assert text.startswith("OptionError") and "Traceback" not in text
    assert len(text.strip().splitlines()) < 5, text
    expect(typo.locator(".widget-vbox")).to_have_count(0)  # no request was started


def test_a_blocking_cell_says_to_interrupt_and_an_interrupt_cancels_it(
    page: Page, lab: Lab, request: pytest.FixtureRequest
) -> None:
    path = write_notebook(
        lab,
        "interrupt.ipynb",
        LOAD,
        f"%%meshimage -o slow {slow(30)}\nA very slow fox",
        'print("after", "slow" in globals())',
    )
    open_notebook(page, lab, path)
    run_cell(page, 0)
    slow_cell = run_cell(page, 1)
    progress = slow_cell.locator(".widget-vbox")
    expect(progress.locator(".widget-hprogress")).to_be_visible()

    # While the cell runs a click could not reach the kernel: no button, but how to cancel.
    expect(progress.get_by_text("■ interrupt the kernel to cancel")).to_be_visible()
    expect(slow_cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
    expect(slow_cell.locator(".jp-OutputArea button, .jp-OutputArea .widget-button")).to_have_count(
        0
    )
    expect(slow_cell.get_by_text("Cancel", exact=True)).to_have_count(0)
    screenshot(page, f"{request.node.name}_running")

    page.locator(f"{NOTEBOOK} [data-command='notebook:interrupt-kernel']").click()
    interrupted = time.monotonic()
    expect(error_text(slow_cell)).to_contain_text("GenerationCancelled: cancelled by an interrupt")
    assert time.monotonic() - interrupted < 5  # generous: a loaded CI machine; it takes ~0.1 s
    expect(progress).to_have_count(0)
    expect(slow_cell).to_contain_text("✗ openai/gpt-image-1")

    run_cell(page, 2)
    expect(outputs(page, 2)).to_have_text("after False")  # the next cell runs; nothing bound


def test_a_background_cell_returns_at_once_and_its_images_land_in_it(
    page: Page, lab: Lab, request: pytest.FixtureRequest
) -> None:
    path = write_notebook(
        lab,
        "background.ipynb",
        LOAD,
        f"%%meshimage --bg -o later --size 256x256 {slow(6)}\nA fox, later",
        'print("meanwhile", later.done())',
    )
    open_notebook(page, lab, path)
    run_cell(page, 0)
    first = run_cell(page, 1)
    expect(first.locator(".jp-InputPrompt")).to_have_text(PROMPT_NUMBER)
    returned = time.monotonic()  # the cell has finished; its generation has 6 s to go
    progress = first.locator(".widget-vbox")
    expect(progress).to_contain_text("openai/gpt-image-1 · 256x256 · 1 image")
    expect(progress.locator(".widget-button", has_text="Cancel")).to_be_visible()

    second = run_cell(page, 2)
    expect(outputs(page, 2)).to_have_text("meanwhile False")  # ran while the first ran
    expect(progress).to_be_visible()
    screenshot(page, f"{request.node.name}_running")

    summary = first.locator(".jp-OutputArea-output").first
    expect(summary).to_have_text(
        re.compile(r"^✓ 1 image · openai/gpt-image-1 · 256x256 png · "), timeout=20_000
    )
    arrived = time.monotonic()
    assert wait_until_loaded(first.locator(".jp-OutputArea-output img"), 1) == [256]
    expect(progress).to_have_count(0)
    # The first cell had returned seconds before (a bound a slow machine only makes wider).
    assert arrived - returned > 3, arrived - returned
    # Nothing of the first run went to the cell that was running when it ended.
    expect(outputs(page, 2)).to_have_text("meanwhile False")
    expect(second.locator(".jp-OutputArea img, .jp-OutputArea .widget-vbox")).to_have_count(0)
    expect(second.locator(".jp-InputPrompt")).to_have_text(PROMPT_NUMBER)


def test_cancel_stops_a_background_run_within_two_seconds(page: Page, lab: Lab) -> None:
    path = write_notebook(
        lab,
        "cancel.ipynb",
        LOAD,
        f"%%meshimage --bg -o doomed {slow(30)}\nA fox that never comes",
        "from mesh_magics.local import ensure_local_server\n"
        'print("after", doomed.status, ensure_local_server().wait_for_disconnect(5))',
    )
    open_notebook(page, lab, path)
    run_cell(page, 0)
    bg = run_cell(page, 1)
    cancel = bg.locator(".widget-vbox .widget-button", has_text="Cancel")
    expect(cancel).to_be_visible()
    expect(bg.locator(".jp-InputPrompt")).to_have_text(PROMPT_NUMBER)
    wait_for_idle_kernel(page)  # the cell has returned: the kernel is free to take the click

    clicked = time.monotonic()
    cancel.click()
    # Polled on every animation frame: the time is the kernel's and the page's, not a poll's.
    page.wait_for_function(
        "cell => !cell.querySelector('.widget-vbox') && cell.innerText.includes('✗ ')",
        arg=bg.element_handle(),
        timeout=10_000,
    )
    took = time.monotonic() - clicked
    assert took < 2, f"the widget was replaced {took:.1f} s after the click"
    expect(bg.locator(".jp-OutputArea-output").first).to_have_text(
        re.compile(r"^✗ openai/gpt-image-1 · .*GenerationCancelled: cancelled after [\d.]+ s")
    )

    run_cell(page, 2)  # the kernel still runs cells; the server saw the client hang up
    expect(outputs(page, 2)).to_have_text("after cancelled True")


def test_a_saved_notebook_keeps_images_without_widgets_or_key(page: Page, lab: Lab) -> None:
    path = copy_quickstart(lab, "saved.ipynb")
    magic_cells = [
        cell_index(path, "%%meshimage -o fox "),
        cell_index(path, "%%meshimage -o foxes "),
    ]
    open_notebook(page, lab, path)
    run_cell(page, cell_index(path, LOAD))
    for index in magic_cells:
        done = run_cell(page, index).locator(".jp-OutputArea-output img")
        wait_until_loaded(done.first, 1)

    page.keyboard.press("Control+s")
    expect(page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")).to_have_count(0)

    text = path.read_text()
    nb = nbformat.reads(text, as_version=4)
    assert FAKE_KEY not in text
    for index in magic_cells:
        saved = nb.cells[index].outputs
        assert any(  # an image output, or a grid of data-URI tiles (one carrier, not both)
            {"image/png", "image/jpeg"} & set(out.get("data", {}))
            or 'src="data:image/' in out.get("data", {}).get("text/html", "")
            for out in saved
        )
        assert saved[0].data["text/plain"].startswith("✓ ")
    assert not [
        out
        for c in nb.cells
        if c.cell_type == "code"
        for out in c.outputs
        if WIDGET_VIEW in out.get("data", {})
    ]


def test_the_research_sweep_shows_a_line_per_run_then_a_labelled_grid_of_18(
    page: Page, lab: Lab, request: pytest.FixtureRequest
) -> None:
    path = Path(shutil.copy(ROOT / "notebooks" / "research.ipynb", lab.root / "research.ipynb"))
    open_notebook(page, lab, path)
    for setup in (LOAD, "prompts = [", "import json"):  # the extension, the parameters
        run_cell(page, cell_index(path, setup))
    expect(outputs(page, cell_index(path, "import json"))).to_contain_text("= 18 runs")
    sweep = run_cell(page, cell_index(path, "cmp = mm.sweep("))

    # 18 runs, 4 at a time, 3 s each: a line per run, some done while others still wait.
    progress = sweep.locator(".widget-vbox")
    expect(progress).to_contain_text("sweep · 18 runs · 18 images")
    lines = progress.locator(".widget-html table tr")
    expect(lines).to_have_count(18)
    expect(lines.filter(has_text="✓")).not_to_have_count(0, timeout=20_000)
    expect(lines.filter(has_text="waiting")).not_to_have_count(0)
    expect(progress).to_contain_text(re.compile(r"\d+ of 18 done"))
    expect(sweep.locator(".jp-InputPrompt")).to_have_text("[*]:")
    screenshot(page, f"{request.node.name}_running")

    summary = sweep.locator(".jp-OutputArea-output").first
    expect(summary).to_have_text(re.compile(r"^✓ 18 runs · 18 images · "), timeout=60_000)
    expect(progress).to_have_count(0)
    grid = sweep.locator("div.mesh-magics-sweep")
    assert wait_until_loaded(grid.locator("img"), 18) == [256] * 18
    columns = grid.locator("th[scope='col']").all_inner_texts()
    assert columns == [
        f"{model} · seed {seed}"
        for model in ("openai/gpt-image-1", "openai/dall-e-3", "vertex/imagen-3")
        for seed in (1, 2)
    ]
    rows = grid.locator("th[scope='row']").all_inner_texts()
    assert [row.split()[:2] for row in rows] == [["A", "lighthouse"], ["A", "bowl"], ["A", "red"]]
    expect(sweep.locator(".jp-InputPrompt")).to_have_text(PROMPT_NUMBER)
    grid.scroll_into_view_if_needed()
