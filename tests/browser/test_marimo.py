"""The marimo tour as an app (`marimo run`) in Chromium: its cells run in marimo's own
kernel against the embedded backend, the images show, the progress is marimo's own, and
the form (a `mo.ui.form`) generates when submitted."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from .conftest import ROOT, _free_port, _stop, screenshot, wait_until_up

pytestmark = pytest.mark.browser

TOUR = ROOT / "notebooks" / "tour_marimo.py"
TOUR_IMAGES = 8  # fox 1, owls 2, the sweep 4, the dropdown's animal 1


@pytest.fixture(scope="module")
def marimo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`marimo run notebooks/tour_marimo.py --headless` on a free loopback port; its URL."""
    base = tmp_path_factory.mktemp("marimo")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MESH")},
        "MESHAPI_BASE_URL": "local",
        "MESH_LOCAL_LATENCY": "2",  # long enough to see the progress
        "MESH_MAGICS_STORE": str(base / "store"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(base),  # marimo's own config and state stay in the temp dir
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_STATE_HOME": str(base / "state"),
        "XDG_CACHE_HOME": str(base / "cache"),
    }
    log = base / "marimo.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "marimo",
                "run",
                str(TOUR),
                "--headless",
                "--no-token",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=base,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(
            "marimo",
            lambda: urllib.request.urlopen(f"{url}/health", timeout=2).close(),
            process,
            log,
        )
        yield url
    finally:
        _stop(process)


def test_the_tour_runs_as_an_app_and_shows_its_images(page: Page, marimo_app: str) -> None:
    page.goto(marimo_app)
    # While the first run waits on the backend, marimo's own spinner says what runs.
    expect(page.get_by_text("openai/gpt-image-1 · ").first).to_be_visible(timeout=60_000)
    screenshot(page, "marimo_progress")
    images = page.locator("img[src^='data:image/']")
    expect(images).to_have_count(TOUR_IMAGES, timeout=90_000)
    for index in range(TOUR_IMAGES):
        assert images.nth(index).evaluate("img => img.complete && img.naturalWidth > 0")

    # The form: Generate runs the cell it stands for, and its image appears below it.
    page.get_by_role("button", name="Generate").click()
    expect(images).to_have_count(TOUR_IMAGES + 1, timeout=60_000)
    screenshot(page, "marimo_form_generated")
