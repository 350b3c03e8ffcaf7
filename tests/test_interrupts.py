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


def interrupt_when(ready: Callable[[], bool], delay: float = 0.1) -> threading.Thread:
    """SIGINT this process (a kernel interrupt) once `ready()` holds, then after `delay`."""

    def wait_then_interrupt() -> None:
        deadline = time.monotonic() + 10
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=wait_then_interrupt, daemon=True)
    thread.start()
    return thread


def cancelled_cleanly(ip: InteractiveShell, cell: str, ready: Callable[[], bool]) -> None:
    sockets_before = open_sockets()
    interrupter = interrupt_when(ready)
    run = run_cell(ip, cell)
    interrupted_at = time.monotonic()
    interrupter.join(5)
    assert isinstance(run.error, GenerationCancelled), repr(run.error)
    assert "t_cancel" not in ip.user_ns
    assert settled(lambda: not worker_threads(), timeout=1.0), "the worker is still running"
    assert time.monotonic() - interrupted_at < 1.5
    assert settled(lambda: open_sockets() <= sockets_before), "a connection was left open"
    assert run_cell(ip, "6 * 7").result == 42


def test_while_connecting(ip: InteractiveShell) -> None:
    with silent_listener() as url:  # TCP accepted, TLS handshake never answered
        cancelled_cleanly(ip, f"%%meshimage -o t_cancel --base-url {url}\nfox", lambda: True)


def test_while_waiting_for_the_image(ip: InteractiveShell, server: LocalServer) -> None:
    server.latency = 30
    cancelled_cleanly(
        ip, "%%meshimage -o t_cancel --size 64x64\nfox", lambda: bool(server.requests)
    )
    assert server.wait_for_disconnect(2)


def test_in_the_middle_of_a_frame(ip: InteractiveShell) -> None:
    processing = sse_frame({"object": "image.chunk", "status": "processing", "data": []})
    half = sse_frame({"object": "image.chunk", "data": [{"b64_json": b64(png_bytes())}]})[:60]
    stop = threading.Event()
    with ScriptedServer({}) as api:
        api.routes["/v1/images/generations"] = send_sse(
            processing, half, then="stall", stopping=stop
        )
        try:
            cancelled_cleanly(
                ip, f"%%meshimage -o t_cancel --base-url {api.url}\nfox", lambda: bool(api.requests)
            )
        finally:
            stop.set()


def test_while_decoding_images(
    ip: InteractiveShell, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoding = threading.Event()
    real_check = client_module.check_image

    def slow_check(*args, **kwargs):  # type: ignore[no-untyped-def]
        decoding.set()
        time.sleep(0.3)  # a big image takes a while to check
        return real_check(*args, **kwargs)

    monkeypatch.setattr(client_module, "check_image", slow_check)
    cancelled_cleanly(ip, "%%meshimage -o t_cancel -n 10 --size 64x64\nfox", decoding.is_set)


def test_twenty_interrupts_in_a_row_leave_nothing_behind(
    ip: InteractiveShell, server: LocalServer
) -> None:
    server.latency = 30
    threads_before = threading.active_count()
    sockets_before = open_sockets()
    for attempt in range(20):
        seen = len(server.requests)
        interrupter = interrupt_when(
            lambda seen=seen: len(server.requests) > seen, delay=0.02 * (attempt % 5)
        )
        run = run_cell(ip, "%%meshimage -o t_cancel --size 64x64\nfox")
        interrupter.join(5)
        assert isinstance(run.error, GenerationCancelled), (attempt, repr(run.error))
    assert settled(lambda: server.disconnects >= 20, timeout=5), server.disconnects
    assert settled(lambda: threading.active_count() <= threads_before, timeout=5)
    assert settled(lambda: open_sockets() <= sockets_before, timeout=5)
    assert "t_cancel" not in ip.user_ns
