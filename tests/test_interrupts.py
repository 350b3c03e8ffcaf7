"""Interrupting a generation at every stage stops it at once and leaves nothing behind:
no worker thread, no open connection, nothing bound, and the shell keeps working."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest
from IPython.core.interactiveshell import InteractiveShell

from mesh_magics.errors import GenerationCancelled
from mesh_magics.http import client as client_module
from mesh_magics.local import LocalServer

from .conftest import run_cell
from .servers import ScriptedServer, b64, png_bytes, send_sse, silent_listener, sse_frame
from .test_faults import open_sockets, settled, worker_threads


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


def cancelled_cleanly(
    ip: InteractiveShell, cell: str, ready: Callable[[], bool], delay: float = 0.0
) -> None:
    sockets_before = open_sockets()
    interrupter = interrupt_when(ready, delay)
    run = run_cell(ip, cell)
    returned = time.monotonic()
    sent_at = interrupter.finished()
    assert sent_at is not None, f"the cell ended before it could be interrupted: {run.error!r}"
    assert isinstance(run.error, GenerationCancelled), repr(run.error)
    assert returned - sent_at < CANCEL_BOUND_SECONDS, f"returned {returned - sent_at:.1f} s late"
    assert "t_cancel" not in ip.user_ns
    assert settled(lambda: not worker_threads(), timeout=5), "the worker is still running"
    assert settled(lambda: open_sockets() <= sockets_before, timeout=5), (
        "a connection was left open"
    )
    assert run_cell(ip, "6 * 7").result == 42


def received_after(server: LocalServer) -> Callable[[], bool]:
    """The server has received a request it had not received yet."""
    seen = server.request_count
    return lambda: server.request_count > seen


def connected(sockets_before: int) -> Callable[[], bool]:
    """The client's socket and the listener's end of it are open: the TCP connection is
    made and the client waits in its TLS handshake."""
    return lambda: open_sockets() >= sockets_before + 2


def test_while_connecting(ip: InteractiveShell) -> None:
    with silent_listener() as url:  # TCP accepted, TLS handshake never answered
        cell = f"%%meshimage -o t_cancel --base-url {url}\nfox"
        cancelled_cleanly(ip, cell, connected(open_sockets()))


def test_while_waiting_for_the_image(ip: InteractiveShell, server: LocalServer) -> None:
    server.latency = 30
    cancelled_cleanly(
        ip, "%%meshimage -o t_cancel --size 64x64\nfox", lambda: server.request_count > 0
    )
    assert server.wait_for_disconnect(5)


def test_in_the_middle_of_a_frame(ip: InteractiveShell) -> None:
    processing = sse_frame({"object": "image.chunk", "status": "processing", "data": []})
    half = sse_frame({"object": "image.chunk", "data": [{"b64_json": b64(png_bytes())}]})[:60]
    with ScriptedServer({}) as api:
        api.routes["/v1/images/generations"] = send_sse(processing, half, then="stall")
        # Once the server has the request it sends the two frames at once; 0.1 s later
        # the client holds half a frame (were it earlier, the run is cancelled anyway).
        cancelled_cleanly(
            ip,
            f"%%meshimage -o t_cancel --base-url {api.url}\nfox",
            lambda: bool(api.requests),
            delay=0.1,
        )


def test_while_decoding_images(
    ip: InteractiveShell, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoding = threading.Event()
    real_check = client_module.check_image

    def slow_check(*args, **kwargs):  # type: ignore[no-untyped-def]
        decoding.set()
        time.sleep(1.0)  # a big image takes a while to check (not an interrupt wait)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(client_module, "check_image", slow_check)
    cancelled_cleanly(
        ip, "%%meshimage -o t_cancel -n 10 --size 64x64\nfox", decoding.is_set, delay=0.1
    )


def test_twenty_interrupts_in_a_row_leave_nothing_behind(
    ip: InteractiveShell, server: LocalServer
) -> None:
    server.latency = 30
    threads_before = threading.active_count()
    sockets_before = open_sockets()
    for attempt in range(20):
        # At a few points after the server has this attempt's request.
        interrupter = interrupt_when(received_after(server), delay=0.02 * (attempt % 5))
        run = run_cell(ip, "%%meshimage -o t_cancel --size 64x64\nfox")
        assert interrupter.finished() is not None, (attempt, repr(run.error))
        assert isinstance(run.error, GenerationCancelled), (attempt, repr(run.error))
    assert settled(lambda: server.disconnects >= 20, timeout=5), server.disconnects
    assert settled(lambda: threading.active_count() <= threads_before, timeout=5)
    assert settled(lambda: open_sockets() <= sockets_before, timeout=5)
    assert "t_cancel" not in ip.user_ns
