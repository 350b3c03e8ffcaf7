"""Shared fixtures: a loopback MeshAPI (the embedded backend) and IPython shells.

Layered like the user's world: `server` is the API on loopback; `ip` is an IPython shell
with the extension loaded and pointed at that server; `run_cell` runs a cell and returns
what the user would see (success, error, printed text, rich outputs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import get_ipython

from mesh_magics.local import LocalServer
from mesh_magics.store import Store

from .support import FAKE_KEY, magics, run_cell


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHAPI_API_KEY", FAKE_KEY)
    monkeypatch.delenv("MESH_API_KEY", raising=False)
    monkeypatch.delenv("MESHAPI_BASE_URL", raising=False)


@pytest.fixture(scope="session")
def _session_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(autouse=True)
def _private_store(monkeypatch: pytest.MonkeyPatch, _session_store: Path) -> None:
    """No test writes to ~/.cache: every run's store is this session's temp folder (one
    per session, since a process keeps each store it opened open)."""
    monkeypatch.setenv("MESH_MAGICS_STORE", str(_session_store))


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ping_interval=0.2) as local:
        yield local


@pytest.fixture(scope="session")
def _shell() -> InteractiveShell:
    import IPython

    shell = get_ipython() or IPython.get_ipython()  # the first call starts it, later ones not
    shell.run_line_magic("load_ext", "mesh_magics")
    return shell


@pytest.fixture
def ip(_shell: InteractiveShell, server: LocalServer) -> Iterator[InteractiveShell]:
    """The shell, configured for `server`, with fast retries and text progress."""
    registered = magics(_shell)
    saved = {
        name: getattr(registered, name)
        for name in registered.trait_names()
        if registered.trait_metadata(name, "config")
    }
    registered.base_url = server.url
    registered.progress = "text"
    registered.max_retry_wait = 2.0
    registered.retry_backoff = 0.01  # a retry the server names no wait for is not a test's pause
    registered.read_timeout = 10.0
    yield _shell
    # A test may have reloaded the extension: the magics now registered are the ones to
    # reset, and the settings %unload_ext kept in the shell's config go too.
    _shell.config.pop("MeshImageMagics", None)
    registered = magics(_shell)
    for name, value in saved.items():
        setattr(registered, name, value)
    for name in [n for n in _shell.user_ns if n.startswith("t_")]:
        del _shell.user_ns[name]


@pytest.fixture
def cell(ip: InteractiveShell):  # type: ignore[no-untyped-def]
    return lambda text: run_cell(ip, text)


@pytest.fixture
def store_dir(ip: InteractiveShell, tmp_path: Path) -> Path:
    """A store of this test's own (the `ip` fixture puts the setting back afterwards)."""
    folder = tmp_path / "store"
    magics(ip).store_dir = str(folder)
    return folder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A store opened on a folder of this test's own."""
    opened = Store(tmp_path / "store")
    yield opened
    opened.close()
