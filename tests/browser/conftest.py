"""JupyterLab (and Notebook 7) in Chromium: one server each and one browser, a page per test.

`lab` is JupyterLab started as a subprocess on a free loopback port, with its config,
data, runtime, IPython and cache dirs in a temp dir, no token, mesh-magics' server
extension enabled, and the embedded MeshAPI backend (`MESHAPI_BASE_URL=local`, a few
seconds per generation) in its environment, which the kernels inherit. `notebook7` is
Notebook 7 (`jupyter notebook`) started the same way, for the modules that ask for it;
`frontend` is each in turn. `page` is a fresh Chromium page; when the test ends, a
screenshot of what it shows goes to `test-artifacts/browser/`, named after the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from ..support import wait_for

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
FAKE_KEY = "rsk_browser_FAKE_KEY_0123456789abcdef"
LATENCY_SECONDS = 3
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SERVER_EXTENSION_CONFIG = ROOT / "jupyter-config" / "jupyter_server_config.d" / "mesh_magics.json"
# Turns off the "receive official Jupyter news?" pop-up that would cover the notebook.
NO_NEWS = {"fetchNews": "false", "checkForUpdates": False}

NOTEBOOK = ".jp-NotebookPanel:visible"
IDLE = f"{NOTEBOOK} .jp-Notebook-ExecutionIndicator[data-status='idle']"
# The indicator above says idle for a moment before the kernel exists (a Shift+Enter then
# is dropped): the status bar's "Python 3 (ipykernel) | Idle" means a kernel is there.
KERNEL_IDLE = re.compile(r"\| Idle$")
_screenshots: list[Path] = []


@dataclass(frozen=True)
class Lab:
    url: str
    root: Path  # the server's root_dir: notebooks for the tests go here
    log: Path
    app: str = "lab"  # "lab" (JupyterLab) or "notebook" (Notebook 7)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


def wait_until_up(
    name: str, probe: Callable[[], object], process: subprocess.Popen[bytes], log: Path
) -> None:
    """Wait until `probe()` stops raising `OSError` (a server answers), at most 60 s;
    fail with the server's log if it exits or never comes up. Nothing signals a port
    opening, so this polls."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited ({process.returncode}):\n{log.read_text()}")
        try:
            probe()
            return
        except OSError:
            time.sleep(0.2)  # nothing to wait on but the port
    raise RuntimeError(f"{name} did not come up within 60 s:\n{log.read_text()}")


def _wait_for_server(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    wait_until_up("Jupyter", lambda: _get_json(f"{url}/api/status"), process, log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it shuts its kernels down), then SIGKILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def _serve(base: Path, app: str) -> Iterator[Lab]:
    """Start `jupyter lab` or `jupyter notebook` (`app`) isolated under `base`; yield it."""
    dirs = {
        name: base / name.lower()
        for name in (
            "JUPYTER_CONFIG_DIR",
            "JUPYTER_DATA_DIR",
            "JUPYTER_RUNTIME_DIR",
            "IPYTHONDIR",
            "XDG_CACHE_HOME",
        )
    }
    for path in dirs.values():
        path.mkdir()
    # User settings live under JUPYTER_CONFIG_DIR: the news setting stays out of the venv.
    settings = dirs["JUPYTER_CONFIG_DIR"] / "lab" / "user-settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps(NO_NEWS)
    )
    # The server extension (mesh_magics/serverext.py), enabled by the file a wheel installs;
    # here in the server's own config dir, since an editable install leaves it out.
    server_config = dirs["JUPYTER_CONFIG_DIR"] / "jupyter_server_config.d"
    server_config.mkdir()
    shutil.copy(SERVER_EXTENSION_CONFIG, server_config)
    root = base / "root"
    root.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "MESH"))},
        **{name: str(path) for name, path in dirs.items()},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MESHAPI_BASE_URL": "local",
        "MESH_LOCAL_LATENCY": str(LATENCY_SECONDS),
        "MESHAPI_API_KEY": FAKE_KEY,
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    module = {"lab": "jupyterlab", "notebook": "notebook"}[app]
    log = base / f"{module}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--no-browser",
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                "--IdentityProvider.token=",
                "--ServerApp.password=",
                f"--ServerApp.root_dir={root}",
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown can end all of it
        )
    try:
        _wait_for_server(url, process, log)
        specs = _get_json(f"{url}/api/kernelspecs")
        assert isinstance(specs, dict) and "python3" in specs["kernelspecs"], specs
        yield Lab(url=url, root=root, log=log, app=app)
    finally:
        _stop(process)


@pytest.fixture(scope="package")  # stopped as soon as the browser tests end
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from _serve(tmp_path_factory.mktemp("jupyterlab"), "lab")


