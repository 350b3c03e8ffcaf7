"""What the test modules share, in one place (the fixtures are in `conftest.py`; the
loopback servers in `servers.py`; a kernel driven as a frontend in `kernel.py`):

- a cell run as the user sees it (`run_cell`), and the fake key it must never show;
- waits on what nothing signals (`wait_for`, `settled`), and what a run may leave
  behind (`open_sockets`, `worker_threads`);
- an interrupt on cue (`interrupt_when`), and scripts in a subprocess (`run_script`);
- what a server was sent, found by path, never "the last request" (`generations`, `sent`);
- the shell's magics and store (`magics`, `stored`);
- the client driven directly (`events_until_failure`, `settings_for`);
- stored results made by hand (`png`, `result_of`, `key_of`).
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from PIL import Image

from mesh_magics.events import StreamEvent
from mesh_magics.http.client import MeshClient
from mesh_magics.images import check_image
from mesh_magics.local import LocalServer
from mesh_magics.local.faults import RequestControls, parse_fault
from mesh_magics.local.recording import RecordedRequest
from mesh_magics.request import ImageRequest
from mesh_magics.results.result import ImageResult
from mesh_magics.settings import ClientSettings, Secret
from mesh_magics.store import open_store, request_key

from .servers import ScriptedServer

FAKE_KEY = "rsk_test_DO_NOT_LEAK_0123456789abcdef"
GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"


# -- a cell, as the user sees it ------------------------------------------------------------


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


def key_is_absent(*texts: object) -> bool:
    return (
        all(FAKE_KEY not in str(text) for text in texts)
        and os.environ.get("MESHAPI_API_KEY") == FAKE_KEY
    )


def magics(ip: InteractiveShell) -> Any:
    """The shell's `MeshImageMagics` (its settings are traits)."""
    return ip.magics_manager.registry["MeshImageMagics"]


def stored(ip: InteractiveShell) -> list[Any]:
    """What the shell's store holds, newest first."""
    store = open_store(magics(ip).settings())
    assert store is not None
    return store.history()


# -- waits on what nothing signals, and what a run may leave behind -------------------------


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


def settled(check: Callable[[], Any], timeout: float = 3.0) -> bool:
    """Whether `check()` holds within `timeout` seconds (polled, as `wait_for`), for a
    test to assert with its own message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


def open_sockets() -> int:
    """Sockets this process has open. The engine's loop keeps a socket pair (its wake-up
    pipe) for its whole life: it is started first, so it is counted on both sides."""
    from mesh_magics.engine.loop import engine

    engine().loop  # noqa: B018
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


def worker_threads() -> list[object]:
    """What still runs on the engine's loop (a run that did not end)."""
    from mesh_magics.engine.loop import engine

    return [object()] * engine().running_tasks()


# -- an interrupt on cue ---------------------------------------------------------------------


class Interrupter(threading.Thread):
    """SIGINTs this process (a kernel interrupt) once `ready()` holds and `delay` more
    seconds have passed; `sent_at` is when. Never after `finished()`: a SIGINT that came
    after the cell would hit pytest instead."""

    def __init__(self, ready: Callable[[], bool], delay: float = 0.0) -> None:
        super().__init__(daemon=True)
        self._ready = ready
        self._delay = delay
        self._finished = threading.Event()
        self.sent_at: float | None = None

    def run(self) -> None:
        while not self._ready():
            if self._finished.wait(0.01):  # polls the condition; no fixed wait
                return
        if self._delay and self._finished.wait(self._delay):
            return
        if not self._finished.is_set():
            self.sent_at = time.monotonic()
            os.kill(os.getpid(), signal.SIGINT)

    def finished(self) -> float | None:
        """The cell has returned: stop waiting; when the interrupt was sent, if it was."""
        self._finished.set()
        self.join(5)
        return self.sent_at


def interrupt_when(ready: Callable[[], bool], delay: float = 0.0) -> Interrupter:
    interrupter = Interrupter(ready, delay)
    interrupter.start()
    return interrupter


# How soon after the interrupt the cell must have returned. Cancelling takes milliseconds;
# the bound is wide for a loaded 2-core CI machine, and still well below what each run
# would take if the interrupt did not stop it (a 15 s connect timeout, 30 s of latency, a
# stream that stalls for good, 10 images checked at 1 s each).
CANCEL_BOUND_SECONDS = 5.0


def received_after(server: LocalServer) -> Callable[[], bool]:
    """The server has received a request it had not received yet."""
    seen = server.request_count
    return lambda: server.request_count > seen


# -- scripts in a subprocess -----------------------------------------------------------------


def script_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHAPI_BASE")}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@dataclass
class CommandLineServer:
    """`python -m mesh_magics.local ARGS`, running: the URL it printed first, its process;
    once stopped (SIGTERM), what it wrote to stderr."""

    url: str
    process: subprocess.Popen[str]
    errors: str = ""


