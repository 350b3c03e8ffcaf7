"""Shared fixtures: a loopback MeshAPI (the embedded backend) and IPython shells.

Layered like the user's world: `server` is the API on loopback; `ip` is an IPython shell
with the extension loaded and pointed at that server; `run_cell` runs a cell and returns
what the user would see (success, error, printed text, rich outputs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import get_ipython
from IPython.utils.capture import capture_output

from mesh_magics.local import LocalServer

FAKE_KEY = "rsk_test_DO_NOT_LEAK_0123456789abcdef"


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
    magics = _shell.magics_manager.registry["MeshImageMagics"]
    saved = {
        name: getattr(magics, name)
        for name in magics.trait_names()
        if magics.trait_metadata(name, "config")
    }
    magics.base_url = server.url
    magics.progress = "text"
    magics.max_retry_wait = 2.0
    magics.retry_backoff = 0.01  # a retry the server names no wait for is not a test's pause
    magics.read_timeout = 10.0
    yield _shell
    # A test may have reloaded the extension: the magics now registered are the ones to
    # reset, and the settings %unload_ext kept in the shell's config go too.
    _shell.config.pop("MeshImageMagics", None)
    magics = _shell.magics_manager.registry["MeshImageMagics"]
    for name, value in saved.items():
        setattr(magics, name, value)
    for name in [n for n in _shell.user_ns if n.startswith("t_")]:
        del _shell.user_ns[name]


@dataclass
class CellRun:
    success: bool
    error: BaseException | None
    result: Any
    stdout: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""  # the magic's `meshimage:` notes

    @property
    def error_text(self) -> str:
        return "" if self.error is None else str(self.error)


def run_cell(shell: InteractiveShell, text: str) -> CellRun:
    """Run `text` as a cell; return what the user would see."""
    with capture_output() as captured:
        outcome = shell.run_cell(text, store_history=True)
    error = outcome.error_in_exec or outcome.error_before_exec
    return CellRun(
        success=outcome.success,
        error=error,
        result=outcome.result,
        stdout=captured.stdout,
        outputs=[output.data for output in captured.outputs],
        stderr=captured.stderr,
    )


@pytest.fixture
def cell(ip: InteractiveShell):  # type: ignore[no-untyped-def]
    return lambda text: run_cell(ip, text)


def key_is_absent(*texts: object) -> bool:
    return (
        all(FAKE_KEY not in str(text) for text in texts)
        and os.environ.get("MESHAPI_API_KEY") == FAKE_KEY
    )


def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.05
) -> Any:
    """Poll `condition` until it gives something true, and return that; fail naming
    `what` after `timeout` seconds. For conditions nothing signals (a file on disk, a
    server's log); wait on an event where there is one."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(every)
    return value


def at_once(script: str, argvs: list[list[str]], timeout: float) -> None:
    """Run `script` in one Python process per argument list, all released together: each
    prints `ready`, waits for `go` on stdin, does its work and prints `done`. Fails with a
    process's stderr unless every one exits 0 having said `done`."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = [process.communicate(timeout=timeout) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (out, err) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0 and out == "done\n", err