@pytest.fixture(scope="module")  # only the modules that use it start it
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Notebook 7 (`jupyter notebook`), isolated like `lab`; a notebook opens at
    `/notebooks/NAME.ipynb`."""
    yield from _serve(tmp_path_factory.mktemp("notebook7"), "notebook")


@pytest.fixture(params=["lab", "notebook"])
def frontend(request: pytest.FixtureRequest) -> Lab:
    """JupyterLab, then Notebook 7: one server each, shared by the tests."""
    server: Lab = request.getfixturevalue("lab" if request.param == "lab" else "notebook7")
    return server


@pytest.fixture(scope="package")  # torn down before the other tests: Playwright holds a loop
def browser() -> Iterator[Browser]:
    # No skip: a browser that cannot start is a failure of the suite, not a reason to pass.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="package", autouse=True)
def _fresh_artifacts() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page; at the end, pass or fail, a screenshot of what it shows."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        # JupyterLab scrolls inside the notebook panel: the viewport is the whole picture.
        shot = ARTIFACTS / (re.sub(r"[^\w-]+", "_", request.node.name) + ".png")
        try:
            page.screenshot(path=str(shot))
            _screenshots.append(shot)
        finally:
            context.close()


def screenshot(page: Page, name: str) -> Path:
    """A screenshot of the page now (not only at the end), named after the moment it shows."""
    shot = ARTIFACTS / (re.sub(r"[^\w-]+", "_", name) + ".png")
    page.screenshot(path=str(shot))
    _screenshots.append(shot)
    return shot


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _screenshots:
        terminalreporter.write_sep("-", f"browser screenshots in {ARTIFACTS}")
        for shot in _screenshots:
            terminalreporter.write_line(str(shot))


# -- notebooks --------------------------------------------------------------------------


def copy_quickstart(lab: Lab, name: str = "quickstart.ipynb") -> Path:
    return Path(shutil.copy(ROOT / "notebooks" / "quickstart.ipynb", lab.root / name))


def write_notebook(lab: Lab, name: str, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = lab.root / name
    nbformat.write(nb, path)
    return path


def cell_index(path: Path, starts_with: str) -> int:
    """The index of the first cell whose source starts with `starts_with`."""
    cells = nbformat.read(path, as_version=4).cells
    return next(i for i, c in enumerate(cells) if c.source.startswith(starts_with))


def open_notebook(page: Page, lab: Lab, path: Path) -> None:
    """Open `path` alone (`?reset` drops any saved workspace) and wait for an idle kernel."""
    relative = path.relative_to(lab.root).as_posix()
    if lab.app == "notebook":
        page.goto(f"{lab.url}/notebooks/{relative}")
    else:
        page.goto(f"{lab.url}/lab/tree/{relative}?reset")
    wait_for_idle_kernel(page, timeout=60_000)


def wait_for_idle_kernel(page: Page, timeout: float | None = None) -> None:
    if "/notebooks/" in page.url:  # Notebook 7 has no status bar: ask the server
        _wait_for_server_kernel(page, timeout)
    else:
        page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE).wait_for(timeout=timeout)
    page.locator(IDLE).wait_for(timeout=timeout)


def _wait_for_server_kernel(page: Page, timeout: float | None) -> None:
    """Wait until the server has a kernel for the page's notebook, and it is idle."""
    base, _, relative = page.url.partition("/notebooks/")
    relative = urllib.parse.unquote(relative.split("?")[0])
    deadline = time.monotonic() + (30_000 if timeout is None else timeout) / 1000
    while True:
        sessions = page.request.get(f"{base}/api/sessions").json()
        if any(
            s["path"] == relative and s["kernel"]["execution_state"] == "idle" for s in sessions
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no idle kernel for {relative}: {sessions}")
        page.wait_for_timeout(200)


def cell(page: Page, index: int) -> Locator:
    return page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").nth(index)


def outputs(page: Page, index: int) -> Locator:
    return cell(page, index).locator(".jp-OutputArea-output")


def run_cell(page: Page, index: int) -> Locator:
    """Run cell `index` as a person would (click in it, Shift+Enter); return the cell.

    Waits for an idle kernel first, then checks the cell really started (its prompt turns
    to `[*]` or a new number) and tries once more if not: a first click was seen to miss.
    """
    target = cell(page, index)
    before = target.locator(".jp-InputPrompt").inner_text()
    if not _start(page, target, before):
        warnings.warn(f"cell {index} did not start on the first try; retrying", stacklevel=2)
        if not _start(page, target, before):
            raise AssertionError(f"cell {index} did not start: its prompt stayed {before!r}")
    return target


def _start(page: Page, target: Locator, before: str) -> bool:
    wait_for_idle_kernel(page)
    target.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    try:
        expect(target.locator(".jp-InputPrompt")).not_to_have_text(before, timeout=5_000)
    except AssertionError:
        return False
    return True


def shut_down_kernel(page: Page, lab: Lab, path: Path) -> None:
    """End the session (and kernel) of notebook `path` on the server, as the page's user
    (its `_xsrf` cookie), and wait until it is gone: a page opened afterwards starts a new
    kernel, with no widget models."""
    relative = path.relative_to(lab.root).as_posix()

    def sessions() -> list[dict[str, str]]:
        found = _get_json(f"{lab.url}/api/sessions")
        assert isinstance(found, list), found
        return [s for s in found if s["path"] == relative]

    xsrf = {c["name"]: c["value"] for c in page.context.cookies(lab.url)}.get("_xsrf", "")
    for session in sessions():
        response = page.request.delete(
            f"{lab.url}/api/sessions/{session['id']}", headers={"X-XSRFToken": xsrf}
        )
        assert response.status == 204, (response.status, response.text())
    wait_for(lambda: not sessions(), f"the session of {relative} to go", timeout=10)