@contextmanager
def local_from_the_command_line(*args: str) -> Iterator[CommandLineServer]:
    """The embedded backend started as a user starts it, stopped with SIGTERM after."""
    command = [sys.executable, "-m", "mesh_magics.local", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        served = CommandLineServer(process.stdout.readline().strip(), process)
        try:
            yield served
        finally:
            process.terminate()
            _, served.errors = process.communicate(timeout=5)


def run_script(source: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=script_env(),
    )


def start_script(source: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    )


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


# -- what a server was sent ------------------------------------------------------------------


def generations(server: LocalServer) -> list[RecordedRequest]:
    """The generation requests the embedded backend got, in order."""
    return [r for r in server.requests if r.path.rstrip("/") == GENERATIONS]


def sent(server: LocalServer, path: str = GENERATIONS) -> RecordedRequest:
    """The latest request to `path`: the one a test means, whatever else (a model list,
    a fetch) came after it."""
    found = [r for r in server.requests if r.path.rstrip("/") == path]
    assert found, f"no request to {path}; the server got {[r.path for r in server.requests]}"
    return found[-1]


# -- the client, driven directly -------------------------------------------------------------


def settings_for(server: LocalServer | ScriptedServer, **overrides: Any) -> ClientSettings:
    values: dict[str, Any] = {
        "base_url": server.url,
        "api_key": Secret(FAKE_KEY),
        "max_retries": 2,
        "max_retry_wait": 2.0,
        "backoff_base": 0.05,
        "read_timeout": 5.0,
    }
    values.update(overrides)
    return ClientSettings(**values)


def events_until_failure(
    server: LocalServer | ScriptedServer,
    stream: bool = True,
    settings: ClientSettings | None = None,
    **fields: Any,
) -> tuple[list[StreamEvent], BaseException | None]:
    """Every event of one generation, and the error that ended it, if one did."""
    body = {
        "prompt": "a fox",
        "model": "openai/gpt-image-1",
        "size": "64x64",
        "n": 1,
        "stream": stream,
    }
    body.update(fields)

    events: list[StreamEvent] = []

    async def collect() -> None:
        async with MeshClient(settings or settings_for(server)) as client:
            async for event in client.generate(ImageRequest(body)):
                events.append(event)

    try:
        asyncio.run(collect())
    except Exception as exc:
        return events, exc
    return events, None


# -- stored results made by hand -------------------------------------------------------------

API = "https://api.meshapi.ai"
MODEL = "openai/gpt-image-1"


def png(seed: int = 0, size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (seed % 256, seed // 256 % 256, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def result_of(
    *blobs: bytes,
    prompt: str = "A fox in snow",
    model: str = MODEL,
    request_id: str | None = "req_1",
    revised: str | None = None,
    created: float | None = None,
    **body: Any,
) -> ImageResult:
    images = [check_image(blob, what="test image", revised_prompt=revised) for blob in blobs]
    return ImageResult(
        images,
        request={"prompt": prompt, "n": len(blobs), "stream": True, **body},
        model=model,
        request_id=request_id,
        usage={"total_tokens": 42},
        elapsed=3.2,
        created=created,
    )


def key_of(result: ImageResult, api_host: str = API) -> str:
    return request_key(result.request, api_host)


def refused(shell: InteractiveShell, server: LocalServer, text: str, out: str = "t_out") -> str:
    """Run `text` as a cell and check it was refused as the user should see it: the cell
    failed with an `OptionError` shown as one line by its class name, `out` (the cell's
    -o NAME) holds what it held before, and the server got no request. Returns the message."""
    from mesh_magics.errors import OptionError

    had, before = out in shell.user_ns, shell.user_ns.get(out)
    received = server.request_count
    run = run_cell(shell, text)
    assert not run.success and isinstance(run.error, OptionError), repr(run.error)
    (line,) = run.error._render_traceback_()
    assert line.startswith("OptionError: ") and "\n" not in line, line
    assert len(line) < 400, line
    after = shell.user_ns.get(out)
    ours = type(after).__module__.startswith("mesh_magics")
    assert after is before or not ours, f"it bound {out}"
    if not out.startswith("_"):  # IPython itself moves _, _i, _ii... on every cell
        assert (out in shell.user_ns, after) == (had, before), f"it bound {out}"
    assert server.request_count == received, "the server got a request"
    return str(run.error)


class FaultsBySeed(LocalServer):
    """The embedded backend, each generation's fault chosen by the seed in its body
    (`faults[seed]`, a fault spec), so which run fails how does not hang on the order in
    which concurrent requests arrive."""

    def __init__(self, faults: dict[int, str], **options: Any) -> None:
        super().__init__(**options)
        self.faults = dict(faults)
        self._this = threading.local()  # one thread per connection, so per request

    def record(
        self, method: str, path: str, headers: dict[str, str], body: Any, at: float
    ) -> RecordedRequest:
        self._this.body = body
        return super().record(method, path, headers, body, at)

    def defaults(self) -> RequestControls:
        controls = super().defaults()
        body = getattr(self._this, "body", None)
        spec = self.faults.get(body.get("seed", 0)) if isinstance(body, dict) else None
        if spec is None:
            return controls
        return replace(controls, fault=parse_fault(spec), retry_after="0")
