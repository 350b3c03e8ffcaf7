"""The form as a Voilà app: `voila notebooks/form.ipynb` in Chromium.

Voilà runs the notebook in a kernel of its own and shows its outputs without the code:
the form. A person types a prompt, clicks Generate, sees the run's progress and then the
image, as in JupyterLab. Voilà is started as a subprocess on a free loopback port with
its config, data, runtime and cache dirs in a temp dir; the notebook asks for the
embedded backend itself (`base_url="local"`), a few seconds per generation.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import LATENCY_SECONDS, ROOT, _free_port, _stop, screenshot, wait_until_up
from .test_form import loaded

pytestmark = pytest.mark.browser

PROMPT = "A red kite over the sea"


@dataclass(frozen=True)
class App:
    url: str
    log: Path


@pytest.fixture(scope="module")
def voila(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    base = tmp_path_factory.mktemp("voila")
    dirs = {
        name: base / name.lower()
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                     "IPYTHONDIR", "XDG_CACHE_HOME", "MESH_MAGICS_STORE")
    }  # fmt: skip
    for path in dirs.values():
        path.mkdir()
    (base / "connections").mkdir()
    notebook = Path(shutil.copy(ROOT / "notebooks" / "form.ipynb", base / "form.ipynb"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "MESH"))},
        **{name: str(path) for name, path in dirs.items()},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MESH_LOCAL_LATENCY": str(LATENCY_SECONDS),
    }
    port = _free_port()
    log = base / "voila.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voila",
                str(notebook),
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                f"--Voila.connection_dir_root={base / 'connections'}",
            ],
            env=env,
            cwd=base,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown ends its kernels
        )
    try:
        wait_until_up(
            "voila",
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close(),
            process,
            log,
        )  # a GET of the app would start a kernel: only connect
        yield App(url=f"http://127.0.0.1:{port}/", log=log)
    finally:
        _stop(process)


def test_the_voila_app_generates_an_image(page: Page, voila: App) -> None:
    page.goto(voila.url)
    form = page.locator(".widget-vbox").first
    prompt = form.locator("textarea")
    expect(prompt).to_be_visible(timeout=60_000)  # Voilà runs the notebook first
    expect(prompt).to_have_value("A lighthouse at dusk, watercolor")  # as the notebook says
    expect(page.locator(".jp-InputArea-editor")).to_have_count(0)  # an app: no code shown
    screenshot(page, "voila_1_form")

    prompt.fill(PROMPT)
    code = form.locator("pre")
    expect(code).to_contain_text(PROMPT)  # the kernel has the new prompt
    expect(code).to_contain_text("--size 256x256")
    form.locator("button", has_text="Generate").click()
    expect(form.locator(".widget-html", has_text="⏳")).to_be_visible()
    expect(form.locator(".widget-hprogress")).to_be_visible()
    screenshot(page, "voila_2_generating")

    expect(form).to_contain_text("✓ 1 image", timeout=30_000)
    assert loaded(form.locator("img")) == [256]
    expect(form.locator("button", has_text="Generate")).to_be_enabled()
    expect(form).to_contain_text(PROMPT[:30])  # the gallery entry's settings line
    screenshot(page, "voila_3_generated")
    assert "Traceback" not in voila.log.read_text()
